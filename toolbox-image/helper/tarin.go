package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

const tarInUsage = `tar-in [--root DIR] [--force] [--connect SOCKET] DESTDIR
Reads a tar stream from stdin and creates its entries under DESTDIR, resolved inside
DIR (default /proc/1/root). Entry names must be relative, without "..". No symlink is
followed below DESTDIR. Files are written to a temporary name and renamed into place;
an existing entry is not replaced without --force (a directory merges into an
existing one). Exit 0 ok, 2 DESTDIR not found, 3 permission denied, 4 DESTDIR (or a
parent of an entry) not a directory, 5 an entry exists, 1 anything else (a bad name,
a truncated archive, ...). Nothing partially written is left behind. --connect reads
the stream from the unix socket SOCKET instead (cp on a local engine), after writing
the secret read from stdin's first line (32 hex digits) to it; exit 7 when SOCKET
cannot be reached.
`

// tmpPrefix starts the names of files tar-in writes before renaming them into place.
const tmpPrefix = ".debugkit-helper-"

// parentResolve confines every lookup below DESTDIR: no symlink at all is followed.
const parentResolve = resolveInRoot | resolveNoMagiclinks | resolveNoSymlinks

func cmdTarIn(args []string) int {
	fs := newFlags("tar-in")
	root := fs.String("root", defaultRoot, "")
	force := fs.Bool("force", false, "")
	connect := fs.String("connect", "", "")
	if code, ok := parseFlags(fs, args, tarInUsage, exitUsage); !ok {
		return code
	}
	if fs.NArg() != 1 || fs.Arg(0) == "" {
		return usageErrorf("tar-in", tarInUsage, exitUsage, "exactly one non-empty DESTDIR is needed")
	}
	ex := &extractor{force: *force, warn: warnf}
	// A signal must not leave a half-written file: remove it, then exit as killed.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	go func() {
		s := <-sigs
		ex.abandon()
		errorf("interrupted by %v; the entry being written was removed", s)
		os.Exit(128 + int(s.(syscall.Signal)))
	}()
	var archive io.Reader = os.Stdin
	if *connect != "" {
		conn, err := connectRelaySocket(*connect, os.Stdin)
		if err != nil {
			return report(err)
		}
		defer conn.Close()
		archive = conn
	}
	return report(ex.run(*root, fs.Arg(0), archive))
}

type pendingDir struct {
	name  string
	mode  uint32
	mtime time.Time
	atime time.Time
}

type extractor struct {
	force bool
	warn  func(format string, args ...interface{})
	// afterEntry, when set (tests only), runs after each entry was created.
	afterEntry func(name string)

	destfd  int
	buf     []byte
	dirs    []pendingDir    // directories created here, for their mode and mtime at the end
	created map[string]bool // directories created here (explicitly or as parents)
	seq     int

	mu       sync.Mutex
	tmpDirfd int // where tmpName lives while a file is written; -1 when none
	tmpName  string
	done     bool // after abandon: create nothing more

	cacheName string // the last parent directory opened, kept open
	cacheFd   int
}

// extract reads an archive from r into dest (inside root).
func (ex *extractor) run(root, dest string, r io.Reader) error {
	ex.tmpDirfd, ex.cacheFd, ex.destfd = -1, -1, -1
	ex.created = map[string]bool{}
	rootfd, err := openRoot(root)
	if err != nil {
		return err
	}
	defer closeFd(rootfd)
	display := displayPath(dest)
	destfd, err := resolveIn(rootfd, dest, oPath|syscall.O_DIRECTORY, true)
	if err != nil {
		return failf(errnoCode(err), "%s: %s", display, errnoText(err))
	}
	ex.destfd = destfd
	defer closeFd(destfd)
	defer ex.dropCache()
	ex.buf = make([]byte, copyBufferSize)
	err = ex.entries(tar.NewReader(r))
	ex.abandon()
	// Modes and mtimes of the directories made here: after their contents, innermost
	// first, also after a failure (they are complete, if not filled).
	for i := len(ex.dirs) - 1; i >= 0; i-- {
		if ferr := ex.finishDir(ex.dirs[i]); ferr != nil && err == nil {
			err = ferr
		}
	}
	return err
}

func (ex *extractor) entries(tr *tar.Reader) error {
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return failf(exitFailure, "the archive is cut short")
			}
			return failf(exitFailure, "not a readable tar archive: %v", err)
		}
		if err := ex.entry(h, tr); err != nil {
			return err
		}
		if ex.afterEntry != nil {
			ex.afterEntry(h.Name)
		}
	}
}

// entryPath splits an archive name into its components: relative, no "..", no empty
// or "." components (an empty result names DESTDIR itself).
func entryPath(name string) ([]string, error) {
	if name == "" {
		return nil, fmt.Errorf("an entry has an empty name")
	}
	if strings.HasPrefix(name, "/") {
		return nil, fmt.Errorf("refusing the absolute entry name %q", name)
	}
	var parts []string
	for _, part := range strings.Split(name, "/") {
		switch part {
		case "", ".":
			continue
		case "..":
			return nil, fmt.Errorf("refusing the entry name %q: it has a '..' component", name)
		}
		parts = append(parts, part)
	}
	return parts, nil
}

func (ex *extractor) entry(h *tar.Header, tr *tar.Reader) error {
	parts, err := entryPath(h.Name)
	if err != nil {
		return failf(exitFailure, "%v", err)
	}
	name := strings.Join(parts, "/")
	switch h.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeDir:
		if len(parts) == 0 {
			return nil // DESTDIR itself: merge, and leave its own mode alone
		}
		return ex.dir(parts, name, h)
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeCont:
		if len(parts) == 0 {
			return failf(exitFailure, "refusing a file entry named %q", h.Name)
		}
		return ex.file(parts, name, h, tr)
	case tar.TypeSymlink, tar.TypeLink:
		if len(parts) == 0 {
			return failf(exitFailure, "refusing a link entry named %q", h.Name)
		}
		return ex.link(parts, name, h)
	default:
		ex.warn("skipping %s: %s entries are not extracted", name, typeName(h.Typeflag))
		return nil
	}
}

func typeName(flag byte) string {
	switch flag {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "FIFO"
	}
	return fmt.Sprintf("type %q", flag)
}

// parent opens the directory holding parts' last component, creating missing parents
// (0755 less the umask). No symlink is followed, in the archive's names or in the target.
func (ex *extractor) parent(parts []string, name string) (int, error) {
	dir := strings.Join(parts[:len(parts)-1], "/")
	if dir == "" {
		return ex.destfd, nil
	}
	if ex.cacheFd >= 0 && ex.cacheName == dir {
		return ex.cacheFd, nil
	}
	fd, err := openat2(ex.destfd, dir, oPath|syscall.O_DIRECTORY, 0, parentResolve)
	if isErrno(err, syscall.ENOENT) {
		fd, err = ex.makeParents(parts[:len(parts)-1])
	}
	if err != nil {
		var ce *cliError
		if errors.As(err, &ce) {
			return -1, err
		}
		return -1, ex.parentError(name, dir, err)
	}
	ex.dropCache()
	ex.cacheName, ex.cacheFd = dir, fd
	return fd, nil
}

func (ex *extractor) parentError(name, dir string, err error) error {
	switch {
	case isErrno(err, syscall.ELOOP):
		return failf(exitResolve, "%s: %s is a symbolic link; refusing to write through it", name, dir)
	case isErrno(err, syscall.ENOTDIR):
		return failf(exitResolve, "%s: %s is not a directory", name, dir)
	case isErrno(err, syscall.EACCES, syscall.EPERM):
		return failf(exitPermission, "%s: permission denied", dir)
	}
	return failf(errnoCode(err), "%s: %s", dir, errnoText(err))
}

func (ex *extractor) makeParents(parts []string) (int, error) {
	cur := ex.destfd
	for i, part := range parts {
		fd, err := openat2(cur, part, oPath|syscall.O_DIRECTORY, 0, parentResolve)
		if isErrno(err, syscall.ENOENT) {
			if err = syscall.Mkdirat(cur, part, 0755); err == nil || err == syscall.EEXIST {
				ex.created[strings.Join(parts[:i+1], "/")] = true
				fd, err = openat2(cur, part, oPath|syscall.O_DIRECTORY, 0, parentResolve)
			}
		}
		if cur != ex.destfd {
			closeFd(cur)
		}
		if err != nil {
			return -1, ex.parentError(strings.Join(parts, "/"), strings.Join(parts[:i+1], "/"), err)
		}
		cur = fd
	}
	return cur, nil
}

func (ex *extractor) dropCache() {
	if ex.cacheFd >= 0 {
		closeFd(ex.cacheFd)
	}
	ex.cacheFd, ex.cacheName = -1, ""
}

// existing is what name's last component is now, without following a symlink.
func existing(dirfd int, base string) (exists bool, mode uint32, err error) {
	fd, err := openat(dirfd, base, oPath|syscall.O_NOFOLLOW, 0)
	if isErrno(err, syscall.ENOENT) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	defer closeFd(fd)
	st, err := fstat(fd)
	if err != nil {
		return false, 0, err
	}
	return true, st.Mode, nil
}

// checkReplace decides whether an entry may take the place of what exists there.
func (ex *extractor) checkReplace(dirfd int, base, name string) error {
	exists, mode, err := existing(dirfd, base)
	if err != nil {
		return failf(errnoCode(err), "%s: %s", name, errnoText(err))
	}
	if !exists {
		return nil
	}
	if !ex.force {
		return failf(exitExists, "exists: %s", name)
	}
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		return failf(exitExists, "exists: %s (a directory; --force replaces files and links, not directories)", name)
	}
	return nil
}

func (ex *extractor) dir(parts []string, name string, h *tar.Header) error {
	dirfd, err := ex.parent(parts, name)
	if err != nil {
		return err
	}
	base := parts[len(parts)-1]
	err = syscall.Mkdirat(dirfd, base, 0700)
	if err == syscall.EEXIST {
		exists, mode, serr := existing(dirfd, base)
		if serr != nil {
			return failf(errnoCode(serr), "%s: %s", name, errnoText(serr))
		}
		if exists && mode&syscall.S_IFMT == syscall.S_IFDIR {
			if ex.created[name] { // made here as a parent: it gets this entry's mode
				ex.dirs = append(ex.dirs, pendingDir{name, uint32(h.Mode), h.ModTime, h.AccessTime})
			}
			return nil // merge
		}
		if !ex.force {
			return failf(exitExists, "exists: %s", name)
		}
		if err := unlinkat(dirfd, base, 0); err != nil {
			return failf(errnoCode(err), "%s: cannot replace it: %s", name, errnoText(err))
		}
		err = syscall.Mkdirat(dirfd, base, 0700)
	}
	if err != nil {
		return failf(errnoCode(err), "%s: %s", name, errnoText(err))
	}
	ex.created[name] = true
	ex.dirs = append(ex.dirs, pendingDir{name, uint32(h.Mode), h.ModTime, h.AccessTime})
	return nil
}

func (ex *extractor) finishDir(d pendingDir) error {
	fd, err := openat2(ex.destfd, d.name, syscall.O_RDONLY|syscall.O_DIRECTORY, 0, parentResolve)
	if err != nil {
		return failf(errnoCode(err), "%s: %s", d.name, errnoText(err))
	}
	defer closeFd(fd)
	if err := syscall.Fchmod(fd, d.mode&0o1777); err != nil {
		return failf(errnoCode(err), "%s: cannot set its mode: %s", d.name, errnoText(err))
	}
	if err := utimensat(fd, "", timespec(d.atime, d.mtime), timespec(d.mtime, d.mtime), 0); err != nil {
		return failf(errnoCode(err), "%s: cannot set its times: %s", d.name, errnoText(err))
	}
	return nil
}

func timespec(t, fallback time.Time) syscall.Timespec {
	if t.IsZero() {
		t = fallback
	}
	if t.IsZero() {
		t = time.Now()
	}
	return syscall.NsecToTimespec(t.UnixNano())
}

// newTemp creates a fresh temporary name in dirfd with create (which must fail with
// EEXIST when the name is taken), and registers it for removal until it is renamed.
func (ex *extractor) newTemp(dirfd int, create func(name string) (int, error)) (int, string, error) {
	for i := 0; i < 100; i++ {
		ex.seq++
		tmp := fmt.Sprintf("%s%d-%d-%d.tmp", tmpPrefix, os.Getpid(), ex.seq, time.Now().UnixNano()%1e9)
		ex.mu.Lock()
		if ex.done {
			ex.mu.Unlock()
			return -1, "", failf(exitFailure, "interrupted")
		}
		fd, err := create(tmp)
		if err == nil {
			ex.tmpDirfd, ex.tmpName = dirfd, tmp
		}
		ex.mu.Unlock()
		if err == syscall.EEXIST {
			continue
		}
		return fd, tmp, err
	}
	return -1, "", failf(exitFailure, "cannot find a free temporary name")
}

// commit renames the registered temporary into place (refusing to replace anything
// unless --force) and forgets it.
func (ex *extractor) commit(dirfd int, tmp, base, name string) error {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	var err error
	if ex.force {
		err = renameat2(dirfd, tmp, dirfd, base, 0)
	} else {
		err = renameat2(dirfd, tmp, dirfd, base, renameNoRepl)
		if isErrno(err, syscall.EINVAL, syscall.ENOSYS) { // a filesystem without RENAME_NOREPLACE
			if exists, _, _ := existing(dirfd, base); exists {
				err = syscall.EEXIST
			} else {
				err = renameat2(dirfd, tmp, dirfd, base, 0)
			}
		}
	}
	if err != nil {
		_ = unlinkat(dirfd, tmp, 0)
		ex.tmpDirfd, ex.tmpName = -1, ""
		if err == syscall.EEXIST {
			return failf(exitExists, "exists: %s", name)
		}
		if err == syscall.EISDIR || err == syscall.ENOTEMPTY {
			return failf(exitExists, "exists: %s (a directory)", name)
		}
		return failf(errnoCode(err), "%s: %s", name, errnoText(err))
	}
	ex.tmpDirfd, ex.tmpName = -1, ""
	return nil
}

// discard removes the registered temporary after a failure.
func (ex *extractor) discard() {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.tmpName != "" {
		_ = unlinkat(ex.tmpDirfd, ex.tmpName, 0)
		ex.tmpDirfd, ex.tmpName = -1, ""
	}
}

// abandon removes any temporary and makes further entries fail (signal handler, end).
func (ex *extractor) abandon() {
	ex.discard()
	ex.mu.Lock()
	ex.done = true
	ex.mu.Unlock()
}

func (ex *extractor) file(parts []string, name string, h *tar.Header, tr *tar.Reader) error {
	dirfd, err := ex.parent(parts, name)
	if err != nil {
		return err
	}
	base := parts[len(parts)-1]
	if err := ex.checkReplace(dirfd, base, name); err != nil {
		return err
	}
	fd, tmp, err := ex.newTemp(dirfd, func(tmp string) (int, error) {
		return openat(dirfd, tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW, 0600)
	})
	if err != nil {
		return failf(errnoCode(err), "%s: %s", name, errnoText(err))
	}
	werr := ex.fill(fd, tr, name, h)
	if cerr := syscall.Close(fd); werr == nil && cerr != nil {
		werr = failf(errnoCode(cerr), "%s: %s", name, errnoText(cerr))
	}
	if werr != nil {
		ex.discard()
		return werr
	}
	return ex.commit(dirfd, tmp, base, name)
}

func (ex *extractor) fill(fd int, tr *tar.Reader, name string, h *tar.Header) error {
	for {
		n, err := tr.Read(ex.buf)
		if n > 0 {
			if werr := writeAll(fd, ex.buf[:n]); werr != nil {
				return failf(errnoCode(werr), "%s: write error: %s", name, errnoText(werr))
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return failf(exitFailure, "the archive is cut short in %s; nothing of it was kept", name)
			}
			return failf(exitFailure, "%s: reading the archive: %v", name, err)
		}
	}
	if err := syscall.Fchmod(fd, uint32(h.Mode)&0o1777); err != nil { // no setuid/setgid
		return failf(errnoCode(err), "%s: cannot set its mode: %s", name, errnoText(err))
	}
	if err := utimensat(fd, "", timespec(h.AccessTime, h.ModTime), timespec(h.ModTime, h.ModTime), 0); err != nil {
		return failf(errnoCode(err), "%s: cannot set its times: %s", name, errnoText(err))
	}
	return nil
}

func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := syscall.Write(fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func (ex *extractor) link(parts []string, name string, h *tar.Header) error {
	dirfd, err := ex.parent(parts, name)
	if err != nil {
		return err
	}
	base := parts[len(parts)-1]
	if err := ex.checkReplace(dirfd, base, name); err != nil {
		return err
	}
	var create func(tmp string) (int, error)
	if h.Typeflag == tar.TypeSymlink {
		// The link's text is data: it is never resolved here.
		create = func(tmp string) (int, error) { return -1, symlinkat(h.Linkname, dirfd, tmp) }
	} else {
		// A hard link to an entry already extracted below DESTDIR, found the same
		// confined way (the link itself is never followed).
		oldParts, err := entryPath(h.Linkname)
		if err != nil || len(oldParts) == 0 {
			return failf(exitFailure, "%s: refusing the hard link target %q", name, h.Linkname)
		}
		oldDir := strings.Join(oldParts[:len(oldParts)-1], "/")
		olddirfd := ex.destfd
		if oldDir != "" {
			olddirfd, err = openat2(ex.destfd, oldDir, oPath|syscall.O_DIRECTORY, 0, parentResolve)
			if err != nil {
				return ex.parentError(h.Linkname, oldDir, err)
			}
			defer closeFd(olddirfd)
		}
		oldBase := oldParts[len(oldParts)-1]
		create = func(tmp string) (int, error) { return -1, linkat(olddirfd, oldBase, dirfd, tmp) }
	}
	_, tmp, err := ex.newTemp(dirfd, create)
	if err != nil {
		return failf(errnoCode(err), "%s: %s", name, errnoText(err))
	}
	if err := ex.commit(dirfd, tmp, base, name); err != nil {
		return err
	}
	if h.Typeflag == tar.TypeSymlink {
		_ = utimensat(dirfd, base, timespec(h.AccessTime, h.ModTime), timespec(h.ModTime, h.ModTime), atSymlinkNoF)
	}
	return nil
}
