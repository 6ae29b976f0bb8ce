package main

import (
	"bufio"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A keepalive told to stop while commands hold it asks them to end first: each
// `reap --hold` takes the closed connection as SIGTERM, ends its command's tree and
// reaps it, and only then does the keepalive exit (so the engine kills nothing).
func TestStoppingKeepaliveWindsDownItsHolders(t *testing.T) {
	for _, stop := range []string{"stdin EOF", "SIGTERM"} {
		t.Run(stop, func(t *testing.T) {
			name := socketName(t)
			pr, pw, _ := os.Pipe()
			keep := helperCmd(t, runOpts{}, "keepalive", "--socket", name, "--stdin", "--idle", "600")
			keep.Stdin = pr
			if err := keep.Start(); err != nil {
				t.Fatal(err)
			}
			pr.Close()
			dialWhenUp(t, name).Close()
			// The command leaves a grandchild behind and ignores nothing: both must go.
			reap, out, _ := startReap(t, "--hold", name, "--", "sh", "-c", "sleep 300 & echo $!; echo ready; wait")
			grandchild, err := strconv.Atoi(strings.TrimSpace(readLine(t, out)))
			if err != nil {
				t.Fatal(err)
			}
			expectLine(t, out, "ready")
			if stop == "SIGTERM" {
				_ = keep.Process.Signal(syscall.SIGTERM)
			} else {
				pw.Close()
			}
			code, took := waitExit(t, reap, 10*time.Second)
			if code != 128+int(syscall.SIGTERM) {
				t.Fatalf("reap exit %d, want 143 (its command got SIGTERM)", code)
			}
			if kcode, _ := waitExit(t, keep, 10*time.Second); kcode != 0 {
				t.Fatalf("keepalive exit %d", kcode)
			}
			if running(grandchild) {
				t.Fatalf("the command's background job %d outlived the wind-down", grandchild)
			}
			if took > windDownGrace {
				t.Fatalf("wind-down took %v", took)
			}
			pw.Close()
		})
	}
}

func TestKeepaliveWithoutHoldersStopsAtOnce(t *testing.T) {
	cmd, _, _ := startKeepalive(t, "--socket", socketName(t))
	time.Sleep(100 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if code, took := waitExit(t, cmd, 5*time.Second); code != 0 || took > time.Second {
		t.Fatalf("exit %d after %v", code, took)
	}
}

func TestRelayProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	// The listener never accepts nor answers: the probe must not wait for it.
	r := runHelper(t, runOpts{}, "relay", "--probe", port)
	if r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Fatalf("probe of a listening port: %+v", r)
	}
	ln.Close()
	r = runHelper(t, runOpts{}, "relay", "--probe", port)
	if r.code != exitUnreachable {
		t.Fatalf("probe of a closed port: %+v", r)
	}
	assertOneErrorLine(t, r, "nothing is listening")
}

func TestTargetEnvironment(t *testing.T) {
	target := []byte("PATH=/app/bin\x00LANG=C\x00TERM=dumb\x00SECRET=a=b\x00\x00bogus\x00")
	got := targetEnv(target, []string{"PATH=/usr/bin", "TERM=xterm", "DEBUGKIT_SESSION=1", "HOME=/tmp"})
	want := "PATH=/app/bin:/usr/bin LANG=C TERM=xterm SECRET=a=b DEBUGKIT_SESSION=1"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %q\nwant %q", strings.Join(got, " "), want)
	}
	dir := t.TempDir()
	writeFile(t, dir+"/environ", "FROM_TARGET=yes\x00PATH=/nowhere\x00", 0644)
	r := runHelper(t, runOpts{}, "env", "--from", dir+"/environ", "--", "sh", "-c", "echo $FROM_TARGET; echo $PATH")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "yes\n/nowhere:") {
		t.Fatalf("%+v", r)
	}
	assertOneErrorLine(t, r, "environment of the target's process from "+dir+"/environ (")
	os.Chmod(dir+"/environ", 0)
	if os.Geteuid() != 0 {
		r = runHelper(t, runOpts{}, "env", "--from", dir+"/environ", "--", "true")
		if r.code != exitPermission {
			t.Fatalf("%+v", r)
		}
	}
	r = runHelper(t, runOpts{}, "env", "--from", dir+"/absent", "--or-continue", "--", "sh", "-c", "echo ran")
	if r.code != 0 || r.stdout != "ran\n" {
		t.Fatalf("%+v", r)
	}
	assertOneErrorLine(t, r, "warning: cannot read the target's environment")
}

func readLine(t *testing.T, r interface{ ReadString(byte) (string, error) }) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		line, _ := r.ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		return line
	case <-time.After(20 * time.Second):
		t.Fatal("timed out waiting for a line")
	}
	return ""
}

// With --stdin-timeout the keepalive ends when its stdin goes quiet (a heartbeat that
// stopped: a dropped connection that sends no EOF), and not while bytes keep coming.
func TestKeepaliveStdinTimeout(t *testing.T) {
	name := socketName(t)
	pr, pw, _ := os.Pipe()
	defer pw.Close()
	keep := helperCmd(t, runOpts{}, "keepalive", "--socket", name, "--stdin", "--stdin-timeout", "1")
	keep.Stdin = pr
	if err := keep.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	dialWhenUp(t, name).Close()
	for i := 0; i < 4; i++ { // 2 s of heartbeats, one every half second
		time.Sleep(500 * time.Millisecond)
		if _, err := pw.Write([]byte(".")); err != nil {
			t.Fatal(err)
		}
	}
	if !running(keep.Process.Pid) {
		t.Fatal("the keepalive ended while the heartbeat went on")
	}
	code, took := waitExit(t, keep, 10*time.Second)
	if code != 0 || took > 3*time.Second {
		t.Fatalf("after the heartbeat stopped: exit %d after %v", code, took)
	}
}

// `reap --watch-stdin` (a sidecar run for one command): its stdin closing means the
// client attached to the container is gone, so the command's whole tree is ended and
// reaped; the command itself reads /dev/null, never the watched stream.
func TestReapWatchStdinWindsDownOnEOF(t *testing.T) {
	pr, pw, _ := os.Pipe()
	cmd := helperCmd(t, runOpts{}, "reap", "--watch-stdin", "--", "sh", "-c",
		"sleep 300 & echo $!; read line; echo read=$?; wait")
	cmd.Stdin = pr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	lines := bufio.NewReader(out)
	grandchild, err := strconv.Atoi(strings.TrimSpace(readLine(t, lines)))
	if err != nil {
		t.Fatal(err)
	}
	// Its `read` got EOF from /dev/null at once, although our pipe is still open.
	expectLine(t, lines, "read=1")
	time.Sleep(200 * time.Millisecond)
	if !running(grandchild) {
		t.Fatal("the command ended before its watched stdin closed")
	}
	pw.Close()
	code, took := waitExit(t, cmd, 10*time.Second)
	if code != 128+int(syscall.SIGTERM) {
		t.Fatalf("reap exit %d, want 143", code)
	}
	if running(grandchild) {
		t.Fatalf("background job %d outlived the wind-down", grandchild)
	}
	if took > windDownGrace {
		t.Fatalf("wind-down took %v", took)
	}
}

// In a kept-alive debug container (Kubernetes) a command holds the keep-alive and watches
// its exec's stdin: a killed CLI (stdin EOF) winds it down while the keep-alive lives on.
func TestReapHoldingAKeepaliveStillWatchesStdin(t *testing.T) {
	name := socketName(t)
	keep, _, _ := startKeepalive(t, "--socket", name, "--idle", "600")
	defer func() { _ = keep.Process.Kill(); _, _ = keep.Process.Wait() }()
	dialWhenUp(t, name).Close()
	pr, pw, _ := os.Pipe()
	cmd := helperCmd(t, runOpts{}, "reap", "--hold", name, "--watch-stdin", "--", "sh", "-c",
		"sleep 300 & echo $!; wait")
	cmd.Stdin = pr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	grandchild, err := strconv.Atoi(strings.TrimSpace(readLine(t, bufio.NewReader(out))))
	if err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if code, _ := waitExit(t, cmd, 10*time.Second); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("reap exit %d, want 143", code)
	}
	if running(grandchild) {
		t.Fatalf("background job %d outlived the wind-down", grandchild)
	}
	if keep.ProcessState != nil {
		t.Fatal("the keep-alive ended with its holder")
	}
}

// A session whose stdin and TTY belong to the person (Kubernetes -i/-t) is guarded by a
// keepalive that runs on a second exec's stdin: started a moment later than the command
// may be, it is waited for; when the client goes (that stdin's EOF) the command is wound down.
func TestReapGuardWaitsForItsGuardAndEndsWithIt(t *testing.T) {
	name := socketName(t)
	reap, out, _ := startReap(t, "--guard", name, "--", "sh", "-c", "sleep 300 & echo $!; echo ready; wait")
	time.Sleep(300 * time.Millisecond) // the guard comes up after the command
	pr, pw, _ := os.Pipe()
	guard := helperCmd(t, runOpts{}, "keepalive", "--socket", name, "--stdin", "--idle", "0", "--first", "30")
	guard.Stdin = pr
	if err := guard.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	grandchild, err := strconv.Atoi(strings.TrimSpace(readLine(t, out)))
	if err != nil {
		t.Fatal(err)
	}
	expectLine(t, out, "ready")
	time.Sleep(200 * time.Millisecond)
	if !running(grandchild) {
		t.Fatal("the command ended while its guard stood")
	}
	pw.Close() // the client is gone
	if code, _ := waitExit(t, reap, 10*time.Second); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("reap exit %d, want 143", code)
	}
	if running(grandchild) {
		t.Fatalf("background job %d outlived the guard", grandchild)
	}
	if code, _ := waitExit(t, guard, 10*time.Second); code != 0 {
		t.Fatalf("guard exit %d", code)
	}
}

func TestReapWithoutItsGuardWarnsAndRuns(t *testing.T) {
	r := runHelper(t, runOpts{}, "reap", "--guard", socketName(t), "--", "sh", "-c", "exit 3")
	if r.code != 3 || !strings.Contains(r.stderr, "no guard on @") {
		t.Fatalf("%+v", r)
	}
}
