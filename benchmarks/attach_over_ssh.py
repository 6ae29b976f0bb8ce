#!/usr/bin/env python3
"""debugkit attach over ssh:// vs the equivalent `docker -H ssh:// run`, in the same process.

Prints the median wall time of `debugkit attach -H URL T -- true` and of
`docker -H URL run --rm --pid container:T --network container:T --user U:G IMAGE true`,
their ratio, and the median of one bare `ssh HOST true` (the cost of one handshake,
for scale). Runs are interleaved (A B A B ...) so a drift in machine speed hits both
sides alike. Both use the same ssh client, config and server.

    eval "$(scripts/ssh-testenv env)"      # the test server: ssh://root@127.0.0.1:2222
    PATH="$DEBUGKIT_SSH_BIN:$PATH" .venv/bin/python benchmarks/attach_over_ssh.py [--runs 15]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import _common as c

DEBUGKIT = c.debugkit()  # this checkout's code, with a warm bytecode cache (see _common.py)
TARGET_IMAGE = "debugkit-fixture/named-user:1"


def timed(argv: list[str]) -> float:
    return c.timed(argv)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("DEBUGKIT_SSH_URL", "ssh://root@127.0.0.1:2222"))
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    c.check_code_under_test()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from debugkit.session.defaults import toolbox_image as default_ref

    image = default_ref()
    url = urllib.parse.urlsplit(args.url)
    ssh_true = ["ssh", *(["-p", str(url.port)] if url.port else []), "-o", "BatchMode=yes", "-T",
                f"{url.username + '@' if url.username else ''}{url.hostname}", "true"]
    docker = ["docker", "-H", args.url]
    target = f"debugkit-bench-ssh-{os.getpid()}"
    subprocess.run([*docker, "run", "-d", "--name", target, "--label", "io.debugkit.test=1", TARGET_IMAGE],
                   check=True, stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        info = json.loads(subprocess.run([*DEBUGKIT, "inspect", "-H", args.url, target, "-o", "json"], check=True,
                                         capture_output=True).stdout)
        user = f"{info['uid']}:{info['gid']}"
        ours = [*DEBUGKIT, "attach", "-H", args.url, target, "--", "true"]
        raw = [*docker, "run", "--rm", "--pid", f"container:{target}", "--network", f"container:{target}",
               "--user", user, image, "true"]
        for argv in (ours, raw, ssh_true):  # warm-up: page cache, Python bytecode, sshd
            timed(argv)
        ours_t, raw_t, ssh_t = [], [], []
        for _ in range(args.runs):
            ours_t.append(timed(ours))
            raw_t.append(timed(raw))
            ssh_t.append(timed(ssh_true))
    finally:
        subprocess.run([*docker, "rm", "-f", target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    ratios = [a / b for a, b in zip(ours_t, raw_t)]
    result = {
        "url": args.url,
        "runs": args.runs,
        "debugkit_attach_median_s": round(statistics.median(ours_t), 4),
        "docker_run_median_s": round(statistics.median(raw_t), 4),
        "ratio_of_medians": round(statistics.median(ours_t) / statistics.median(raw_t), 3),
        "median_pairwise_ratio": round(statistics.median(ratios), 3),
        "ssh_true_median_s": round(statistics.median(ssh_t), 4),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"engine:                                {args.url}")
        print(f"runs each:                             {args.runs} (interleaved)")
        print(f"debugkit attach -H URL T -- true:      {result['debugkit_attach_median_s']:.3f} s median")
        print(f"docker -H URL run --rm ... IMAGE true: {result['docker_run_median_s']:.3f} s median")
        print(f"ratio (debugkit / docker run):         {result['ratio_of_medians']:.2f} "
              f"(median of pairwise ratios {result['median_pairwise_ratio']:.2f})")
        print(f"one ssh handshake (ssh HOST true):     {result['ssh_true_median_s']:.3f} s median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
