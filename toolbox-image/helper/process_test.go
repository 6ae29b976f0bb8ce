package main

// reap, keepalive and relay as real processes.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReapExitCodes(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "not-exec"), "#!/bin/sh\necho no\n", 0644)
	writeFile(t, filepath.Join(dir, "no-shebang"), "\x7fELF garbage", 0755)
	cases := []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"true"}, 0, ""},
		{[]string{"sh", "-c", "exit 3"}, 3, ""},
		{[]string{"sh", "-c", "exit 42"}, 42, ""},
		{[]string{"sh", "-c", "kill -INT $$"}, 130, ""},
		{[]string{"sh", "-c", "kill -TERM $$"}, 143, ""},
		{[]string{"sh", "-c", "kill -KILL $$"}, 137, ""},
		{[]string{"no-such-command-xyz"}, 127, "no-such-command-xyz: command not found"},
		{[]string{filepath.Join(dir, "missing")}, 127, "no such file or directory"},
		{[]string{filepath.Join(dir, "not-exec")}, 126, "permission denied"},
		{[]string{filepath.Join(dir, "no-shebang")}, 126, "exec format error"},
		{[]string{dir}, 126, "is a directory"},
	}
	for _, c := range cases {
		r := runHelper(t, runOpts{}, append([]string{"reap", "--"}, c.args...)...)
		if r.code != c.code {
			t.Errorf("reap %v: exit %d, want %d (%q)", c.args, r.code, c.code, r.stderr)
		}
		if c.err != "" {
			assertOneErrorLine(t, r, c.err)
		}
	}
	// PATH lookup like a shell: a non-executable match is 126, not 127.
	r := runHelper(t, runOpts{env: []string{"PATH=" + dir}}, "reap", "--", "not-exec")
	if r.code != 126 {
		t.Errorf("non-executable in PATH: exit %d", r.code)
	}
	r = runHelper(t, runOpts{}, "reap")
	if r.code != exitReapError {
		t.Errorf("reap without a command: exit %d", r.code)
	}
	r = runHelper(t, runOpts{}, "reap", "--", "sh", "-c", "echo out; echo err >&2")
	if r.code != 0 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("CMD's streams: %+v", r)
	}
}

// pidsFrom reads the PIDs a shell printed.
func pidsFrom(t *testing.T, out string) []int {
	var pids []int
	for _, f := range strings.Fields(out) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// gone: the process no longer exists, not even as a zombie.
func gone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// running: the process exists and is not a zombie.
func running(pid int) bool {
	p, err := readProcStat("/proc", pid)
	return err == nil && p.state != 'Z'
}

func TestReapEndsWhatCmdLeftBehind(t *testing.T) {
	start := time.Now()
	// One background process that obeys SIGTERM, one that ignores it (SIGKILL after the
	// grace period), and one that forks again while being terminated.
	script := `sleep 100 & echo $!; (trap '' TERM; sleep 200) & echo $!; ` +
		`(trap 'sleep 300 & echo $! >&2; exit 0' TERM; while :; do sleep 0.05; done) & echo $!; exit 5`
	r := runHelper(t, runOpts{}, "reap", "--grace", "0.5", "--", "sh", "-c", script)
	if r.code != 5 {
		t.Fatalf("exit %d, want CMD's 5: %q", r.code, r.stderr)
	}
	pids := pidsFrom(t, r.stdout+" "+r.stderr)
	if len(pids) < 3 {
		t.Fatalf("want the PIDs, got %q %q", r.stdout, r.stderr)
	}
	for _, pid := range pids {
		if !gone(pid) {
			t.Errorf("PID %d is still there after reap exited", pid)
		}
	}
	if took := time.Since(start); took < 500*time.Millisecond || took > 10*time.Second {
		t.Errorf("took %v: the grace period is 0.5 s", took)
	}
}

func TestReapNeverSignalsProcessesOutsideItsTree(t *testing.T) {
	// A sibling process (not a descendant of the reaper) survives.
	sibling := exec.Command("sleep", "30")
	if err := sibling.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sibling.Process.Kill(); _ = sibling.Wait() }()
	r := runHelper(t, runOpts{}, "reap", "--grace", "0.2", "--", "sh", "-c", "sleep 50 & true")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	if err := sibling.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatal("a process outside the reaper's tree was signalled")
	}
	if p, err := readProcStat("/proc", sibling.Process.Pid); err != nil || p.state == 'Z' {
		t.Fatalf("sibling: %+v %v", p, err)
	}
}

func startReap(t *testing.T, args ...string) (*exec.Cmd, *bufio.Reader, *bytes.Buffer) {
	t.Helper()
	cmd := helperCmd(t, runOpts{}, append([]string{"reap"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewReader(out), &stderr
}

func TestReapForwardsSignalsAndEscalates(t *testing.T) {
	// SIGUSR1 and SIGHUP are passed on; SIGTERM too, and CMD's own handling decides.
	cmd, out, _ := startReap(t, "--", "sh", "-c",
		`trap 'echo usr1' USR1; trap 'echo hup' HUP; trap 'echo term; exit 7' TERM; echo ready; while :; do sleep 0.05; done`)
	expectLine(t, out, "ready")
	_ = cmd.Process.Signal(syscall.SIGUSR1)
	expectLine(t, out, "usr1")
	_ = cmd.Process.Signal(syscall.SIGHUP)
	expectLine(t, out, "hup")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	expectLine(t, out, "term")
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 7 {
		t.Fatalf("exit %d (%v), want CMD's 7", cmd.ProcessState.ExitCode(), err)
	}

	// CMD ignores SIGTERM: killed when the grace period after the first one ends.
	cmd, out, _ = startReap(t, "--grace", "0.3", "--", "sh", "-c", `trap '' TERM INT; echo ready; while :; do sleep 0.05; done`)
	expectLine(t, out, "ready")
	started := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 137 {
		t.Fatalf("exit %d, want 137 (SIGKILL after the grace period)", code)
	}
	if took := time.Since(started); took < 300*time.Millisecond {
		t.Fatalf("killed after %v, before the grace period", took)
	}

	// A second SIGTERM/SIGINT kills at once.
	cmd, out, _ = startReap(t, "--grace", "60", "--", "sh", "-c", `trap '' TERM INT; echo ready; while :; do sleep 0.05; done`)
	expectLine(t, out, "ready")
	started = time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 137 || time.Since(started) > 10*time.Second {
		t.Fatalf("exit %d after %v, want 137 at once", code, time.Since(started))
	}
}

func expectLine(t *testing.T, r *bufio.Reader, want string) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		line, _ := r.ReadString('\n')
		got <- strings.TrimSpace(line)
	}()
	select {
	case line := <-got:
		if line != want {
			t.Fatalf("got %q, want %q", line, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %q", want)
	}
}

func socketName(t *testing.T) string {
	return fmt.Sprintf("debugkit-helper-test-%d-%d", os.Getpid(), rand.Int63())
}

func startKeepalive(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := helperCmd(t, runOpts{}, append([]string{"keepalive"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return cmd, &stdout, &stderr
}

func dialWhenUp(t *testing.T, name string) net.Conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", "@"+name)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("keepalive never listened on @%s: %v", name, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitExit(t *testing.T, cmd *exec.Cmd, within time.Duration) (int, time.Duration) {
	t.Helper()
	started := time.Now()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), time.Since(started)
	case <-time.After(within):
		t.Fatalf("still running after %v", within)
	}
	return -1, 0
}

func TestKeepaliveIdleZeroEndsWithTheLastConnection(t *testing.T) {
	name := socketName(t)
	cmd, stdout, _ := startKeepalive(t, "--socket", name, "--idle", "0")
	a := dialWhenUp(t, name)
	b := dialWhenUp(t, name)
	a.Close()
	time.Sleep(300 * time.Millisecond)
	if !running(cmd.Process.Pid) {
		t.Fatal("exited while a connection was still open")
	}
	b.Close()
	if code, _ := waitExit(t, cmd, 10*time.Second); code != 0 || stdout.Len() != 0 {
		t.Fatalf("exit %d, stdout %q", code, stdout.String())
	}
}

func TestKeepaliveIdleTimerAndFirst(t *testing.T) {
	// No connection at all: --first.
	name := socketName(t)
	cmd, _, _ := startKeepalive(t, "--socket", name, "--idle", "30", "--first", "0.4")
	if code, took := waitExit(t, cmd, 10*time.Second); code != 0 || took > 5*time.Second {
		t.Fatalf("exit %d after %v", code, took)
	}
	// Idle for --idle seconds after the last connection closed; a new one resets it.
	name = socketName(t)
	cmd, _, _ = startKeepalive(t, "--socket", name, "--idle", "0.6")
	c := dialWhenUp(t, name)
	time.Sleep(800 * time.Millisecond) // longer than --idle, but a connection is open
	c.Close()
	time.Sleep(300 * time.Millisecond)
	dialWhenUp(t, name).Close() // resets the idle timer
	started := time.Now()
	if code, _ := waitExit(t, cmd, 10*time.Second); code != 0 || time.Since(started) < 500*time.Millisecond {
		t.Fatalf("exit %d after %v", code, time.Since(started))
	}
}

func TestKeepaliveStdinSignalsAndNameInUse(t *testing.T) {
	name := socketName(t)
	pr, pw, _ := os.Pipe()
	cmd := helperCmd(t, runOpts{}, "keepalive", "--socket", name, "--stdin")
	cmd.Stdin = pr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	dialWhenUp(t, name).Close()
	r := runHelper(t, runOpts{}, "keepalive", "--socket", name, "--idle", "1")
	if r.code != 1 {
		t.Fatalf("second keepalive on the same name: %+v", r)
	}
	assertOneErrorLine(t, r, "already in use")
	pw.Close() // EOF on stdin
	if code, _ := waitExit(t, cmd, 10*time.Second); code != 0 {
		t.Fatalf("exit %d after stdin EOF", code)
	}

	cmd, _, _ = startKeepalive(t, "--socket", socketName(t))
	time.Sleep(200 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if code, took := waitExit(t, cmd, 10*time.Second); code != 0 || took > 2*time.Second {
		t.Fatalf("SIGTERM: exit %d after %v", code, took)
	}
}

func TestReapHoldKeepsTheKeepaliveAlive(t *testing.T) {
	name := socketName(t)
	keep, _, _ := startKeepalive(t, "--socket", name, "--idle", "0")
	probe := dialWhenUp(t, name) // it listens; with --idle 0, closing this alone would end it
	reap, out, _ := startReap(t, "--hold", name, "--", "sh", "-c", "echo ready; sleep 0.5")
	expectLine(t, out, "ready") // reap connected before it started CMD
	probe.Close()
	time.Sleep(200 * time.Millisecond)
	if !running(keep.Process.Pid) {
		t.Fatal("keepalive exited while reap --hold was running")
	}
	_ = reap.Wait()
	if code, _ := waitExit(t, keep, 10*time.Second); code != 0 {
		t.Fatalf("keepalive: exit %d", code)
	}
	// Without a keepalive, --hold is ignored.
	r := runHelper(t, runOpts{}, "reap", "--hold", socketName(t), "--", "true")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("%+v", r)
	}
}

func TestRelayCopiesBothWaysAndHalfCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The server reads everything, then answers with its digest and 8 MiB of data.
	reply := bytes.Repeat([]byte("reply-data-"), (8<<20)/11)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		h := sha256.New()
		_, _ = io.Copy(h, c) // until the relay half-closes
		fmt.Fprintf(c, "%x\n", h.Sum(nil))
		_, _ = c.Write(reply)
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	input := bytes.Repeat([]byte("input-"), (16<<20)/6)
	r := runHelper(t, runOpts{stdin: bytes.NewReader(input)}, "relay", strconv.Itoa(port))
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	want := fmt.Sprintf("%x\n", sha256.Sum256(input)) + string(reply)
	if r.stdout != want {
		t.Fatalf("got %d bytes back, want %d (digest line %q)", len(r.stdout), len(want), firstLine(r.stdout))
	}
}

func TestRelayEndsWhenTheServerCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write([]byte("the whole answer\n"))
		c.Close() // the end of the answer, as an HTTP/1.0 server or a download says it
	}()
	pr, pw, _ := os.Pipe() // stdin stays open: the client has not finished sending
	defer pw.Close()
	cmd := helperCmd(t, runOpts{}, "relay", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	cmd.Stdin = pr
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	if code, _ := waitExit(t, cmd, 10*time.Second); code != 0 || out.String() != "the whole answer\n" {
		t.Fatalf("exit %d, stdout %q", code, out.String())
	}
}

func TestRelayRefusedAndReset(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := runHelper(t, runOpts{stdin: strings.NewReader("")}, "relay", strconv.Itoa(port))
	if r.code != 2 {
		t.Fatalf("exit %d, want 2", r.code)
	}
	assertOneErrorLine(t, r, fmt.Sprintf("nothing is listening on 127.0.0.1:%d (connection refused)", port))

	// A peer that answers and then resets: exit 0 with the data.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write([]byte("partial answer\n"))
		time.Sleep(100 * time.Millisecond)
		_ = c.(*net.TCPConn).SetLinger(0) // close with RST
		c.Close()
	}()
	pr, pw, _ := os.Pipe() // stdin stays open: a reset must not wait for it
	defer pw.Close()
	cmd := helperCmd(t, runOpts{}, "relay", "--host", "127.0.0.1", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	cmd.Stdin = pr
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	if code, _ := waitExit(t, cmd, 10*time.Second); code != 0 || out.String() != "partial answer\n" {
		t.Fatalf("exit %d, stdout %q", code, out.String())
	}
}

func TestPendingConnectionSeesTheBacklog(t *testing.T) {
	ln, err := net.Listen("unix", "@"+socketName(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if pendingConnection(ln) {
		t.Fatal("pending before any connection")
	}
	c, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !pendingConnection(ln) {
		t.Fatal("a connection in the backlog is not seen")
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	if pendingConnection(ln) {
		t.Fatal("still pending after the accept")
	}
}
