package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stepsClient drives a `debugkit-helper steps` process as debugkit does: one request at a
// time, stdin held open between them.
type stepsClient struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	errBy strings.Builder
}

type stepOutcome struct {
	stdout, stderr string
	end            stepEndInfo
}

func startSteps(t *testing.T, args ...string) *stepsClient {
	t.Helper()
	cmd := helperCmd(t, runOpts{}, append([]string{"steps"}, args...)...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &stepsClient{t: t, cmd: cmd, in: in, out: bufio.NewReader(out)}
	cmd.Stderr = &c.errBy
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return c
}

func (c *stepsClient) send(typ byte, payload []byte) {
	c.t.Helper()
	head := make([]byte, stepsHeader)
	head[0] = typ
	binary.BigEndian.PutUint32(head[1:], uint32(len(payload)))
	if _, err := c.in.Write(append(head, payload...)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *stepsClient) run(req stepRequest) stepOutcome {
	c.t.Helper()
	body, _ := json.Marshal(req)
	c.send(stepRun, body)
	var o stepOutcome
	var out, errOut strings.Builder
	deadline := time.AfterFunc(60*time.Second, func() { _ = c.cmd.Process.Kill() })
	defer deadline.Stop()
	for {
		head := make([]byte, stepsHeader)
		if _, err := io.ReadFull(c.out, head); err != nil {
			c.t.Fatalf("reading a frame: %v (stderr %q)", err, c.errBy.String())
		}
		size := binary.BigEndian.Uint32(head[1:])
		if size > stepsMaxChunk {
			c.t.Fatalf("a frame of %d bytes, more than %d", size, stepsMaxChunk)
		}
		payload := make([]byte, size)
		if _, err := io.ReadFull(c.out, payload); err != nil {
			c.t.Fatal(err)
		}
		switch head[0] {
		case stepOut:
			out.Write(payload)
		case stepErr:
			errOut.Write(payload)
		case stepEnd:
			if err := json.Unmarshal(payload, &o.end); err != nil {
				c.t.Fatal(err)
			}
			o.stdout, o.stderr = out.String(), errOut.String()
			return o
		default:
			c.t.Fatalf("frame type %d", head[0])
		}
	}
}

func (c *stepsClient) finish() int {
	c.t.Helper()
	_ = c.in.Close()
	_ = c.cmd.Wait()
	return c.cmd.ProcessState.ExitCode()
}

func TestStepsRunsStepsInTurn(t *testing.T) {
	c := startSteps(t)
	first := c.run(stepRequest{Argv: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, Timeout: 10, MaxOutput: 1 << 20})
	if first.stdout != "out\n" || first.stderr != "err\n" || first.end.Exit != 3 || first.end.TimedOut || first.end.Truncated {
		t.Fatalf("first step: %+v", first)
	}
	second := c.run(stepRequest{Argv: []string{"sh", "-c", "cat; echo done"}, Timeout: 10, MaxOutput: 1 << 20})
	if second.stdout != "done\n" || second.end.Exit != 0 {
		t.Fatalf("a step's stdin must be /dev/null, not the requests: %+v", second)
	}
	missing := c.run(stepRequest{Argv: []string{"no-such-command-here"}, Timeout: 10, MaxOutput: 100})
	if missing.end.Exit != exitCmdNotFound || !strings.Contains(missing.stderr, "command not found") {
		t.Fatalf("a missing command: %+v", missing)
	}
	if code := c.finish(); code != 0 {
		t.Fatalf("exit %d at the end of stdin, stderr %q", code, c.errBy.String())
	}
}

func TestStepsTimeoutKillsTheStepAndGoesOn(t *testing.T) {
	c := startSteps(t, "--grace", "0.5")
	started := time.Now()
	o := c.run(stepRequest{Argv: []string{"sh", "-c", "echo before; exec sleep 30"}, Timeout: 0.5, MaxOutput: 100})
	took := time.Since(started)
	if !o.end.TimedOut || o.stdout != "before\n" || o.end.Exit != 128+int(syscall.SIGKILL) {
		t.Fatalf("timed-out step: %+v", o)
	}
	if took > 5*time.Second {
		t.Fatalf("the timeout took %v", took)
	}
	next := c.run(stepRequest{Argv: []string{"echo", "next"}, Timeout: 5, MaxOutput: 100})
	if next.stdout != "next\n" || next.end.TimedOut {
		t.Fatalf("the step after a timeout: %+v", next)
	}
}

func TestStepsEndWhatAStepLeftBehindBeforeItsEnd(t *testing.T) {
	c := startSteps(t, "--grace", "0.5")
	// The background sleep keeps the step's stdout open and outlives the shell; one that
	// ignores SIGTERM needs the SIGKILL after the grace period.
	o := c.run(stepRequest{Argv: []string{"sh", "-c",
		"sleep 60 >/dev/null & echo $!; (trap '' TERM; exec sleep 61) & echo $!"}, Timeout: 10, MaxOutput: 100})
	if o.end.Exit != 0 || o.end.TimedOut {
		t.Fatalf("step: %+v", o)
	}
	for _, field := range strings.Fields(o.stdout) {
		pid, err := strconv.Atoi(field)
		if err != nil {
			t.Fatalf("not a PID: %q", o.stdout)
		}
		// Already gone (reaped) when END arrives: not even a zombie is left.
		if _, err := os.Stat("/proc/" + field); err == nil {
			st, _ := readProcStat("/proc", pid)
			if st.ppid == c.cmd.Process.Pid {
				t.Fatalf("process %d, left by the step, still exists after its END (state %c)", pid, st.state)
			}
		}
	}
	if len(strings.Fields(o.stdout)) != 2 {
		t.Fatalf("want two PIDs, got %q", o.stdout)
	}
}

func TestStepsCapsAHugeOutput(t *testing.T) {
	c := startSteps(t)
	// 64 MiB on stdout: kept up to 1000 bytes, the rest read and dropped (the step is
	// never blocked on a full pipe), in frames no larger than stepsMaxChunk.
	o := c.run(stepRequest{Argv: []string{"sh", "-c", "head -c 67108864 /dev/zero; echo tail >&2"}, Timeout: 60, MaxOutput: 1000})
	if len(o.stdout) != 1000 || !o.end.Truncated || o.end.Exit != 0 || o.stderr != "tail\n" {
		t.Fatalf("huge output: %d bytes of stdout, %+v", len(o.stdout), o.end)
	}
}

func TestStepsRefuseMalformedRequests(t *testing.T) {
	for name, frame := range map[string][]byte{
		"unknown type": {'Z', 0, 0, 0, 0},
		"oversized":    {stepRun, 0x7f, 0xff, 0xff, 0xff},
		"not json":     runFrame("{{{"),
		"no command":   runFrame(`{"argv":[],"timeout":1}`),
		"no timeout":   runFrame(`{"argv":["true"]}`),
		"cut short":    runFrame(`{"argv":["true"],"timeout":1}`)[:12],
	} {
		t.Run(name, func(t *testing.T) {
			r := runHelper(t, runOpts{stdin: strings.NewReader(string(frame))}, "steps")
			if r.code != exitUsage {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			assertOneErrorLine(t, r, "steps:")
		})
	}
}

func runFrame(body string) []byte {
	head := []byte{stepRun, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(head[1:], uint32(len(body)))
	return append(head, body...)
}

func TestStepsWindsAStepDownWhenTheClientGoes(t *testing.T) {
	c := startSteps(t, "--grace", "0.5")
	body, _ := json.Marshal(stepRequest{Argv: []string{"sleep", "30"}, Timeout: 60, MaxOutput: 100})
	c.send(stepRun, body)
	time.Sleep(300 * time.Millisecond)
	started := time.Now()
	code := c.finish()
	if took := time.Since(started); took > 5*time.Second {
		t.Fatalf("the helper took %v to end after its stdin closed", took)
	}
	if code != 0 {
		t.Fatalf("exit %d (stderr %q)", code, c.errBy.String())
	}
}
