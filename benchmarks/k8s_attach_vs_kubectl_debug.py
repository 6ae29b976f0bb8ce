#!/usr/bin/env python3
"""A first debugkit attach vs kubectl debug on the real test node (issue 13).

Both add an ephemeral container to a running pod that has none yet, and print its output:

    debugkit attach --kubeconfig K pod/P -n NS --new -- echo ready
    kubectl debug -n NS Q --image=TOOLBOX --image-pull-policy=IfNotPresent --profile=baseline --target=app --attach --quiet -- echo ready

Every timed call gets a pod of its own (created, and Ready, before anything is timed), so
each measures a first attach: no debug container to reuse (--new makes sure), nothing
left over from an earlier call. Calls alternate between the tools. The namespace
enforces `baseline`; kubectl debug gets `--profile=baseline` (kubectl 1.37's default profile
adds SYS_PTRACE, which that namespace refuses) and `--attach` rather than `-i` (with stdin
at EOF, `-i` returns before the output or loses it). A run that printed nothing all the
same (exit 0) still counts, and the number of them is reported. Afterwards,
untimed: the exit code of `sh -c 'exit 7'` through each tool (debugkit passes it through).

--same-pod puts all of a tool's calls on one pod instead (debugkit still with --new):
every call after the first then adds one more ephemeral container to a pod that has some.

    .venv/bin/python benchmarks/k8s_attach_vs_kubectl_debug.py [--runs 9] [--same-pod] [--json]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

import _common as c

TARGET_IMAGE = "debugkit-fixture/distroless:1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--same-pod", action="store_true", help="all of a tool's calls on one pod")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    c.check_code_under_test()
    kube = c.Kube()
    toolbox = kube.with_toolbox(TARGET_IMAGE)
    machine = c.Machine()
    rounds = args.runs + 1  # the first is a warm-up
    with kube.namespace("baseline") as ns:
        pods = 1 if args.same_pod else rounds + 1                  # one more each for the exit code
        ours_pods = [f"dk-{i}" for i in range(pods)]
        theirs_pods = [f"kd-{i}" for i in range(pods)]
        kube.start_pods(ns, ours_pods + theirs_pods, TARGET_IMAGE)
        if args.same_pod:
            ours_pods, theirs_pods = ours_pods * (rounds + 1), theirs_pods * (rounds + 1)

        def ours(pod: str, *command: str) -> list[str]:
            return [*c.debugkit(), "attach", "--kubeconfig", kube.kubeconfig, f"pod/{pod}", "-n", ns, "--new",
                    "--", *command]

        def theirs(pod: str, *command: str) -> list[str]:
            return [*kube.kubectl, "debug", "-n", ns, pod, f"--image={toolbox}", "--image-pull-policy=IfNotPresent",
                    "--profile=baseline", "--target=app", "--attach", "--quiet", "--", *command]

        free = {"debugkit": iter(ours_pods), "kubectl": iter(theirs_pods)}
        lost, complete = [], []   # kubectl's runs that lost the output, and the others (seconds)

        def kubectl_timed(argv: list[str]) -> float:
            """The run's seconds; exit 0 required, and a run whose output kubectl lost is counted."""
            began = time.perf_counter()
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=c.env(), timeout=300)
            seconds = time.perf_counter() - began
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
            (lost if b"ready" not in proc.stdout else complete).append(seconds)
            return seconds
        samples = c.interleave([
            ("debugkit", lambda: c.timed(ours(next(free["debugkit"]), "echo", "ready"), want="ready")),
            ("kubectl", lambda: kubectl_timed(theirs(next(free["kubectl"]), "echo", "ready"))),
        ], args.runs)
        codes = {}
        for name, argv in (("debugkit", ours(next(free["debugkit"]), "sh", "-c", "exit 7")),
                           ("kubectl", theirs(next(free["kubectl"]), "sh", "-c", "exit 7"))):
            codes[name] = subprocess.run(argv, capture_output=True, env=c.env(), timeout=300).returncode
        extra = {pod: len(kube.ephemeral_containers(ns, pod)) for pod in set(ours_pods[:2])}
    if codes["debugkit"] != 7:
        raise SystemExit(f"debugkit attach returned {codes['debugkit']} for `exit 7`")
    if not args.same_pod and any(n != 1 for n in extra.values()):
        raise SystemExit(f"a debugkit pod does not have exactly one ephemeral container: {extra}")
    result = {"runs": args.runs, "same_pod": args.same_pod, **c.compare(samples, "debugkit", "kubectl"),
              "exit_code_of_exit_7": codes, "toolbox": toolbox, "machine": machine.as_dict(),
              "kubectl_output_lost": len(lost),
              "kubectl_complete_median_s": round(c.median(complete), 4) if complete else None,
              "ratio_vs_complete_kubectl": round(c.median(samples["debugkit"]) / c.median(complete), 3)
              if complete else None,
              "samples_s": {k: [round(x, 3) for x in v] for k, v in samples.items()}}
    rows = [
        ("runs each", f"{args.runs} (alternating, " + ("all on one pod per tool)" if args.same_pod else
                                                     "a fresh pod for every call)")),
        ("debugkit attach pod/P --new -- echo ready", f"{result['debugkit_median_s']:.2f} s median "
                                                     f"(min {min(samples['debugkit']):.2f}, "
                                                     f"max {max(samples['debugkit']):.2f})"),
        ("kubectl debug --attach --target=app -- echo ready", f"{result['baseline_median_s']:.2f} s median "
                                                       f"(min {min(samples['kubectl']):.2f}, "
                                                       f"max {max(samples['kubectl']):.2f})"),
        ("ratio debugkit / kubectl debug", f"{result['ratio']:.2f} (median of pairwise ratios "
                                           f"{result['median_pairwise_ratio']:.2f}; goal <= 0.9)"),
        ("exit code of `sh -c 'exit 7'`", f"debugkit {codes['debugkit']}, kubectl debug {codes['kubectl']}"),
        ("kubectl debug runs that lost the output", f"{len(lost)} of {len(lost) + len(complete)}"),
        ("kubectl debug runs that printed it", f"{c.median(complete):.2f} s median; ratio debugkit / those "
                                               f"{result['ratio_vs_complete_kubectl']:.2f}" if complete else "none"),
        ("machine", machine.line()),
    ]
    c.emit(result, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
