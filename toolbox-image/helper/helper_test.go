package main

// Shared test helpers. The test binary doubles as the helper: with
// DEBUGKIT_HELPER_TEST_MAIN=1 it runs main's dispatcher instead of the tests, so the CLI
// (exit codes, one-line errors, signals, other users) is tested as a real process.

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if os.Getenv("DEBUGKIT_HELPER_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

type result struct {
	code           int
	stdout, stderr string
}

type runOpts struct {
	stdin io.Reader
	uid   int // run as this UID and GID when > 0 (needs root)
	env   []string
}

var (
	exeOnce sync.Once
	exePath string
	exeErr  error
)

// helperExe is a copy of the test binary that any user can execute.
func helperExe(t *testing.T) string {
	t.Helper()
	exeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "debugkit-helper-exe-")
		if err != nil {
			exeErr = err
			return
		}
		_ = os.Chmod(dir, 0755)
		self, err := os.Executable()
		if err != nil {
			exeErr = err
			return
		}
		data, err := os.ReadFile(self)
		if err != nil {
			exeErr = err
			return
		}
		exePath = filepath.Join(dir, "debugkit-helper")
		exeErr = os.WriteFile(exePath, data, 0755)
	})
	if exeErr != nil {
		t.Fatal(exeErr)
	}
	return exePath
}

func helperCmd(t *testing.T, o runOpts, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(helperExe(t), args...)
	cmd.Env = append(append(os.Environ(), "DEBUGKIT_HELPER_TEST_MAIN=1"), o.env...)
	cmd.Stdin = o.stdin
	if o.uid > 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(o.uid), Gid: uint32(o.uid)}}
	}
	return cmd
}

// runHelper runs the helper as a process and returns its exit code and output.
func runHelper(t *testing.T, o runOpts, args ...string) result {
	t.Helper()
	cmd := helperCmd(t, o, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("%v did not finish within 60 s", args)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errOut.String()}
}

// assertOneErrorLine checks the helper's error convention.
func assertOneErrorLine(t *testing.T, r result, contains string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "debugkit-helper: ") {
		t.Fatalf("want one 'debugkit-helper: ' line on stderr, got %q", r.stderr)
	}
	if !strings.Contains(lines[0], contains) {
		t.Fatalf("stderr %q does not contain %q", r.stderr, contains)
	}
}

// otherUser is a UID to run permission tests as: nobody when the tests run as root,
// else the current user itself (who then lacks the root-only permissions).
func otherUser(t *testing.T) int {
	if os.Geteuid() == 0 {
		return 65534
	}
	return 0
}

// openTree makes dir and its parents traversable for otherUser.
func openTree(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if strings.HasPrefix(d, os.TempDir()) && d != os.TempDir() {
			_ = os.Chmod(d, 0755)
		}
	}
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(path, uint32(mode)); err != nil { // numeric: 04755 is setuid
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

func mustNotContain(t *testing.T, what string, data []byte, needle string) {
	t.Helper()
	if bytes.Contains(data, []byte(needle)) {
		t.Fatalf("%s contains %q: something outside the root was read", what, needle)
	}
}
