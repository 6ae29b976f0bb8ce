#!/usr/bin/env python3
"""debugkit attach vs the equivalent raw `docker run` (or `podman run`), in one run.

Cases, interleaved (A B C A B C ...) so that a drift in machine speed hits all alike:

  debugkit    debugkit attach [podman://]T -- true
  equivalent  docker run <the flags `debugkit inspect T` prints> TOOLBOX true
              (--rm --pid/--network container:T --user U:G --cap-drop ALL
              --security-opt no-new-privileges --read-only --tmpfs /tmp --memory
              --pids-limit --cpus, labels, env; debugkit runs `true` under its reaper,
              `debugkit-helper reap -- true`: reaper_cost.py measures that alone)
  minimal     docker run --rm --pid/--network container:T --user U:G TOOLBOX true
              (the baseline of earlier figures)
  no cache    docker only: debugkit's attach again, with PYTHONDONTWRITEBYTECODE=1 and
              no bytecode cache (every start compiles what it imports)
  remote      podman only: `podman --url unix:///run/podman/podman.sock run` with the
              equivalent flags, i.e. through the same API service debugkit uses

and, afterwards, `debugkit --help` and four floors for scale: `python -c pass` (the
interpreter's start), `python -c 'import click'`, the modules a Docker attach imports
before its first request (and nothing else), and `docker version` (the Go CLI's start and
one API call). The ratio is debugkit over the equivalent run.

    .venv/bin/python benchmarks/attach_vs_docker_run.py [--runtime docker|podman] [--runs 15] [--json]
"""
from __future__ import annotations

import argparse
import sys

import _common as c

TARGET_IMAGE = "debugkit-fixture/named-user:1"
PODMAN_SOCKET = "unix:///run/podman/podman.sock"
# What a Docker attach imports before its first request: the floor of CPython's start and
# the imports, without any work.
ATTACH_IMPORTS = ("import debugkit.cli, debugkit.cli.attach, debugkit.session.flow, debugkit.session.planning, "
                  "debugkit.runtimes.docker.runtime, debugkit.runtimes.docker.planning, debugkit.runtimes.docker.engine")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", choices=("docker", "podman"), default="docker")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    c.check_code_under_test()
    machine = c.Machine()
    cli = args.runtime
    scheme = "podman://" if cli == "podman" else ""
    dk = c.debugkit()
    with c.container([cli], TARGET_IMAGE, name=c.unique("debugkit-bench")) as target:
        try:
            info = c.inspect_target(scheme + target)
            user = f"{info['uid']}:{info['gid']}"
            image = info["sidecar_image"]
            equivalent = c.equivalent_run(info, cli)
            cases = [
                ("debugkit", lambda: c.timed([*dk, "attach", scheme + target, "--", "true"])),
                ("equivalent", lambda: c.timed(equivalent)),
                ("minimal", lambda: c.timed([cli, "run", "--rm", "--pid", f"container:{target}", "--network",
                                             f"container:{target}", "--user", user, image, "true"])),
            ]
            if cli == "podman":
                remote = [cli, "--url", PODMAN_SOCKET, *equivalent[1:]]
                cases.append(("remote", lambda: c.timed(remote)))
            else:
                cases.append(("no cache", lambda: c.timed([*dk, "attach", target, "--", "true"],
                                                          environ=c.no_bytecode_cache())))
            samples = c.interleave(cases, args.runs)
            python = c.python()
            floors = c.interleave([
                ("help", lambda: c.timed([*dk, "--help"])),
                ("python", lambda: c.timed([python, "-c", "pass"])),
                ("click", lambda: c.timed([python, "-c", "import click"])),
                ("imports", lambda: c.timed([python, "-P", "-c", ATTACH_IMPORTS])),  # -P: not this checkout from the cwd
                ("cli", lambda: c.timed([cli, "version", "--format", "{{.Server.Version}}"])),
            ], args.runs)
        finally:
            c.remove_sidecars([cli], target)

    result = {"runtime": cli, "runs": args.runs, **c.compare(samples, "debugkit", "equivalent"),
              "minimal_median_s": round(c.median(samples["minimal"]), 4),
              "ratio_vs_minimal": round(c.median(samples["debugkit"]) / c.median(samples["minimal"]), 3),
              "help_median_s": round(c.median(floors["help"]), 4), "equivalent_argv": equivalent,
              "floors_median_s": {k: round(c.median(v), 4) for k, v in floors.items() if k != "help"},
              "machine": machine.as_dict()}
    if "no cache" in samples:
        result["no_bytecode_cache_median_s"] = round(c.median(samples["no cache"]), 4)
    if "remote" in samples:
        result["remote_median_s"] = round(c.median(samples["remote"]), 4)
        result["ratio_vs_remote"] = round(c.median(samples["debugkit"]) / c.median(samples["remote"]), 3)
    run_cmd = f"{cli} run"
    rows = [
        ("runtime", f"{cli}, {args.runs} runs each (interleaved)"),
        (f"debugkit attach {scheme}T -- true", f"{c.ms(result['debugkit_median_s'])} median"),
        (f"{run_cmd} <equivalent flags> TOOLBOX true", f"{c.ms(result['baseline_median_s'])} median"),
        (f"{run_cmd} <minimal flags> TOOLBOX true", f"{c.ms(result['minimal_median_s'])} median"),
    ]
    if "remote" in samples:
        rows.append(("podman --url SOCKET run <equivalent>", f"{c.ms(result['remote_median_s'])} median"))
    if "no cache" in samples:
        rows.append(("the same attach, no bytecode cache", f"{c.ms(result['no_bytecode_cache_median_s'])} median"))
    rows += [
        ("ratio debugkit / equivalent", f"{result['ratio']:.2f} (median of pairwise ratios "
                                        f"{result['median_pairwise_ratio']:.2f}; goal <= 1.3)"),
        ("ratio debugkit / minimal", f"{result['ratio_vs_minimal']:.2f}"),
    ]
    if "remote" in samples:
        rows.append(("ratio debugkit / podman --url run", f"{result['ratio_vs_remote']:.2f}"))
    fl = result["floors_median_s"]
    rows += [("debugkit --help", f"{c.ms(result['help_median_s'])} median (goal <= 100 ms)"),
             ("floors", f"python -c pass {c.ms(fl['python'])}, python -c 'import click' {c.ms(fl['click'])}, "
                        f"the attach's imports alone {c.ms(fl['imports'])}, {cli} version {c.ms(fl['cli'])}"),
             ("machine", machine.line())]
    c.emit(result, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
