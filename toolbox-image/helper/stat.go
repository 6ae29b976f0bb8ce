package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

const statUsage = `stat [--root DIR] [--follow] PATH
Prints one JSON line describing PATH resolved inside DIR (default /proc/1/root):
  {"path": ..., "exists": true, "type": "file|dir|symlink|other", "size": N,
   "mode": "0644", "mtime": UNIX, "uid": N, "gid": N, "link": "TARGET"}
or {"path": ..., "exists": false, "error": "not found|permission denied|..."}.
A final symlink is reported as a symlink unless --follow. Exit 0 either way;
2 for usage errors, 1 when DIR itself cannot be opened.
`

type statFound struct {
	Path   string `json:"path"`
	Exists bool   `json:"exists"`
	Type   string `json:"type"`
	Size   int64  `json:"size"`
	Mode   string `json:"mode"`
	Mtime  int64  `json:"mtime"`
	UID    uint32 `json:"uid"`
	GID    uint32 `json:"gid"`
	Link   string `json:"link,omitempty"`
}

type statMissing struct {
	Path   string `json:"path"`
	Exists bool   `json:"exists"`
	Error  string `json:"error"`
}

func cmdStat(args []string) int {
	fs := newFlags("stat")
	root := fs.String("root", defaultRoot, "")
	follow := fs.Bool("follow", false, "")
	if code, ok := parseFlags(fs, args, statUsage, exitUsage); !ok {
		return code
	}
	if fs.NArg() != 1 || fs.Arg(0) == "" {
		return usageErrorf("stat", statUsage, exitUsage, "exactly one non-empty PATH is needed")
	}
	line, err := statLine(*root, fs.Arg(0), *follow)
	if err != nil {
		return report(err)
	}
	os.Stdout.Write(line)
	return exitOK
}

// statLine is stat's JSON line (with its newline) for p inside root.
func statLine(root, p string, follow bool) ([]byte, error) {
	rootfd, err := openRoot(root)
	if err != nil {
		return nil, err
	}
	defer closeFd(rootfd)
	return encodeJSONLine(statIn(rootfd, p, follow))
}

func statIn(rootfd int, p string, follow bool) interface{} {
	fd, err := resolveIn(rootfd, p, oPath, follow)
	if err != nil {
		return statMissing{Path: p, Error: errnoText(err)}
	}
	defer closeFd(fd)
	st, err := fstat(fd)
	if err != nil {
		return statMissing{Path: p, Error: errnoText(err)}
	}
	out := statFound{
		Path:   p,
		Exists: true,
		Type:   fileType(st.Mode),
		Size:   st.Size,
		Mode:   fmt.Sprintf("%04o", st.Mode&07777),
		Mtime:  st.Mtim.Sec,
		UID:    st.Uid,
		GID:    st.Gid,
	}
	if out.Type == "symlink" {
		if out.Link, err = readlinkat(fd, ""); err != nil {
			return statMissing{Path: p, Error: errnoText(err)}
		}
	}
	return out
}

// encodeJSONLine is compact JSON without HTML escaping, and a newline.
func encodeJSONLine(v interface{}) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
