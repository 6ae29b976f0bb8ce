package main

// as-target: run a command as the target's process runs. On Kubernetes, when neither the
// pod's spec nor its image names a user (an image that starts as root and drops to
// another user itself, as postgres does through gosu), the debug container starts as a
// minimal identity probe: root with only CAP_SETUID and CAP_SETGID. Every command then
// goes through here: read the effective UID, GID and groups of the target's PID 1 from
// /proc/1/status (world-readable in the shared PID namespace), take exactly those, drop
// every capability, and exec the command. Doing it here rather than in a shell script
// with util-linux's setpriv works in the slim toolbox too (busybox's setpriv cannot
// change the UID) and costs no shell and no second exec.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

const asTargetUsage = `as-target [--status FILE] -- COMMAND [ARG...]
Run COMMAND with the effective UID, GID and groups of the target's PID 1 (read from
/proc/1/status, or FILE), with no capability and no_new_privs set. Exits 125 when the
identity cannot be read or taken, 127 when COMMAND is not found.
`

type processIdentity struct {
	uid, gid int
	groups   []int
}

// parseIdentity reads the effective UID and GID (the second of the four numbers on the
// Uid: and Gid: lines) and the supplementary groups of a /proc/PID/status.
func parseIdentity(status []byte) (processIdentity, error) {
	id := processIdentity{uid: -1, gid: -1}
	scanner := bufio.NewScanner(bytes.NewReader(status))
	for scanner.Scan() {
		key, rest, _ := strings.Cut(scanner.Text(), ":")
		fields := strings.Fields(rest)
		switch key {
		case "Uid", "Gid":
			if len(fields) < 2 {
				return id, fmt.Errorf("malformed %s line", key)
			}
			n, err := strconv.Atoi(fields[1])
			if err != nil || n < 0 {
				return id, fmt.Errorf("malformed %s line", key)
			}
			if key == "Uid" {
				id.uid = n
			} else {
				id.gid = n
			}
		case "Groups":
			for _, f := range fields {
				n, err := strconv.Atoi(f)
				if err != nil || n < 0 {
					return id, fmt.Errorf("malformed Groups line")
				}
				id.groups = append(id.groups, n)
			}
		}
	}
	if id.uid < 0 || id.gid < 0 {
		return id, fmt.Errorf("no Uid or Gid line")
	}
	return id, nil
}

func cmdAsTarget(args []string) int {
	fs := newFlags("as-target")
	statusFile := fs.String("status", "/proc/1/status", "")
	if code, ok := parseFlags(fs, args, asTargetUsage, exitUsage); !ok {
		return code
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return usageErrorf("as-target", asTargetUsage, exitUsage, "no command given")
	}
	data, err := os.ReadFile(*statusFile)
	if err != nil {
		errorf("cannot read the target's user from %s: %v", *statusFile, err)
		return exitReapError
	}
	id, err := parseIdentity(data)
	if err != nil {
		errorf("cannot read the target's user from %s: %v", *statusFile, err)
		return exitReapError
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		errorf("%s: command not found", argv[0])
		return exitCmdNotFound
	}
	// The capability drop is per thread, and execve keeps the calling thread's: stay on one.
	runtime.LockOSThread()
	if err := becomeTarget(id); err != nil {
		errorf("cannot run as the target's user %d:%d: %v", id.uid, id.gid, err)
		return exitReapError
	}
	err = syscall.Exec(path, argv, os.Environ())
	errorf("cannot run %s: %v", argv[0], err)
	if err == syscall.ENOENT {
		return exitCmdNotFound
	}
	return exitReapError
}

// becomeTarget takes the identity (groups first: setuid gives up the right to change
// them), then drops whatever capability is left (a target that runs as UID 0 keeps its
// capabilities through setuid(0)) and sets no_new_privs, so that no setuid binary or file
// capability gives any back. Go's Setgroups, Setgid and Setuid apply to every thread.
func becomeTarget(id processIdentity) error {
	if err := syscall.Setgroups(id.groups); err != nil {
		return fmt.Errorf("setgroups: %v", err)
	}
	if err := syscall.Setgid(id.gid); err != nil {
		return fmt.Errorf("setgid: %v", err)
	}
	if err := syscall.Setuid(id.uid); err != nil {
		return fmt.Errorf("setuid: %v", err)
	}
	if err := dropCapabilities(); err != nil {
		return fmt.Errorf("dropping capabilities: %v", err)
	}
	return nil
}

const (
	linuxCapabilityVersion3 = 0x20080522
	prSetNoNewPrivs         = 38
	prCapAmbient            = 47
	prCapAmbientClearAll    = 4
)

// dropCapabilities empties this thread's effective, permitted and inheritable sets and
// the ambient set, and sets no_new_privs.
func dropCapabilities() error {
	header := struct {
		version uint32
		pid     int32
	}{linuxCapabilityVersion3, 0}
	var data [2]struct{ effective, permitted, inheritable uint32 }
	if _, _, errno := syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&header)),
		uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
		return fmt.Errorf("capset: %v", errno)
	}
	// EINVAL: a kernel without ambient capabilities (before 4.3) has none to clear.
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prCapAmbient, prCapAmbientClearAll, 0, 0, 0,
		0); errno != 0 && errno != syscall.EINVAL {
		return fmt.Errorf("clearing ambient capabilities: %v", errno)
	}
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0, 0, 0, 0); errno != 0 {
		return fmt.Errorf("no_new_privs: %v", errno)
	}
	return nil
}
