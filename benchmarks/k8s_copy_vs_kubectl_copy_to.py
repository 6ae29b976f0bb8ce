#!/usr/bin/env python3
"""From the command to a live shell in a copy of a crash-looping pod (issue 23):
debugkit attach --copy vs kubectl debug --copy-to, on the real test node, in one run.

Every timed call gets a crash-looping pod of its own (the fixture server given a flag it
refuses: exit 2 at every start, CrashLoopBackOff before anything is timed). Both tools
copy it and attach a debug container next to the copy; the clock stops when the shell in
the copy has read a line from our stdin and answered (a live session, not just a
container that started):

    debugkit attach --copy k8s://NS/P/app -i -- sh -c 'read x; echo ready'
    kubectl debug -n NS Q --copy-to=Q-copy --image=TOOLBOX --image-pull-policy=IfNotPresent
        --container=debugger --share-processes --profile=restricted -i --quiet -- sh -c 'read x; echo ready'

debugkit holds the copy (its program is not started; `target start` runs it), kubectl's
copy restarts the crashing container beside the debugger. debugkit removes its copy when
the session ends (timed separately: `total`); kubectl leaves its copy, which is deleted
untimed. kubectl runs with --profile=restricted, as debugkit's default (its `general`
profile adds SYS_PTRACE, which the namespace's `baseline` level refuses). Calls alternate
between the tools.

debugkit is the one installed in this interpreter's environment, a normal (non-editable)
`pip install .`, as a person runs it: this script refuses a debugkit imported from the
checkout.

    python -m venv /tmp/dkbench && /tmp/dkbench/bin/pip install .
    /tmp/dkbench/bin/python benchmarks/k8s_copy_vs_kubectl_copy_to.py [--runs 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import _common as c

TARGET_IMAGE = "debugkit-fixture/distroless:1"
SHELL = ["sh", "-c", "read x; echo ready"]


def installed_env() -> dict[str, str]:
    """The environment of a person's shell: no PYTHONPATH into this checkout."""
    out = dict(os.environ)
    out.pop("PYTHONPATH", None)
    return out


def check_installed() -> str:
    where = subprocess.run([sys.executable, "-c", "import debugkit; print(debugkit.__file__)"], env=installed_env(),
                           cwd="/", capture_output=True, text=True, check=True).stdout.strip()
    if where.startswith(str(c.REPO) + os.sep) or "site-packages" not in where:
        raise SystemExit(f"debugkit comes from {where}: run this with the python of a venv where "
                         f"`pip install .` (not -e) installed it")
    return where


def until_ready(argv: list[str], *, environ: dict[str, str]) -> tuple[float, float]:
    """(seconds until the shell in the copy answered, seconds until the command ended or was
    ended): a line goes to the shell's stdin, `ready` must come back."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=environ)
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    ready = time.perf_counter() - start
    if line.strip() != b"ready":
        proc.kill()
        raise SystemExit(f"{' '.join(argv)} printed {line!r}: {proc.communicate()[1].decode()[-500:]}")
    proc.stdin.close()
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return ready, time.perf_counter() - start


def crash_looping_pods(kube: c.Kube, ns: str, names: list[str]) -> None:
    items = [{"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": name, "namespace": ns, "labels": {c.TEST_LABEL: "1", "app": "bench"}},
              "spec": {"automountServiceAccountToken": False, "enableServiceLinks": False,
                       "terminationGracePeriodSeconds": 1,
                       "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                       "containers": [{"name": "app", "image": TARGET_IMAGE, "imagePullPolicy": "IfNotPresent",
                                       "args": ["-port", "8080"],
                                       "securityContext": {"allowPrivilegeEscalation": False,
                                                           "capabilities": {"drop": ["ALL"]}}}]}}
             for name in names]
    kube("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    deadline = time.monotonic() + 180
    while True:
        pods = json.loads(kube("-n", ns, "get", "pods", "-o", "json").stdout)["items"]
        looping = {p["metadata"]["name"] for p in pods for st in p.get("status", {}).get("containerStatuses") or []
                   if (st.get("state", {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"}
        if set(names) <= looping:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"pods not crash-looping after 180 s: {sorted(set(names) - looping)}")
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    where = check_installed()
    kube = c.Kube()
    toolbox = kube.with_toolbox(TARGET_IMAGE)
    machine = c.Machine()
    environ = {**installed_env(), "KUBECONFIG": kube.kubeconfig}
    debugkit = [os.path.join(os.path.dirname(sys.executable), "debugkit")]
    rounds = args.runs + 1  # the first is a warm-up
    totals: dict[str, list[float]] = {"debugkit": [], "kubectl": []}
    with kube.namespace("baseline") as ns:
        ours_pods = [f"dk-{i}" for i in range(rounds)]
        theirs_pods = [f"kd-{i}" for i in range(rounds)]
        crash_looping_pods(kube, ns, ours_pods + theirs_pods)
        free = {"debugkit": iter(ours_pods), "kubectl": iter(theirs_pods)}

        def ours() -> float:
            pod = next(free["debugkit"])
            ready, total = until_ready([*debugkit, "attach", "--copy", f"k8s://{ns}/{pod}/app", "-i", "--", *SHELL],
                                       environ=environ)
            totals["debugkit"].append(total)
            return ready

        def theirs() -> float:
            pod = next(free["kubectl"])
            ready, total = until_ready([*kube.kubectl, "debug", "-n", ns, pod, f"--copy-to={pod}-copy",
                                        f"--image={toolbox}", "--image-pull-policy=IfNotPresent",
                                        "--container=debugger", "--share-processes", "--profile=restricted", "-i",
                                        "--quiet", "--", *SHELL],
                                       environ=environ)
            totals["kubectl"].append(total)
            kube("-n", ns, "delete", "pod", f"{pod}-copy", "--grace-period=0", "--force", "--wait=false",
                 check=False)
            return ready

        samples = c.interleave([("debugkit", ours), ("kubectl", theirs)], args.runs)
        left = [p["metadata"]["name"] for p in json.loads(kube("-n", ns, "get", "pods", "-o", "json").stdout)["items"]
                if "-debugkit-copy-" in p["metadata"]["name"]]
    if left:
        raise SystemExit(f"debugkit left copies behind: {left}")
    totals = {k: v[1:] for k, v in totals.items()}  # without the warm-up
    result = {"runs": args.runs, **c.compare(samples, "debugkit", "kubectl"), "toolbox": toolbox,
              "debugkit_installed_at": where, "machine": machine.as_dict(),
              "total_with_cleanup_median_s": {k: round(c.median(v), 3) for k, v in totals.items()},
              "samples_s": {k: [round(x, 3) for x in v] for k, v in samples.items()}}
    rows = [
        ("runs each", f"{args.runs} (alternating, a fresh crash-looping pod for every call)"),
        ("debugkit attach --copy: to a live shell", f"{result['debugkit_median_s']:.2f} s median "
                                                   f"(min {min(samples['debugkit']):.2f}, "
                                                   f"max {max(samples['debugkit']):.2f})"),
        ("kubectl debug --copy-to: to a live shell", f"{result['baseline_median_s']:.2f} s median "
                                                    f"(min {min(samples['kubectl']):.2f}, "
                                                    f"max {max(samples['kubectl']):.2f})"),
        ("ratio debugkit / kubectl", f"{result['ratio']:.2f} (median of pairwise ratios "
                                     f"{result['median_pairwise_ratio']:.2f})"),
        ("debugkit, to the end with its copy removed", f"{result['total_with_cleanup_median_s']['debugkit']:.2f} s "
                                                       f"median (kubectl leaves its copy)"),
        ("machine", machine.line()),
    ]
    c.emit(result, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
