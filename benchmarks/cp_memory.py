#!/usr/bin/env python3
"""Peak memory of `debugkit cp`, out of a target and into it (--write), for a small and a
large file: a streaming copy's memory does not grow with the file.

The files are sparse (zeros), made in the target with `debugkit attach ... truncate` and
locally with truncate(2); each copy's SHA-256 is checked. Peak RSS is /usr/bin/time's %M.
By default a Docker fixture target is started; --target (and --arg for every extra CLI
argument, e.g. --arg=--kubeconfig=FILE --arg=-n --arg=NS) measures any other one.

    .venv/bin/python benchmarks/cp_memory.py [--sizes-mib 16,1024] [--target pod/web --arg ...]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c

TARGET_IMAGE = "debugkit-fixture/named-user:1"
REMOTE_DIR = "/home/nonroot"


def debugkit(*args: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "debugkit", args[0], *extra, *args[1:]]


def peak(argv: list[str]) -> tuple[int, float]:
    """(peak RSS in KiB, wall seconds) of a command that must succeed."""
    with tempfile.NamedTemporaryFile("r") as out:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name, *argv], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.decode(errors='replace')}")
        return int(out.read().split()[-1]), elapsed


def zeros_sha256(size: int) -> str:
    digest, block = hashlib.sha256(), bytes(1 << 20)
    for _ in range(size >> 20):
        digest.update(block)
    digest.update(bytes(size & ((1 << 20) - 1)))
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mib", default="16,1024")
    parser.add_argument("--target", help="a running target (default: start a Docker fixture)")
    parser.add_argument("--arg", action="append", default=[], help="an extra CLI argument (repeatable)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes_mib.split(",")]
    target = args.target or f"debugkit-bench-mem-{os.getpid()}"
    if not args.target:
        subprocess.run(["docker", "run", "-d", "--name", target, "--label", "io.debugkit.test=1", TARGET_IMAGE],
                       check=True, stdout=subprocess.DEVNULL)
        time.sleep(0.5)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="debugkit-bench-mem-"))
    try:
        for mib in sizes:
            size = mib << 20
            name = f"bench-{mib}.bin"
            subprocess.run(debugkit("attach", target, "--", "truncate", "-s", str(size), f"/proc/1/root{REMOTE_DIR}/{name}",
                                    extra=args.arg), check=True, stdout=subprocess.DEVNULL)
            out_rss, out_s = peak(debugkit("cp", f"{target}:{REMOTE_DIR}/{name}", str(work / name), extra=args.arg))
            assert c.sha256_file(work / name) == zeros_sha256(size), "copy out: checksum mismatch"
            in_rss, in_s = peak(debugkit("cp", "--write", "--force", str(work / name), f"{target}:{REMOTE_DIR}/{name}",
                                         extra=args.arg))
            (work / name).unlink()
            rows.append({"mib": mib, "out_peak_rss_mib": round(out_rss / 1024, 1), "out_s": round(out_s, 2),
                         "in_peak_rss_mib": round(in_rss / 1024, 1), "in_s": round(in_s, 2)})
            subprocess.run(debugkit("attach", target, "--", "rm", "-f", f"/proc/1/root{REMOTE_DIR}/{name}",
                                    extra=args.arg), check=True, stdout=subprocess.DEVNULL)
    finally:
        for path in work.iterdir():
            path.unlink()
        work.rmdir()
        if not args.target:
            subprocess.run(["docker", "rm", "-f", target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        print(f"{row['mib']:>6} MiB: cp out peak RSS {row['out_peak_rss_mib']:6.1f} MiB ({row['out_s']:.2f} s); "
              f"cp --write in peak RSS {row['in_peak_rss_mib']:6.1f} MiB ({row['in_s']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
