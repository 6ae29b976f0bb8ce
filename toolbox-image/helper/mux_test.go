package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// muxClient drives muxServe in-process, as debugkit's port-forward does through an exec.
type muxClient struct {
	t      *testing.T
	toSrv  *io.PipeWriter
	frames chan muxTestFrame
	done   chan error
	wmu    sync.Mutex
}

type muxTestFrame struct {
	typ     byte
	id      uint32
	payload []byte
}

func newMuxClient(t *testing.T) *muxClient {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	c := &muxClient{t: t, toSrv: inW, frames: make(chan muxTestFrame, 1<<16), done: make(chan error, 1)}
	go func() {
		err := muxServe("127.0.0.1", inR, outW)
		outW.Close()
		c.done <- err
	}()
	go func() {
		r := bufio.NewReader(outR)
		var head [muxHeaderSize]byte
		for {
			if _, err := io.ReadFull(r, head[:]); err != nil {
				close(c.frames)
				return
			}
			payload := make([]byte, binary.BigEndian.Uint32(head[5:9]))
			if _, err := io.ReadFull(r, payload); err != nil {
				close(c.frames)
				return
			}
			c.frames <- muxTestFrame{head[0], binary.BigEndian.Uint32(head[1:5]), payload}
		}
	}()
	return c
}

func (c *muxClient) send(typ byte, id uint32, payload []byte) {
	f := make([]byte, muxHeaderSize+len(payload))
	f[0] = typ
	binary.BigEndian.PutUint32(f[1:5], id)
	binary.BigEndian.PutUint32(f[5:9], uint32(len(payload)))
	copy(f[muxHeaderSize:], payload)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.toSrv.Write(f); err != nil {
		c.t.Errorf("writing a frame: %v", err)
	}
}

func (c *muxClient) open(id uint32, port int) {
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], uint16(port))
	c.send(frameOpen, id, p[:])
}

func (c *muxClient) grant(id uint32, n int) {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], uint32(n))
	c.send(frameWindow, id, p[:])
}

func (c *muxClient) next(within time.Duration) muxTestFrame {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok {
			c.t.Fatal("the helper's output ended")
		}
		return f
	case <-time.After(within):
		c.t.Fatalf("no frame within %v", within)
	}
	return muxTestFrame{}
}

func (c *muxClient) finish() error {
	c.toSrv.Close()
	select {
	case err := <-c.done:
		return err
	case <-time.After(30 * time.Second):
		c.t.Fatal("the mux did not end within 30 s of its stdin's EOF")
	}
	return nil
}

// echoServer answers each line with the same line, and ends a connection at its EOF.
func echoServer(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestMuxThousandConcurrentConnections(t *testing.T) {
	port := echoServer(t)
	c := newMuxClient(t)
	const count = 1000
	for id := uint32(1); id <= count; id++ {
		c.open(id, port)
	}
	opened := map[uint32]bool{}
	for len(opened) < count {
		f := c.next(30 * time.Second)
		if f.typ != frameOpened {
			t.Fatalf("stream %d: frame %d %q before all were open", f.id, f.typ, f.payload)
		}
		opened[f.id] = true
	}
	// Every connection is open at once now; each sends its line and half-closes.
	for id := uint32(1); id <= count; id++ {
		c.send(frameData, id, []byte(fmt.Sprintf("line %d\n", id)))
		c.send(frameEOF, id, nil)
	}
	got := map[uint32][]byte{}
	closed := map[uint32]bool{}
	for len(closed) < count {
		f := c.next(30 * time.Second)
		switch f.typ {
		case frameData:
			got[f.id] = append(got[f.id], f.payload...)
		case frameClose:
			closed[f.id] = true
		}
	}
	for id := uint32(1); id <= count; id++ {
		if want := fmt.Sprintf("line %d\n", id); string(got[id]) != want {
			t.Fatalf("stream %d: got %q, want %q", id, got[id], want)
		}
	}
	if err := c.finish(); err != nil {
		t.Fatal(err)
	}
}

func TestMuxHalfCloseBothWaysAndBigTransfers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reply := bytes.Repeat([]byte("reply-data-"), (8<<20)/11)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		h := sha256.New()
		_, _ = io.Copy(h, s) // until the client's EOF reaches it
		fmt.Fprintf(s, "%x\n", h.Sum(nil))
		_, _ = s.Write(reply)
	}()
	c := newMuxClient(t)
	c.open(1, ln.Addr().(*net.TCPAddr).Port)
	if f := c.next(10 * time.Second); f.typ != frameOpened {
		t.Fatalf("frame %d %q", f.typ, f.payload)
	}
	input := bytes.Repeat([]byte("input-"), (4<<20)/6)
	sent, credit := 0, muxWindow
	var back []byte
	eof := false
	for !eof {
		for credit > 0 && sent < len(input) {
			n := credit
			if n > muxMaxData {
				n = muxMaxData
			}
			if n > len(input)-sent {
				n = len(input) - sent
			}
			c.send(frameData, 1, input[sent:sent+n])
			sent += n
			credit -= n
			if sent == len(input) {
				c.send(frameEOF, 1, nil)
			}
		}
		f := c.next(30 * time.Second)
		switch f.typ {
		case frameWindow:
			credit += int(binary.BigEndian.Uint32(f.payload))
		case frameData:
			back = append(back, f.payload...)
			if len(back) > len(reply)+65+muxWindow {
				t.Fatal("more data than the window allows")
			}
			c.grant(1, len(f.payload))
		case frameEOF:
			eof = true
		default:
			t.Fatalf("unexpected frame %d %q", f.typ, f.payload)
		}
	}
	want := fmt.Sprintf("%x\n", sha256.Sum256(input)) + string(reply)
	if string(back) != want {
		t.Fatalf("got %d bytes back, want %d", len(back), len(want))
	}
	if f := c.next(10 * time.Second); f.typ != frameClose || f.id != 1 {
		t.Fatalf("frame %d for stream %d, want CLOSE for 1", f.typ, f.id)
	}
	if err := c.finish(); err != nil {
		t.Fatal(err)
	}
}

func TestMuxNeverSendsMoreThanTheWindow(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		s, err := ln.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		_, _ = s.Write(make([]byte, 4*muxWindow)) // blocks once the relay stops reading
	}()
	c := newMuxClient(t)
	c.open(1, ln.Addr().(*net.TCPAddr).Port)
	received := 0
	deadline := time.After(2 * time.Second)
	for done := false; !done; {
		select {
		case f := <-c.frames:
			if f.typ == frameData {
				received += len(f.payload)
			}
		case <-deadline:
			done = true
		}
	}
	if received != muxWindow {
		t.Fatalf("received %d bytes without granting any, want exactly the window (%d)", received, muxWindow)
	}
	c.grant(1, 1000)
	f := c.next(5 * time.Second)
	if f.typ != frameData || len(f.payload) > 1000 {
		t.Fatalf("after granting 1000 bytes: frame %d with %d bytes", f.typ, len(f.payload))
	}
	c.send(frameClose, 1, nil)
	if err := c.finish(); err != nil {
		t.Fatal(err)
	}
}

func TestMuxRefusedPortsAndBadClients(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	c := newMuxClient(t)
	c.open(7, port)
	f := c.next(10 * time.Second)
	if f.typ != frameFailed || f.id != 7 || f.payload[0] != exitUnreachable ||
		!strings.Contains(string(f.payload[1:]), "nothing is listening") {
		t.Fatalf("frame %d for %d: %q", f.typ, f.id, f.payload)
	}
	// Another stream goes on.
	echo := echoServer(t)
	c.open(9, echo)
	if f := c.next(10 * time.Second); f.typ != frameOpened {
		t.Fatalf("frame %d %q", f.typ, f.payload)
	}
	c.send(frameData, 9, []byte("still here\n"))
	var got9 []byte
	for string(got9) != "still here\n" {
		if f := c.next(10 * time.Second); f.typ == frameData && f.id == 9 {
			got9 = append(got9, f.payload...)
		}
	}
	// A reused stream ID is a protocol error: the whole relay ends, with one line.
	c.open(9, echo)
	if err := c.finish(); err == nil || !strings.Contains(err.Error(), "stream 9 opened after stream 9") {
		t.Fatalf("err = %v", err)
	}
}

func TestMuxEndsAStreamThatSendsMoreThanGranted(t *testing.T) {
	s := &muxServer{out: make(chan []byte, 16), quit: make(chan struct{}), streams: map[uint32]*muxStream{}}
	st := &muxStream{s: s, id: 3, granted: 10}
	st.cond = sync.NewCond(&st.mu)
	s.streams[3] = st
	if err := s.dispatch(frameData, 3, make([]byte, 10)); err != nil || st.granted != 0 || len(st.queue) != 1 {
		t.Fatalf("within the grant: err %v, granted %d, queued %d", err, st.granted, len(st.queue))
	}
	if err := s.dispatch(frameData, 3, []byte{1}); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-s.out:
		if f[0] != frameClose || binary.BigEndian.Uint32(f[1:5]) != 3 {
			t.Fatalf("frame %v", f[:muxHeaderSize])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no CLOSE for a stream beyond its grant")
	}
	if s.streams[3] != nil || !st.closed || st.queue != nil {
		t.Fatal("the stream is not gone")
	}
}

func TestMuxOversizedFrameEndsTheRelay(t *testing.T) {
	var in bytes.Buffer
	head := make([]byte, muxHeaderSize)
	head[0] = frameData
	binary.BigEndian.PutUint32(head[5:9], muxMaxData+1)
	in.Write(head)
	r := runHelper(t, runOpts{stdin: &in}, "relay", "--mux")
	if r.code != exitFailure {
		t.Fatalf("exit %d", r.code)
	}
	assertOneErrorLine(t, r, "a frame of type 4 with 65537 bytes")
	r = runHelper(t, runOpts{stdin: strings.NewReader("")}, "relay", "--mux", "80")
	if r.code != exitUsage {
		t.Fatalf("exit %d", r.code)
	}
}

// -- non-dumpable ---------------------------------------------------------------------

// procOwner is the owner of /proc/PID: root for a non-dumpable process, whatever its UID.
func procOwner(t *testing.T, pid int) uint32 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+strconv.Itoa(pid)+"/fd", &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid
}

// ownedPipe is a pipe whose inode belongs to uid, as runc makes an exec's stdio
// (fixStdioPermissions), so that the process may reopen its own /proc/self/fd/N.
func ownedPipe(t *testing.T, uid int) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Chown(uid, uid); err != nil {
		t.Fatal(err)
	}
	return r, w
}

// openAs tries, as uid, to open path for writing (as a target process would open the
// helper's stdout to write its own archive into it).
func openAs(t *testing.T, uid int, path string) error {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `exec 3>"$1"`, "sh", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func TestTheHelperIsNotDumpableSoItsStdoutCannotBeOpened(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run processes as another user")
	}
	uid := otherUser(t)
	// A process of that user that is dumpable (the control): its stdout can be opened.
	control := exec.Command("/bin/sh", "-c", "exec sleep 30")
	control.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	controlOut, controlIn := ownedPipe(t, uid)
	control.Stdout = controlIn
	if err := control.Start(); err != nil {
		t.Fatal(err)
	}
	controlIn.Close()
	defer func() { _ = control.Process.Kill(); _ = control.Wait(); controlOut.Close() }()
	if err := openAs(t, uid, fmt.Sprintf("/proc/%d/fd/1", control.Process.Pid)); err != nil {
		t.Fatalf("the control: a dumpable process's stdout cannot be opened by its own user: %v", err)
	}
	// The helper, as the same user, blocked on its stdin: its stdout cannot be.
	pr, pw, _ := os.Pipe()
	defer pw.Close()
	cmd := helperCmd(t, runOpts{uid: uid}, "relay", "--mux")
	cmd.Stdin = pr
	out, in := ownedPipe(t, uid)
	cmd.Stdout = in
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	in.Close()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); out.Close() }()
	pid := cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for procOwner(t, pid) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the Go runtime starts before run() does
	}
	if owner := procOwner(t, pid); owner != 0 {
		t.Fatalf("/proc/%d belongs to %d: the helper is dumpable", pid, owner)
	}
	for _, fd := range []string{"1"} {
		if err := openAs(t, uid, fmt.Sprintf("/proc/%d/fd/%s", pid, fd)); err == nil ||
			!strings.Contains(err.Error(), "Permission denied") {
			t.Fatalf("fd %s of the helper opened by its own user: %v", fd, err)
		}
	}
}

func TestAnUnreadableHelperIsNotDumpableFromItsFirstInstruction(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to install an execute-only binary and run it as another user")
	}
	// As the image installs it: root-owned, 0711. The kernel makes a process that
	// executes a file it cannot read non-dumpable at execve, before any of our code.
	dir := t.TempDir()
	_ = os.Chmod(dir, 0755)
	exe := filepath.Join(dir, "debugkit-helper")
	data, err := os.ReadFile(helperExe(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0711); err != nil {
		t.Fatal(err)
	}
	openTree(t, dir)
	cmd := exec.Command(exe, "relay", "--mux")
	cmd.Env = append(os.Environ(), "DEBUGKIT_HELPER_TEST_MAIN=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532},
		Ptrace: true} // stopped at its first instruction, before the Go runtime runs
	pr, pw, _ := os.Pipe()
	defer pw.Close()
	cmd.Stdin = pr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		for { // a traced child reports its stops before its end
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(cmd.Process.Pid, &ws, 0, nil); err != nil || ws.Exited() || ws.Signaled() {
				return
			}
		}
	}()
	pr.Close()
	if owner := procOwner(t, cmd.Process.Pid); owner != 0 {
		t.Fatalf("/proc/PID belongs to %d at the first instruction: dumpable", owner)
	}
}
