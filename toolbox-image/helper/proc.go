package main

// /proc parsing: process state, parent, process group and start time, and the
// descendants of a process. The sidecar shares the target's PID namespace, so /proc
// lists the target's processes too: only processes whose parent chain reaches the
// reaper are ever treated as its descendants.

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

type procStat struct {
	pid   int
	comm  string
	state byte
	ppid  int
	pgrp  int
	start uint64 // starttime, in clock ticks since boot: tells a reused PID apart
}

// parseStat parses /proc/PID/stat. The command name is in parentheses and may itself
// contain spaces and parentheses, so the fields after it start after the last ')'.
func parseStat(data []byte) (procStat, error) {
	var p procStat
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return p, fmt.Errorf("malformed stat line")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(data[:open])))
	if err != nil {
		return p, fmt.Errorf("malformed pid in stat line: %v", err)
	}
	p.pid = pid
	p.comm = string(data[open+1 : end])
	// Fields from 3 (state) on; starttime is field 22.
	fields := strings.Fields(string(data[end+1:]))
	if len(fields) < 20 {
		return p, fmt.Errorf("short stat line (%d fields after the name)", len(fields))
	}
	if len(fields[0]) != 1 {
		return p, fmt.Errorf("malformed state %q", fields[0])
	}
	p.state = fields[0][0]
	if p.ppid, err = strconv.Atoi(fields[1]); err != nil {
		return p, fmt.Errorf("malformed ppid: %v", err)
	}
	if p.pgrp, err = strconv.Atoi(fields[2]); err != nil {
		return p, fmt.Errorf("malformed pgrp: %v", err)
	}
	if p.start, err = strconv.ParseUint(fields[19], 10, 64); err != nil {
		return p, fmt.Errorf("malformed starttime: %v", err)
	}
	return p, nil
}

func readProcStat(procDir string, pid int) (procStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procDir, pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(data)
}

// listProcs reads the stat of every process in procDir; processes that exit while
// it runs are left out.
func listProcs(procDir string) ([]procStat, error) {
	d, err := os.Open(procDir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	procs := make([]procStat, 0, len(names))
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 {
			continue
		}
		p, err := readProcStat(procDir, pid)
		if err != nil {
			continue
		}
		procs = append(procs, p)
	}
	return procs, nil
}

// descendants are the processes whose chain of parents reaches ancestor (not ancestor
// itself). A chain that breaks (a parent exited meanwhile) or loops is not followed.
func descendants(procs []procStat, ancestor int) []procStat {
	parent := make(map[int]int, len(procs))
	for _, p := range procs {
		parent[p.pid] = p.ppid
	}
	known := map[int]bool{}
	var below func(pid int, depth int) bool
	below = func(pid int, depth int) bool {
		if v, ok := known[pid]; ok {
			return v
		}
		pp, ok := parent[pid]
		var v bool
		switch {
		case !ok || pp <= 0 || depth > len(procs):
			v = false
		case pp == ancestor:
			v = true
		case pp == pid:
			v = false
		default:
			v = below(pp, depth+1)
		}
		known[pid] = v
		return v
	}
	var out []procStat
	for _, p := range procs {
		if p.pid != ancestor && below(p.pid, 0) {
			out = append(out, p)
		}
	}
	return out
}

// escapeComm makes a command name printable: bytes outside printable ASCII, and the
// backslash itself, become \xNN.
func escapeComm(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '\\' {
			fmt.Fprintf(&b, `\x%02x`, c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
