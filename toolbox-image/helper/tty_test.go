package main

// reap on a real pseudo-terminal: Ctrl-C reaches CMD once, from the terminal, exactly
// as without the reaper (which must neither pass it on a second time nor count it as
// an escalation towards SIGKILL).

import (
	"bytes"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal(e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatal(e)
	}
	s, err := os.OpenFile("/dev/pts/"+itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

// onTerminal runs args as a session leader on a new terminal (like docker exec -t),
// sends Ctrl-C twice, then "q" to let the script end, and returns what it printed.
func onTerminal(t *testing.T, args ...string) (string, int) {
	t.Helper()
	master, slave := openPty(t)
	defer master.Close()
	cmd := helperCmd(t, runOpts{}, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var screen bytes.Buffer
	buf := make([]byte, 4096)
	output := make(chan []byte, 64)
	go func() {
		for {
			n, err := master.Read(buf)
			if n > 0 {
				output <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				close(output)
				return
			}
		}
	}()
	expect := func(needle string, count int) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for strings.Count(screen.String(), needle) < count {
			select {
			case b, ok := <-output:
				if !ok {
					t.Fatalf("terminal closed waiting for %q; screen: %q", needle, screen.String())
				}
				screen.Write(b)
			case <-deadline:
				t.Fatalf("timed out waiting for %q; screen: %q", needle, screen.String())
			}
		}
	}
	expect("ready", 1)
	_, _ = master.Write([]byte{3}) // Ctrl-C
	expect("got-int", 1)
	time.Sleep(700 * time.Millisecond) // longer than --grace: no escalation may follow
	_, _ = master.Write([]byte{3})
	expect("got-int", 2)
	time.Sleep(300 * time.Millisecond)
	_, _ = master.Write([]byte("q\n"))
	expect("bye", 1)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("did not exit; screen: %q", screen.String())
	}
	return screen.String(), cmd.ProcessState.ExitCode()
}

func TestReapOnATerminalLeavesCtrlCToTheTerminal(t *testing.T) {
	script := `trap 'echo got-int' INT; echo ready; while :; do if read -r line; then [ "$line" = q ] && break; fi; done; echo bye; exit 4`
	screen, code := onTerminal(t, "reap", "--grace", "0.5", "--", "sh", "-c", script)
	if code != 4 {
		t.Fatalf("exit %d, want CMD's 4; screen: %q", code, screen)
	}
	if n := strings.Count(screen, "got-int"); n != 2 {
		t.Fatalf("CMD saw %d SIGINTs for two Ctrl-C, want 2 (no duplicates): %q", n, screen)
	}
}
