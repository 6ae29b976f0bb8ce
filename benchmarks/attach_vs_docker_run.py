#!/usr/bin/env python3
"""debugkit attach vs the equivalent raw `docker run`, measured in the same process.

Prints the median wall time of `debugkit attach T -- true`, of
`docker run --rm --pid container:T --network container:T --user U:G IMAGE true`,
their ratio, and the time of `debugkit --help`. Runs are interleaved (A B A B ...)
so a drift in machine speed hits both sides alike.

    .venv/bin/python benchmarks/attach_vs_docker_run.py [--runs 15]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
DEBUGKIT = str(BIN / "debugkit") if (BIN / "debugkit").exists() else "debugkit"
TARGET_IMAGE = "debugkit-fixture/named-user:1"


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from debugkit.session.defaults import toolbox_image as default_ref

    image = default_ref()
    target = f"debugkit-bench-{os.getpid()}"
    subprocess.run(["docker", "run", "-d", "--name", target, "--label", "io.debugkit.test=1", TARGET_IMAGE],
                   check=True, stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        info = json.loads(subprocess.run([DEBUGKIT, "inspect", target, "-o", "json"], check=True,
                                         capture_output=True).stdout)
        user = f"{info['uid']}:{info['gid']}"
        ours = [DEBUGKIT, "attach", target, "--", "true"]
        raw = ["docker", "run", "--rm", "--pid", f"container:{target}", "--network", f"container:{target}",
               "--user", user, image, "true"]
        for argv in (ours, raw):  # warm-up: page cache, image layers, Python bytecode
            timed(argv)
        ours_t, raw_t = [], []
        for _ in range(args.runs):
            ours_t.append(timed(ours))
            raw_t.append(timed(raw))
        help_t = [timed([DEBUGKIT, "--help"]) for _ in range(args.runs)]
    finally:
        subprocess.run(["docker", "rm", "-f", target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    ratios = [a / b for a, b in zip(ours_t, raw_t)]
    result = {
        "runs": args.runs,
        "debugkit_attach_median_s": round(statistics.median(ours_t), 4),
        "docker_run_median_s": round(statistics.median(raw_t), 4),
        "ratio_of_medians": round(statistics.median(ours_t) / statistics.median(raw_t), 3),
        "median_pairwise_ratio": round(statistics.median(ratios), 3),
        "debugkit_help_median_s": round(statistics.median(help_t), 4),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"runs each:                       {args.runs} (interleaved)")
        print(f"debugkit attach T -- true:       {result['debugkit_attach_median_s']:.3f} s median")
        print(f"docker run ... IMAGE true:       {result['docker_run_median_s']:.3f} s median")
        print(f"ratio (debugkit / docker run):   {result['ratio_of_medians']:.2f} "
              f"(median of pairwise ratios {result['median_pairwise_ratio']:.2f}; goal <= 1.5)")
        print(f"debugkit --help:                 {result['debugkit_help_median_s'] * 1000:.0f} ms median (goal <= 100 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
