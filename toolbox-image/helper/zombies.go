package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

const zombiesUsage = `zombies [--pid PID]
Lists the zombie (state Z) children of PID (default 1, the target's main process):
"zombies: N", then "PID COMM" for each (COMM's non-printable bytes as \xNN).
Exit 0; 1 when PID does not exist, 2 for usage errors.
`

func cmdZombies(args []string) int {
	fs := newFlags("zombies")
	pid := fs.Int("pid", 1, "")
	if code, ok := parseFlags(fs, args, zombiesUsage, exitUsage); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return usageErrorf("zombies", zombiesUsage, exitUsage, "unexpected argument %q", fs.Arg(0))
	}
	if *pid <= 0 {
		return usageErrorf("zombies", zombiesUsage, exitUsage, "not a PID: %d", *pid)
	}
	text, err := zombiesReport("/proc", *pid)
	if err != nil {
		return report(err)
	}
	fmt.Print(text)
	return exitOK
}

// zombiesReport is the zombies output for the children of pid, read from procDir.
func zombiesReport(procDir string, pid int) (string, error) {
	if _, err := os.Stat(procDir + "/" + strconv.Itoa(pid)); err != nil {
		return "", failf(exitFailure, "no process with PID %d", pid)
	}
	procs, err := listProcs(procDir)
	if err != nil {
		return "", failf(exitFailure, "cannot list processes: %v", err)
	}
	var zombies []procStat
	for _, p := range procs {
		if p.ppid == pid && p.state == 'Z' {
			zombies = append(zombies, p)
		}
	}
	sort.Slice(zombies, func(i, j int) bool { return zombies[i].pid < zombies[j].pid })
	var b strings.Builder
	fmt.Fprintf(&b, "zombies: %d\n", len(zombies))
	for _, z := range zombies {
		fmt.Fprintf(&b, "%d %s\n", z.pid, escapeComm(z.comm))
	}
	return b.String(), nil
}
