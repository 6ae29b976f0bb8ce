#!/usr/bin/env python3
"""Five `debugkit attach T --keep-alive 1m -- true` in a row vs five raw `docker run`.

A round of debugkit is five attaches: the first creates the reusable sidecar, the other
four exec into it. A round of the baseline is five `docker run <the flags debugkit
inspect prints> TOOLBOX true`. Rounds alternate (debugkit, docker, debugkit, ...);
between rounds, untimed, the kept-alive sidecar is removed, so every debugkit round
starts from nothing. Each round asserts that exactly one sidecar served its five calls.

Prints the median round of each side and their ratio (goal <= 1.0), and the median
first call and later calls of debugkit against one docker run.

    .venv/bin/python benchmarks/keep_alive_vs_docker_run.py [--rounds 7] [--calls 5]
        [--runtime docker|podman] [--json]
"""
from __future__ import annotations

import argparse
import sys

import _common as c

TARGET_IMAGE = "debugkit-fixture/named-user:1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", choices=("docker", "podman"), default="docker")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5, help="calls per round (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    c.check_code_under_test()
    machine = c.Machine()
    cli = args.runtime
    scheme = "podman://" if cli == "podman" else ""
    dk = c.debugkit()
    firsts, laters, singles = [], [], []
    with c.container([cli], TARGET_IMAGE, name=c.unique("debugkit-bench-ka")) as target:
        try:
            raw = c.equivalent_run(c.inspect_target(scheme + target), cli)
            attach = [*dk, "attach", scheme + target, "--keep-alive", "1m", "--", "true"]

            def ours() -> float:
                times = [c.timed(attach) for _ in range(args.calls)]
                made = c.remove_sidecars([cli], target)  # also the cleanup between rounds
                if made != 1:
                    raise SystemExit(f"{args.calls} attaches with --keep-alive left {made} sidecars, not 1")
                firsts.append(times[0])
                laters.extend(times[1:])
                return sum(times)

            def theirs() -> float:
                times = [c.timed(raw) for _ in range(args.calls)]
                singles.extend(times)
                return sum(times)

            c.remove_sidecars([cli], target)
            samples = c.interleave([("debugkit", ours), ("baseline", theirs)], args.rounds)
        finally:
            c.remove_sidecars([cli], target)
    del firsts[0], laters[:args.calls - 1], singles[:args.calls]  # the warm-up round
    result = {"runtime": cli, "rounds": args.rounds, "calls": args.calls, **c.compare(samples, "debugkit", "baseline"),
              "first_call_median_s": round(c.median(firsts), 4), "later_call_median_s": round(c.median(laters), 4),
              "docker_run_median_s": round(c.median(singles), 4), "baseline_argv": raw, "machine": machine.as_dict()}
    n = args.calls
    rows = [
        ("runtime", f"{cli}, {args.rounds} rounds of {n} calls each (alternating)"),
        (f"{n} x debugkit attach --keep-alive 1m", f"{c.ms(result['debugkit_median_s'])} median round"),
        (f"{n} x {cli} run <equivalent> true", f"{c.ms(result['baseline_median_s'])} median round"),
        ("ratio debugkit / raw", f"{result['ratio']:.2f} (median of pairwise ratios "
                                 f"{result['median_pairwise_ratio']:.2f}; goal <= 1.0)"),
        ("debugkit: first call (creates)", f"{c.ms(result['first_call_median_s'])} median"),
        ("debugkit: later calls (exec)", f"{c.ms(result['later_call_median_s'])} median"),
        (f"one {cli} run", f"{c.ms(result['docker_run_median_s'])} median"),
        ("machine", machine.line()),
    ]
    c.emit(result, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
