// debugkit-helper: the small tools debugkit's sidecar runs inside the namespaces of a
// shell-less target: a reaper for the shared PID namespace, a keepalive for reusable
// sidecars, stat and tar that resolve paths inside the target's root, a TCP relay and
// a zombie lister. Standard library only, built static (CGO_ENABLED=0); Linux only.
//
// Errors are one line on stderr, prefixed "debugkit-helper: ".
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const prog = "debugkit-helper"

// Exit codes shared by the file commands (stat, tar-out, tar-in). A usage error has its
// own code (sysexits' EX_USAGE), so that arguments a helper does not understand (an older
// helper, a newer debugkit) never read as "no such file".
const (
	exitOK         = 0
	exitFailure    = 1
	exitUsage      = 64
	exitNotFound   = 2
	exitPermission = 3
	exitResolve    = 4
	exitExists     = 5
	exitSpecial    = 6 // a socket, device or FIFO where a file, directory or symlink is needed
)

// defaultRoot is the target's root directory as the sidecar sees it through the shared
// PID namespace.
const defaultRoot = "/proc/1/root"

type command struct {
	name  string
	usage string
	run   func(args []string) int
}

var commands []command

func init() {
	commands = []command{
		{"reap", reapUsage, cmdReap},
		{"keepalive", keepaliveUsage, cmdKeepalive},
		{"stat", statUsage, cmdStat},
		{"tar-out", tarOutUsage, cmdTarOut},
		{"tar-in", tarInUsage, cmdTarIn},
		{"relay", relayUsage, cmdRelay},
		{"zombies", zombiesUsage, cmdZombies},
		{"env", envUsage, cmdEnv},
		{"hold", holdUsage, cmdHold},
		{"install-holder", installHolderUsage, cmdInstallHolder},
		{"target", targetUsage, cmdTarget},
		{"steps", stepsUsage, cmdSteps},
		{"as-target", asTargetUsage, cmdAsTarget},
	}
}

func main() {
	// The toolbox links /usr/local/bin/target to the helper: `target start` in a sidecar.
	if len(os.Args) > 0 && filepath.Base(os.Args[0]) == "target" {
		os.Exit(run(append([]string{"target"}, os.Args[1:]...)))
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	// Before anything else, and so before the target is touched: the target's own
	// processes run as the sidecar's UID and must not open this process's stdout (to
	// write their own archive into it) or read its memory.
	if err := setNotDumpable(); err != nil {
		errorf("cannot make this process non-dumpable: %v", err)
		return exitFailure
	}
	if len(args) == 0 {
		errorf("no command given (see %s -h)", prog)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, usage())
		return exitOK
	case "--version", "-version", "version":
		fmt.Printf("%s %s (%s %s/%s)\n", prog, version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:])
		}
	}
	errorf("unknown command %q (see %s -h)", args[0], prog)
	return exitUsage
}

func usage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: tools for debugkit's sidecar\n\nUsage:\n", prog, version)
	for _, c := range commands {
		fmt.Fprintf(&b, "  %s %s\n", prog, firstLine(c.usage))
	}
	fmt.Fprintf(&b, "  %s --version\n\nRun '%s COMMAND -h' for a command's options.\n", prog, prog)
	return b.String()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// errorf prints one line on stderr: "debugkit-helper: " and the message, with any
// line breaks in it folded, so that a caller can read exactly one line.
func errorf(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	msg = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(msg)
	fmt.Fprintf(os.Stderr, "%s: %s\n", prog, msg)
}

// warnf is errorf for conditions that do not fail the command.
func warnf(format string, args ...interface{}) {
	errorf("warning: "+format, args...)
}

// infof says, on stderr, something a person should know about what is about to run.
func infof(format string, args ...interface{}) {
	errorf(format, args...)
}

// cliError carries the exit code a failure maps to.
type cliError struct {
	code int
	msg  string
}

func (e *cliError) Error() string { return e.msg }

func failf(code int, format string, args ...interface{}) *cliError {
	return &cliError{code: code, msg: fmt.Sprintf(format, args...)}
}

// report prints err (if any) and returns its exit code.
func report(err error) int {
	if err == nil {
		return exitOK
	}
	var ce *cliError
	if errors.As(err, &ce) {
		errorf("%s", ce.msg)
		return ce.code
	}
	errorf("%v", err)
	return exitFailure
}

// newFlags is a FlagSet that never prints: parse errors become one line via parseFlags.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args; ok is false when the command should exit with code (0 after
// -h, which prints the usage on stdout).
func parseFlags(fs *flag.FlagSet, args []string, usageText string, usageCode int) (code int, ok bool) {
	err := fs.Parse(args)
	if err == flag.ErrHelp {
		fmt.Fprintf(os.Stdout, "Usage: %s %s", prog, usageText)
		return exitOK, false
	}
	if err != nil {
		errorf("%s: %v (usage: %s %s)", fs.Name(), err, prog, firstLine(usageText))
		return usageCode, false
	}
	return 0, true
}

func usageErrorf(name, usageText string, code int, format string, args ...interface{}) int {
	errorf("%s: %s (usage: %s %s)", name, fmt.Sprintf(format, args...), prog, firstLine(usageText))
	return code
}

// seconds is a flag value in seconds: a non-negative decimal number ("2", "0.5").
type seconds struct {
	d   time.Duration
	set bool
}

func (s *seconds) String() string { return strconv.FormatFloat(s.d.Seconds(), 'f', -1, 64) }

func (s *seconds) Set(v string) error {
	d, err := parseSeconds(v)
	if err != nil {
		return err
	}
	s.d, s.set = d, true
	return nil
}

func parseSeconds(v string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("not a number of seconds: %q", v)
	}
	if f < 0 {
		return 0, fmt.Errorf("negative number of seconds: %q", v)
	}
	if f > 100*365*24*3600 {
		return 0, fmt.Errorf("too many seconds: %q", v)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// errnoText is the short, lower-case text the file commands report for an error.
func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOENT:
			return "not found"
		case syscall.EACCES, syscall.EPERM:
			return "permission denied"
		case syscall.ENOTDIR:
			return "not a directory"
		case syscall.ELOOP:
			return "too many levels of symbolic links (or a magic link)"
		case syscall.EXDEV:
			return "resolves outside the root"
		case syscall.ENAMETOOLONG:
			return "file name too long"
		}
		return errno.Error()
	}
	return err.Error()
}

// errnoCode maps an error to the file commands' exit codes.
func errnoCode(err error) int {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOENT:
			return exitNotFound
		case syscall.EACCES, syscall.EPERM:
			return exitPermission
		case syscall.ENOTDIR, syscall.ELOOP, syscall.EXDEV, syscall.ENAMETOOLONG:
			return exitResolve
		}
	}
	return exitFailure
}

func isErrno(err error, want ...syscall.Errno) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	for _, w := range want {
		if errno == w {
			return true
		}
	}
	return false
}
