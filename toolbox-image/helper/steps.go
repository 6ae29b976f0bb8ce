package main

// steps: a runbook's steps over one exec. An exec costs the engine tens of milliseconds
// (runc exec on Docker, more on Kubernetes); a runbook used to pay one per step. Here the
// client sends one step at a time on stdin and reads its output and its end on stdout;
// it judges each step itself and decides whether to send the next one.
//
// Frames, both ways: type (1 byte), payload length (4 bytes, big endian), payload.
//
//	RUN    client -> helper  payload: JSON {"argv": [...], "timeout": SECONDS, "max_output": BYTES}
//	OUT    helper -> client  the step's stdout, up to stepsMaxChunk bytes
//	ERR    helper -> client  the step's stderr, likewise
//	END    helper -> client  payload: JSON {"exit": N, "timed_out": BOOL, "truncated": BOOL}
//
// Each step is isolated as `reap` isolates a command: it runs as this process's child
// (a child subreaper) with /dev/null as stdin, is killed with SIGKILL at its timeout, and
// whatever it left behind (background processes, orphans) is ended and reaped before its
// END is sent, so the next step starts with nothing of it left. Its output is kept up to
// max_output bytes per stream (the rest is read and dropped, and END says truncated).
// EOF on stdin ends this command: between steps at once (exit 0), during a step as a
// SIGTERM would (the step is wound down first: the client has gone away).

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

const stepsUsage = `steps [--grace SECONDS]
Runs commands one after another, each as reap runs one, as a client asks on stdin, and
streams their output and ends on stdout, framed (see steps.go). --grace: how long what a
step left behind gets between SIGTERM and SIGKILL (default 2). Exit 0 at the end of
stdin, 64 for a malformed request, 143 after SIGTERM.
`

const (
	stepRun = 'R'
	stepOut = 'O'
	stepErr = 'E'
	stepEnd = 'X'

	stepsHeader     = 5
	stepsMaxRequest = 1 << 20 // one step's argv, JSON
	stepsMaxChunk   = 32 << 10
	// How long a step's output may stay open after the step and all it left behind have
	// ended (a descriptor handed to a process outside the step's tree): then it is cut.
	stepsDrainWait = time.Second
)

type stepRequest struct {
	Argv      []string `json:"argv"`
	Timeout   float64  `json:"timeout"`
	MaxOutput int64    `json:"max_output"`
}

type stepEndInfo struct {
	Exit      int  `json:"exit"`
	TimedOut  bool `json:"timed_out"`
	Truncated bool `json:"truncated"`
}

// stepsWriter writes whole frames to the client, one at a time.
type stepsWriter struct {
	mu  sync.Mutex
	out io.Writer
	err error
}

func (w *stepsWriter) frame(typ byte, payload []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	buf := make([]byte, stepsHeader+len(payload))
	buf[0] = typ
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[stepsHeader:], payload)
	_, w.err = w.out.Write(buf)
	return w.err
}

// readStepFrame reads one request; io.EOF at a clean end of input.
func readStepFrame(in *bufio.Reader) (stepRequest, error) {
	var req stepRequest
	var head [stepsHeader]byte
	if _, err := io.ReadFull(in, head[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return req, fmt.Errorf("input ended inside a frame header")
		}
		return req, err
	}
	size := binary.BigEndian.Uint32(head[1:])
	if head[0] != stepRun {
		return req, fmt.Errorf("unknown frame type %d", head[0])
	}
	if size > stepsMaxRequest {
		return req, fmt.Errorf("a request of %d bytes (at most %d)", size, stepsMaxRequest)
	}
	payload := make([]byte, size)
	if _, err := io.ReadFull(in, payload); err != nil {
		return req, fmt.Errorf("input ended inside a request")
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		return req, fmt.Errorf("malformed request: %v", err)
	}
	if len(req.Argv) == 0 {
		return req, fmt.Errorf("a request without a command")
	}
	if req.Timeout <= 0 || req.Timeout > 1e6 {
		return req, fmt.Errorf("a timeout of %v s", req.Timeout)
	}
	if req.MaxOutput < 0 {
		return req, fmt.Errorf("a negative max_output")
	}
	return req, nil
}

func cmdSteps(args []string) int {
	fs := newFlags("steps")
	grace := seconds{d: defaultReapGrace}
	fs.Var(&grace, "grace", "")
	if code, ok := parseFlags(fs, args, stepsUsage, exitUsage); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return usageErrorf("steps", stepsUsage, exitUsage, "unexpected argument %q", fs.Arg(0))
	}
	if err := setChildSubreaper(); err != nil {
		errorf("cannot become a child subreaper: %v", err)
		return exitFailure
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		errorf("cannot open %s: %v", os.DevNull, err)
		return exitFailure
	}
	defer null.Close()
	return serveSteps(os.Stdin, os.Stdout, null.Fd(), grace.d)
}

// serveSteps reads requests from in until its end and runs each.
func serveSteps(in io.Reader, out io.Writer, stdin uintptr, grace time.Duration) int {
	requests := make(chan stepRequest)
	ended := make(chan struct{}) // input ended (or broke): the client is gone
	var readErr error
	go func() {
		defer close(ended)
		r := bufio.NewReader(in)
		for {
			req, err := readStepFrame(r)
			if err != nil {
				if err != io.EOF {
					readErr = err
				}
				return
			}
			requests <- req
		}
	}()
	w := &stepsWriter{out: out}
	r := &reaper{self: os.Getpid(), grace: grace, procDir: "/proc", stdin: stdin,
		sigs: make(chan os.Signal, 64)}
	signal.Notify(r.sigs, append([]os.Signal{syscall.SIGCHLD}, forwarded...)...)
	defer signal.Stop(r.sigs)
	for {
		select {
		case req := <-requests:
			if err := runStep(r, w, req, ended); err != nil {
				errorf("cannot send a step's result: %v", err)
				return exitFailure
			}
			if r.terminated {
				return 128 + int(syscall.SIGTERM)
			}
		case <-ended:
			if readErr != nil {
				errorf("steps: %v", readErr)
				return exitUsage
			}
			return exitOK
		case s := <-r.sigs:
			if s == syscall.SIGTERM || s == syscall.SIGINT || s == syscall.SIGHUP {
				return 128 + int(s.(syscall.Signal))
			}
		}
	}
}

// runStep runs one step to its end, everything it left behind ended and reaped, and
// sends its output and its END.
func runStep(r *reaper, w *stepsWriter, req stepRequest, ended <-chan struct{}) error {
	limit := req.MaxOutput
	outR, outW, err := os.Pipe()
	if err != nil {
		return w.stepFailed(exitReapError, fmt.Sprintf("%s: cannot make a pipe: %v", prog, err))
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return w.stepFailed(exitReapError, fmt.Sprintf("%s: cannot make a pipe: %v", prog, err))
	}
	// Fd() makes the write ends blocking, as the step expects its stdout to be.
	outFd, errFd := outW.Fd(), errW.Fd()
	r.stdout, r.stderr = &outFd, &errFd
	r.timedOut, r.windDown = false, ended
	timer := time.NewTimer(time.Duration(req.Timeout * float64(time.Second)))
	defer timer.Stop()
	r.deadline = timer.C
	code, msg := r.start(req.Argv)
	outW.Close()
	errW.Close()
	var truncated [2]bool
	var wg sync.WaitGroup
	for i, src := range []*os.File{outR, errR} {
		typ := byte(stepOut)
		if i == 1 {
			typ = stepErr
		}
		wg.Add(1)
		go func(i int, src *os.File, typ byte) {
			defer wg.Done()
			truncated[i] = pumpStepOutput(src, w, typ, limit)
		}(i, src, typ)
	}
	if code == 0 {
		code = r.finish()
	}
	// Everything of the step has ended: its output ends too, unless a descriptor got out.
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(stepsDrainWait):
		outR.Close()
		errR.Close()
		<-drained
	}
	outR.Close()
	errR.Close()
	if msg != "" {
		if err := w.frame(stepErr, []byte(prog+": "+msg+"\n")); err != nil {
			return err
		}
	}
	end, _ := json.Marshal(stepEndInfo{Exit: code, TimedOut: r.timedOut, Truncated: truncated[0] || truncated[1]})
	return w.frame(stepEnd, end)
}

func (w *stepsWriter) stepFailed(code int, msg string) error {
	if err := w.frame(stepErr, []byte(msg+"\n")); err != nil {
		return err
	}
	end, _ := json.Marshal(stepEndInfo{Exit: code})
	return w.frame(stepEnd, end)
}

// pumpStepOutput sends what src carries as frames of typ, up to limit bytes in all;
// the rest is read and dropped. Whether anything was dropped.
func pumpStepOutput(src *os.File, w *stepsWriter, typ byte, limit int64) bool {
	buf := make([]byte, stepsMaxChunk)
	var sent int64
	truncated := false
	for {
		n, err := src.Read(buf)
		if n > 0 {
			keep := int64(n)
			if room := limit - sent; keep > room {
				keep = room
				truncated = true
			}
			if keep > 0 {
				if w.frame(typ, buf[:keep]) != nil {
					// The client is gone: keep draining, so the step is not blocked on a
					// full pipe while it is wound down.
					limit = sent
				}
				sent += keep
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				truncated = true
			}
			return truncated
		}
	}
}
