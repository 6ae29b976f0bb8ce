package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startHolder runs `hold` as a process on a socket of its own, the way a copy's main
// process runs, and stops it (SIGTERM) when the test ends.
func startHolder(t *testing.T, program ...string) (env []string, stop func() int) {
	t.Helper()
	socket := fmt.Sprintf("debugkit-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	cmd := helperCmd(t, runOpts{}, append([]string{"hold", "--socket", socket, "--"}, program...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	env = []string{"DEBUGKIT_TARGET_SOCKET=" + socket}
	deadline := time.Now().Add(10 * time.Second)
	for runHelper(t, runOpts{env: env}, "target", "status").code != 0 {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the holder never answered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopped := false
	stop = func() int {
		if stopped {
			return cmd.ProcessState.ExitCode()
		}
		stopped = true
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		return cmd.ProcessState.ExitCode()
	}
	t.Cleanup(func() { stop() })
	return env, stop
}

func TestTargetStartRunsTheHeldProgramAndExitsWithItsStatus(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	env, _ := startHolder(t, "sh", "-c", `echo "out $1"; echo "listen: address in use" >&2; echo x >> "$2"; exit 2`,
		"sh", "arg one", marker)

	if r := runHelper(t, runOpts{env: env}, "target", "status"); !strings.Contains(r.stdout, "held: not started") {
		t.Fatalf("before start: %+v", r)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the program ran before target start")
	}
	r := runHelper(t, runOpts{env: env}, "target", "start")
	if r.code != 2 || r.stdout != "out arg one\n" || r.stderr != "listen: address in use\n" {
		t.Fatalf("target start: %+v", r)
	}
	if r := runHelper(t, runOpts{env: env}, "target", "status"); !strings.Contains(r.stdout, "exited: status 2") ||
		!strings.Contains(r.stdout, "(run 1)") {
		t.Fatalf("after the run: %+v", r)
	}
	// It may be started again.
	if r := runHelper(t, runOpts{env: env}, "target", "start"); r.code != 2 {
		t.Fatalf("second start: %+v", r)
	}
	data, _ := os.ReadFile(marker)
	if string(data) != "x\nx\n" {
		t.Fatalf("the program ran %q times", data)
	}
}

func TestTargetStopEndsABackgroundRunWithItsSignalStatus(t *testing.T) {
	env, stop := startHolder(t, "sleep", "300")
	r := runHelper(t, runOpts{env: env}, "target", "start", "--background")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "started: pid ") {
		t.Fatalf("start --background: %+v", r)
	}
	if r := runHelper(t, runOpts{env: env}, "target", "start"); r.code != exitTargetFailed ||
		!strings.Contains(r.stderr, "already running") {
		t.Fatalf("a second start while running: %+v", r)
	}
	if r := runHelper(t, runOpts{env: env}, "target", "status"); !strings.HasPrefix(r.stdout, "running: pid ") {
		t.Fatalf("status while running: %+v", r)
	}
	if r := runHelper(t, runOpts{env: env}, "target", "stop"); r.code != 0 || r.stdout != "stopped: status 143\n" {
		t.Fatalf("stop: %+v", r)
	}
	if r := runHelper(t, runOpts{env: env}, "target", "stop"); r.code != exitTargetFailed {
		t.Fatalf("stop when nothing runs: %+v", r)
	}
	if code := stop(); code != 0 {
		t.Fatalf("the holder exited %d on SIGINT", code)
	}
}

func TestTargetErrors(t *testing.T) {
	env := []string{"DEBUGKIT_TARGET_SOCKET=debugkit-test-nobody-holds-this"}
	r := runHelper(t, runOpts{env: env}, "target", "start")
	if r.code != exitTargetFailed {
		t.Fatalf("no holder: %+v", r)
	}
	assertOneErrorLine(t, r, "no held program here")
	if r := runHelper(t, runOpts{env: env}, "target", "jump"); r.code != exitUsage {
		t.Fatalf("unknown subcommand: %+v", r)
	}
	held, _ := startHolder(t, "/nonexistent/program")
	r = runHelper(t, runOpts{env: held}, "target", "start")
	if r.code != exitCmdNotFound {
		t.Fatalf("a program that is not there: %+v", r)
	}
	assertOneErrorLine(t, r, "no such file")
	if r := runHelper(t, runOpts{}, "hold"); r.code != exitUsage {
		t.Fatalf("hold without a program: %+v", r)
	}
}

func TestTheHolderServesOnlyItsOwnUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the client as another user")
	}
	env, _ := startHolder(t, "true")
	r := runHelper(t, runOpts{env: env, uid: otherUser(t)}, "target", "start")
	if r.code != exitTargetFailed || !strings.Contains(r.stderr, "only the copy's user") {
		t.Fatalf("another user: %+v", r)
	}
}

func TestInstallHolderCopiesAReadableExecutable(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeFile(t, src, "#!/bin/sh\n", 0o755)
	dest := filepath.Join(dir, "out", "debugkit-helper")
	_ = os.MkdirAll(filepath.Dir(dest), 0o755)
	if err := installHolder(src, dest); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dest)
	if err != nil || fi.Mode().Perm() != 0o555 {
		t.Fatalf("installed: %v %v", fi, err)
	}
	if err := installHolder(filepath.Join(dir, "missing"), dest); err == nil {
		t.Fatal("a missing source installed")
	}
}

func TestTheClientFindsTheHoldersSocketOnItsCommandLine(t *testing.T) {
	if got := socketOfHolder([]string{"/.debugkit/debugkit-helper", "hold", "--socket", "dk-1", "--", "app"}); got != "dk-1" {
		t.Fatalf("got %q", got)
	}
	for _, argv := range [][]string{{"/app", "--socket", "x", "y"}, {"/h", "hold", "--", "app"}, {"sh"}} {
		if got := socketOfHolder(argv); got != "" {
			t.Fatalf("%q: got %q", argv, got)
		}
	}
}
