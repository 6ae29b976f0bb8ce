package main

import (
	"io"
	"os"
	"path/filepath"
)

const installHolderUsage = `install-holder DEST
Copies the toolbox's readable copy of this helper (` + holderSource + `) to DEST,
mode 0555: a Kubernetes copy's init container puts it in the volume the copy's main
process (hold) runs from. The helper at /usr/local/bin is execute-only (it must not be
dumpable in a sidecar), so it cannot be read to be copied; the holder must be dumpable.
`

const holderSource = "/usr/local/lib/debugkit/debugkit-helper"

func cmdInstallHolder(args []string) int {
	fs := newFlags("install-holder")
	if code, ok := parseFlags(fs, args, installHolderUsage, exitUsage); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return usageErrorf("install-holder", installHolderUsage, exitUsage, "give one DEST")
	}
	return report(installHolder(holderSource, fs.Arg(0)))
}

func installHolder(src, dest string) error {
	in, err := os.Open(src)
	if err != nil {
		return failf(exitFailure, "cannot read %s: %s", src, errnoText(err))
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".holder.")
	if err != nil {
		return failf(exitFailure, "cannot write into %s: %s", filepath.Dir(dest), errnoText(err))
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return failf(exitFailure, "cannot copy %s: %s", src, errnoText(err))
	}
	if err := tmp.Chmod(0o555); err != nil {
		tmp.Close()
		return failf(exitFailure, "cannot chmod %s: %s", dest, errnoText(err))
	}
	if err := tmp.Close(); err != nil {
		return failf(exitFailure, "cannot write %s: %s", dest, errnoText(err))
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return failf(exitFailure, "cannot install %s: %s", dest, errnoText(err))
	}
	return nil
}
