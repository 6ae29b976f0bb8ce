package main

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"
)

func TestParseStatWithAHostileCommandName(t *testing.T) {
	line := "4242 (a) b) (c\n) Z 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0 18446744073709551615\n"
	p, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{pid: 4242, comm: "a) b) (c\n", state: 'Z', ppid: 17, pgrp: 4242, start: 987654}
	if p != want {
		t.Fatalf("got %+v, want %+v", p, want)
	}
	for _, bad := range []string{"", "12 no parens", "x (sh) S 1", "12 (sh) S 1 2"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) accepted a malformed line", bad)
		}
	}
}

func TestParseStatOfThisProcess(t *testing.T) {
	p, err := readProcStat("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.pid != os.Getpid() || p.ppid != os.Getppid() || p.start == 0 {
		t.Fatalf("got %+v", p)
	}
}

func TestDescendantsFollowOnlyChainsThatReachTheAncestor(t *testing.T) {
	procs := []procStat{
		{pid: 1, ppid: 0},   // the target's PID 1
		{pid: 7, ppid: 1},   // a target process
		{pid: 20, ppid: 0},  // the reaper (its parent is outside the namespace)
		{pid: 21, ppid: 20}, // CMD
		{pid: 22, ppid: 21},
		{pid: 23, ppid: 22},
		{pid: 24, ppid: 20}, // an orphan reparented to the reaper
		{pid: 30, ppid: 99}, // parent already gone: not followed
		{pid: 40, ppid: 41}, // a loop (PID reuse races): not followed
		{pid: 41, ppid: 40},
		{pid: 50, ppid: 50},
	}
	var got []int
	for _, p := range descendants(procs, 20) {
		got = append(got, p.pid)
	}
	sort.Ints(got)
	if want := []int{21, 22, 23, 24}; !reflect.DeepEqual(got, want) {
		t.Fatalf("descendants of 20: got %v, want %v", got, want)
	}
	// As PID 1 (the reaper as a container's main process), everything is below it.
	if n := len(descendants(procs, 1)); n != 1 {
		t.Fatalf("descendants of 1: got %d, want 1 (pid 7)", n)
	}
}

func TestEscapeComm(t *testing.T) {
	cases := map[string]string{
		"server":         "server",
		"with space":     "with space",
		"tab\there":      `tab\x09here`,
		"nl\n":           `nl\x0a`,
		"back\\slash":    `back\x5cslash`,
		"\xff\x7f":       `\xff\x7f`,
		"caf\xc3\xa9":    `caf\xc3\xa9`,
		"(paren) (more)": "(paren) (more)",
	}
	for in, want := range cases {
		if got := escapeComm(in); got != want {
			t.Errorf("escapeComm(%q) = %q, want %q", in, got, want)
		}
	}
}

func fakeProc(t *testing.T, lines map[int]string) string {
	dir := t.TempDir()
	for pid, line := range lines {
		writeFile(t, filepath.Join(dir, itoa(pid), "stat"), line, 0644)
	}
	if err := os.MkdirAll(filepath.Join(dir, "self"), 0755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func itoa(i int) string { return strconv.Itoa(i) }

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

const statTail = " 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 5000 0 0 0\n"

func TestZombiesReport(t *testing.T) {
	proc := fakeProc(t, map[int]string{
		1:  "1 (server) S 0 1 1" + statTail,
		12: "12 (sleep) Z 1 12 12" + statTail,
		9:  "9 (we\tird) Z 1 9 9" + statTail,
		13: "13 (sh) S 1 13 13" + statTail,
		14: "14 (other) Z 13 13 13" + statTail,
	})
	got, err := zombiesReport(proc, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := "zombies: 2\n9 we\\x09ird\n12 sleep\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	got, _ = zombiesReport(proc, 13)
	if got != "zombies: 1\n14 other\n" {
		t.Fatalf("children of 13: got %q", got)
	}
	if _, err := zombiesReport(proc, 77); err == nil {
		t.Fatal("a missing PID is not reported")
	}
}

func TestZombiesCommandSeesARealZombie(t *testing.T) {
	// A child of this test process that exits and is not waited for is a zombie.
	cmd := helperCmd(t, runOpts{}, "--version")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := readProcStat("/proc", cmd.Process.Pid)
		if err == nil && p.state == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child never became a zombie")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := runHelper(t, runOpts{}, "zombies", "--pid", itoa(os.Getpid()))
	if r.code != 0 || !regexpMatch(`(?m)^zombies: [1-9]\d*\n(.*\n)*`+itoa(cmd.Process.Pid)+` `, r.stdout) {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestSecondsFlag(t *testing.T) {
	for in, want := range map[string]time.Duration{"2": 2 * time.Second, "0.5": 500 * time.Millisecond, "0": 0} {
		got, err := parseSeconds(in)
		if err != nil || got != want {
			t.Errorf("parseSeconds(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "abc", "NaN", "Inf", "1e300"} {
		if _, err := parseSeconds(bad); err == nil {
			t.Errorf("parseSeconds(%q) accepted", bad)
		}
	}
}

func TestArchiveBase(t *testing.T) {
	for in, want := range map[string]string{
		"/": ".", "": ".", "//": ".", "/server": "server", "/home/nonroot/": "nonroot",
		"a/b": "b", "/a/..": ".", ".": ".", "/etc/.": ".",
	} {
		if got := archiveBase(in); got != want {
			t.Errorf("archiveBase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEntryPath(t *testing.T) {
	good := map[string][]string{
		"a": {"a"}, "./a/b/": {"a", "b"}, "a//b": {"a", "b"}, "./": nil, ".": nil,
	}
	for in, want := range good {
		got, err := entryPath(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("entryPath(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "/etc/passwd", "../x", "a/../../b", "a/..", ".."} {
		if _, err := entryPath(bad); err == nil {
			t.Errorf("entryPath(%q) accepted", bad)
		}
	}
}
