package main

// relay --mux: many TCP connections over one stdin/stdout pair, so that a port-forward
// through the sidecar costs one exec, not one per connection (an exec takes tens of
// milliseconds, and each held a process and its threads against the sidecar's pids
// limit: 1000 connections could not be open at once).
//
// Frames, both ways: type (1 byte), stream ID (4 bytes, big endian), payload length
// (4 bytes, big endian), payload.
//
//	OPEN   client -> helper  payload: the port (2 bytes); the helper dials HOST:PORT
//	OPENED helper -> client  the connection is up
//	FAILED helper -> client  payload: a code (1 byte: 2 nothing listens or unreachable,
//	                         1 other) and a message; the stream is gone
//	DATA   both ways         up to 64 KiB, within the receiver's window
//	EOF    both ways         the sender's side will send no more (a half-close)
//	CLOSE  both ways         the stream is over (both sides done, or an error): forget it
//	WINDOW both ways         payload: 4 bytes, more bytes the receiver takes
//
// Each side may send muxWindow bytes of DATA per stream before WINDOW frames grant
// more; a receiver grants what it has written to its connection. So a slow connection
// holds back only its own stream, and memory is bounded by the window per stream.
// The reader of stdin never waits for stdout: what it must send, other goroutines
// send. Stream IDs are chosen by the client and never reused.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

const (
	frameOpen   = 1
	frameOpened = 2
	frameFailed = 3
	frameData   = 4
	frameEOF    = 5
	frameClose  = 6
	frameWindow = 7

	muxHeaderSize = 9
	muxMaxData    = 64 << 10
	muxMaxControl = 4 << 10
	muxWindow     = 256 << 10
	muxMaxStreams = 16384
)

type muxServer struct {
	host    string
	out     chan []byte
	quit    chan struct{}
	mu      sync.Mutex
	streams map[uint32]*muxStream
	lastID  uint32 // IDs only grow: none is reused
	wg      sync.WaitGroup
}

type muxStream struct {
	s    *muxServer
	id   uint32
	mu   sync.Mutex
	cond *sync.Cond
	conn *net.TCPConn

	credit    int      // bytes we may still send to the client
	granted   int      // bytes the client may still send us (what is queued is within it)
	queue     [][]byte // from the client, to write to the connection
	eofIn     bool     // the client sent EOF
	closed    bool
	readDone  bool
	writeDone bool
}

func muxServe(host string, in io.Reader, out io.Writer) error {
	s := &muxServer{host: host, out: make(chan []byte, 4096), quit: make(chan struct{}),
		streams: map[uint32]*muxStream{}}
	written := make(chan error, 1)
	go func() { written <- s.writeFrames(out) }()
	err := s.readFrames(bufio.NewReaderSize(in, 256<<10))
	s.abortAll()
	close(s.quit)
	s.wg.Wait()
	if werr := <-written; err == nil && werr != nil && !isErrno(werr, syscall.EPIPE) {
		err = werr
	}
	return err
}

// writeFrames copies frames to out, flushing whenever no frame waits.
func (s *muxServer) writeFrames(out io.Writer) error {
	w := bufio.NewWriterSize(out, 256<<10)
	for {
		select {
		case f := <-s.out:
			if _, err := w.Write(f); err != nil {
				s.broken()
				return err
			}
			if len(s.out) == 0 {
				if err := w.Flush(); err != nil {
					s.broken()
					return err
				}
			}
		case <-s.quit:
			for {
				select {
				case f := <-s.out:
					if _, err := w.Write(f); err != nil {
						return err
					}
				default:
					return w.Flush()
				}
			}
		}
	}
}

// abortAll ends every open stream: over a copy of the list, since an abort takes the server's
// lock to remove its stream from it.
func (s *muxServer) abortAll() {
	s.mu.Lock()
	open := make([]*muxStream, 0, len(s.streams))
	for _, st := range s.streams {
		open = append(open, st)
	}
	s.mu.Unlock()
	for _, st := range open {
		st.abort(false)
	}
}

// broken: stdout is gone (the CLI with it); nothing more can be said, every stream ends.
func (s *muxServer) broken() {
	s.abortAll()
	for {
		select {
		case <-s.out: // unblock whoever waits to send
		case <-s.quit:
			return
		}
	}
}

func (s *muxServer) send(typ byte, id uint32, payload []byte) {
	f := make([]byte, muxHeaderSize+len(payload))
	f[0] = typ
	binary.BigEndian.PutUint32(f[1:5], id)
	binary.BigEndian.PutUint32(f[5:9], uint32(len(payload)))
	copy(f[muxHeaderSize:], payload)
	select {
	case s.out <- f:
	case <-s.quit:
	}
}

func (s *muxServer) readFrames(in *bufio.Reader) error {
	var head [muxHeaderSize]byte
	for {
		if _, err := io.ReadFull(in, head[:]); err != nil {
			if err == io.EOF {
				return nil // the client is done
			}
			return fmt.Errorf("reading a frame header: %v", err)
		}
		typ, id, size := head[0], binary.BigEndian.Uint32(head[1:5]), binary.BigEndian.Uint32(head[5:9])
		limit := uint32(muxMaxControl)
		if typ == frameData {
			limit = muxMaxData
		}
		if size > limit {
			return fmt.Errorf("a frame of type %d with %d bytes (at most %d)", typ, size, limit)
		}
		payload := make([]byte, size)
		if _, err := io.ReadFull(in, payload); err != nil {
			return fmt.Errorf("reading a frame: %v", err)
		}
		if err := s.dispatch(typ, id, payload); err != nil {
			return err
		}
	}
}

func (s *muxServer) dispatch(typ byte, id uint32, payload []byte) error {
	if typ == frameOpen {
		if len(payload) != 2 {
			return fmt.Errorf("an OPEN frame without a port")
		}
		port := int(binary.BigEndian.Uint16(payload))
		s.mu.Lock()
		if id <= s.lastID {
			s.mu.Unlock()
			return fmt.Errorf("stream %d opened after stream %d", id, s.lastID)
		}
		s.lastID = id
		full := len(s.streams) >= muxMaxStreams
		st := &muxStream{s: s, id: id, credit: muxWindow, granted: muxWindow}
		st.cond = sync.NewCond(&st.mu)
		if !full {
			s.streams[id] = st
		}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if full {
				s.send(frameFailed, id, append([]byte{exitFailure},
					fmt.Sprintf("more than %d connections at once", muxMaxStreams)...))
				return
			}
			st.dial(port)
		}()
		return nil
	}
	s.mu.Lock()
	st := s.streams[id]
	s.mu.Unlock()
	if st == nil {
		return nil // over already: what was in flight is dropped
	}
	switch typ {
	case frameData:
		st.mu.Lock()
		if len(payload) > st.granted || st.eofIn {
			st.mu.Unlock()
			go st.abort(true) // more than granted: the client is wrong about this stream
			return nil
		}
		st.queue = append(st.queue, payload)
		st.granted -= len(payload)
		st.cond.Broadcast()
		st.mu.Unlock()
	case frameEOF:
		st.mu.Lock()
		st.eofIn = true
		st.cond.Broadcast()
		st.mu.Unlock()
	case frameClose:
		st.abort(false)
	case frameWindow:
		if len(payload) != 4 {
			return fmt.Errorf("a WINDOW frame of %d bytes", len(payload))
		}
		st.mu.Lock()
		st.credit += int(binary.BigEndian.Uint32(payload))
		if st.credit > 1<<30 {
			st.credit = 1 << 30
		}
		st.cond.Broadcast()
		st.mu.Unlock()
	default:
		return fmt.Errorf("an unknown frame type %d", typ)
	}
	return nil
}

func (st *muxStream) dial(port int) {
	conn, err := dialCancel(st.s.host, port, st.s.quit)
	if err != nil {
		st.s.mu.Lock()
		delete(st.s.streams, st.id)
		st.s.mu.Unlock()
		code := byte(exitFailure)
		var ce *cliError
		if errors.As(err, &ce) && ce.code == exitUnreachable {
			code = exitUnreachable
		}
		st.s.send(frameFailed, st.id, append([]byte{code}, err.Error()...))
		return
	}
	st.mu.Lock()
	if st.closed { // the client gave up meanwhile
		st.mu.Unlock()
		conn.Close()
		return
	}
	st.conn = conn
	st.mu.Unlock()
	st.s.send(frameOpened, st.id, nil)
	st.s.wg.Add(1)
	go func() {
		defer st.s.wg.Done()
		st.toClient()
	}()
	st.toServer()
}

// toClient copies the connection to DATA frames, within the client's window.
func (st *muxStream) toClient() {
	buf := make([]byte, muxMaxData)
	for {
		st.mu.Lock()
		for st.credit == 0 && !st.closed {
			st.cond.Wait()
		}
		if st.closed {
			st.mu.Unlock()
			return
		}
		n := st.credit
		st.mu.Unlock()
		if n > len(buf) {
			n = len(buf)
		}
		k, err := st.conn.Read(buf[:n])
		if k > 0 {
			st.mu.Lock()
			st.credit -= k
			st.mu.Unlock()
			st.s.send(frameData, st.id, buf[:k])
		}
		if err == io.EOF {
			st.s.send(frameEOF, st.id, nil)
			st.finish(true)
			return
		}
		if err != nil {
			st.abort(true)
			return
		}
	}
}

// toServer writes what the client sent to the connection, granting it as it goes.
func (st *muxStream) toServer() {
	for {
		st.mu.Lock()
		for len(st.queue) == 0 && !st.eofIn && !st.closed {
			st.cond.Wait()
		}
		if st.closed {
			st.mu.Unlock()
			return
		}
		if len(st.queue) == 0 { // EOF, everything written
			st.mu.Unlock()
			if err := st.conn.CloseWrite(); err != nil && !isErrno(err, syscall.ENOTCONN) {
				st.abort(true)
				return
			}
			st.finish(false)
			return
		}
		chunk := st.queue[0]
		st.queue[0] = nil
		st.queue = st.queue[1:]
		st.mu.Unlock()
		if _, err := st.conn.Write(chunk); err != nil {
			st.abort(true)
			return
		}
		st.mu.Lock()
		st.granted += len(chunk)
		st.mu.Unlock()
		var grant [4]byte
		binary.BigEndian.PutUint32(grant[:], uint32(len(chunk)))
		st.s.send(frameWindow, st.id, grant[:])
	}
}

// finish marks one direction done; with both, the stream is over.
func (st *muxStream) finish(read bool) {
	st.mu.Lock()
	if read {
		st.readDone = true
	} else {
		st.writeDone = true
	}
	over := st.readDone && st.writeDone && !st.closed
	if over {
		st.closed = true
		st.cond.Broadcast()
	}
	st.mu.Unlock()
	if over {
		st.conn.Close()
		st.forget()
		st.s.send(frameClose, st.id, nil)
	}
}

// abort ends the stream at once (an error on either side, or the client's CLOSE).
func (st *muxStream) abort(tell bool) {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return
	}
	st.closed = true
	conn := st.conn
	st.queue = nil
	st.cond.Broadcast()
	st.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	st.forget()
	if tell {
		st.s.send(frameClose, st.id, nil)
	}
}

func (st *muxStream) forget() {
	st.s.mu.Lock()
	if st.s.streams[st.id] == st {
		delete(st.s.streams, st.id)
	}
	st.s.mu.Unlock()
}

func cmdRelayMux(host string) int {
	return report(muxServe(host, os.Stdin, os.Stdout))
}
