#!/usr/bin/env python3
"""Where the time of one `debugkit ARGS...` goes: a timeline of its phases and requests.

Runs debugkit in a child interpreter (this checkout, warm bytecode cache) whose Docker
Engine and Kubernetes clients are wrapped to note every request with its duration, and
prints, in milliseconds since the child was spawned: the interpreter's start, the CLI's
imports, the runtime's plan, each request, the exit code, and the interpreter's end.
Repeat with --runs to see the spread (the last run is printed, with medians of the phases);
on Kubernetes, each run after the first finds the debug container the first one left.

    .venv/bin/python benchmarks/timeline.py [--runs 5] -- attach T -- true
    .venv/bin/python benchmarks/timeline.py -- attach --kubeconfig K pod/P -n NS -- echo ready
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import _common as c

CHILD = r'''
import json, os, re, sys, time
marks = [("python started", time.time())]
short = lambda path: re.sub(r"[0-9a-f]{32,}", lambda m: m.group(0)[:12], path.split("?")[0])


def mark(name):
    marks.append((name, time.time()))


def wrap(cls, name, label):
    orig = getattr(cls, name)

    def wrapped(self, *args, **kwargs):
        start = time.time()
        try:
            return orig(self, *args, **kwargs)
        finally:
            mark(f"  {label(args)} ({(time.time() - start) * 1000:.1f} ms)")
    setattr(cls, name, wrapped)


def phases(cls, names):
    for name in names:
        def make(orig, name):
            def wrapped(self, *args, **kwargs):
                mark(f"{name} begins")
                try:
                    return orig(self, *args, **kwargs)
                finally:
                    mark(f"{name} ends")
            return wrapped
        setattr(cls, name, make(getattr(cls, name), name))


def phase_function(module, name):
    orig = getattr(module, name)

    def wrapped(*args, **kwargs):
        mark(f"{name} begins")
        try:
            return orig(*args, **kwargs)
        finally:
            mark(f"{name} ends")
    setattr(module, name, wrapped)


PATCHES = {
    "debugkit.runtimes.docker.engine": lambda m: (
        wrap(m.EngineClient, "_request", lambda a: f"{a[0]} {short(a[1])}"),
        wrap(m.EngineClient, "_hijack", lambda a: f"{a[0]} {short(a[1])} (hijacked)")),
    "debugkit.runtimes.kubernetes.kubeclient": lambda m: (
        wrap(m.KubeClient, "request", lambda a: f"{a[0]} {short(a[1])}"),
        wrap(m.KubeClient, "stream", lambda a: f"websocket {a[0].rsplit('/', 1)[-1]} "
                                               f"{' '.join(v for q, v in a[1] if q == 'command')[:60]}")),
    "debugkit.session.planning": lambda m: phase_function(m, "plan"),  # written once, for every runtime
    "debugkit.runtimes.docker.runtime": lambda m: phases(m.DockerRuntime, ("run",)),
    "debugkit.runtimes.kubernetes.runtime": lambda m: phases(m.KubernetesRuntime, ("run", "wait_ready")),
}


class Patcher:
    # Wraps the clients as their modules load (nothing is imported ahead of its time).
    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        import importlib.machinery
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            PATCHES[name](module)
        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, Patcher())
mark("timeline ready")
import debugkit.cli
mark("imported debugkit.cli (click, the commands)")
code = 0
try:
    debugkit.cli.main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
mark(f"exit {code}")
os.write(int(os.environ["DEBUGKIT_TIMELINE_FD"]), json.dumps(marks).encode())
sys.exit(code)
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("args", nargs=argparse.REMAINDER, help="debugkit's arguments (after --)")
    args = parser.parse_args()
    argv = args.args[1:] if args.args[:1] == ["--"] else args.args
    c.check_code_under_test()
    phases: dict[str, list[float]] = {}
    for _ in range(args.runs):
        read, write = os.pipe()
        spawned = time.time()
        proc = subprocess.run([sys.executable, "-c", CHILD, *argv], pass_fds=(write,),
                              env={**c.env(), "DEBUGKIT_TIMELINE_FD": str(write)},
                              stdin=subprocess.DEVNULL, capture_output=True)
        ended = time.time()
        os.close(write)
        with os.fdopen(read, "rb") as fh:
            marks = json.loads(fh.read() or b"[]")
        if not marks:
            raise SystemExit(f"the child failed: {proc.stderr.decode(errors='replace')[-2000:]}")
        marks.append(("interpreter ended", ended))
        lines, prev, phase_prev, index = [], spawned, spawned, 0
        for name, at in marks:
            lines.append(f"{(at - spawned) * 1000:7.1f} {(at - prev) * 1000:+7.1f}  {name}")
            prev = at
            if not name.startswith("  "):  # a phase, not a request
                index += 1
                phases.setdefault(f"{index:02d} {name.split(' (')[0]}", []).append((at - phase_prev) * 1000)
                phase_prev = at
    print(f"debugkit {' '.join(argv)}  (exit {proc.returncode}; ms since spawn, +ms since the previous line)")
    print("\n".join(lines))
    if args.runs > 1:
        print(f"\nmedians over {args.runs} runs (ms since the previous phase, requests included):")
        for name, xs in phases.items():
            print(f"{statistics.median(xs):7.1f}  {name[3:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
