package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const sampleStatus = "Name:\tpostgres\nUmask:\t0077\nState:\tS (sleeping)\nUid:\t0\t7777\t7777\t7777\n" +
	"Gid:\t0\t7778\t7778\t7778\nFDSize:\t64\nGroups:\t7779 7780 \nNStgid:\t1\n"

func TestParseIdentityTakesTheEffectiveIDsAndGroups(t *testing.T) {
	id, err := parseIdentity([]byte(sampleStatus))
	if err != nil {
		t.Fatal(err)
	}
	want := processIdentity{uid: 7777, gid: 7778, groups: []int{7779, 7780}}
	if !reflect.DeepEqual(id, want) {
		t.Fatalf("got %+v, want %+v", id, want)
	}
	noGroups, err := parseIdentity([]byte("Uid:\t1\t2\t2\t2\nGid:\t3\t4\t4\t4\nGroups:\t\n"))
	if err != nil || noGroups.uid != 2 || noGroups.gid != 4 || len(noGroups.groups) != 0 {
		t.Fatalf("got %+v, %v", noGroups, err)
	}
	for _, bad := range []string{"Name:\tx\n", "Uid:\t0\nGid:\t0\t0\n", "Uid:\t0\t-1\t0\t0\nGid:\t0\t0\t0\t0\n",
		"Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\tx\n"} {
		if _, err := parseIdentity([]byte(bad)); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

// The helper, run as root with every capability (the test runs as root), takes the
// identity of a status file and ends with none of the capabilities it had.
func TestAsTargetRunsAsTheProcessWithNoCapability(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing the UID needs root")
	}
	dir := t.TempDir()
	openTree(t, dir)
	status := filepath.Join(dir, "status")
	writeFile(t, status, sampleStatus, 0644)
	r := runHelper(t, runOpts{}, "as-target", "--status", status, "--", "/bin/sh", "-c",
		`grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapAmb|NoNewPrivs):' /proc/self/status`)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		key, value, _ := strings.Cut(line, ":")
		fields[key] = strings.Join(strings.Fields(value), " ")
	}
	want := map[string]string{"Uid": "7777 7777 7777 7777", "Gid": "7778 7778 7778 7778", "Groups": "7779 7780",
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapAmb": "0000000000000000", "NoNewPrivs": "1"}
	if !reflect.DeepEqual(fields, want) {
		t.Fatalf("got %v, want %v", fields, want)
	}

	// A target that runs as root: UID 0, and still no capability.
	writeFile(t, status, "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n", 0644)
	r = runHelper(t, runOpts{}, "as-target", "--status", status, "--", "/bin/sh", "-c",
		`grep -E '^(Uid|CapEff|CapPrm):' /proc/self/status`)
	if r.code != 0 || !strings.Contains(r.stdout, "CapEff:\t0000000000000000") ||
		!strings.Contains(r.stdout, "CapPrm:\t0000000000000000") || !strings.Contains(r.stdout, "Uid:\t0\t0\t0\t0") {
		t.Fatalf("exit %d: %q %s", r.code, r.stdout, r.stderr)
	}
}

func TestAsTargetFailures(t *testing.T) {
	dir := t.TempDir()
	openTree(t, dir)
	r := runHelper(t, runOpts{}, "as-target", "--status", filepath.Join(dir, "absent"), "--", "true")
	if r.code != exitReapError {
		t.Fatalf("unreadable status: exit %d, want %d", r.code, exitReapError)
	}
	assertOneErrorLine(t, r, "cannot read the target's user")
	status := filepath.Join(dir, "status")
	writeFile(t, status, sampleStatus, 0644)
	r = runHelper(t, runOpts{}, "as-target", "--status", status, "--", "no-such-command-here")
	if r.code != exitCmdNotFound {
		t.Fatalf("missing command: exit %d, want %d", r.code, exitCmdNotFound)
	}
	assertOneErrorLine(t, r, "command not found")
	r = runHelper(t, runOpts{}, "as-target")
	if r.code != exitUsage {
		t.Fatalf("no command: exit %d, want %d", r.code, exitUsage)
	}
	if os.Geteuid() == 0 {
		// Without CAP_SETUID (another user), taking the identity fails, and nothing runs.
		r = runHelper(t, runOpts{uid: otherUser(t)}, "as-target", "--status", status, "--", "/bin/echo", "ran")
		if r.code != exitReapError || strings.Contains(r.stdout, "ran") {
			t.Fatalf("without CAP_SETUID: exit %d, stdout %q", r.code, r.stdout)
		}
		assertOneErrorLine(t, r, "cannot run as the target's user 7777:7778")
	}
}
