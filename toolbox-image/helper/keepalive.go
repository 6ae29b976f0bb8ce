package main

import (
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const keepaliveUsage = `keepalive --socket NAME [--idle SECONDS] [--first SECONDS] [--stdin [--stdin-timeout SECONDS]]
The main process of a reusable sidecar. Listens on the abstract unix socket @NAME
and counts open connections (reap --hold NAME). Exits 0 when there has been none
for --idle seconds (default 600; 0: as soon as the count drops to 0 after a first
connection, within 0.1 s), when no connection came within --first seconds (default: --idle, or
60 with --idle 0), on SIGTERM/SIGINT, and with --stdin when stdin reaches EOF (or, with
--stdin-timeout, when nothing arrived on it for that long: the CLI's heartbeat stopped).
Before it exits it asks the commands holding it to end (their connection closes; each
reap --hold takes that as SIGTERM) and waits for them, a few seconds at most.
Reaps whatever is reparented to it. Exit 1 when @NAME is already in use.
`

const (
	// How long the commands holding a stopping keepalive get to end (reap's grace, 2 s, and a margin).
	windDownGrace    = 3 * time.Second
	windDownSettle   = 300 * time.Millisecond // after the holders are gone, for the engine
	defaultIdle      = 600 * time.Second
	defaultFirstIdle = 60 * time.Second // --first when --idle is 0
	// settle is how long --idle 0 waits after the count dropped to 0: a connection
	// made at that moment (the next reap --hold) is not yet counted, and must not be
	// dropped by an exit.
	settle = 100 * time.Millisecond
)

func cmdKeepalive(args []string) int {
	fs := newFlags("keepalive")
	socket := fs.String("socket", "", "")
	idle := seconds{d: defaultIdle}
	first := seconds{}
	fs.Var(&idle, "idle", "")
	fs.Var(&first, "first", "")
	watchStdin := fs.Bool("stdin", false, "")
	silence := seconds{}
	fs.Var(&silence, "stdin-timeout", "")
	if code, ok := parseFlags(fs, args, keepaliveUsage, exitUsage); !ok {
		return code
	}
	if *socket == "" {
		return usageErrorf("keepalive", keepaliveUsage, exitUsage, "--socket NAME is required")
	}
	if fs.NArg() != 0 {
		return usageErrorf("keepalive", keepaliveUsage, exitUsage, "unexpected argument %q", fs.Arg(0))
	}
	if !first.set {
		first.d = idle.d
		if idle.d == 0 {
			first.d = defaultFirstIdle
		}
	}
	ln, err := net.Listen("unix", "@"+*socket)
	if err != nil {
		if isErrno(err, syscall.EADDRINUSE) {
			errorf("the socket @%s is already in use (another keepalive is running)", *socket)
		} else {
			errorf("cannot listen on @%s: %v", *socket, err)
		}
		return exitFailure
	}
	defer ln.Close()
	if err := setChildSubreaper(); err != nil {
		warnf("cannot become a child subreaper: %v", err)
	}
	var stdinEOF <-chan struct{}
	if *watchStdin {
		stdinEOF = watchStdinFor(os.Stdin, silence.d)
	} else if silence.set {
		return usageErrorf("keepalive", keepaliveUsage, exitUsage, "--stdin-timeout goes with --stdin")
	}
	return keepalive(ln, idle.d, first.d, stdinEOF)
}

// watchStdinFor is watchEOF that also gives up when nothing arrives for `silence` (0: never).
func watchStdinFor(r io.Reader, silence time.Duration) <-chan struct{} {
	if silence <= 0 {
		return watchEOF(r)
	}
	done := make(chan struct{})
	activity := make(chan struct{}, 1)
	eof := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				select {
				case activity <- struct{}{}:
				default:
				}
			}
			if err != nil {
				close(eof)
				return
			}
		}
	}()
	go func() {
		t := time.NewTimer(silence)
		defer t.Stop()
		for {
			select {
			case <-activity:
				if !t.Stop() {
					<-t.C
				}
				t.Reset(silence)
			case <-eof:
				close(done)
				return
			case <-t.C:
				close(done)
				return
			}
		}
	}()
	return done
}

// watchEOF reads r to its end (discarding what it reads) and then closes the channel.
func watchEOF(r io.Reader) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, r)
		close(done)
	}()
	return done
}

func keepalive(ln net.Listener, idle, first time.Duration, stdinEOF <-chan struct{}) int {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	defer signal.Stop(sigs)

	// A connection as it opens (+1) and closes (-1), in that order for each.
	type event struct {
		conn  net.Conn
		delta int
	}
	events := make(chan event, 64)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Temporary() {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				return
			}
			events <- event{conn, 1}
			go func() {
				_, _ = io.Copy(io.Discard, conn)
				conn.Close()
				events <- event{conn, -1}
			}()
		}
	}()
	held := map[net.Conn]bool{}

	// windDown: before exiting while commands still hold us, close their connections
	// (each `reap --hold` takes that as SIGTERM, ends its command's tree and reaps it)
	// and wait for them to go, up to windDownGrace. Otherwise the engine would SIGKILL
	// the whole container at once and orphan their children to the target's PID 1.
	windDown := func() int {
		if len(held) == 0 {
			return exitOK
		}
		for conn := range held {
			if uc, ok := conn.(*net.UnixConn); ok {
				_ = uc.CloseWrite()
			} else {
				_ = conn.Close()
			}
		}
		deadline := time.After(windDownGrace)
		for len(held) > 0 {
			select {
			case e := <-events:
				if e.delta < 0 {
					delete(held, e.conn)
				} else {
					held[e.conn] = true
					_ = e.conn.Close()
				}
			case s := <-sigs:
				if s == syscall.SIGCHLD {
					reapOrphans()
				}
			case <-deadline:
				warnf("%d command(s) still running after %s: the engine ends them", len(held), windDownGrace)
				return exitOK
			}
		}
		reapOrphans()
		// The commands have exited; give the engine a moment to see their execs end
		// before the container does. A container that ends first leaves the engine
		// (Docker 20.10, containerd 1.6) with exec streams it never closes.
		time.Sleep(windDownSettle)
		return exitOK
	}

	timer := time.NewTimer(first)
	defer timer.Stop()
	timerOn := true
	stopTimer := func() {
		if timerOn && !timer.Stop() {
			<-timer.C
		}
		timerOn = false
	}
	for {
		select {
		case e := <-events:
			if e.delta > 0 {
				held[e.conn] = true
				stopTimer()
			} else {
				delete(held, e.conn)
			}
			if e.delta < 0 && len(held) == 0 {
				stopTimer()
				timer.Reset(maxDuration(idle, settle))
				timerOn = true
			}
		case <-timer.C:
			timerOn = false
			if pendingConnection(ln) {
				continue // accepted in a moment: its +1 follows
			}
			return exitOK
		case <-stdinEOF:
			return windDown()
		case s := <-sigs:
			if s == syscall.SIGCHLD {
				reapOrphans()
				continue
			}
			return windDown()
		}
	}
}

// reapOrphans collects every exited child (keepalive starts none itself: these are
// processes reparented to it as a subreaper).
func reapOrphans() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
	}
}

func maxDuration(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// pendingConnection tells whether a connection waits in the listener's backlog.
func pendingConnection(ln net.Listener) bool {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	pending := false
	_ = rc.Control(func(fd uintptr) { pending = readable(int(fd)) })
	return pending
}
