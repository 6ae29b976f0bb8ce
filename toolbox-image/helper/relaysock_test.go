package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// relayFixture runs relayListen in-process against a directory and a control pipe, as
// the sidecar's exec does.
type relayFixture struct {
	dir     string
	secret  []byte
	control *io.PipeWriter
	done    chan error
}

func startRelay(t *testing.T, ports ...int) *relayFixture {
	t.Helper()
	dir := t.TempDir()
	r, w := io.Pipe()
	f := &relayFixture{dir: dir, secret: []byte("0123456789abcdef"), control: w, done: make(chan error, 1)}
	go func() { f.done <- relayListen(dir, "127.0.0.1", ports, r) }()
	if _, err := fmt.Fprintf(w, "%s\n", hex.EncodeToString(f.secret)); err != nil {
		t.Fatal(err)
	}
	for _, port := range ports {
		path := filepath.Join(dir, relaySocketName(port))
		deadline := time.Now().Add(5 * time.Second)
		for {
			if info, err := os.Stat(path); err == nil {
				if info.Mode()&os.ModeSocket == 0 || info.Mode().Perm() != 0o666 {
					t.Fatalf("%s: mode %v, want a socket 0666", path, info.Mode())
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never appeared", path)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Cleanup(func() { w.Close() })
	return f
}

// dial connects to a port's socket and reads the preface: the status byte and, after a
// failure, the reason.
func (f *relayFixture) dial(t *testing.T, port int) (*net.UnixConn, byte, string) {
	t.Helper()
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: filepath.Join(f.dir, relaySocketName(port)), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	preface := make([]byte, relaySecretSize+1)
	if _, err := io.ReadFull(conn, preface); err != nil {
		t.Fatalf("preface: %v", err)
	}
	if !bytes.Equal(preface[:relaySecretSize], f.secret) {
		t.Fatalf("preface %q does not start with the secret", preface)
	}
	if preface[relaySecretSize] != relayConnected {
		reason, _ := io.ReadAll(conn)
		conn.Close()
		return nil, preface[relaySecretSize], string(reason)
	}
	return conn, relayConnected, ""
}

// hashServer answers each connection, once its client has half-closed, with the SHA-256
// of what it read, then half-closes too and waits for the client to close.
func hashServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c *net.TCPConn) {
				defer c.Close()
				h := sha256.New()
				if _, err := io.Copy(h, c); err != nil {
					return
				}
				c.Write([]byte(hex.EncodeToString(h.Sum(nil))))
				c.CloseWrite()
				io.Copy(io.Discard, c)
			}(conn.(*net.TCPConn))
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestRelayListenManyConnectionsHalfClose(t *testing.T) {
	port := hashServer(t)
	f := startRelay(t, port)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			conn, status, reason := f.dial(t, port)
			if conn == nil {
				errs <- fmt.Errorf("connection %d: status %d %s", i, status, reason)
				return
			}
			defer conn.Close()
			payload := bytes.Repeat([]byte(fmt.Sprintf("payload %d;", i)), 1000*(i+1))
			if _, err := conn.Write(payload); err != nil {
				errs <- err
				return
			}
			conn.CloseWrite() // the server answers only after our EOF
			answer, err := io.ReadAll(conn)
			if err != nil {
				errs <- err
				return
			}
			want := sha256.Sum256(payload)
			if string(answer) != hex.EncodeToString(want[:]) {
				errs <- fmt.Errorf("connection %d: answer %q", i, answer)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRelayListenServerHalfClose(t *testing.T) {
	// The server says hello, half-closes, then still reads what the client sends.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Write([]byte("hello"))
		conn.(*net.TCPConn).CloseWrite()
		data, _ := io.ReadAll(conn)
		got <- string(data)
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	f := startRelay(t, port)
	conn, status, reason := f.dial(t, port)
	if conn == nil {
		t.Fatalf("status %d %s", status, reason)
	}
	defer conn.Close()
	hello, err := io.ReadAll(conn) // EOF: the server's half-close came through
	if err != nil || string(hello) != "hello" {
		t.Fatalf("read %q, %v", hello, err)
	}
	if _, err := conn.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	conn.CloseWrite()
	select {
	case data := <-got:
		if data != "still here" {
			t.Fatalf("server read %q", data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server never saw the client's data and EOF")
	}
}

func TestRelayListenNothingListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	f := startRelay(t, port)
	conn, status, reason := f.dial(t, port)
	if conn != nil || status != exitUnreachable || !strings.Contains(reason, "nothing is listening") {
		t.Fatalf("status %d, reason %q", status, reason)
	}
}

func TestRelayListenEndsAtEOFAndRemovesSockets(t *testing.T) {
	port := hashServer(t)
	f := startRelay(t, port)
	f.control.Close()
	select {
	case err := <-f.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("relay did not end at EOF")
	}
	left, _ := os.ReadDir(f.dir)
	if len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

func TestRelayListenRefusesBadSecret(t *testing.T) {
	dir := t.TempDir()
	err := relayListen(dir, "127.0.0.1", []int{80}, strings.NewReader("not hex\n"))
	if err == nil || !strings.Contains(err.Error(), "hex digits") {
		t.Fatalf("err = %v", err)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 0 {
		t.Fatalf("listened anyway: %v", left)
	}
}

func TestParsePorts(t *testing.T) {
	ports, err := parsePorts("80,8080,80")
	if err != nil || len(ports) != 2 || ports[0] != 80 || ports[1] != 8080 {
		t.Fatalf("%v %v", ports, err)
	}
	for _, bad := range []string{"", "0", "70000", "80,x"} {
		if _, err := parsePorts(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTarOutConnectProvesItselfThenStreams(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	secret := []byte("fedcba9876543210")
	got := make(chan []byte, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		data, _ := io.ReadAll(conn)
		got <- data
	}()
	conn, err := connectRelaySocket(path, strings.NewReader(hex.EncodeToString(secret)+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("archive"))
	conn.Close()
	if data := <-got; string(data) != string(secret)+"archive" {
		t.Fatalf("the socket read %q", data)
	}
	_, err = connectRelaySocket(filepath.Join(dir, "absent.sock"), strings.NewReader(hex.EncodeToString(secret)+"\n"))
	var ce *cliError
	if !errors.As(err, &ce) || ce.code != exitNoSocket {
		t.Fatalf("err = %v, want exit %d", err, exitNoSocket)
	}
}
