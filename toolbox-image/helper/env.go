package main

import (
	"os"
	"strings"
	"syscall"
)

const envUsage = `env [--from FILE] [--or-continue] -- CMD [ARG...]
Runs CMD with the environment of the target's main process, read from FILE (default
/proc/1/environ): its variables replace this process's, except DEBUGKIT_* and TERM,
which are kept, and PATH, which is the target's followed by this one's (so the
sidecar's tools stay reachable). Says on stderr where the environment came from.
When FILE cannot be read: exit 3 (permission denied) or 1 (any other reason) with
the reason, or with --or-continue a warning and CMD with this process's own environment.
`

func cmdEnv(args []string) int {
	fs := newFlags("env")
	from := fs.String("from", "/proc/1/environ", "")
	orContinue := fs.Bool("or-continue", false, "")
	if code, ok := parseFlags(fs, args, envUsage, exitUsage); !ok {
		return code
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return usageErrorf("env", envUsage, exitUsage, "no command given")
	}
	data, err := os.ReadFile(*from)
	env := os.Environ()
	switch {
	case err != nil && *orContinue:
		warnf("cannot read the target's environment (%s: %s): keeping the sidecar's", *from, errnoText(err))
	case err != nil:
		errorf("cannot read the target's environment (%s: %s)", *from, errnoText(err))
		if isErrno(err, syscall.EACCES, syscall.EPERM) {
			return exitPermission
		}
		return exitFailure
	default:
		env = targetEnv(data, os.Environ())
		infof("environment of the target's process from %s (%d variables)", *from, len(env))
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			os.Setenv("PATH", kv[len("PATH="):])
		}
	}
	path, code, msg := lookPath(argv[0])
	if code != 0 {
		errorf("%s", msg)
		return code
	}
	if err := syscall.Exec(path, argv, env); err != nil {
		errorf("%s: %s", argv[0], execErrorText(err))
		return exitCannotExec
	}
	return exitOK // not reached
}

// targetEnv is the target's NUL-separated environment, with this process's DEBUGKIT_*
// and TERM kept and its PATH appended to the target's.
func targetEnv(data []byte, own []string) []string {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, seen := vars[k]; !seen {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, kv := range strings.Split(string(data), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			set(k, v)
		}
	}
	ownPath := ""
	for _, kv := range own {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch {
		case k == "PATH":
			ownPath = v
		case k == "TERM" || strings.HasPrefix(k, "DEBUGKIT_"):
			set(k, v)
		}
	}
	if ownPath != "" {
		if target, ok := vars["PATH"]; ok && target != "" {
			set("PATH", target+":"+ownPath)
		} else {
			set("PATH", ownPath)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out
}
