package main

import (
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const reapUsage = `reap [--grace SECONDS] [--hold NAME] [--guard NAME] [--watch-stdin] [--mark TEXT] -- CMD [ARG...]
Runs CMD as a child subreaper: forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and
SIGUSR2 to it (a second SIGTERM/SIGINT, or --grace seconds after the first, kills it),
reaps every orphan, and when CMD exits ends what it left behind (SIGTERM, then
SIGKILL after --grace seconds, default 2), then exits with CMD's status (128+N for
signal N). 127: CMD not found, 126: CMD not executable, 125: the reaper's own error.
--hold NAME keeps a connection to the abstract socket @NAME open while it runs.
--guard NAME holds @NAME too, waiting up to 3 s for it to listen: a keepalive that a
client runs on its exec's stdin for a session whose stdin and TTY are the person's.
When a held connection closes, CMD is wound down as on SIGTERM.
--watch-stdin gives CMD /dev/null as stdin and treats EOF on reap's own stdin as a
SIGTERM: a container's (or an exec's) stdin closes when the client attached to it goes
away. With --hold too, whichever ends first winds CMD down.
--mark TEXT does nothing but stand in the command line: the helper is not dumpable, so
its environment cannot be read, and a caller that looks for its execs by a marker
(debugkit's DEBUGKIT_EXEC) finds this reaper by its command line, and SIGTERMs it.
`

// Exit codes of reap besides CMD's own.
const (
	exitReapError    = 125
	exitCannotExec   = 126
	exitCmdNotFound  = 127
	defaultReapGrace = 2 * time.Second
	guardWait        = 3 * time.Second
)

// The signals reap passes on to CMD.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func cmdReap(args []string) int {
	fs := newFlags("reap")
	grace := seconds{d: defaultReapGrace}
	fs.Var(&grace, "grace", "")
	hold := fs.String("hold", "", "")
	guard := fs.String("guard", "", "")
	watchStdin := fs.Bool("watch-stdin", false, "")
	_ = fs.String("mark", "", "")
	if code, ok := parseFlags(fs, args, reapUsage, exitReapError); !ok {
		return code
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return usageErrorf("reap", reapUsage, exitReapError, "no command given")
	}
	var windDown <-chan struct{}
	if *hold != "" {
		// Tells a keepalive that a command is running; closed when this process ends. When
		// the keepalive has to stop (its CLI is gone, or SIGTERM), it closes the connection
		// first: that is our SIGTERM, so the command's tree is ended and reaped here,
		// before the engine kills whatever is left in the container at once.
		if conn, err := net.Dial("unix", "@"+*hold); err == nil {
			defer conn.Close()
			windDown = watchEOF(conn)
		}
	}
	if *guard != "" {
		// The guard is started by the same client a moment before this exec: give it time.
		conn, err := dialWithin("@"+*guard, guardWait)
		if err != nil {
			warnf("no guard on @%s (%v): this command will not end by itself if its client goes away", *guard, err)
		} else {
			defer conn.Close()
			windDown = either(windDown, watchEOF(conn))
		}
	}
	stdin := uintptr(0)
	if *watchStdin {
		// The stdin of a container started for one command: debugkit's attach holds it
		// open and sends nothing, so EOF means the CLI is gone and nobody will ever
		// collect this command's output or stop it.
		null, err := os.Open(os.DevNull)
		if err != nil {
			errorf("cannot open %s: %v", os.DevNull, err)
			return exitReapError
		}
		defer null.Close()
		stdin = null.Fd()
		windDown = either(windDown, watchEOF(os.Stdin))
	}
	if err := setChildSubreaper(); err != nil {
		errorf("cannot become a child subreaper: %v", err)
		return exitReapError
	}
	r := &reaper{self: os.Getpid(), grace: grace.d, procDir: "/proc", windDown: windDown, stdin: stdin}
	return r.run(argv)
}

type reaper struct {
	self    int
	grace   time.Duration
	procDir string
	sigs    chan os.Signal

	cmd       int // CMD's PID
	cmdDone   bool
	cmdStatus syscall.WaitStatus

	windDown <-chan struct{} // closed when the keepalive we hold (or our stdin) asks us to stop
	stdin    uintptr         // CMD's stdin
	// CMD's stdout and stderr when set (steps: pipes of its own); else ours.
	stdout, stderr *uintptr
	// When it fires, CMD is killed at once (SIGKILL) and timedOut is set (steps' timeouts).
	deadline <-chan time.Time
	timedOut bool
	// A SIGTERM or SIGINT came while CMD ran (not from a terminal): steps stops after it.
	terminated bool
}

func (r *reaper) run(argv []string) int {
	r.sigs = make(chan os.Signal, 64)
	signal.Notify(r.sigs, append([]os.Signal{syscall.SIGCHLD}, forwarded...)...)
	if code, msg := r.start(argv); code != 0 {
		errorf("%s", msg)
		return code
	}
	return r.finish()
}

// start forks and execs CMD; a non-zero code (127, 126) and its message when it cannot.
func (r *reaper) start(argv []string) (int, string) {
	path, code, msg := lookPath(argv[0])
	if code != 0 {
		return code, msg
	}
	stdout, stderr := uintptr(1), uintptr(2)
	if r.stdout != nil {
		stdout = *r.stdout
	}
	if r.stderr != nil {
		stderr = *r.stderr
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{r.stdin, stdout, stderr},
		// No Setpgid/Setsid: CMD stays in this process group and session, so that a
		// shell on a terminal does its own job control as it would without the reaper.
	})
	if err != nil {
		return exitCannotExec, argv[0] + ": " + execErrorText(err)
	}
	r.cmd, r.cmdDone = pid, false
	return 0, ""
}

// finish waits for CMD, ends and reaps what it left behind, and returns its status.
func (r *reaper) finish() int {
	r.waitForCmd()
	status := exitStatus(r.cmdStatus)
	r.endDescendants()
	return status
}

// lookPath finds CMD as a shell would: with a slash as given, otherwise in $PATH.
// It returns 127 when there is no such file, and a path that exec will refuse (so
// that the exec error gives 126) when the only match is not executable.
func lookPath(name string) (path string, code int, msg string) {
	if name == "" {
		return "", exitCmdNotFound, "empty command name"
	}
	if strings.Contains(name, "/") {
		fi, err := os.Stat(name)
		if err != nil && os.IsNotExist(err) {
			return "", exitCmdNotFound, name + ": no such file or directory"
		}
		if err == nil && fi.IsDir() {
			return "", exitCannotExec, name + ": is a directory"
		}
		return name, 0, ""
	}
	search, ok := os.LookupEnv("PATH")
	if !ok {
		search = defaultPath
	}
	denied := ""
	for _, dir := range strings.Split(search, ":") {
		if dir == "" {
			dir = "."
		}
		candidate := dir + "/" + name
		fi, err := os.Stat(candidate)
		if err != nil || fi.IsDir() {
			continue
		}
		if syscall.Access(candidate, 1 /* X_OK */) == nil {
			return candidate, 0, ""
		}
		if denied == "" {
			denied = candidate
		}
	}
	if denied != "" {
		return denied, 0, ""
	}
	return "", exitCmdNotFound, name + ": command not found"
}

func execErrorText(err error) string {
	switch err {
	case syscall.EACCES:
		return "permission denied (not executable)"
	case syscall.ENOEXEC:
		return "exec format error"
	case syscall.ENOENT:
		return "cannot execute: its interpreter or loader is missing"
	case syscall.EISDIR:
		return "is a directory"
	}
	return "cannot execute: " + err.Error()
}

func exitStatus(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return exitReapError
}

// reapAll collects every child that has exited, noting CMD's status. It returns
// false when there is no child left at all.
func (r *reaper) reapAll() (children bool) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG|wAll, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err != syscall.ECHILD
		}
		if pid <= 0 {
			return true
		}
		if pid == r.cmd && !r.cmdDone {
			r.cmdDone, r.cmdStatus = true, ws
		}
	}
}

// waitForCmd forwards signals and reaps until CMD has exited.
func (r *reaper) waitForCmd() {
	tick := time.NewTicker(250 * time.Millisecond) // in case a SIGCHLD was coalesced away
	defer tick.Stop()
	var escalate <-chan time.Time
	stopping := false
	for {
		r.reapAll()
		if r.cmdDone {
			return
		}
		select {
		case s := <-r.sigs:
			sig := s.(syscall.Signal)
			if sig == syscall.SIGCHLD {
				continue
			}
			r.reapAll()
			if r.cmdDone {
				return
			}
			if r.terminalSentIt(sig) {
				continue
			}
			if sig == syscall.SIGTERM || sig == syscall.SIGINT {
				r.terminated = true
				if stopping {
					_ = syscall.Kill(r.cmd, syscall.SIGKILL)
					continue
				}
				stopping = true
				escalate = time.After(r.grace)
			}
			_ = syscall.Kill(r.cmd, sig)
		case <-r.windDown:
			r.windDown = nil // a closed channel would fire for ever
			if !stopping {
				stopping = true
				escalate = time.After(r.grace)
				_ = syscall.Kill(r.cmd, syscall.SIGTERM)
			}
		case <-r.deadline:
			r.deadline = nil
			r.reapAll()
			if !r.cmdDone {
				r.timedOut = true
				_ = syscall.Kill(r.cmd, syscall.SIGKILL)
			}
		case <-escalate:
			escalate = nil
			r.reapAll()
			if !r.cmdDone {
				_ = syscall.Kill(r.cmd, syscall.SIGKILL)
			}
		case <-tick.C:
		}
	}
}

// terminalSentIt: a SIGINT or SIGQUIT that reached the reaper while the reaper and CMD
// are both in the terminal's foreground process group came from the terminal (Ctrl-C,
// Ctrl-\), which gave it to CMD as well. Passing it on would deliver it twice, and a
// second Ctrl-C would count as an escalation: it is left to CMD, as without the reaper.
func (r *reaper) terminalSentIt(sig syscall.Signal) bool {
	if sig != syscall.SIGINT && sig != syscall.SIGQUIT {
		return false
	}
	for fd := 0; fd <= 2; fd++ {
		fg, err := tcgetpgrp(fd)
		if err != nil {
			continue
		}
		if fg != syscall.Getpgrp() {
			return false
		}
		cmd, err := readProcStat(r.procDir, r.cmd)
		return err == nil && cmd.pgrp == fg
	}
	return false
}

// endDescendants ends everything CMD left behind: SIGTERM, then SIGKILL after the
// grace period, reaping all along, until no descendant is left (they may fork while
// being killed). A SIGTERM or SIGINT meanwhile skips the rest of the grace period.
func (r *reaper) endDescendants() {
	deadline := time.Now().Add(r.grace)
	termed := map[int]uint64{}
	for {
		children := r.reapAll()
		procs, err := listProcs(r.procDir)
		if err != nil {
			errorf("cannot list processes: %v", err)
			return
		}
		left := descendants(procs, r.self)
		if len(left) == 0 && !children && !r.reapAll() {
			return
		}
		kill := !time.Now().Before(deadline)
		for _, p := range left {
			if p.state == 'Z' {
				continue // its parent reaps it, or is ended itself
			}
			if kill {
				signalIfSame(r.procDir, p, syscall.SIGKILL)
			} else if start, ok := termed[p.pid]; !ok || start != p.start {
				termed[p.pid] = p.start
				signalIfSame(r.procDir, p, syscall.SIGTERM)
			}
		}
		wait := 20 * time.Millisecond
		if len(left) == 0 {
			wait = 5 * time.Millisecond
		}
		select {
		case s := <-r.sigs:
			if s == syscall.SIGTERM || s == syscall.SIGINT {
				deadline = time.Now()
			}
		case <-time.After(wait):
		}
	}
}

// signalIfSame signals p only if its PID still names the process seen in /proc (the
// same start time): a pidfd pins the process, so a PID reused meanwhile by another
// process, perhaps the target's, is never hit. Without pidfds (old kernels, seccomp)
// the start time is checked right before kill(2).
func signalIfSame(procDir string, p procStat, sig syscall.Signal) {
	fd, err := pidfdOpen(p.pid)
	if err == nil {
		defer closeFd(fd)
		now, err := readProcStat(procDir, p.pid)
		if err != nil || now.start != p.start {
			return
		}
		_ = pidfdSendSignal(fd, sig)
		return
	}
	if err == syscall.ESRCH {
		return
	}
	now, err := readProcStat(procDir, p.pid)
	if err != nil || now.start != p.start {
		return
	}
	_ = syscall.Kill(p.pid, sig)
}

// either is closed as soon as a or b is (a nil channel never is).
func either(a, b <-chan struct{}) <-chan struct{} {
	if a == nil {
		return b
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-a:
		case <-b:
		}
		close(done)
	}()
	return done
}

// dialWithin connects to a unix socket, retrying while nothing listens on it yet.
func dialWithin(address string, wait time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(wait)
	for {
		conn, err := net.Dial("unix", address)
		if err == nil || time.Now().After(deadline) {
			return conn, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
