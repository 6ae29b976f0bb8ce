#!/usr/bin/env python3
"""The standard-library client vs the kubernetes package, on the real test node.

Each sample is a fresh Python process doing what a repeated `debugkit attach` does
before its first byte of output: import the client, load the kubeconfig, GET the pod,
and exec `echo ready` over a websocket (v5.channel.k8s.io), reading its output and exit
status. Runs alternate between the two clients; medians come from the same run. A third
row is `python -c pass`, the floor.

The node must be up (scripts/k8s-testenv is-up); this script never starts it.

    .venv/bin/python benchmarks/kubeclient_vs_kubernetes_package.py [--runs 9]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUSYBOX = "debugkit-testenv/busybox:1"

OURS = r'''
import sys, time
t0 = time.perf_counter()
from debugkit.runtimes.kubernetes import kubeconfig, kubeclient
t1 = time.perf_counter()
auth = kubeconfig.load(sys.argv[1])
c = kubeclient.KubeClient(auth)
pod = c.read_pod(sys.argv[2], sys.argv[3])
ws = c.exec_stream(sys.argv[2], sys.argv[3], ["echo", "ready"])
out = b""
try:
    while True:
        item = ws.recv(30)
        if item is None:
            break
        out += item[1]
except EOFError:
    pass
ws.close(wait=0)
assert out == b"ready\n" and ws.exit_code() == 0, (out, ws.status())
print(f"{t1 - t0:.4f} {time.perf_counter() - t1:.4f}")
'''

THEIRS = r'''
import sys, time
t0 = time.perf_counter()
from kubernetes import client, config
from kubernetes.stream import stream
t1 = time.perf_counter()
api = client.CoreV1Api(config.new_client_from_config(config_file=sys.argv[1]))
pod = api.read_namespaced_pod(sys.argv[3], sys.argv[2])
ws = stream(api.connect_get_namespaced_pod_exec, sys.argv[3], sys.argv[2], command=["echo", "ready"],
            stdout=True, stderr=True, stdin=False, tty=False, _preload_content=False)
ws.run_forever(timeout=30)
out = ws.read_stdout()
code = ws.returncode
ws.close()
assert out == "ready\n" and code == 0, (out, code)
print(f"{t1 - t0:.4f} {time.perf_counter() - t1:.4f}")
'''


def kubectl(bin_dir: str, kubeconfig: str, *args: str, input: str | None = None) -> str:
    return subprocess.run([f"{bin_dir}/kubectl", "--kubeconfig", kubeconfig, *args], input=input, check=True,
                          capture_output=True, text=True, timeout=120).stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    testenv = str(REPO / "scripts" / "k8s-testenv")
    if subprocess.run([testenv, "is-up"], capture_output=True).returncode != 0:
        print("the test node is not up", file=sys.stderr)
        return 2
    info = dict(line.split("=", 1) for line in subprocess.run([testenv, "paths"], check=True, capture_output=True,
                                                                text=True).stdout.split())
    kcfg, bin_dir = info["kubeconfig"], info["bin_dir"]
    subprocess.run([testenv, "load-image", BUSYBOX], check=True, capture_output=True)
    ns = f"dk-bench-{int(time.time())}"
    kubectl(bin_dir, kcfg, "create", "namespace", ns)
    # the test fixture's sweep removes it after an hour should this run die before the end
    kubectl(bin_dir, kcfg, "label", "namespace", ns, "io.debugkit.test=1", "io.debugkit.test-run=benchmark")
    try:
        pod = "bench"
        manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": ns},
                    "spec": {"nodeName": "debugkit-node", "automountServiceAccountToken": False,
                             "terminationGracePeriodSeconds": 1,
                             "containers": [{"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                             "command": ["sleep", "3600"]}]}}
        import json

        deadline = time.monotonic() + 60
        while True:  # the namespace's default service account may not exist yet
            proc = subprocess.run([f"{bin_dir}/kubectl", "--kubeconfig", kcfg, "apply", "-f", "-"],
                                  input=json.dumps(manifest), capture_output=True, text=True)
            if proc.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        kubectl(bin_dir, kcfg, "wait", "-n", ns, "--for=condition=Ready", f"pod/{pod}", "--timeout=120s")
        rows: dict[str, list[tuple[float, float, float]]] = {"stdlib client": [], "kubernetes package": [],
                                                              "python -c pass": []}
        env_py = [sys.executable]
        for i in range(args.runs + 1):
            for name, code in (("stdlib client", OURS), ("kubernetes package", THEIRS), ("python -c pass", None)):
                start = time.perf_counter()
                proc = subprocess.run([*env_py, "-c", code or "pass", kcfg, ns, pod], cwd=REPO, capture_output=True,
                                      text=True, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
                wall = time.perf_counter() - start
                if proc.returncode != 0:
                    print(proc.stderr, file=sys.stderr)
                    return 1
                imp, work = (float(x) for x in proc.stdout.split()) if code else (0.0, 0.0)
                if i:  # the first round warms caches
                    rows[name].append((wall, imp, work))
        print(f"{'':20} {'wall (median)':>14} {'import':>8} {'kubeconfig+GET+exec':>20}   ({args.runs} runs)")
        for name, samples in rows.items():
            med = [statistics.median(s[k] for s in samples) for k in range(3)]
            print(f"{name:20} {med[0] * 1000:11.0f} ms {med[1] * 1000:5.0f} ms {med[2] * 1000:17.0f} ms")
    finally:
        subprocess.run([f"{bin_dir}/kubectl", "--kubeconfig", kcfg, "delete", "namespace", ns, "--wait=false"],
                       capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
