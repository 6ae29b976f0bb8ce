package main

// Raw system calls the syscall package does not wrap (it is frozen). Linux only; the
// architecture-specific numbers are in sys_amd64.go and sys_arm64.go.

import (
	"errors"
	"syscall"
	"unsafe"
)

const (
	// Syscalls added after the unified numbering (Linux 5.x): the same on every arch.
	sysPidfdSendSignal = 424
	sysPidfdOpen       = 434
	sysOpenat2         = 437

	oPath        = 0x200000 // O_PATH
	atEmptyPath  = 0x1000   // AT_EMPTY_PATH
	atSymlinkNoF = 0x100    // AT_SYMLINK_NOFOLLOW
	atRemoveDir  = 0x200    // AT_REMOVEDIR
	renameNoRepl = 0x1      // RENAME_NOREPLACE

	resolveNoMagiclinks = 0x02
	resolveNoSymlinks   = 0x04
	resolveInRoot       = 0x10

	prSetChildSubreaper = 36
	prSetDumpable       = 4
	wAll                = 0x40000000 // __WALL: children of any kind
)

// openHow is struct open_how of openat2(2).
type openHow struct {
	Flags   uint64
	Mode    uint64
	Resolve uint64
}

// openat2 opens path relative to dirfd with the given RESOLVE_* flags. O_CLOEXEC is
// always added. EAGAIN (a concurrent rename while resolving "..") and EINTR are retried.
func openat2(dirfd int, path string, flags int, mode uint32, resolve uint64) (int, error) {
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return -1, err
	}
	how := openHow{Flags: uint64(flags | syscall.O_CLOEXEC), Mode: uint64(mode), Resolve: resolve}
	for attempt := 0; ; attempt++ {
		fd, _, errno := syscall.Syscall6(sysOpenat2, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
			uintptr(unsafe.Pointer(&how)), unsafe.Sizeof(how), 0, 0)
		if errno == syscall.EINTR || (errno == syscall.EAGAIN && attempt < 1000) {
			continue
		}
		if errno == syscall.ENOSYS {
			return -1, errNoOpenat2
		}
		if errno != 0 {
			return -1, errno
		}
		return int(fd), nil
	}
}

var errNoOpenat2 = errors.New("this kernel has no openat2 (Linux 5.6 or later is needed), or a seccomp profile refuses it")

// openat is openat(2) with O_CLOEXEC, retried on EINTR.
func openat(dirfd int, path string, flags int, mode uint32) (int, error) {
	for {
		fd, err := syscall.Openat(dirfd, path, flags|syscall.O_CLOEXEC, mode)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// fstat is fstat(2); it works on O_PATH descriptors too.
func fstat(fd int) (syscall.Stat_t, error) {
	var st syscall.Stat_t
	err := syscall.Fstat(fd, &st)
	return st, err
}

// readlinkat reads the target of a symbolic link; with an O_PATH|O_NOFOLLOW descriptor
// of the link itself, name is "".
func readlinkat(dirfd int, name string) (string, error) {
	p, err := syscall.BytePtrFromString(name)
	if err != nil {
		return "", err
	}
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, _, errno := syscall.Syscall6(syscall.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
			uintptr(unsafe.Pointer(&buf[0])), uintptr(size), 0, 0)
		if errno != 0 {
			return "", errno
		}
		if int(n) < size {
			return string(buf[:n]), nil
		}
	}
}

func symlinkat(target string, dirfd int, name string) error {
	t, err := syscall.BytePtrFromString(target)
	if err != nil {
		return err
	}
	p, err := syscall.BytePtrFromString(name)
	if err != nil {
		return err
	}
	_, _, errno := syscall.Syscall(syscall.SYS_SYMLINKAT, uintptr(unsafe.Pointer(t)), uintptr(dirfd), uintptr(unsafe.Pointer(p)))
	if errno != 0 {
		return errno
	}
	return nil
}

func linkat(olddirfd int, oldname string, newdirfd int, newname string) error {
	o, err := syscall.BytePtrFromString(oldname)
	if err != nil {
		return err
	}
	n, err := syscall.BytePtrFromString(newname)
	if err != nil {
		return err
	}
	_, _, errno := syscall.Syscall6(syscall.SYS_LINKAT, uintptr(olddirfd), uintptr(unsafe.Pointer(o)),
		uintptr(newdirfd), uintptr(unsafe.Pointer(n)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func unlinkat(dirfd int, name string, flags int) error {
	p, err := syscall.BytePtrFromString(name)
	if err != nil {
		return err
	}
	_, _, errno := syscall.Syscall(syscall.SYS_UNLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(flags))
	if errno != 0 {
		return errno
	}
	return nil
}

// renameat2 is renameat2(2); flags 0 is a plain renameat.
func renameat2(olddirfd int, oldname string, newdirfd int, newname string, flags uint) error {
	o, err := syscall.BytePtrFromString(oldname)
	if err != nil {
		return err
	}
	n, err := syscall.BytePtrFromString(newname)
	if err != nil {
		return err
	}
	_, _, errno := syscall.Syscall6(sysRenameat2, uintptr(olddirfd), uintptr(unsafe.Pointer(o)),
		uintptr(newdirfd), uintptr(unsafe.Pointer(n)), uintptr(flags), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// utimensat sets atime and mtime of name in dirfd, or of dirfd itself when name is "".
func utimensat(dirfd int, name string, atime, mtime syscall.Timespec, flags int) error {
	ts := [2]syscall.Timespec{atime, mtime}
	var p *byte
	if name != "" {
		var err error
		if p, err = syscall.BytePtrFromString(name); err != nil {
			return err
		}
	}
	_, _, errno := syscall.Syscall6(syscall.SYS_UTIMENSAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		uintptr(unsafe.Pointer(&ts[0])), uintptr(flags), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func setChildSubreaper() error {
	_, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0, 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// setNotDumpable makes this process non-dumpable: its /proc/PID files (fd/, mem,
// environ...) then belong to root, and a process of the same UID without
// CAP_SYS_PTRACE (the target's, which shares the sidecar's PID namespace and user)
// can neither open its file descriptors nor read its memory. Execve resets it for a
// program the helper starts (except for an unreadable binary: the image installs the
// helper 0711, which makes it non-dumpable from its very first instruction).
func setNotDumpable() error {
	_, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetDumpable, 0, 0, 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func pidfdOpen(pid int) (int, error) {
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if errno != 0 {
		return -1, errno
	}
	syscall.CloseOnExec(int(fd))
	return int(fd), nil
}

func pidfdSendSignal(pidfd int, sig syscall.Signal) error {
	_, _, errno := syscall.Syscall6(sysPidfdSendSignal, uintptr(pidfd), uintptr(sig), 0, 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// tcgetpgrp is the foreground process group of the terminal on fd.
func tcgetpgrp(fd int) (int, error) {
	var pgrp int32
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&pgrp)))
	if errno != 0 {
		return 0, errno
	}
	return int(pgrp), nil
}

// closeFd closes a descriptor, ignoring errors (for descriptors only read from).
func closeFd(fd int) {
	if fd >= 0 {
		_ = syscall.Close(fd)
	}
}

// readable polls fd once, without waiting.
func readable(fd int) bool {
	type pollFd struct {
		fd      int32
		events  int16
		revents int16
	}
	const pollIn = 0x1
	fds := [1]pollFd{{fd: int32(fd), events: pollIn}}
	var ts syscall.Timespec
	n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), 1,
		uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	return errno == 0 && n > 0 && fds[0].revents&pollIn != 0
}
