#!/usr/bin/env python3
"""What running every sidecar command under `debugkit-helper reap` costs (issue 16).

Raw engine commands only (no debugkit), interleaved in one run:

  run          docker run <attach's flags> TOOLBOX true
  run+reap     docker run <attach's flags> TOOLBOX /usr/local/bin/debugkit-helper reap -- true
  exec         docker exec C true
  exec+reap    docker exec C /usr/local/bin/debugkit-helper reap -- true
  exec+hold    docker exec C /usr/local/bin/debugkit-helper reap --hold NAME -- true

<attach's flags> are those `debugkit inspect T` prints. C is a sidecar-like container
(the same flags, joined to the target) whose main process is the helper's keepalive on
@NAME, as a kept-alive sidecar's is; `exec+hold` is exactly what debugkit runs in it
(reap holds the keep-alive's socket while the command runs). Prints the added
milliseconds and the ratios.

    .venv/bin/python benchmarks/reaper_cost.py [--runs 21] [--runtime docker|podman] [--json]
"""
from __future__ import annotations

import argparse
import sys

import _common as c

TARGET_IMAGE = "debugkit-fixture/named-user:1"
HELPER = "/usr/local/bin/debugkit-helper"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", choices=("docker", "podman"), default="docker")
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    c.check_code_under_test()
    machine = c.Machine()
    cli = args.runtime
    scheme = "podman://" if cli == "podman" else ""
    with c.container([cli], TARGET_IMAGE, name=c.unique("debugkit-bench-reap")) as target:
        info = c.inspect_target(scheme + target)
        run_plain = c.equivalent_run(info, cli, command=("true",))
        run_reap = c.equivalent_run(info, cli, command=(HELPER, "reap", "--", "true"))
        socket = c.unique("debugkit-bench-ka")
        flags = [a for a in run_plain[2:-3] if a != "--rm"]  # between `run` and `--entrypoint true IMAGE`
        keepalive = (HELPER, "keepalive", "--socket", socket, "--idle", "3600", "--first", "3600")
        with c.container([cli], info["sidecar_image"], name=socket, args=tuple(flags), command=keepalive) as side:
            cases = [
                ("run", lambda: c.timed(run_plain)),
                ("run+reap", lambda: c.timed(run_reap)),
                ("exec", lambda: c.timed([cli, "exec", side, "true"])),
                ("exec+reap", lambda: c.timed([cli, "exec", side, HELPER, "reap", "--", "true"])),
                ("exec+hold", lambda: c.timed([cli, "exec", side, HELPER, "reap", "--hold", socket, "--", "true"])),
            ]
            samples = c.interleave(cases, args.runs)
    med = {name: c.median(xs) for name, xs in samples.items()}
    result = {"runtime": cli, "runs": args.runs, "medians_s": {k: round(v, 4) for k, v in med.items()},
              "run_added_ms": round((med["run+reap"] - med["run"]) * 1000, 1),
              "run_ratio": round(med["run+reap"] / med["run"], 3),
              "exec_added_ms": round((med["exec+reap"] - med["exec"]) * 1000, 1),
              "exec_ratio": round(med["exec+reap"] / med["exec"], 3),
              "exec_hold_added_ms": round((med["exec+hold"] - med["exec"]) * 1000, 1),
              "exec_hold_ratio": round(med["exec+hold"] / med["exec"], 3),
              "machine": machine.as_dict()}
    rows = [("runtime", f"{cli}, {args.runs} runs each (interleaved)")]
    for name, label in (("run", f"{cli} run ... TOOLBOX true"), ("run+reap", f"{cli} run ... reap -- true"),
                        ("exec", f"{cli} exec C true"), ("exec+reap", f"{cli} exec C reap -- true"),
                        ("exec+hold", f"{cli} exec C reap --hold NAME -- true")):
        rows.append((label, f"{c.ms(med[name])} median"))
    rows += [
        ("reaper in a run", f"{result['run_added_ms']:+.1f} ms, ratio {result['run_ratio']:.2f}"),
        ("reaper in an exec", f"{result['exec_added_ms']:+.1f} ms, ratio {result['exec_ratio']:.2f}"),
        ("reaper holding the keep-alive", f"{result['exec_hold_added_ms']:+.1f} ms, "
                                          f"ratio {result['exec_hold_ratio']:.2f}"),
        ("machine", machine.line()),
    ]
    c.emit(result, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
