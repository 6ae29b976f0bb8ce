#!/usr/bin/env python3
"""Five debugkit attaches in a row on one pod (reuse) vs five kubectl debug, on the test node.

A round of debugkit is five `debugkit attach --kubeconfig K pod/P -n NS -- echo ready`
on a fresh pod: the first adds the reusable debug container (its keep-alive, identified
by DEBUGKIT_REUSE in its environment), the other four exec into it. A round of kubectl
is five `kubectl debug -n NS Q --image=TOOLBOX --target=app -i --quiet -- echo ready` on
another fresh pod: five ephemeral containers. Every pod is created and Ready before
anything is timed. Rounds alternate. After each debugkit round the pod's spec must
list exactly one ephemeral container (kubectl get pod -o json: .spec.ephemeralContainers).

Prints the median round of each side, their ratio (goal <= 0.4), and per call: debugkit's
first and later calls, and one kubectl debug.

    .venv/bin/python benchmarks/k8s_repeated_attach.py [--rounds 5] [--calls 5] [--json]
"""
from __future__ import annotations

import argparse
import sys

import _common as c

TARGET_IMAGE = "debugkit-fixture/distroless:1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5, help="calls per round (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    c.check_code_under_test()
    kube = c.Kube()
    toolbox = kube.with_toolbox(TARGET_IMAGE)
    machine = c.Machine()
    rounds = args.rounds + 1  # the first is a warm-up
    firsts, laters, singles, counts = [], [], [], {"debugkit": [], "kubectl": []}
    with kube.namespace("baseline") as ns:
        ours_pods = iter(f"dk-{i}" for i in range(rounds))
        theirs_pods = iter(f"kd-{i}" for i in range(rounds))
        kube.start_pods(ns, [f"{p}-{i}" for i in range(rounds) for p in ("dk", "kd")], TARGET_IMAGE)

        def ours() -> float:
            pod = next(ours_pods)
            argv = [*c.debugkit(), "attach", "--kubeconfig", kube.kubeconfig, f"pod/{pod}", "-n", ns,
                    "--", "echo", "ready"]
            times = [c.timed(argv, want="ready") for _ in range(args.calls)]
            ephemeral = kube.ephemeral_containers(ns, pod)
            counts["debugkit"].append(len(ephemeral))
            if len(ephemeral) != 1:
                raise SystemExit(f"{args.calls} debugkit attaches added {len(ephemeral)} ephemeral containers "
                                 f"to {pod}, not 1: {[e['name'] for e in ephemeral]}")
            firsts.append(times[0])
            laters.extend(times[1:])
            return sum(times)

        def theirs() -> float:
            pod = next(theirs_pods)
            argv = [*kube.kubectl, "debug", "-n", ns, pod, f"--image={toolbox}", "--image-pull-policy=IfNotPresent",
                    "--target=app", "-i", "--quiet", "--", "echo", "ready"]
            times = [c.timed(argv, want="ready") for _ in range(args.calls)]
            counts["kubectl"].append(len(kube.ephemeral_containers(ns, pod)))
            singles.extend(times)
            return sum(times)

        samples = c.interleave([("debugkit", ours), ("kubectl", theirs)], args.rounds)
    del firsts[0], laters[:args.calls - 1], singles[:args.calls]  # the warm-up round
    result = {"rounds": args.rounds, "calls": args.calls, **c.compare(samples, "debugkit", "kubectl"),
              "first_call_median_s": round(c.median(firsts), 4), "later_call_median_s": round(c.median(laters), 4),
              "kubectl_call_median_s": round(c.median(singles), 4), "ephemeral_containers_per_pod": counts,
              "toolbox": toolbox, "machine": machine.as_dict()}
    n = args.calls
    rows = [
        ("rounds", f"{args.rounds} of {n} calls each (alternating; fresh pods)"),
        (f"{n} x debugkit attach pod/P -- echo ready", f"{result['debugkit_median_s']:.2f} s median round"),
        (f"{n} x kubectl debug -i -- echo ready", f"{result['baseline_median_s']:.2f} s median round"),
        ("ratio debugkit / kubectl debug", f"{result['ratio']:.2f} (median of pairwise ratios "
                                           f"{result['median_pairwise_ratio']:.2f}; goal <= 0.4)"),
        ("debugkit: first call (adds it)", f"{c.ms(result['first_call_median_s'])} median"),
        ("debugkit: later calls (exec)", f"{c.ms(result['later_call_median_s'])} median"),
        ("one kubectl debug", f"{c.ms(result['kubectl_call_median_s'])} median"),
        ("ephemeral containers per pod", f"debugkit {sorted(set(counts['debugkit']))}, "
                                         f"kubectl {sorted(set(counts['kubectl']))}"),
        ("machine", machine.line()),
    ]
    c.emit(result, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
