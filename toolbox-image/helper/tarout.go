package main

import (
	"archive/tar"
	"bufio"
	"io"
	"net"
	"os"
	"sort"
	"syscall"
	"time"
)

const tarOutUsage = `tar-out [--root DIR] [--follow] [--connect SOCKET] PATH
Writes a tar stream (POSIX ustar, PAX where needed) of PATH, resolved inside DIR
(default /proc/1/root), to stdout: a file, a symlink (stored as a symlink unless
--follow, which follows PATH itself inside DIR) or a directory, recursively. The
top-level entry is PATH's base name ("." for /). Sockets, devices and FIFOs are
skipped with a warning; so are the contents of a directory below PATH on a kernel
pseudo filesystem (proc, sysfs, cgroup...: the target's /proc and /sys), which is
archived empty. Exit 0 ok, 2 PATH not found, 3 permission denied, 4 not a
directory or another resolution error, 6 PATH itself is a socket, device or FIFO,
1 anything else. --connect writes the stream to the unix socket SOCKET instead (cp on a
local engine: a socket of debugkit's in the directory it mounted), after the secret read
from stdin's first line (32 hex digits); exit 7 when SOCKET cannot be reached.
`

// exitNoSocket: tar-out --connect could not reach its socket (the CLI then copies
// through the exec stream).
const exitNoSocket = 7

// copyBufferSize bounds the memory a file copy uses, whatever the file's size.
const copyBufferSize = 1 << 20

func cmdTarOut(args []string) int {
	fs := newFlags("tar-out")
	root := fs.String("root", defaultRoot, "")
	follow := fs.Bool("follow", false, "")
	connect := fs.String("connect", "", "")
	if code, ok := parseFlags(fs, args, tarOutUsage, exitUsage); !ok {
		return code
	}
	if fs.NArg() != 1 || fs.Arg(0) == "" {
		return usageErrorf("tar-out", tarOutUsage, exitUsage, "exactly one non-empty PATH is needed")
	}
	var sink io.Writer = os.Stdout
	if *connect != "" {
		conn, err := connectRelaySocket(*connect, os.Stdin)
		if err != nil {
			return report(err)
		}
		defer conn.Close()
		sink = conn
	}
	out := bufio.NewWriterSize(sink, copyBufferSize)
	err := tarOut(*root, fs.Arg(0), *follow, out, warnf)
	if flushErr := out.Flush(); err == nil && flushErr != nil {
		err = flushErr
	}
	return report(err)
}

// connectRelaySocket connects to debugkit's socket and proves who it is: the secret from
// control's first line, first on the connection.
func connectRelaySocket(path string, control io.Reader) (*net.UnixConn, error) {
	secret, err := readRelaySecret(bufio.NewReaderSize(control, 64))
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, failf(exitNoSocket, "cannot connect to %s: %s", path, errnoText(err))
	}
	if _, err := conn.Write(secret); err != nil {
		conn.Close()
		return nil, failf(exitNoSocket, "cannot write to %s: %s", path, errnoText(err))
	}
	return conn, nil
}

type tarWalker struct {
	tw   *tar.Writer
	buf  []byte
	warn func(format string, args ...interface{})
	// hook, when set (tests only), runs before a directory entry is looked up
	// (stage "lookup") and before it is opened for reading (stage "open").
	hook func(stage, display string)
}

// tarOut writes the archive of p (inside root) to w. On failure the archive stops at
// the last complete entry, without the end-of-archive blocks.
func tarOut(root, p string, follow bool, w io.Writer, warn func(string, ...interface{})) error {
	return tarOutWith(&tarWalker{warn: warn}, root, p, follow, w)
}

func tarOutWith(t *tarWalker, root, p string, follow bool, w io.Writer) error {
	rootfd, err := openRoot(root)
	if err != nil {
		return err
	}
	defer closeFd(rootfd)
	display := displayPath(p)
	pfd, err := resolveIn(rootfd, p, oPath, follow)
	if err != nil {
		return failf(errnoCode(err), "%s: %s", display, errnoText(err))
	}
	defer closeFd(pfd)
	st, err := fstat(pfd)
	if err != nil {
		return failf(errnoCode(err), "%s: %s", display, errnoText(err))
	}
	t.tw = tar.NewWriter(w)
	t.buf = make([]byte, copyBufferSize)
	name := archiveBase(p)
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFLNK:
		target, err := readlinkat(pfd, "")
		if err != nil {
			return failf(errnoCode(err), "%s: %s", display, errnoText(err))
		}
		err = t.writeSymlink(name, target, &st)
		if err != nil {
			return err
		}
	case syscall.S_IFREG, syscall.S_IFDIR:
		// Opened again for reading, through the same confined resolution; the
		// descriptor must still be the file just examined.
		flags := syscall.O_RDONLY | syscall.O_NONBLOCK | syscall.O_NOCTTY
		if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			flags = syscall.O_RDONLY | syscall.O_DIRECTORY
		}
		fd, err := resolveIn(rootfd, p, flags, follow)
		if err != nil {
			return failf(errnoCode(err), "%s: %s", display, errnoText(err))
		}
		defer closeFd(fd)
		st2, err := fstat(fd)
		if err != nil {
			return failf(errnoCode(err), "%s: %s", display, errnoText(err))
		}
		if !sameFile(&st, &st2) {
			return failf(exitFailure, "%s: changed while it was being opened", display)
		}
		if st2.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			if name != "." {
				name += "/"
			} else {
				name = "./"
			}
			if err := t.writeDir(fd, name, display, &st2); err != nil {
				return err
			}
		} else if err := t.writeFile(fd, name, display, &st2); err != nil {
			return err
		}
	default:
		return failf(exitSpecial, "%s is a %s: only regular files, directories and symlinks are copied",
			display, kindName(st.Mode))
	}
	return t.tw.Close()
}

func header(name string, st *syscall.Stat_t, typeflag byte) *tar.Header {
	return &tar.Header{
		Typeflag: typeflag,
		Name:     name,
		Mode:     int64(st.Mode & 07777),
		Uid:      int(st.Uid),
		Gid:      int(st.Gid),
		ModTime:  time.Unix(st.Mtim.Sec, 0),
	}
}

func (t *tarWalker) writeSymlink(name, target string, st *syscall.Stat_t) error {
	h := header(name, st, tar.TypeSymlink)
	h.Linkname = target
	return t.tw.WriteHeader(h)
}

// writeFile writes the header with the size fstat reported, then exactly that many
// bytes: a file that shrinks meanwhile is padded with zeros, one that grows is cut.
func (t *tarWalker) writeFile(fd int, name, display string, st *syscall.Stat_t) error {
	h := header(name, st, tar.TypeReg)
	h.Size = st.Size
	if err := t.tw.WriteHeader(h); err != nil {
		return err
	}
	remaining := st.Size
	for remaining > 0 {
		chunk := t.buf
		if int64(len(chunk)) > remaining {
			chunk = chunk[:remaining]
		}
		n, err := readFd(fd, chunk)
		if err != nil {
			return failf(errnoCode(err), "%s: read error: %s", display, errnoText(err))
		}
		if n == 0 {
			t.warn("%s shrank while it was archived; padded with %d zero bytes to its size of %d", display, remaining, st.Size)
			zero := t.buf[:min64(remaining, int64(len(t.buf)))]
			for i := range zero {
				zero[i] = 0
			}
			for remaining > 0 {
				k := min64(remaining, int64(len(zero)))
				if _, err := t.tw.Write(zero[:k]); err != nil {
					return err
				}
				remaining -= k
			}
			break
		}
		if _, err := t.tw.Write(chunk[:n]); err != nil {
			return err
		}
		remaining -= int64(n)
	}
	if n, _ := readFd(fd, t.buf[:1]); n > 0 {
		t.warn("%s grew while it was archived; cut to its size of %d", display, st.Size)
	}
	return nil
}

func (t *tarWalker) writeDir(fd int, name, display string, st *syscall.Stat_t) error {
	if err := t.tw.WriteHeader(header(name, st, tar.TypeDir)); err != nil {
		return err
	}
	names, err := readDirNames(fd)
	if err != nil {
		return failf(errnoCode(err), "%s: cannot list it: %s", display, errnoText(err))
	}
	sort.Strings(names)
	for _, entry := range names {
		if err := t.entry(fd, entry, name+entry, joinDisplay(display, entry)); err != nil {
			return err
		}
	}
	return nil
}

// entry archives one directory entry. Every open is relative to the directory's
// descriptor with O_NOFOLLOW, so a symlink swapped in meanwhile is never followed,
// and the type is checked again on the descriptor that is read.
func (t *tarWalker) entry(dirfd int, base, name, display string) error {
	if t.hook != nil {
		t.hook("lookup", display)
	}
	pfd, err := openat(dirfd, base, oPath|syscall.O_NOFOLLOW, 0)
	if isErrno(err, syscall.ENOENT) {
		t.warn("%s vanished while it was archived; skipped", display)
		return nil
	}
	if err != nil {
		return failf(errnoCode(err), "%s: %s", display, errnoText(err))
	}
	defer closeFd(pfd)
	st, err := fstat(pfd)
	if err != nil {
		return failf(errnoCode(err), "%s: %s", display, errnoText(err))
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFLNK:
		target, err := readlinkat(pfd, "")
		if err != nil {
			return failf(errnoCode(err), "%s: %s", display, errnoText(err))
		}
		return t.writeSymlink(name, target, &st)
	case syscall.S_IFREG, syscall.S_IFDIR:
		isDir := st.Mode&syscall.S_IFMT == syscall.S_IFDIR
		flags := syscall.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_NOCTTY
		if isDir {
			flags = syscall.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_DIRECTORY
		}
		if t.hook != nil {
			t.hook("open", display)
		}
		fd, err := openat(dirfd, base, flags, 0)
		if isErrno(err, syscall.ENOENT, syscall.ELOOP, syscall.ENOTDIR) {
			t.warn("%s changed while it was archived; skipped", display)
			return nil
		}
		if err != nil {
			return failf(errnoCode(err), "%s: %s", display, errnoText(err))
		}
		defer closeFd(fd)
		st2, err := fstat(fd)
		if err != nil {
			return failf(errnoCode(err), "%s: %s", display, errnoText(err))
		}
		if !sameFile(&st, &st2) || st2.Mode&syscall.S_IFMT != st.Mode&syscall.S_IFMT {
			t.warn("%s changed while it was archived; skipped", display)
			return nil
		}
		if isDir {
			if kind := pseudoFS(fd); kind != "" {
				// The target's /proc, /sys and the like: kernel state, not files (and
				// endless, or unreadable). The directory is kept, empty, as docker cp does.
				t.warn("skipping the contents of %s: a %s filesystem", display, kind)
				return t.tw.WriteHeader(header(name+"/", &st2, tar.TypeDir))
			}
			return t.writeDir(fd, name+"/", display, &st2)
		}
		return t.writeFile(fd, name, display, &st2)
	default:
		t.warn("skipping %s: a %s", display, kindName(st.Mode))
		return nil
	}
}

// pseudoFilesystems are the kernel's virtual filesystems that tar-out does not descend
// into below its top entry (statfs f_type magic numbers, linux/magic.h).
var pseudoFilesystems = map[int64]string{
	0x9fa0:     "proc",
	0x62656572: "sysfs",
	0x1cd1:     "devpts",
	0x27e0eb:   "cgroup",
	0x63677270: "cgroup2",
	0x19800202: "mqueue",
	0x64626720: "debugfs",
	0x74726163: "tracefs",
	0x73636673: "securityfs",
	0xcafe4a11: "bpf",
	0x6165676c: "pstore",
	0x62656570: "configfs",
	0x65735543: "fusectl",
	0x42494e4d: "binfmt_misc",
}

// pseudoFS names the pseudo filesystem a directory descriptor is on, or "".
func pseudoFS(fd int) string {
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(fd, &st); err != nil {
		return ""
	}
	return pseudoFilesystems[int64(st.Type)]
}

// readDirNames lists a directory descriptor's entries (without "." and "..").
func readDirNames(fd int) ([]string, error) {
	buf := make([]byte, 64<<10)
	var names []string
	for {
		n, err := syscall.Getdents(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = syscall.ParseDirent(buf[:n], -1, names)
	}
}

func readFd(fd int, p []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, p)
		if err == syscall.EINTR || err == syscall.EAGAIN {
			continue
		}
		if n < 0 {
			n = 0
		}
		return n, err
	}
}

func min64(a, b int64) int64 {
	if a < b {
		return a
	}
	return b
}
