package main

// Paths resolved inside a root directory (by default the target's root as seen through
// /proc/1/root). Every lookup goes through openat2 with RESOLVE_IN_ROOT, so absolute
// symlinks and ".." inside the target resolve against the target's root and never
// reach the sidecar's own filesystem; RESOLVE_NO_MAGICLINKS refuses /proc-style links.

import (
	"path"
	"strings"
	"syscall"
)

const inRoot = resolveInRoot | resolveNoMagiclinks

// openRoot opens dir (following symlinks and magic links: /proc/1/root is one) as the
// directory every later lookup is confined to.
func openRoot(dir string) (int, error) {
	for {
		fd, err := syscall.Open(dir, oPath|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return -1, failf(errnoCode(err), "cannot open the root %s: %s", dir, errnoText(err))
		}
		return fd, nil
	}
}

// resolveIn opens p inside the root rootfd. follow=false leaves a final symlink
// unfollowed (the descriptor then refers to the link itself with oPath).
func resolveIn(rootfd int, p string, flags int, follow bool) (int, error) {
	if !follow {
		flags |= syscall.O_NOFOLLOW
	}
	return openat2(rootfd, p, flags, 0, inRoot)
}

// displayPath is p as the root's own processes name it: absolute and lexically clean
// (for messages only; resolution never uses it).
func displayPath(p string) string {
	return path.Clean("/" + p)
}

// joinDisplay appends an entry name to a display path.
func joinDisplay(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// archiveBase is the name of PATH's top-level entry in an archive: its base name, "."
// for the root itself (and for a PATH ending in "." or "..", whose real name is unknown
// before resolution).
func archiveBase(p string) string {
	trimmed := strings.TrimRight(p, "/")
	if trimmed == "" {
		return "."
	}
	base := path.Base(trimmed)
	if base == "." || base == ".." || base == "/" {
		return "."
	}
	return base
}

// fileType is stat's type name for a mode.
func fileType(mode uint32) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		return "file"
	case syscall.S_IFDIR:
		return "dir"
	case syscall.S_IFLNK:
		return "symlink"
	}
	return "other"
}

// kindName names the special file types that tar-out skips.
func kindName(mode uint32) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFSOCK:
		return "socket"
	case syscall.S_IFIFO:
		return "FIFO"
	case syscall.S_IFCHR:
		return "character device"
	case syscall.S_IFBLK:
		return "block device"
	}
	return fileType(mode)
}

func sameFile(a, b *syscall.Stat_t) bool {
	return a.Dev == b.Dev && a.Ino == b.Ino
}
