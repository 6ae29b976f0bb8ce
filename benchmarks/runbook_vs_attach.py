#!/usr/bin/env python3
"""A 10-step runbook (one sidecar, ten execs) vs 10 separate `debugkit attach` calls.

Measured in the same process run, rounds interleaved (attach, runbook, 10 attaches, ...)
so a drift in machine speed hits every side alike. Each step runs `true`, like the
attaches, so the comparison is of the machinery alone. Prints the median wall time of
one `debugkit attach T -- true`, of the runbook, of 10 attaches in a row, and the ratios
runbook / one attach (goal <= 1.3) and runbook / 10 attaches.

    .venv/bin/python benchmarks/runbook_vs_attach.py [--rounds 5] [--steps 10] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c

DEBUGKIT = c.debugkit()  # this checkout's code, with a warm bytecode cache (see _common.py)
TARGET_IMAGE = "debugkit-fixture/named-user:1"


def timed(argv: list[str]) -> float:
    return c.timed(argv)


def runbook_text(steps: int) -> str:
    lines = ["name: bench", f"description: {steps} steps that each run true", "steps:"]
    lines += [f"  - {{name: step-{i}, run: [\"true\"], timeout: 30}}" for i in range(1, steps + 1)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--steps", type=int, default=10, help="steps in the runbook = attaches per batch")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    c.check_code_under_test()

    target = f"debugkit-bench-rb-{os.getpid()}"
    workdir = tempfile.mkdtemp(prefix="debugkit-bench-")
    book = Path(workdir) / "bench.yaml"
    book.write_text(runbook_text(args.steps))
    subprocess.run(["docker", "run", "-d", "--name", target, "--label", "io.debugkit.test=1", TARGET_IMAGE],
                   check=True, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while b"listening on" not in subprocess.run(["docker", "logs", target], capture_output=True).stdout + \
                subprocess.run(["docker", "logs", target], capture_output=True).stderr:
            if time.monotonic() > deadline:
                raise SystemExit(f"target {target} did not start listening")
            time.sleep(0.1)
        attach = [*DEBUGKIT, "attach", target, "--", "true"]
        run_book = [*DEBUGKIT, "runbook", "run", str(book), target, "-o", "json"]
        for argv in (attach, run_book):  # warm-up: page cache, image layers, Python bytecode
            timed(argv)
        one, books, batches = [], [], []
        for _ in range(args.rounds):
            one.append(timed(attach))
            books.append(timed(run_book))
            batches.append(sum(timed(attach) for _ in range(args.steps)))
    finally:
        subprocess.run(["docker", "rm", "-f", target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(workdir, ignore_errors=True)

    one_m, book_m, batch_m = (statistics.median(x) for x in (one, books, batches))
    result = {
        "rounds": args.rounds,
        "steps": args.steps,
        "one_attach_median_s": round(one_m, 4),
        "runbook_median_s": round(book_m, 4),
        "separate_attaches_median_s": round(batch_m, 4),
        "runbook_over_one_attach": round(book_m / one_m, 3),
        "runbook_over_separate_attaches": round(book_m / batch_m, 3),
        "per_step_cost_s": round((book_m - one_m) / args.steps, 4),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "runbook_s": [round(x, 4) for x in books],
        "one_attach_s": [round(x, 4) for x in one],
        "separate_attaches_s": [round(x, 4) for x in batches],
    }
    if args.json:
        print(json.dumps(result))
    else:
        n = args.steps
        print(f"rounds:                                {args.rounds} (interleaved)")
        print(f"one `debugkit attach T -- true`:       {one_m:.3f} s median")
        print(f"{n}-step runbook (one sidecar):         {book_m:.3f} s median")
        print(f"{n} separate attaches:                  {batch_m:.3f} s median")
        print(f"runbook / one attach:                  {result['runbook_over_one_attach']:.2f} (goal <= 1.3)")
        print(f"runbook / {n} attaches:                 {result['runbook_over_separate_attaches']:.2f}")
        print(f"cost per step ((runbook - attach)/{n}):  {result['per_step_cost_s'] * 1000:.0f} ms "
              f"(no exec: the steps run in the sidecar's main process)")
        print(f"machine:                               {result['cpus']} CPUs, load average "
              f"{result['load_average_1m']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
