package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

const targetUsage = `target start [--background] | status | stop
Controls the program a held copy holds (debugkit attach --copy, attach image/REF), from
the sidecar: the copy's main process (debugkit-helper hold) runs it on request.
  start         runs the original entrypoint and command with the target's user,
                environment and working directory; its stdout and stderr come here as
                they are written; exits with its status (128+N for signal N). Ctrl-C or
                SIGTERM stops it. It may be started again once it has ended.
  start --background
                starts it and returns at once; its output goes to the copy's logs.
  status        prints whether it is held, running or exited (and its status).
  stop          ends it (SIGTERM to its process group, SIGKILL after 5 s); prints its status.
Exit 125 when there is no held copy to talk to, or it refused; 126/127 when the
program cannot be executed or found. Also: debugkit-helper target ...
`

// exitTargetFailed is the target command's own failure, apart from any status the
// program itself may exit with (docker run's convention).
const exitTargetFailed = 125

// holdSocket is the holder's socket: $DEBUGKIT_TARGET_SOCKET, else the --socket of the
// holder that is PID 1 of the shared PID namespace (the copy's main process), else the
// default. A copy on a shared network namespace (host networking) has a socket of its own.
func holdSocket() string {
	if name := os.Getenv("DEBUGKIT_TARGET_SOCKET"); name != "" {
		return name
	}
	if data, err := os.ReadFile("/proc/1/cmdline"); err == nil {
		if name := socketOfHolder(strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")); name != "" {
			return name
		}
	}
	return defaultHoldSocket
}

// socketOfHolder: NAME from a holder's command line (... hold --socket NAME -- ...), or "".
func socketOfHolder(argv []string) string {
	if len(argv) < 4 || argv[1] != "hold" {
		return ""
	}
	if argv[2] == "--socket" || argv[2] == "-socket" {
		return argv[3]
	}
	return ""
}

func dialHolder() (*net.UnixConn, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: "@" + holdSocket(), Net: "unix"})
	if err != nil {
		if isErrno(err, syscall.ECONNREFUSED, syscall.ENOENT) {
			return nil, failf(exitTargetFailed, "no held program here: target works in a sidecar started by "+
				"debugkit attach --copy or attach image/REF")
		}
		return nil, failf(exitTargetFailed, "cannot reach the held copy: %s", errnoText(err))
	}
	return c, nil
}

func cmdTarget(args []string) int {
	if len(args) == 0 {
		return usageErrorf("target", targetUsage, exitUsage, "no subcommand (start, status, stop)")
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprintf(os.Stdout, "Usage: %s", targetUsage)
		return exitOK
	case "start":
		fs := newFlags("target start")
		background := fs.Bool("background", false, "")
		if code, ok := parseFlags(fs, args[1:], targetUsage, exitUsage); !ok {
			return code
		}
		if fs.NArg() != 0 {
			return usageErrorf("target start", targetUsage, exitUsage, "unexpected argument %q", fs.Arg(0))
		}
		return targetStart(*background)
	case "status", "stop":
		if len(args) > 1 {
			return usageErrorf("target "+args[0], targetUsage, exitUsage, "unexpected argument %q", args[1])
		}
		return targetSimple(args[0])
	}
	return usageErrorf("target", targetUsage, exitUsage, "unknown subcommand %q", args[0])
}

// answer reads one line of the holder's: (kind, the rest).
func answer(r *bufio.Reader) (string, string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", "", failf(exitTargetFailed, "the held copy closed the connection without an answer")
	}
	kind, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
	return kind, rest, nil
}

// refused turns "error STATUS MESSAGE" into its exit code, with the message on stderr.
func refused(rest string) int {
	codeText, msg, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeText)
	if err != nil {
		code = exitTargetFailed
	}
	errorf("target: %s", msg)
	return code
}

// refusedOr: a request that could not be written. The holder refuses another user's request
// at once and closes (the write then meets a broken pipe): its answer, still readable, says why.
func refusedOr(c *net.UnixConn, err error) int {
	if kind, rest, aerr := answer(bufio.NewReader(c)); aerr == nil && kind == "error" {
		return refused(rest)
	}
	return report(failf(exitTargetFailed, "cannot ask the held copy: %s", errnoText(err)))
}

func targetStart(background bool) int {
	c, err := dialHolder()
	if err != nil {
		return report(err)
	}
	defer c.Close()
	request := "start-bg"
	var oob []byte
	if !background {
		request = "start"
		oob = syscall.UnixRights(1, 2) // the program writes straight to our stdout and stderr
	}
	if _, _, err := c.WriteMsgUnix([]byte(request+"\n"), oob, nil); err != nil {
		return refusedOr(c, err)
	}
	r := bufio.NewReader(c)
	kind, rest, err := answer(r)
	if err != nil {
		return report(err)
	}
	if kind == "error" {
		return refused(rest)
	}
	if kind != "started" {
		return report(failf(exitTargetFailed, "unexpected answer from the held copy: %q", kind))
	}
	if background {
		fmt.Fprintf(os.Stdout, "started: pid %s (its output goes to the copy's logs; target status, target stop)\n", rest)
		return exitOK
	}
	// Ctrl-C or SIGTERM (the session ends) stops the program; we still report its status.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		<-sigs
		if s, err := dialHolder(); err == nil {
			_, _ = s.Write([]byte("stop\n"))
			_, _, _ = answer(bufio.NewReader(s))
			s.Close()
		}
	}()
	kind, rest, err = answer(r)
	if err != nil {
		return report(err)
	}
	if kind != "exited" {
		return report(failf(exitTargetFailed, "unexpected answer from the held copy: %q", kind))
	}
	status, convErr := strconv.Atoi(rest)
	if convErr != nil {
		return report(failf(exitTargetFailed, "unexpected status from the held copy: %q", rest))
	}
	return status
}

func targetSimple(request string) int {
	c, err := dialHolder()
	if err != nil {
		return report(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(request + "\n")); err != nil {
		return refusedOr(c, err)
	}
	kind, rest, err := answer(bufio.NewReader(c))
	if err != nil {
		return report(err)
	}
	switch kind {
	case "error":
		return refused(rest)
	case "state":
		fmt.Fprintln(os.Stdout, rest)
		return exitOK
	case "exited":
		fmt.Fprintf(os.Stdout, "stopped: status %s\n", rest)
		return exitOK
	}
	return report(failf(exitTargetFailed, "unexpected answer from the held copy: %q", kind))
}
