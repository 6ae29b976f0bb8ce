#!/usr/bin/env python3
"""A fleet attach vs a shell loop of kubectl debug, on the real test node: time to run
`echo ok` in a new debug container of every pod of a 20-replica Deployment.

    debugkit attach deploy/X --parallel 10 --new --keep-alive 0 -n NS -o json -- echo ok
    for p in PODS; do kubectl debug -n NS $p --image=TOOLBOX --target=app -i --quiet -- echo ok; done
    debugkit attach pod/P --new --keep-alive 0 -n NS -- echo ok          (one pod, the reference)
    printf '%s\n' PODS | xargs -P 10 -I{} kubectl debug ... {} ...        (kubectl, 10 at a time)

--new --keep-alive 0 makes debugkit do what kubectl debug does every time: add a new
ephemeral container that ends with its command. At the end, the same two debugkit
commands without those flags, twice: the second run reuses the debug containers the
first one left (the default keep-alive), which is what a second command over a fleet costs. The namespace enforces `baseline`, because
kubectl debug's default profile is rejected by `restricted` (debugkit's containers would
pass either). One warm-up round is not counted; rounds alternate the order; the ratios use
medians from the same run. The node is shared: run it when nothing else is.

    .venv/bin/python benchmarks/fleet_vs_kubectl_loop.py [--replicas 20] [--parallel 10] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_IMAGE = "debugkit-fixture/distroless:1"


def script(*args: str) -> str:
    return subprocess.run([str(REPO / "scripts" / "k8s-testenv"), *args], check=True, capture_output=True,
                          text=True).stdout


def timed(argv: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900, **kwargs)
    return time.perf_counter() - start, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from debugkit.session.defaults import toolbox_image as default_ref

    script("up")
    paths = dict(line.split("=", 1) for line in script("paths").split())
    kubeconfig, kubectl = paths["kubeconfig"], str(Path(paths["bin_dir"]) / "kubectl")
    toolbox = default_ref()
    for image in (TARGET_IMAGE, toolbox):
        script("load-image", image)
    debugkit = [sys.executable, "-m", "debugkit"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ns, name = f"dk-bench-fleet-{uuid.uuid4().hex[:6]}", "web"
    k = [kubectl, "--kubeconfig", kubeconfig]
    subprocess.run(k + ["create", "namespace", ns], check=True, capture_output=True)
    subprocess.run(k + ["label", "namespace", ns, "pod-security.kubernetes.io/enforce=baseline"], check=True,
                   capture_output=True)
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": args.replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     "automountServiceAccountToken": False, "enableServiceLinks": False,
                     "terminationGracePeriodSeconds": 1,
                     "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "runAsNonRoot": True},
                     "containers": [{"name": "app", "image": TARGET_IMAGE, "imagePullPolicy": "IfNotPresent"}]}}}}
    fleet_t, loop_t, single_t, xargs_t, per_target = [], [], [], [], []
    missed = {"fleet": 0, "loop": 0, "single": 0, "xargs": 0}
    try:
        for _ in range(60):  # the namespace's default ServiceAccount comes from the controller
            if subprocess.run(k + ["-n", ns, "get", "serviceaccount", "default"], capture_output=True).returncode == 0:
                break
            time.sleep(0.5)
        subprocess.run(k + ["apply", "-f", "-"], input=json.dumps(deployment), text=True, check=True,
                       capture_output=True)
        subprocess.run(k + ["-n", ns, "rollout", "status", f"deployment/{name}", "--timeout=300s"], check=True,
                       capture_output=True)
        pods = subprocess.run(k + ["-n", ns, "get", "pods", "-l", f"app={name}", "-o",
                                   "jsonpath={.items[*].metadata.name}"], check=True, capture_output=True,
                              text=True).stdout.split()
        assert len(pods) == args.replicas, pods
        fleet = debugkit + ["attach", "--kubeconfig", kubeconfig, f"deploy/{name}", "-n", ns, "--parallel",
                            str(args.parallel), "--new", "--keep-alive", "0", "-o", "json", "--", "echo", "ok"]
        single = debugkit + ["attach", "--kubeconfig", kubeconfig, f"pod/{pods[0]}", "-n", ns, "--new",
                             "--keep-alive", "0", "--", "echo", "ok"]
        one = " ".join(shlex.quote(a) for a in k + ["debug", "-n", ns, "$p", f"--image={toolbox}",
                                                      "--image-pull-policy=IfNotPresent", "--target=app", "-i",
                                                      "--quiet", "--", "echo", "ok"]).replace("'$p'", '"$p"')
        loop = ["sh", "-c", f"for p in {' '.join(pods)}; do {one}; done"]
        xargs = ["sh", "-c", f"printf '%s\\n' {' '.join(pods)} | xargs -P {args.parallel} -I{{}} "
                 + one.replace('"$p"', "{}")]
        # A warm-up, not counted: the node is still busy settling the 20 new pods for a while
        # after the rollout, and the first ephemeral container of a pod costs more than the next.
        time.sleep(10)
        for argv in (fleet, xargs):
            timed(argv, env=env)
        for round_ in range(args.rounds):
            order = [("fleet", fleet), ("loop", loop), ("single", single), ("xargs", xargs)]
            if round_ % 2:
                order.reverse()
            for what, argv in order:
                seconds, proc = timed(argv, env=env)
                if what == "fleet":
                    fleet_t.append(seconds)
                    try:
                        results = json.loads(proc.stdout)
                        missed["fleet"] += sum(1 for r in results if r["stdout"] != "ok\n")
                        per_target.extend(r["duration_s"] for r in results)
                    except ValueError:
                        missed["fleet"] += args.replicas
                        print(proc.stderr, file=sys.stderr)
                elif what in ("loop", "xargs"):
                    (loop_t if what == "loop" else xargs_t).append(seconds)
                    missed[what] += args.replicas - proc.stdout.split().count("ok")
                else:
                    single_t.append(seconds)
                    missed["single"] += proc.stdout.strip() != "ok"
        floor = statistics.median(node_floor(kubeconfig, ns, pods, toolbox) for _ in range(3))
        warm = {}
        for what, argv in (("fleet", fleet), ("single", single)):
            plain = [a for a in argv if a not in ("--new", "--keep-alive", "0")]
            timed(plain, env=env)  # leaves kept-alive debug containers
            warm[what] = statistics.median(timed(plain, env=env)[0] for _ in range(3))
    finally:
        subprocess.run(k + ["delete", "namespace", ns, "--wait=false"], capture_output=True)
        subprocess.run(k + ["-n", ns, "delete", "pod", "--all", "--grace-period=0", "--force"], capture_output=True)
    f, lo, s = statistics.median(fleet_t), statistics.median(loop_t), statistics.median(single_t)
    print(f"pods: {args.replicas}, --parallel {args.parallel}, rounds: {args.rounds} (alternating), "
          f"namespace: baseline")
    print(f"debugkit attach deploy/X (fleet):   {f:6.2f} s median  {_all(fleet_t)}  (output missed "
          f"{missed['fleet']}x)")
    print(f"  per target (from -o json):        median {statistics.median(per_target):.2f} s, "
          f"max {max(per_target):.2f} s")
    print(f"kubectl debug loop over the pods:   {lo:6.2f} s median  {_all(loop_t)}  (output missed "
          f"{missed['loop']}x)")
    print(f"debugkit attach pod/P (one pod):    {s:6.2f} s median  {_all(single_t)}")
    x = statistics.median(xargs_t)
    print(f"kubectl debug, xargs -P {args.parallel:<2}:         {x:6.2f} s median  {_all(xargs_t)}  (output missed "
          f"{missed['xargs']}x)")
    print(f"fleet / kubectl loop:               {f / lo:6.3f}  (goal <= 0.2)")
    print(f"fleet / one pod:                    {f / s:6.2f}  (goal <= 3)")
    print(f"fleet / kubectl debug xargs -P:     {f / x:6.2f}")
    print(f"the node alone: {len(pods)} ephemeral containers PATCHed at once, all reported started: "
          f"{floor:.2f} s median (fleet / that: {f / floor:.2f})")
    print(f"reusing the debug containers:       fleet {warm['fleet']:.2f} s, one pod {warm['single']:.2f} s, "
          f"ratio {warm['fleet'] / warm['single']:.2f}")
    return 0


def node_floor(kubeconfig: str, ns: str, pods: list[str], image: str) -> float:
    """What the node needs to start one ephemeral container in every pod at once, without
    debugkit or kubectl: all PATCHed in parallel (`true`, as the pods' user), then the time
    until the API reports each one running or ended. The status can lag the container by
    up to a second (the kubelet's relist period), so this errs on the slow side."""
    import threading

    from debugkit.runtimes.kubernetes.runtime import connect

    api, _auth = connect(kubeconfig=kubeconfig, context=None)
    name = f"floor-{uuid.uuid4().hex[:6]}"
    ctr = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent", "targetContainerName": "app",
           "command": ["true"], "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "runAsNonRoot": True,
                                                    "allowPrivilegeEscalation": False,
                                                    "capabilities": {"drop": ["ALL"]},
                                                    "seccompProfile": {"type": "RuntimeDefault"}}}
    start = time.monotonic()
    threads = [threading.Thread(target=api.patch_ephemeral_containers, args=(ns, pod, [
        {"op": "add", "path": "/spec/ephemeralContainers/-", "value": ctr}])) for pod in pods]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started: set[str] = set()
    while len(started) < len(pods) and time.monotonic() - start < 120:
        for pod in api.list_pods(ns)["items"]:
            for st in pod["status"].get("ephemeralContainerStatuses") or []:
                if st["name"] == name and ({"running", "terminated"} & set(st.get("state") or {})):
                    started.add(pod["metadata"]["name"])
        time.sleep(0.05)
    return time.monotonic() - start


def _all(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


if __name__ == "__main__":
    sys.exit(main())
