#!/usr/bin/env python3
"""debugkit attach vs kubectl debug on the real test node: time from command to output.

Both add an ephemeral container targeting the same running pod and print its output:

    debugkit attach pod/P -n NS -- echo ready
    kubectl debug -n NS P --image=TOOLBOX --target=app -i --quiet -- echo ready

The namespace enforces `baseline`, so kubectl's default profile is admitted too (under
`restricted` it is rejected outright). Runs alternate; the ratio uses medians from the
same run.

    .venv/bin/python benchmarks/k8s_attach_vs_kubectl_debug.py [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEBUGKIT = str(BIN / "debugkit") if (BIN / "debugkit").exists() else "debugkit"
TARGET_IMAGE = "debugkit-fixture/distroless:1"


def script(*args: str) -> str:
    return subprocess.run([str(REPO / "scripts" / "k8s-testenv"), *args], check=True, capture_output=True,
                          text=True).stdout


def timed(argv: list[str]) -> tuple[float, str, int]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    return time.perf_counter() - start, proc.stdout, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from debugkit.session.defaults import toolbox_image as default_ref

    script("up")
    paths = dict(line.split("=", 1) for line in script("paths").split())
    kubeconfig, kubectl = paths["kubeconfig"], str(Path(paths["bin_dir"]) / "kubectl")
    toolbox = default_ref()
    for image in (TARGET_IMAGE, toolbox):
        script("load-image", image)
    ns = f"dk-bench-{uuid.uuid4().hex[:6]}"
    k = [kubectl, "--kubeconfig", kubeconfig]
    subprocess.run(k + ["create", "namespace", ns], check=True, capture_output=True)
    subprocess.run(k + ["label", "namespace", ns, "pod-security.kubernetes.io/enforce=baseline"], check=True,
                   capture_output=True)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "target", "namespace": ns},
           "spec": {"nodeName": "debugkit-node", "automountServiceAccountToken": False,
                    "containers": [{"name": "app", "image": TARGET_IMAGE, "imagePullPolicy": "IfNotPresent"}]}}
    try:
        subprocess.run(k + ["apply", "-f", "-"], input=json.dumps(pod), text=True, check=True, capture_output=True)
        subprocess.run(k + ["-n", ns, "wait", "--for=condition=Ready", "pod/target", "--timeout=120s"], check=True,
                       capture_output=True)
        ours = [DEBUGKIT, "attach", "--kubeconfig", kubeconfig, "pod/target", "-n", ns, "--", "echo", "ready"]
        theirs = k + ["debug", "-n", ns, "target", f"--image={toolbox}", "--image-pull-policy=IfNotPresent",
                      "--target=app", "-i", "--quiet", "--", "echo", "ready"]
        ours_t, theirs_t, missed = [], [], {"debugkit": 0, "kubectl debug": 0}
        for _ in range(args.runs):
            for name, argv, bucket in (("debugkit", ours, ours_t), ("kubectl debug", theirs, theirs_t)):
                seconds, out, code = timed(argv)
                bucket.append(seconds)
                if "ready" not in out:
                    missed[name] += 1
    finally:
        subprocess.run(k + ["delete", "namespace", ns, "--wait=false"], capture_output=True)
        # No controller-manager on the test node: empty and finalize the namespace ourselves.
        subprocess.run(k + ["-n", ns, "delete", "pod", "--all", "--grace-period=0", "--force"], capture_output=True)
    ratio = statistics.median(ours_t) / statistics.median(theirs_t)
    print(f"runs each:                        {args.runs} (alternating, same pod)")
    print(f"debugkit attach ... -- echo:       {statistics.median(ours_t):.2f} s median "
          f"(output missed {missed['debugkit']}x)")
    print(f"kubectl debug -i ... -- echo:      {statistics.median(theirs_t):.2f} s median "
          f"(output missed {missed['kubectl debug']}x)")
    print(f"ratio (debugkit / kubectl debug):  {ratio:.2f} (goal <= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
