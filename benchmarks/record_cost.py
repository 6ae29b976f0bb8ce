#!/usr/bin/env python3
"""The cost of --record on a scripted Docker attach, in one run.

debugkit is installed the way a user installs it: `pip install .` (not editable, with
bytecode) into a scratch virtualenv made for this run. Cases, interleaved (A B A B ...) so
that a drift in machine speed hits both alike, each writing to one audit log of the run's
own (the chain's cost is on both sides):

  plain     debugkit attach T -- sh -c 'seq 1 N'
  record    debugkit attach --record T -- sh -c 'seq 1 N'   (the output recorded, sealed,
            its SHA-256 in the end record)

The ratio is record over plain; the goal is at most 1.05.

    .venv/bin/python benchmarks/record_cost.py [--runs 15] [--lines 20000] [--json]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import _common as c

TARGET_IMAGE = "debugkit-fixture/named-user:1"


def scratch_install(where: Path) -> Path:
    """A new virtualenv with this checkout installed by `pip install .`; its debugkit."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    pip = [str(where / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir"]
    subprocess.run([*pip, str(c.REPO)], check=True, env={k: v for k, v in os.environ.items()
                                                         if k != "PYTHONDONTWRITEBYTECODE"})
    found = subprocess.run([str(where / "bin" / "python"), "-c", "import debugkit; print(debugkit.__file__)"],
                           check=True, capture_output=True, text=True, cwd="/").stdout.strip()
    if not found.startswith(str(where)):
        raise SystemExit(f"the scratch install imports debugkit from {found}, not from {where}")
    return where / "bin" / "debugkit"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--lines", type=int, default=20000, help="lines the command prints (seq 1 N)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    machine = c.Machine()
    work = Path(tempfile.mkdtemp(prefix="debugkit-record-bench-"))
    try:
        dk = str(scratch_install(work / "venv"))
        environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
        environ["DEBUGKIT_AUDIT_LOG"] = str(work / "state" / "audit.jsonl")
        command = ["--", "sh", "-c", f"seq 1 {args.lines}"]
        last = str(args.lines)
        with c.container(["docker"], TARGET_IMAGE, name=c.unique("debugkit-bench")) as target:
            try:
                samples = c.interleave([
                    ("plain", lambda: c.timed([dk, "attach", target, *command], want=last, environ=environ)),
                    ("record", lambda: c.timed([dk, "attach", "--record", target, *command], want=last,
                                               environ=environ)),
                ], args.runs)
            finally:
                c.remove_sidecars(["docker"], target)
        recordings = list((work / "state" / "recordings").glob("*.cast"))
        size = recordings[0].stat().st_size if recordings else 0
        verify = subprocess.run([dk, "audit", "verify"], env=environ, capture_output=True, text=True)
        if verify.returncode != 0:
            raise SystemExit(f"audit verify failed after the benchmark: {verify.stderr.strip()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {"runs": args.runs, "lines": args.lines, **c.compare(samples, "record", "plain"),
              "recordings": len(recordings), "recording_bytes": size, "install": "pip install . (scratch venv)",
              "machine": machine.as_dict()}
    c.emit(result, [
        ("plain attach (median)", c.ms(result["baseline_median_s"])),
        ("attach --record (median)", c.ms(result["debugkit_median_s"])),
        ("ratio record / plain", f"{result['ratio']:.3f} (pairwise {result['median_pairwise_ratio']:.3f}); "
                                 f"goal <= 1.05"),
        ("one recording", f"{size} bytes, {args.lines} lines of output"),
        ("machine", machine.line()),
    ], args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
