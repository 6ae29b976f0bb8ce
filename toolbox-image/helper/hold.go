package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const holdUsage = `hold [--socket NAME] -- PROGRAM [ARG...]
The main process of a held copy (debugkit attach --copy, attach image/REF): it holds
the copy with PROGRAM (the original entrypoint and command) not started, and starts,
watches and stops it when the 'target' command asks, over the abstract unix socket
@NAME (default debugkit-target) of the copy's network namespace, which the sidecar
shares. PROGRAM runs with this process's user, environment and working directory
(the copy's), in its own process group. Only a peer of the same UID (or root) is
served. Reaps whatever is reparented to it (it is the copy's PID 1). On SIGTERM or
SIGINT it stops PROGRAM (SIGTERM, then SIGKILL after 5 s) and exits 0.
Unlike the helper's other commands it stays dumpable: the sidecar, of the same UID,
reads the copy's files through its /proc/PID/root.
`

const (
	defaultHoldSocket = "debugkit-target"
	holdStopGrace     = 5 * time.Second
)

// The holder's answers, one line each: "started PID", "exited STATUS", "state ...",
// "error STATUS MESSAGE".

type heldRun struct {
	pid     int
	started time.Time
	ended   time.Time
	status  int
	done    bool
	waiters []chan int
}

type holder struct {
	argv []string
	uid  int

	mu   sync.Mutex
	runs int
	cur  *heldRun // the latest run (running or ended), nil before the first start
}

func cmdHold(args []string) int {
	fs := newFlags("hold")
	socket := fs.String("socket", defaultHoldSocket, "")
	if code, ok := parseFlags(fs, args, holdUsage, exitUsage); !ok {
		return code
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return usageErrorf("hold", holdUsage, exitUsage, "no PROGRAM given (after --)")
	}
	// Dumpable again (run() made it not): the copy's files must be readable through
	// /proc/1/root by the sidecar, and this process holds no secret of debugkit's.
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetDumpable, 1, 0, 0, 0, 0); errno != 0 {
		errorf("hold: cannot make this process dumpable: %v", errno)
		return exitFailure
	}
	ln, err := net.Listen("unix", "@"+*socket)
	if err != nil {
		errorf("hold: cannot listen on @%s: %s", *socket, errnoText(err))
		return exitFailure
	}
	h := &holder{argv: argv, uid: os.Getuid()}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)
	go h.serve(ln)
	infof("holding %s; start it with: target start", strings.Join(quoteAll(argv), " "))
	tick := time.NewTicker(250 * time.Millisecond) // a coalesced SIGCHLD
	defer tick.Stop()
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGCHLD {
				h.reapAll()
				continue
			}
			h.stop(holdStopGrace)
			_ = ln.Close()
			return exitOK
		case <-tick.C:
			h.reapAll()
		}
	}
}

func quoteAll(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`") {
			out[i] = strconv.Quote(a)
		} else {
			out[i] = a
		}
	}
	return out
}

// reapAll collects every exited child (the program, and orphans reparented to PID 1).
func (h *holder) reapAll() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG|wAll, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		h.mu.Lock()
		if r := h.cur; r != nil && !r.done && r.pid == pid {
			r.done, r.status, r.ended = true, exitStatus(ws), time.Now()
			for _, w := range r.waiters {
				w <- r.status
			}
			r.waiters = nil
		}
		h.mu.Unlock()
	}
}

func (h *holder) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go h.handle(c.(*net.UnixConn))
	}
}

// peerAllowed: the same UID as the copy's, or root.
func peerAllowed(c *net.UnixConn, uid int) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return false
	}
	return int(cred.Uid) == uid || cred.Uid == 0
}

func (h *holder) handle(c *net.UnixConn) {
	defer c.Close()
	if !peerAllowed(c, h.uid) {
		fmt.Fprintf(c, "error %d only the copy's user may control its program\n", exitTargetFailed)
		return
	}
	buf := make([]byte, 256)
	oob := make([]byte, syscall.CmsgSpace(2*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	fds := receivedFds(oob[:oobn])
	defer func() {
		for _, fd := range fds {
			closeFd(fd)
		}
	}()
	request := strings.TrimSpace(string(buf[:n]))
	switch request {
	case "start", "start-bg":
		foreground := request == "start"
		var out, errOut int
		if foreground {
			if len(fds) != 2 {
				fmt.Fprintf(c, "error %d the request carried no output to write to\n", exitTargetFailed)
				return
			}
			out, errOut = fds[0], fds[1]
		} else {
			out, errOut = 1, 2 // the copy's own output: its logs
		}
		run, code, msg := h.start(out, errOut)
		if run == nil {
			fmt.Fprintf(c, "error %d %s\n", code, msg)
			return
		}
		for _, fd := range fds { // the program has its own copies now
			closeFd(fd)
		}
		fds = nil
		fmt.Fprintf(c, "started %d\n", run.pid)
		if !foreground {
			return
		}
		fmt.Fprintf(c, "exited %d\n", h.wait(run))
	case "status":
		fmt.Fprintf(c, "state %s\n", h.status())
	case "stop":
		if status, ok := h.stop(holdStopGrace); ok {
			fmt.Fprintf(c, "exited %d\n", status)
		} else {
			fmt.Fprintf(c, "error %d the program is not running\n", exitTargetFailed)
		}
	default:
		fmt.Fprintf(c, "error %d unknown request\n", exitUsage)
	}
}

func receivedFds(oob []byte) []int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		got, err := syscall.ParseUnixRights(&m)
		if err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

// start runs the program with stdin /dev/null and the given stdout and stderr.
func (h *holder) start(out, errOut int) (*heldRun, int, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur != nil && !h.cur.done {
		return nil, exitTargetFailed, fmt.Sprintf("the program is already running (pid %d): target stop ends it", h.cur.pid)
	}
	path, code, msg := lookPath(h.argv[0])
	if code != 0 {
		return nil, code, msg
	}
	null, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, exitTargetFailed, "cannot open /dev/null: " + errnoText(err)
	}
	defer closeFd(null)
	wd, _ := os.Getwd()
	pid, err := syscall.ForkExec(path, h.argv, &syscall.ProcAttr{
		Dir:   wd,
		Env:   os.Environ(),
		Files: []uintptr{uintptr(null), uintptr(out), uintptr(errOut)},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		return nil, exitCannotExec, h.argv[0] + ": " + execErrorText(err)
	}
	h.runs++
	h.cur = &heldRun{pid: pid, started: time.Now()}
	return h.cur, 0, ""
}

func (h *holder) wait(run *heldRun) int {
	h.mu.Lock()
	if run.done {
		h.mu.Unlock()
		return run.status
	}
	w := make(chan int, 1)
	run.waiters = append(run.waiters, w)
	h.mu.Unlock()
	return <-w
}

func (h *holder) status() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.cur
	switch {
	case r == nil:
		return "held: not started (target start runs it)"
	case !r.done:
		return fmt.Sprintf("running: pid %d for %s (run %d)", r.pid, time.Since(r.started).Round(time.Millisecond), h.runs)
	default:
		return fmt.Sprintf("exited: status %d after %s, %s ago (run %d)", r.status,
			r.ended.Sub(r.started).Round(time.Millisecond), time.Since(r.ended).Round(time.Second), h.runs)
	}
}

// stop ends a running program: SIGTERM to its process group, SIGKILL after grace.
func (h *holder) stop(grace time.Duration) (int, bool) {
	h.mu.Lock()
	r := h.cur
	if r == nil || r.done {
		h.mu.Unlock()
		return 0, false
	}
	w := make(chan int, 1)
	r.waiters = append(r.waiters, w)
	h.mu.Unlock()
	_ = syscall.Kill(-r.pid, syscall.SIGTERM)
	_ = syscall.Kill(r.pid, syscall.SIGTERM)
	// Reaped here too: the main loop may be the one stopping (SIGTERM to the copy).
	deadline := time.Now().Add(grace)
	killed := false
	for {
		h.reapAll()
		select {
		case status := <-w:
			return status, true
		case <-time.After(20 * time.Millisecond):
		}
		if !killed && time.Now().After(deadline) {
			killed = true
			_ = syscall.Kill(-r.pid, syscall.SIGKILL)
			_ = syscall.Kill(r.pid, syscall.SIGKILL)
		}
	}
}
