package main

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

const relayUsage = `relay [--host HOST] [--probe] PORT | relay [--host HOST] --mux | relay [--host HOST] --listen DIR --to PORT[,PORT...]
Connects to HOST:PORT over TCP (HOST defaults to 127.0.0.1, in the sidecar's network
namespace: the target's) and copies stdin to the connection and the connection to
stdout. EOF on stdin half-closes the connection, and the answer keeps coming; EOF from
the connection ends the relay (whatever stdin still holds is not sent: the caller sees
the server's EOF only as the end of this process). Exit 0 then, 2 when nothing listens
(connection refused) or the host is unreachable, 1 on other errors. --probe only
connects, then closes: exit 0 when something listens.
--mux relays many connections, to ports of HOST, over stdin and stdout, in frames
(debugkit port-forward: one exec for every connection; see mux.go). It ends at EOF
on stdin, exit 0.
--listen relays connections to unix sockets DIR/PORT.sock, one for each port of --to,
to HOST:PORT (debugkit port-forward on a local engine, DIR bind-mounted from the
operator's machine; see relaysock.go). The first line of stdin is a secret of 32 hex
digits that starts every connection; EOF on stdin ends the relay and removes the
sockets, exit 0.
`

const (
	relayBufferSize  = 1 << 20
	relayDialTimeout = 30 * time.Second
	exitUnreachable  = 2
)

func cmdRelay(args []string) int {
	fs := newFlags("relay")
	host := fs.String("host", "127.0.0.1", "")
	probe := fs.Bool("probe", false, "")
	mux := fs.Bool("mux", false, "")
	listen := fs.String("listen", "", "")
	to := fs.String("to", "", "")
	if code, ok := parseFlags(fs, args, relayUsage, exitUsage); !ok {
		return code
	}
	if *listen != "" || *to != "" {
		if *listen == "" || *to == "" || fs.NArg() != 0 || *probe || *mux {
			return usageErrorf("relay", relayUsage, exitUsage, "--listen DIR and --to PORTS go together, alone")
		}
		ports, err := parsePorts(*to)
		if err != nil {
			return usageErrorf("relay", relayUsage, exitUsage, "--to: %v", err)
		}
		return report(relayListen(*listen, *host, ports, os.Stdin))
	}
	if *mux {
		if fs.NArg() != 0 || *probe {
			return usageErrorf("relay", relayUsage, exitUsage, "--mux takes no PORT and no --probe")
		}
		return cmdRelayMux(*host)
	}
	if fs.NArg() != 1 {
		return usageErrorf("relay", relayUsage, exitUsage, "exactly one PORT is needed")
	}
	port, err := strconv.Atoi(fs.Arg(0))
	if err != nil || port < 1 || port > 65535 {
		return usageErrorf("relay", relayUsage, exitUsage, "not a TCP port: %q", fs.Arg(0))
	}
	if *probe {
		conn, err := dial(*host, port)
		if err == nil {
			conn.Close()
		}
		return report(err)
	}
	return report(relay(*host, port, os.Stdin, os.Stdout))
}

// dial connects to host:port, with the exit codes relay reports for what went wrong.
func dial(host string, port int) (*net.TCPConn, error) {
	return dialCancel(host, port, nil)
}

// dialCancel is dial, given up when cancel is closed.
func dialCancel(host string, port int, cancel <-chan struct{}) (*net.TCPConn, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	dialer := net.Dialer{Timeout: relayDialTimeout, Cancel: cancel}
	c, err := dialer.Dial("tcp", addr)
	if err != nil {
		switch {
		case isErrno(err, syscall.ECONNREFUSED):
			return nil, failf(exitUnreachable, "nothing is listening on %s (connection refused)", addr)
		case isErrno(err, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EADDRNOTAVAIL):
			return nil, failf(exitUnreachable, "cannot reach %s (%s)", addr, errnoText(err))
		case isTimeout(err):
			return nil, failf(exitUnreachable, "cannot reach %s (connection timed out)", addr)
		}
		return nil, failf(exitFailure, "cannot connect to %s: %v", addr, err)
	}
	return c.(*net.TCPConn), nil
}

// halfCloser is the write side of stdout, closed when the connection reaches EOF.
type halfCloser interface {
	io.Writer
	Close() error
}

func relay(host string, port int, in io.Reader, out halfCloser) error {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	conn, err := dial(host, port)
	if err != nil {
		return err
	}
	defer conn.Close()

	upstream := make(chan error, 1)
	go func() {
		buf := make([]byte, relayBufferSize)
		// Plain Reader/Writer wrappers: no ReadFrom/WriteTo shortcuts with small buffers.
		_, err := io.CopyBuffer(struct{ io.Writer }{conn}, struct{ io.Reader }{in}, buf)
		if err == nil {
			err = conn.CloseWrite()
		}
		upstream <- err
	}()

	buf := make([]byte, relayBufferSize)
	received, err := io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{conn}, buf)
	closeErr := out.Close()
	if isErrno(err, syscall.ECONNRESET) {
		// Nothing can be sent on a reset connection: stdin is not waited for. A
		// reset after data is how some servers end; before any, it is a refusal.
		if received > 0 {
			return nil
		}
		return failf(exitFailure, "%s reset the connection", addr)
	}
	if err != nil {
		return failf(exitFailure, "reading from %s: %v", addr, err)
	}
	if closeErr != nil && !errors.Is(closeErr, os.ErrClosed) {
		return failf(exitFailure, "closing stdout: %v", closeErr)
	}
	// The server has closed its side. Through an exec (debugkit's port-forward) the client
	// can only learn that from the end of this process: the reaper holds stdout open, so
	// closing it is not seen. Waiting for stdin's EOF would hang every protocol whose
	// server ends the answer by closing (HTTP/1.0, a download). An upstream failure that
	// has already happened is still reported.
	select {
	case err := <-upstream:
		if err != nil && !isErrno(err, syscall.EPIPE, syscall.ECONNRESET, syscall.ENOTCONN) {
			return failf(exitFailure, "writing to %s: %v", addr, err)
		}
	default:
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
