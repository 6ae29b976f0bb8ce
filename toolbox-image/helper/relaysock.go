package main

// relay --listen DIR --to PORT[,PORT...]: port-forward at kernel speed on a local engine.
//
// debugkit bind-mounts a private host directory at DIR (nothing else can reach it: its
// parent on the host is the operator's, mode 0700) and runs this as an exec; here a unix
// socket per port, DIR/PORT.sock, takes the operator's connections, and each one is
// dialled to HOST:PORT in the sidecar's network namespace (the target's) and copied both
// ways with io.Copy: splice(2) from the unix socket to the TCP one (TCPConn.ReadFrom);
// the other way splices from Go 1.22 on (TCPConn.WriteTo), and goes through a 32 KiB
// buffer with the toolbox's Go 1.19. Either way no engine is in the path. No port is
// published and nothing listens on any network: the target's neighbours on its bridge
// reach nothing new.
//
// The exec's stdin is the control channel: its first line is a secret of 32 hex digits,
// and its EOF (the CLI is done, or gone) ends the relay and removes the sockets. Every
// connection begins with the secret and a status byte (relayConnected, or an exit code
// of relay followed by a one-line reason and the connection's end): the CLI sends
// nothing to a socket that does not prove it is this relay, so a process of the target's
// user that replaced DIR/PORT.sock (with a symlink to some host socket, say) gets
// nothing. The secret never appears in an argument or the environment, and this process
// is not dumpable.

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

const (
	relaySecretSize = 16
	relayConnected  = 0
)

// relaySocketName is the socket for a port in the listening directory.
func relaySocketName(port int) string { return strconv.Itoa(port) + ".sock" }

// parsePorts reads --to: ports separated by commas, each once.
func parsePorts(text string) ([]int, error) {
	var ports []int
	seen := map[int]bool{}
	for _, item := range strings.Split(text, ",") {
		port, err := strconv.Atoi(item)
		if err != nil || port < 1 || port > 65535 {
			return nil, fmt.Errorf("not a TCP port: %q", item)
		}
		if !seen[port] {
			seen[port] = true
			ports = append(ports, port)
		}
	}
	return ports, nil
}

// readRelaySecret reads the control channel's first line: 32 hex digits.
func readRelaySecret(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return nil, failf(exitFailure, "no secret on stdin: %v", err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(line))
	if err != nil || len(secret) != relaySecretSize {
		return nil, failf(exitUsage, "the first line of stdin must be %d hex digits", 2*relaySecretSize)
	}
	return secret, nil
}

// listenRelaySocket listens on DIR/PORT.sock, readable and writable by anyone who can
// reach the directory (the operator, whose UID is not the sidecar's): bound under a
// temporary name, opened up, then renamed, so the name never stands for a socket the
// operator cannot connect to yet.
func listenRelaySocket(dir string, port int) (*net.UnixListener, string, error) {
	final := filepath.Join(dir, relaySocketName(port))
	tmp := filepath.Join(dir, fmt.Sprintf(".%d.%d.tmp", port, os.Getpid()))
	os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, "", failf(exitFailure, "cannot listen in %s: %v", dir, errnoText(err))
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o666); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, "", failf(exitFailure, "cannot open up %s: %v", tmp, errnoText(err))
	}
	if err := os.Rename(tmp, final); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, "", failf(exitFailure, "cannot name %s: %v", final, errnoText(err))
	}
	return ln, final, nil
}

// relayListen serves every port until EOF on control; the sockets are removed then.
func relayListen(dir, host string, ports []int, control io.Reader) error {
	in := bufio.NewReader(control)
	secret, err := readRelaySecret(in)
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	var listeners []*net.UnixListener
	var paths []string
	defer func() {
		for i, ln := range listeners {
			ln.Close()
			os.Remove(paths[i])
		}
	}()
	for _, port := range ports {
		ln, path, err := listenRelaySocket(dir, port)
		if err != nil {
			return err
		}
		listeners = append(listeners, ln)
		paths = append(paths, path)
	}
	var serving sync.WaitGroup
	for i, ln := range listeners {
		serving.Add(1)
		go func(ln *net.UnixListener, port int) {
			defer serving.Done()
			for {
				conn, err := ln.AcceptUnix()
				if err != nil {
					select {
					case <-stop:
						return
					default:
					}
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						continue
					}
					if isErrno(err, syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED) {
						continue // this connection is lost, the next may be served
					}
					errorf("relay: accepting on %s: %v", relaySocketName(port), err)
					return
				}
				go relayConn(conn, host, port, secret, stop)
			}
		}(ln, ports[i])
	}
	_, err = io.Copy(io.Discard, in)
	close(stop)
	for _, ln := range listeners {
		ln.Close()
	}
	serving.Wait()
	if err != nil {
		return failf(exitFailure, "reading stdin: %v", err)
	}
	return nil
}

// relayConn dials the target's port for one operator's connection, says how that went,
// then copies both ways; each EOF is passed on as a half-close, an error ends both.
func relayConn(conn *net.UnixConn, host string, port int, secret []byte, stop <-chan struct{}) {
	defer conn.Close()
	tcp, err := dialCancel(host, port, stop)
	if err != nil {
		code := exitFailure
		var ce *cliError
		if errors.As(err, &ce) {
			code = ce.code
		}
		conn.Write(append(append(append([]byte{}, secret...), byte(code)), err.Error()...))
		return
	}
	defer tcp.Close()
	if _, err := conn.Write(append(append([]byte{}, secret...), relayConnected)); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		copyHalf(tcp, conn)
		close(done)
	}()
	copyHalf(conn, tcp)
	<-done
}

// halfConn is a stream socket that can end its write side alone.
type halfConn interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// copyHalf copies src to dst (io.Copy: splice where Go can, see above) and passes src's
// EOF on; after an error (a reset) both are closed, so the other direction ends too.
func copyHalf(dst, src halfConn) {
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		src.Close()
		return
	}
	dst.CloseWrite()
}
