package main

// stat, tar-out and tar-in against a temporary directory used as --root, with hostile
// symlinks: nothing outside the root may be read or written.

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

const outsideSecret = "OUTSIDE-SECRET-must-never-be-read"

type hostileRoot struct {
	base, root, outside string
}

// newHostileRoot builds
//
//	outside/secret, outside/dir/          (beside the root: never to be touched)
//	root/etc/passwd                       (the root's own passwd)
//	root/abs -> /etc/passwd               (absolute: means root/etc/passwd)
//	root/hostabs -> <base>/outside/secret (a real host path: means root/<base>/...)
//	root/up -> ../../..                   (clamps at the root)
//	root/escape -> ../outside/secret      (relative escape: clamps too)
//	root/outdir -> <base>/outside/dir
//	root/data/ (0750) file.txt (0640) run.sh (04755) empty sub/deep.txt link -> ../etc/passwd big.bin
func newHostileRoot(t *testing.T) hostileRoot {
	t.Helper()
	base := t.TempDir()
	h := hostileRoot{base: base, root: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	writeFile(t, filepath.Join(h.outside, "secret"), outsideSecret, 0644)
	if err := os.MkdirAll(filepath.Join(h.outside, "dir"), 0777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Join(h.outside, "dir"), 0777)
	writeFile(t, filepath.Join(h.root, "etc", "passwd"), "root:x:0:0:inside the root:/:/bin/false\n", 0644)
	symlink(t, "/etc/passwd", filepath.Join(h.root, "abs"))
	symlink(t, filepath.Join(h.outside, "secret"), filepath.Join(h.root, "hostabs"))
	symlink(t, "../../..", filepath.Join(h.root, "up"))
	symlink(t, "../outside/secret", filepath.Join(h.root, "escape"))
	symlink(t, filepath.Join(h.outside, "dir"), filepath.Join(h.root, "outdir"))
	data := filepath.Join(h.root, "data")
	writeFile(t, filepath.Join(data, "file.txt"), "hello\n", 0640)
	writeFile(t, filepath.Join(data, "run.sh"), "#!/bin/sh\n", 04755)
	writeFile(t, filepath.Join(data, "empty"), "", 0604)
	writeFile(t, filepath.Join(data, "sub", "deep.txt"), "deep\n", 0644)
	symlink(t, "../etc/passwd", filepath.Join(data, "link"))
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16+7) // > 3 MiB, not a buffer multiple
	if err := os.WriteFile(filepath.Join(data, "big.bin"), big, 0644); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1600000000, 0)
	for _, p := range []string{"file.txt", "run.sh", "empty", "sub/deep.txt", "big.bin", "sub"} {
		if err := os.Chtimes(filepath.Join(data, p), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(data, 0750); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(data, mtime, mtime)
	return h
}

func statJSON(t *testing.T, root, p string, follow bool) map[string]interface{} {
	t.Helper()
	line, err := statLine(root, p, follow)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(line, []byte("\n")) != 1 || !bytes.HasSuffix(line, []byte("\n")) {
		t.Fatalf("not one line: %q", line)
	}
	var m map[string]interface{}
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestStatResolvesInsideTheRoot(t *testing.T) {
	h := newHostileRoot(t)
	link := statJSON(t, h.root, "/abs", false)
	if link["type"] != "symlink" || link["link"] != "/etc/passwd" || link["exists"] != true {
		t.Fatalf("abs without --follow: %v", link)
	}
	followed := statJSON(t, h.root, "/abs", true)
	inside, _ := os.Stat(filepath.Join(h.root, "etc", "passwd"))
	if followed["type"] != "file" || int64(followed["size"].(float64)) != inside.Size() {
		t.Fatalf("abs followed must be the root's passwd (%d bytes): %v", inside.Size(), followed)
	}
	for _, p := range []string{"/hostabs", "/escape", "/../outside/secret", "../../outside/secret"} {
		got := statJSON(t, h.root, p, true)
		if got["exists"] != false || got["error"] != "not found" {
			t.Errorf("%s resolved outside the root: %v", p, got)
		}
	}
	if got := statJSON(t, h.root, "/up/up/etc/passwd", true); got["type"] != "file" {
		t.Errorf("../../.. must clamp at the root: %v", got)
	}
	if got := statJSON(t, h.root, "/data/file.txt/x", false); got["error"] != "not a directory" {
		t.Errorf("file as a directory: %v", got)
	}
	d := statJSON(t, h.root, "/data", false)
	if d["type"] != "dir" || d["mode"] != "0750" || d["mtime"].(float64) != 1600000000 {
		t.Errorf("data: %v", d)
	}
	if got := statJSON(t, h.root, "/data/run.sh", false); got["mode"] != "4755" {
		t.Errorf("setuid bit not reported: %v", got)
	}
	if got := statJSON(t, h.root, "/", false); got["type"] != "dir" || got["path"] != "/" {
		t.Errorf("root: %v", got)
	}
	if _, err := statLine(filepath.Join(h.base, "missing"), "/x", false); err == nil {
		t.Error("a missing --root is not an error")
	}
}

// tarEntry is what the tests compare of an archive member.
type tarEntry struct {
	typ          byte
	mode         int64
	mtime        int64
	link         string
	data         string
	size         int64
	uid, gid     int
	headerFormat tar.Format
}

func readTar(t *testing.T, data []byte) (map[string]tarEntry, []string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	entries := map[string]tarEntry{}
	var order []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading the archive: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name] = tarEntry{typ: h.Typeflag, mode: h.Mode, mtime: h.ModTime.Unix(), link: h.Linkname,
			data: string(body), size: h.Size, uid: h.Uid, gid: h.Gid, headerFormat: h.Format}
		order = append(order, h.Name)
	}
	return entries, order
}

func tarOutBytes(t *testing.T, root, p string, follow bool) ([]byte, []string, error) {
	t.Helper()
	var out bytes.Buffer
	var warnings []string
	err := tarOut(root, p, follow, &out, func(f string, a ...interface{}) {
		warnings = append(warnings, sprintf(f, a...))
	})
	return out.Bytes(), warnings, err
}

func TestTarOutStoresSymlinksAndNeverLeavesTheRoot(t *testing.T) {
	h := newHostileRoot(t)
	whole, warnings, err := tarOutBytes(t, h.root, "/", false)
	if err != nil {
		t.Fatal(err)
	}
	mustNotContain(t, "the archive of /", whole, outsideSecret)
	entries, order := readTar(t, whole)
	if order[0] != "./" {
		t.Fatalf("first entry %q, want ./", order[0])
	}
	for name, target := range map[string]string{"./abs": "/etc/passwd", "./up": "../../..", "./data/link": "../etc/passwd", "./outdir": filepath.Join(h.outside, "dir")} {
		if e := entries[name]; e.typ != tar.TypeSymlink || e.link != target {
			t.Errorf("%s: %+v, want a symlink to %s", name, e, target)
		}
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %v", warnings)
	}

	// --follow resolves the top-level symlink inside the root.
	followed, _, err := tarOutBytes(t, h.root, "/abs", true)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ = readTar(t, followed)
	if e := entries["abs"]; e.typ != tar.TypeReg || !strings.Contains(e.data, "inside the root") {
		t.Fatalf("abs followed: %+v", entries)
	}
	for _, p := range []string{"/hostabs", "/escape"} {
		_, _, err := tarOutBytes(t, h.root, p, true)
		if code := report0(err); code != exitNotFound {
			t.Errorf("tar-out --follow %s: exit %d (%v), want 2: it must not resolve outside", p, code, err)
		}
	}
	// --follow of a directory link that points outside: inside the root it is missing.
	_, _, err = tarOutBytes(t, h.root, "/outdir", true)
	if report0(err) != exitNotFound {
		t.Errorf("outdir: %v", err)
	}
	_, _, err = tarOutBytes(t, h.root, "/data/file.txt/x", false)
	if report0(err) != exitResolve {
		t.Errorf("a file as a directory: %v, want exit 4", err)
	}
}

// report0 is the exit code an error maps to, without printing it.
func report0(err error) int {
	if err == nil {
		return 0
	}
	if ce, ok := err.(*cliError); ok {
		return ce.code
	}
	return exitFailure
}

func TestTarOutDirectorySwappedForASymlinkMidWalk(t *testing.T) {
	for _, stage := range []string{"lookup", "open"} {
		t.Run(stage, func(t *testing.T) {
			h := newHostileRoot(t)
			writeFile(t, filepath.Join(h.outside, "dir", "loot"), outsideSecret, 0644)
			sub := filepath.Join(h.root, "data", "sub")
			var out bytes.Buffer
			var warnings []string
			w := &tarWalker{
				warn: func(f string, a ...interface{}) { warnings = append(warnings, sprintf(f, a...)) },
				hook: func(s, display string) {
					if s == stage && display == "/data/sub" {
						if err := os.Rename(sub, sub+".moved"); err != nil {
							t.Fatal(err)
						}
						symlink(t, filepath.Join(h.outside, "dir"), sub)
					}
				},
			}
			if err := tarOutWith(w, h.root, "/data", false, &out); err != nil {
				t.Fatal(err)
			}
			mustNotContain(t, "the archive", out.Bytes(), outsideSecret)
			entries, _ := readTar(t, out.Bytes())
			if _, ok := entries["data/sub/loot"]; ok {
				t.Fatal("the walk followed the swapped-in symlink")
			}
			switch stage {
			case "lookup": // seen as what it now is: a symlink, stored as one
				if e := entries["data/sub"]; e.typ != tar.TypeSymlink {
					t.Fatalf("data/sub: %+v", e)
				}
			case "open": // looked up as a directory, a symlink when opened: skipped
				if len(warnings) != 1 || !strings.Contains(warnings[0], "/data/sub changed") {
					t.Fatalf("warnings: %v", warnings)
				}
			}
		})
	}
}

func TestTarRoundTripKeepsModesTimesAndLinks(t *testing.T) {
	h := newHostileRoot(t)
	archive, _, err := tarOutBytes(t, h.root, "/data", false)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := readTar(t, archive)
	if e := entries["data/run.sh"]; e.mode != 04755 {
		t.Errorf("tar-out must keep the setuid bit in the header: %o", e.mode)
	}
	if e := entries["data/"]; e.typ != tar.TypeDir || e.mode != 0750 || e.mtime != 1600000000 {
		t.Errorf("data/: %+v", e)
	}
	if e := entries["data/big.bin"]; e.size < 3<<20 {
		t.Errorf("big.bin: size %d", e.size)
	}
	for _, e := range entries {
		if e.headerFormat != tar.FormatUSTAR && e.headerFormat != tar.FormatPAX {
			t.Errorf("not a POSIX header: %v", e.headerFormat)
		}
	}

	dest := filepath.Join(h.root, "dest")
	if err := os.Mkdir(dest, 0755); err != nil {
		t.Fatal(err)
	}
	ex := &extractor{warn: t.Logf}
	if err := ex.run(h.root, "/dest", bytes.NewReader(archive)); err != nil {
		t.Fatal(err)
	}
	src, got := filepath.Join(h.root, "data"), filepath.Join(dest, "data")
	err = filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		gi, err := os.Lstat(filepath.Join(got, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		wantMode := fi.Mode() &^ (os.ModeSetuid | os.ModeSetgid)
		if gi.Mode() != wantMode {
			t.Errorf("%s: mode %v, want %v", rel, gi.Mode(), wantMode)
		}
		if fi.Mode()&os.ModeSymlink == 0 && !gi.ModTime().Equal(fi.ModTime().Truncate(time.Second)) {
			t.Errorf("%s: mtime %v, want %v", rel, gi.ModTime(), fi.ModTime())
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			a, _ := os.Readlink(p)
			b, _ := os.Readlink(filepath.Join(got, rel))
			if a != b {
				t.Errorf("%s: link %q, want %q", rel, b, a)
			}
		case fi.Mode().IsRegular():
			a, _ := os.ReadFile(p)
			b, _ := os.ReadFile(filepath.Join(got, rel))
			if !bytes.Equal(a, b) {
				t.Errorf("%s: content differs", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	assertNoTemp(t, dest)
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasPrefix(fi.Name(), tmpPrefix) {
			t.Errorf("a temporary file was left behind: %s", p)
		}
		return nil
	})
}

// archiveOf builds a tar from (name, type, body-or-link) triples.
func archiveOf(t *testing.T, members ...[3]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		h := &tar.Header{Name: m[0], Mode: 0644, ModTime: time.Unix(1500000000, 0)}
		switch m[1] {
		case "dir":
			h.Typeflag, h.Mode = tar.TypeDir, 0755
		case "symlink":
			h.Typeflag, h.Linkname = tar.TypeSymlink, m[2]
		case "hardlink":
			h.Typeflag, h.Linkname = tar.TypeLink, m[2]
		case "fifo":
			h.Typeflag = tar.TypeFifo
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(m[2]))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(m[2])); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func extract(t *testing.T, root, dest string, force bool, archive []byte) error {
	t.Helper()
	ex := &extractor{force: force, warn: t.Logf}
	return ex.run(root, dest, bytes.NewReader(archive))
}

func listTree(t *testing.T, dir string) []string {
	var names []string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, rel)
		}
		return nil
	})
	sort.Strings(names)
	return names
}

func TestTarInTruncatedArchiveLeavesNoPartialFile(t *testing.T) {
	h := newHostileRoot(t)
	big := strings.Repeat("x", 3<<20)
	archive := archiveOf(t, [3]string{"dir/", "dir", ""}, [3]string{"dir/small", "file", "small\n"}, [3]string{"dir/big", "file", big})
	cut := archive[:len(archive)-1024-(1<<20)] // in the middle of big's data
	dest := filepath.Join(h.root, "dest")
	_ = os.Mkdir(dest, 0755)
	err := extract(t, h.root, "/dest", false, cut)
	if report0(err) != exitFailure || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("want exit 1 for a truncated archive, got %v", err)
	}
	if got := listTree(t, dest); strings.Join(got, ",") != "dir,dir/small" {
		t.Fatalf("left behind: %v", got)
	}

	// The same through the CLI, and a signal in the middle of a file.
	dest2 := filepath.Join(h.root, "dest2")
	_ = os.Mkdir(dest2, 0755)
	r := runHelper(t, runOpts{stdin: bytes.NewReader(cut)}, "tar-in", "--root", h.root, "/dest2")
	if r.code != 1 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	assertOneErrorLine(t, r, "cut short")
	assertNoTemp(t, dest2)

	dest3 := filepath.Join(h.root, "dest3")
	_ = os.Mkdir(dest3, 0755)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := helperCmd(t, runOpts{}, "tar-in", "--root", h.root, "/dest3")
	cmd.Stdin = pr // a real pipe: stdin stays open, without EOF, until after the signal
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	go func() { _, _ = pw.Write(archive[:len(archive)-(2<<20)]) }() // then stall mid-file
	waitFor(t, func() bool {
		names := listTree(t, filepath.Join(dest3, "dir"))
		return len(names) == 2 // small and the temporary of big
	})
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	pw.Close()
	if code := cmd.ProcessState.ExitCode(); code != 143 {
		t.Fatalf("exit %d after SIGTERM, want 143: %s", code, stderr.String())
	}
	if got := listTree(t, dest3); strings.Join(got, ",") != "dir,dir/small" {
		t.Fatalf("left behind after SIGTERM: %v", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTarInForceSemantics(t *testing.T) {
	h := newHostileRoot(t)
	dest := filepath.Join(h.root, "dest")
	writeFile(t, filepath.Join(dest, "f"), "old\n", 0644)
	writeFile(t, filepath.Join(dest, "d", "keep"), "keep\n", 0644)
	newer := archiveOf(t, [3]string{"f", "file", "new\n"})

	err := extract(t, h.root, "/dest", false, newer)
	if report0(err) != exitExists || err.Error() != "exists: f" {
		t.Fatalf("want exit 5 'exists: f', got %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "f")); string(b) != "old\n" {
		t.Fatal("an existing file was replaced without --force")
	}
	assertNoTemp(t, dest)
	if err := extract(t, h.root, "/dest", true, newer); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "f")); string(b) != "new\n" {
		t.Fatal("--force did not replace the file")
	}

	// A directory entry merges into an existing directory (its mode is left alone).
	_ = os.Chmod(filepath.Join(dest, "d"), 0711)
	if err := extract(t, h.root, "/dest", false, archiveOf(t, [3]string{"d/", "dir", ""}, [3]string{"d/new", "file", "n"})); err != nil {
		t.Fatal(err)
	}
	if got := listTree(t, filepath.Join(dest, "d")); strings.Join(got, ",") != "keep,new" {
		t.Fatalf("merge: %v", got)
	}
	if fi, _ := os.Stat(filepath.Join(dest, "d")); fi.Mode().Perm() != 0711 {
		t.Fatalf("an existing directory's mode changed: %v", fi.Mode())
	}

	// A directory over a file, a symlink over a file: exists, unless --force.
	for _, m := range [][3]string{{"f", "dir", ""}, {"f", "symlink", "/x"}} {
		if err := extract(t, h.root, "/dest", false, archiveOf(t, m)); report0(err) != exitExists {
			t.Errorf("%s over a file: %v", m[1], err)
		}
	}
	if err := extract(t, h.root, "/dest", true, archiveOf(t, [3]string{"f", "symlink", "/etc/passwd"})); err != nil {
		t.Fatal(err)
	}
	if l, _ := os.Readlink(filepath.Join(dest, "f")); l != "/etc/passwd" {
		t.Fatalf("--force symlink: %q", l)
	}
	// --force replaces the symlink itself, never what it points to.
	if err := extract(t, h.root, "/dest", true, archiveOf(t, [3]string{"f", "file", "through?"})); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(h.root, "etc", "passwd")); strings.Contains(string(b), "through?") {
		t.Fatal("--force wrote through a symlink")
	}
	// Never a directory replaced by a file, even with --force.
	if err := extract(t, h.root, "/dest", true, archiveOf(t, [3]string{"d", "file", "x"})); report0(err) != exitExists {
		t.Fatalf("file over a directory with --force: %v", err)
	}
}

func TestTarInRefusesBadNamesAndStops(t *testing.T) {
	h := newHostileRoot(t)
	for _, bad := range []string{"../evil", "/abs", "a/../../evil", "ok/.."} {
		dest := filepath.Join(h.root, "dest-"+strings.NewReplacer("/", "_", ".", "d").Replace(bad))
		_ = os.Mkdir(dest, 0755)
		err := extract(t, h.root, "/"+filepath.Base(dest), false,
			archiveOf(t, [3]string{"first", "file", "1"}, [3]string{bad, "file", "x"}, [3]string{"after", "file", "2"}))
		if report0(err) != exitFailure {
			t.Errorf("%s: %v, want exit 1", bad, err)
		}
		if got := listTree(t, dest); strings.Join(got, ",") != "first" {
			t.Errorf("%s: created %v", bad, got)
		}
	}
	if _, err := os.Stat(filepath.Join(h.base, "evil")); err == nil {
		t.Fatal("a .. entry escaped")
	}
}

func TestTarInNeverWritesThroughSymlinks(t *testing.T) {
	h := newHostileRoot(t)
	dest := filepath.Join(h.root, "dest")
	_ = os.Mkdir(dest, 0755)
	symlink(t, filepath.Join(h.outside, "dir"), filepath.Join(dest, "planted")) // in the target
	cases := map[string][]byte{
		"a symlink in the archive": archiveOf(t, [3]string{"lnk", "symlink", filepath.Join(h.outside, "dir")}, [3]string{"lnk/pwned", "file", "x"}),
		"a relative one":           archiveOf(t, [3]string{"rel", "symlink", "../../outside/dir"}, [3]string{"rel/pwned", "file", "x"}),
		"a symlink in the target":  archiveOf(t, [3]string{"planted/pwned", "file", "x"}),
		"a directory entry":        archiveOf(t, [3]string{"planted/sub/", "dir", ""}),
		"a hard link through it":   archiveOf(t, [3]string{"hl", "hardlink", "planted/../secret"}),
	}
	for what, archive := range cases {
		err := extract(t, h.root, "/dest", false, archive)
		if code := report0(err); code != exitResolve && code != exitFailure {
			t.Errorf("%s: %v (exit %d), want a refusal", what, err, code)
		}
	}
	if got := listTree(t, h.outside); strings.Join(got, ",") != "dir,secret" {
		t.Fatalf("something was written outside the root: %v", got)
	}
	// DESTDIR itself may be a symlink: it is followed inside the root.
	symlink(t, "/dest", filepath.Join(h.root, "destlink"))
	if err := extract(t, h.root, "/destlink", false, archiveOf(t, [3]string{"via-link", "file", "ok"})); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dest, "via-link")); err != nil {
		t.Fatal(err)
	}
	if err := extract(t, h.root, "/outdir", false, archiveOf(t, [3]string{"x", "file", "x"})); report0(err) != exitNotFound {
		t.Fatalf("a DESTDIR link to the outside must resolve inside the root (missing): %v", err)
	}
	if err := extract(t, h.root, "/etc/passwd", false, archiveOf(t, [3]string{"x", "file", "x"})); report0(err) != exitResolve {
		t.Fatalf("a file as DESTDIR: %v, want 4", err)
	}
}

func TestTarInParentSwappedForASymlinkBetweenEntries(t *testing.T) {
	h := newHostileRoot(t)
	dest := filepath.Join(h.root, "dest")
	_ = os.Mkdir(dest, 0755)
	ex := &extractor{warn: t.Logf}
	ex.afterEntry = func(name string) {
		if name == "d/" {
			_ = os.Rename(filepath.Join(dest, "d"), filepath.Join(dest, "d.moved"))
			symlink(t, filepath.Join(h.outside, "dir"), filepath.Join(dest, "d"))
		}
	}
	err := ex.run(h.root, "/dest", bytes.NewReader(archiveOf(t, [3]string{"d/", "dir", ""}, [3]string{"d/f", "file", "x"})))
	if report0(err) != exitResolve {
		t.Fatalf("got %v, want a refusal (exit 4)", err)
	}
	if got := listTree(t, filepath.Join(h.outside, "dir")); len(got) != 0 {
		t.Fatalf("written outside: %v", got)
	}
}

func TestTarInHardLinksAndSkippedTypes(t *testing.T) {
	h := newHostileRoot(t)
	dest := filepath.Join(h.root, "dest")
	_ = os.Mkdir(dest, 0755)
	var warnings []string
	ex := &extractor{warn: func(f string, a ...interface{}) { warnings = append(warnings, sprintf(f, a...)) }}
	err := ex.run(h.root, "/dest", bytes.NewReader(archiveOf(t,
		[3]string{"a", "file", "shared"}, [3]string{"b", "hardlink", "a"}, [3]string{"p", "fifo", ""})))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(filepath.Join(dest, "a"))
	b, _ := os.Stat(filepath.Join(dest, "b"))
	if !os.SameFile(a, b) {
		t.Fatal("b is not a hard link of a")
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "skipping p") {
		t.Fatalf("warnings: %v", warnings)
	}
}

func TestPermissionDeniedAsAnotherUser(t *testing.T) {
	uid := otherUser(t)
	if uid == 0 {
		uid = -1 // not root: run as ourselves, who cannot read root's files
	}
	h := newHostileRoot(t)
	openTree(t, h.root)
	_ = os.Chmod(filepath.Join(h.root, "data"), 0755)
	writeFile(t, filepath.Join(h.root, "data", "private"), "private\n", 0600)
	writeFile(t, filepath.Join(h.root, "closed", "inner"), "x", 0644)
	_ = os.Chmod(filepath.Join(h.root, "closed"), 0700)
	if os.Geteuid() != 0 {
		t.Skip("needs root to create files another user cannot read")
	}
	o := runOpts{uid: uid}

	r := runHelper(t, o, "tar-out", "--root", h.root, "/data")
	if r.code != exitPermission {
		t.Fatalf("tar-out of a tree with an unreadable file: exit %d, %q", r.code, r.stderr)
	}
	assertOneErrorLine(t, r, "debugkit-helper: /data/file.txt: permission denied") // 0640, the first in order

	r = runHelper(t, o, "tar-out", "--root", h.root, "/data/private")
	if r.code != exitPermission || r.stdout != "" {
		t.Fatalf("tar-out of an unreadable file: exit %d, %q", r.code, r.stderr)
	}
	assertOneErrorLine(t, r, "debugkit-helper: /data/private: permission denied")
	r = runHelper(t, o, "stat", "--root", h.root, "/closed/inner")
	if r.code != 0 || !strings.Contains(r.stdout, `"exists":false,"error":"permission denied"`) {
		t.Fatalf("stat below an unsearchable directory: %+v", r)
	}
	// stat needs no read permission on the file itself.
	r = runHelper(t, o, "stat", "--root", h.root, "/data/private")
	if r.code != 0 || !strings.Contains(r.stdout, `"mode":"0600"`) {
		t.Fatalf("stat of an unreadable file: %+v", r)
	}
	r = runHelper(t, runOpts{uid: uid, stdin: bytes.NewReader(archiveOf(t, [3]string{"x", "file", "x"}))},
		"tar-in", "--root", h.root, "/data")
	if r.code != exitPermission {
		t.Fatalf("tar-in into a directory not writable: exit %d, %q", r.code, r.stderr)
	}
	assertOneErrorLine(t, r, "permission denied")
	assertNoTemp(t, filepath.Join(h.root, "data"))
}

func TestFileCommandsExitCodesAndUsage(t *testing.T) {
	h := newHostileRoot(t)
	r := runHelper(t, runOpts{}, "stat", "--root", h.root, "/abs")
	if r.code != 0 || !strings.HasPrefix(r.stdout, `{"path":"/abs","exists":true,"type":"symlink",`) || r.stderr != "" {
		t.Fatalf("%+v", r)
	}
	r = runHelper(t, runOpts{}, "stat", "--root", h.root, "/nope")
	if r.code != 0 || r.stdout != `{"path":"/nope","exists":false,"error":"not found"}`+"\n" {
		t.Fatalf("%+v", r)
	}
	for _, args := range [][]string{{"stat"}, {"stat", "a", "b"}, {"stat", "--bogus", "x"}, {"tar-out"}, {"tar-in"}, {"relay"}, {"relay", "99999"}, {"keepalive"}, {"zombies", "x"}} {
		r = runHelper(t, runOpts{}, args...)
		if r.code != exitUsage || r.code == exitNotFound {
			t.Errorf("%v: exit %d, want %d (not %d, which means not found)", args, r.code, exitUsage, exitNotFound)
		}
		assertOneErrorLine(t, r, "usage: debugkit-helper "+args[0])
	}
	r = runHelper(t, runOpts{}, "tar-out", "--root", h.root, "/nope")
	if r.code != exitNotFound || r.stdout != "" {
		t.Fatalf("%+v", r)
	}
	assertOneErrorLine(t, r, "/nope: not found")
	r = runHelper(t, runOpts{}, "tar-out", "--root", h.root, "/etc/passwd/x")
	if r.code != exitResolve {
		t.Fatalf("%+v", r)
	}
	r = runHelper(t, runOpts{stdin: strings.NewReader("")}, "tar-in", "--root", h.root, "/missing")
	if r.code != exitNotFound {
		t.Fatalf("%+v", r)
	}
	r = runHelper(t, runOpts{stdin: strings.NewReader("")}, "tar-in", "--root", h.root, "/etc/passwd")
	if r.code != exitResolve {
		t.Fatalf("%+v", r)
	}
	r = runHelper(t, runOpts{stdin: bytes.NewReader(archiveOf(t, [3]string{"etc/passwd", "file", "x"}))}, "tar-in", "--root", h.root, "/")
	if r.code != exitExists {
		t.Fatalf("%+v", r)
	}
	assertOneErrorLine(t, r, "exists: etc/passwd")
	r = runHelper(t, runOpts{stdin: strings.NewReader("this is not a tar archive, not even close, and long enough to need a block" + strings.Repeat(".", 600))}, "tar-in", "--root", h.root, "/")
	if r.code != exitFailure {
		t.Fatalf("%+v", r)
	}
	for _, args := range [][]string{{"-h"}, {"--version"}, {"stat", "-h"}, {"reap", "--help"}} {
		r = runHelper(t, runOpts{}, args...)
		if r.code != 0 || r.stdout == "" || r.stderr != "" {
			t.Errorf("%v: %+v", args, r)
		}
	}
	fifo := filepath.Join(h.root, "fifo")
	if err := syscall.Mkfifo(fifo, 0644); err != nil {
		t.Fatal(err)
	}
	r = runHelper(t, runOpts{}, "tar-out", "--root", h.root, "/fifo")
	if r.code != exitSpecial || r.stdout != "" {
		t.Fatalf("a FIFO at the top: %+v", r)
	}
	assertOneErrorLine(t, r, "/fifo is a FIFO: only regular files, directories and symlinks are copied")
	r = runHelper(t, runOpts{}, "frobnicate")
	if r.code != exitUsage {
		t.Fatalf("%+v", r)
	}
	assertOneErrorLine(t, r, `unknown command "frobnicate"`)
}

func sprintf(f string, a ...interface{}) string { return fmt.Sprintf(f, a...) }

func TestPseudoFilesystemsAreRecognised(t *testing.T) {
	for dir, want := range map[string]string{"/proc": "proc", "/sys": "sysfs", t.TempDir(): ""} {
		fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := pseudoFS(fd); got != want {
			t.Errorf("%s: %q, want %q", dir, got, want)
		}
		syscall.Close(fd)
	}
}
