#!/usr/bin/env python3
"""`debugkit cp` out of a Docker target vs `docker cp` of the same file, in the same run.

A distroless fixture target gets a file of random bytes (put there with the engine's
archive API, not with debugkit). Each round copies it out with `debugkit cp T:PATH DIR`
and with `docker cp T:PATH DIR`, interleaved (A B A B ...), into fresh directories on the
same filesystem, and checks the copy's SHA-256 once. Reported: the median wall time of
each (the whole command: start, copy, clean up), the throughput that gives (file size /
median time), debugkit's throughput as a fraction of docker cp's (the goal is >= 0.9),
the same for a 1-byte file (the fixed cost of each command) and the peak RSS of each
process (/usr/bin/time's %M). `--size-mib 1024 --runs 1` shows that debugkit's memory
does not grow with the file.

A third case is the floor of any copy through an exec stream: `docker exec S cat
/proc/1/root/PATH` in a sidecar-like container S (the toolbox, the target's PID namespace
and user), with the Go CLI. Each case also reports the CPU seconds it cost the engine
(dockerd, containerd and the shims, from /proc) and the client (the command's own rusage).

    .venv/bin/python benchmarks/cp_vs_docker_cp.py [--size-mib 256] [--runs 7] [--json]
"""
from __future__ import annotations

import argparse
import hashlib
import resource
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import _common as c

TARGET_IMAGE = "debugkit-fixture/named-user:1"
REMOTE_DIR = "/home/nonroot"


def run_timed(argv: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one command, which must succeed. The RSS comes from
    /usr/bin/time (its child's wait4 ru_maxrss), so that our own memory never counts."""
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *argv], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=c.env())
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
        return elapsed, int(rss.read().split()[-1])


ENGINE_PROCESSES = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def engine_cpu() -> float:
    """CPU seconds (user + system) used so far by the engine's processes: dockerd,
    containerd and every shim (they copy an exec's output)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        name = data[data.index(b"(") + 1:data.rindex(b")")].decode(errors="replace")
        if name in ENGINE_PROCESSES or name.startswith("containerd-shim"):
            fields = data[data.rindex(b")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def put_file(target: str, name: str, size: int) -> str:
    """A file of `size` random bytes in the target, readable by its user (root's, mode
    0644), through `docker cp - T:DIR` (a tar on stdin); its SHA-256."""
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / name
        with open(local, "wb") as fh:
            left = size
            while left:
                chunk = os.urandom(min(left, 1 << 20))
                fh.write(chunk)
                digest.update(chunk)
                left -= len(chunk)
        proc = subprocess.Popen(["docker", "cp", "-", f"{target}:{REMOTE_DIR}"], stdin=subprocess.PIPE)
        with tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
            info = tar.gettarinfo(str(local), arcname=name)
            info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
            with open(local, "rb") as fh:
                tar.addfile(info, fh)
        proc.stdin.close()
        if proc.wait() != 0:
            raise SystemExit(f"docker cp - {target}:{REMOTE_DIR} failed")
    return digest.hexdigest()


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--keep-target", metavar="NAME", help="use this running target instead of starting one")
    parser.add_argument("--compare-with", metavar="DIR",
                        help="also time the debugkit package in DIR (another revision: before/after in one run)")
    args = parser.parse_args()

    debugkit = c.debugkit()
    c.check_code_under_test()
    size = args.size_mib << 20
    target = args.keep_target or f"debugkit-bench-cp-{os.getpid()}"
    if not args.keep_target:
        subprocess.run(["docker", "run", "-d", "--name", target, "--label", "io.debugkit.test=1", TARGET_IMAGE],
                       check=True, stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="debugkit-bench-cp-", dir=os.environ.get("BENCH_DIR")))
    try:
        time.sleep(0.5)
        expected = put_file(target, "big.bin", size)
        put_file(target, "tiny.bin", 1)
        info = c.inspect_target(target)
        side = f"debugkit-bench-cp-side-{os.getpid()}"
        subprocess.run(["docker", "run", "-d", "--name", side, "--label", "io.debugkit.test=1", "--pid",
                        f"container:{target}", "--user", f"{info['uid']}:{info['gid']}", "--cap-drop", "ALL",
                        "--entrypoint", "sleep", info["sidecar_image"], "3600"], check=True, stdout=subprocess.DEVNULL)
        tools = {
            "debugkit": lambda src, dest: debugkit + ["cp", f"{target}:{src}", dest],
            "docker": lambda src, dest: ["docker", "cp", f"{target}:{src}", dest],
            "exec": lambda src, dest: ["sh", "-c", 'exec docker exec "$0" cat "/proc/1/root$1" > "$2/$(basename "$1")"',
                                       side, src, dest],
        }
        if args.compare_with:
            other = ["env", f"PYTHONPATH={os.path.abspath(args.compare_with)}", *debugkit]
            tools["other"] = lambda src, dest: other + ["cp", f"{target}:{src}", dest]
        times = {name: {"big": [], "tiny": []} for name in tools}
        cpu = {name: {"engine": [], "client": []} for name in tools}
        rss = {name: [] for name in tools}
        n = 0
        for round_ in range(args.runs + 1):  # round 0 warms up (page cache, bytecode) and checks
            for kind in ("big", "tiny"):
                for name, argv in tools.items():
                    n += 1
                    dest = work / f"{n}"
                    dest.mkdir()
                    engine_before, client_before = engine_cpu(), client_cpu()
                    elapsed, peak = run_timed(argv(f"{REMOTE_DIR}/{kind}.bin", str(dest)))
                    if round_ and kind == "big":
                        cpu[name]["engine"].append(engine_cpu() - engine_before)
                        cpu[name]["client"].append(client_cpu() - client_before)
                    if round_ == 0 and kind == "big":
                        got = c.sha256_file(dest / "big.bin")
                        if got != expected:
                            raise SystemExit(f"{name}: the copy's SHA-256 {got} is not {expected}")
                    shutil.rmtree(dest)
                    if round_:
                        times[name][kind].append(elapsed)
                        if kind == "big":
                            rss[name].append(peak)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(["docker", "rm", "-f", f"debugkit-bench-cp-side-{os.getpid()}"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        c.remove_sidecars(["docker"], target)
        if not args.keep_target:
            subprocess.run(["docker", "rm", "-f", target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    mib = size / (1 << 20)
    result = {"size_mib": args.size_mib, "runs": args.runs}
    for name in tools:
        big, tiny = median(times[name]["big"]), median(times[name]["tiny"])
        result[name] = {
            "median_s": round(big, 3),
            "throughput_mib_s": round(mib / big, 1),
            "tiny_median_s": round(tiny, 3),
            "throughput_after_fixed_cost_mib_s": round(mib / max(big - tiny, 1e-6), 1),
            "peak_rss_mib": round(max(rss[name]) / 1024, 1),
            "engine_cpu_s": round(median(cpu[name]["engine"]), 3),
            "client_cpu_s": round(median(cpu[name]["client"]), 3),
        }
    pairwise = [d / k for d, k in zip(times["docker"]["big"], times["debugkit"]["big"])]
    result["throughput_ratio"] = round(result["docker"]["median_s"] / result["debugkit"]["median_s"], 3)
    result["exec_floor_ratio"] = round(result["docker"]["median_s"] / result["exec"]["median_s"], 3)
    result["debugkit_over_exec_floor"] = round(result["exec"]["median_s"] / result["debugkit"]["median_s"], 3)
    result["load_1m_after"] = round(os.getloadavg()[0], 2)
    result["median_pairwise_ratio"] = round(median(pairwise), 3)
    if "other" in tools:
        result["other_throughput_ratio"] = round(result["docker"]["median_s"] / result["other"]["median_s"], 3)
    if args.json:
        print(json.dumps(result))
        return 0
    d, k = result["debugkit"], result["docker"]
    print(f"file: {args.size_mib} MiB, {args.runs} runs each, interleaved")
    print(f"debugkit cp: {d['median_s']:.3f} s median, {d['throughput_mib_s']:.0f} MiB/s; 1 byte: "
          f"{d['tiny_median_s']:.3f} s; {d['throughput_after_fixed_cost_mib_s']:.0f} MiB/s after that fixed cost; "
          f"peak RSS {d['peak_rss_mib']:.1f} MiB")
    print(f"docker cp:   {k['median_s']:.3f} s median, {k['throughput_mib_s']:.0f} MiB/s; 1 byte: "
          f"{k['tiny_median_s']:.3f} s; {k['throughput_after_fixed_cost_mib_s']:.0f} MiB/s after that fixed cost; "
          f"peak RSS {k['peak_rss_mib']:.1f} MiB")
    e = result["exec"]
    print(f"docker exec cat (exec-stream floor): {e['median_s']:.3f} s median, {e['throughput_mib_s']:.0f} MiB/s "
          f"= {result['exec_floor_ratio']:.2f} of docker cp; debugkit reaches {result['debugkit_over_exec_floor']:.2f} "
          f"of it")
    for name in tools:
        print(f"CPU per {args.size_mib} MiB copy, {name}: engine {result[name]['engine_cpu_s']:.2f} s, "
              f"client {result[name]['client_cpu_s']:.2f} s")
    if "other" in tools:
        o = result["other"]
        print(f"{args.compare_with}: {o['median_s']:.3f} s median, {o['throughput_mib_s']:.0f} MiB/s; 1 byte: "
              f"{o['tiny_median_s']:.3f} s; {o['throughput_after_fixed_cost_mib_s']:.0f} MiB/s after that fixed "
              f"cost; peak RSS {o['peak_rss_mib']:.1f} MiB; ratio to docker cp {result['other_throughput_ratio']:.2f}")
    print(f"throughput ratio (debugkit / docker cp): {result['throughput_ratio']:.2f} "
          f"(median of pairwise ratios {result['median_pairwise_ratio']:.2f}; goal >= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
