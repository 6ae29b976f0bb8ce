"""Node debugging (node/NAME) on the real node: the host's processes and files from a pod
that is labelled, audited, deleted at the end, refused without a typed profile or in a
namespace whose PodSecurity level forbids it, and collected by gc after a SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import run_cli, text, wait_for

pytestmark = pytest.mark.kubernetes
NODE_PODS = "io.debugkit.managed=true,io.debugkit.kind=node"


@pytest.fixture(scope="module")
def toolbox_on_node(k8s_cluster, toolbox_image):
    return k8s_cluster.load_image(toolbox_image)


@pytest.fixture
def privileged_ns(k8s_cluster):
    with k8s_cluster.namespace("privileged", prefix="dk-node") as ns:
        yield ns


def kube(cluster, *args, **kwargs):
    return run_cli(args[0], "--kubeconfig", cluster.kubeconfig, *args[1:], **kwargs)


def node_pods(cluster, namespace):
    return cluster.api.list_namespaced_pod(namespace, label_selector=NODE_PODS).items


def test_node_profile_sees_the_kubelet_and_the_host_files_and_leaves_no_pod(k8s_cluster, privileged_ns,
                                                                              toolbox_on_node):
    script = "ps -e -o comm=; echo ---; cat /host/etc/os-release; echo ---; id -u; grep ^CapEff: /proc/self/status"
    result = kube(k8s_cluster, "attach", f"node/{k8s_cluster.node_name}", "-n", privileged_ns, "--profile", "node",
                  "--", "sh", "-c", script, timeout=180)
    out, err = text(result)
    assert result.returncode == 0, err
    processes, os_release, me = out.split("---\n")
    assert "kubelet" in processes.split(), processes
    assert "ID=" in os_release and "NAME=" in os_release
    assert me.splitlines()[0] == "0"
    # Not privileged: the runtime's default capabilities, not all of them.
    assert me.splitlines()[1] != "CapEff:\t000001ffffffffff"
    assert node_pods(k8s_cluster, privileged_ns) == []  # deleted at once: grace 0, nothing left


def test_host_is_read_only_with_the_node_profile_and_writable_with_sysadmin(k8s_cluster, privileged_ns,
                                                                         toolbox_on_node):
    probe = "touch /host/tmp/.debugkit-probe-$$ 2>/dev/null && rm -f /host/tmp/.debugkit-probe-$$ && echo writable " \
            "|| echo read-only"
    node = kube(k8s_cluster, "attach", f"node/{k8s_cluster.node_name}", "-n", privileged_ns, "--profile", "node",
                "--", "sh", "-c", probe, timeout=180)
    sysadmin = kube(k8s_cluster, "attach", f"node/{k8s_cluster.node_name}", "-n", privileged_ns, "--profile",
                    "sysadmin", "--", "sh", "-c", probe, timeout=180)
    assert (text(node)[0].strip(), text(sysadmin)[0].strip()) == ("read-only", "writable"), (node, sysadmin)


def test_without_a_typed_profile_nothing_is_created(k8s_cluster, privileged_ns, tmp_path):
    # A config file that asks for the node profile does not grant it either.
    config = tmp_path / "config.yaml"
    config.write_text("profile: node\n")
    for env in ({}, {"DEBUGKIT_CONFIG": str(config)}):
        result = kube(k8s_cluster, "attach", f"node/{k8s_cluster.node_name}", "-n", privileged_ns, "--", "true",
                      env=env)
        err = text(result)[1]
        assert result.returncode == ExitCode.INVALID_INPUT, err
        assert "--profile node" in err and "--profile sysadmin" in err and len(err.strip().splitlines()) == 1
    assert k8s_cluster.api.list_namespaced_pod(privileged_ns).items == []


def test_a_namespace_that_forbids_host_namespaces_is_refused_before_anything_is_created(k8s_cluster,
                                                                                      privileged_ns):
    with k8s_cluster.namespace("baseline", prefix="dk-node") as baseline:
        result = kube(k8s_cluster, "attach", f"node/{k8s_cluster.node_name}", "-n", baseline, "--profile", "node",
                      "--", "true")
        err = text(result)[1]
        assert result.returncode == ExitCode.POLICY_REJECTED, err
        assert f"namespace {baseline} enforces PodSecurity 'baseline'" in err and "hostPID" in err
        assert "pass -n " in err  # names a namespace that admits it (ours, or another privileged one)
        assert k8s_cluster.api.list_namespaced_pod(baseline).items == []


def test_gc_deletes_the_pod_of_a_cli_killed_with_sigkill(k8s_cluster, privileged_ns, toolbox_on_node):
    cli = subprocess.Popen([sys.executable, "-m", "debugkit", "attach", "--kubeconfig", k8s_cluster.kubeconfig,
                            f"node/{k8s_cluster.node_name}", "-n", privileged_ns, "--profile", "node", "--",
                            "sleep", "600"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        pods = wait_for(lambda: [p for p in node_pods(k8s_cluster, privileged_ns) if p.status.phase == "Running"],
                        timeout=120, what="the node debugging pod running")
        listed = json.loads(kube(k8s_cluster, "ps", "-n", privileged_ns, "-o", "json").stdout)
        row = next(r for r in listed if r["name"] == pods[0].metadata.name)
        assert row["target"] == f"node/{k8s_cluster.node_name}" and row["cli_alive"] is True
    finally:
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait()
    name = pods[0].metadata.name
    assert [p.metadata.name for p in node_pods(k8s_cluster, privileged_ns)] == [name]  # no finally ran
    result = kube(k8s_cluster, "gc", "-n", privileged_ns, "-o", "json")
    assert result.returncode == 0, text(result)[1]
    actions = json.loads(result.stdout)
    assert any(a["name"] == name and a["action"] == "removed" and "is gone" in a["reason"] for a in actions), actions
    wait_for(lambda: node_pods(k8s_cluster, privileged_ns) == [], timeout=30, what="the pod deleted")


def test_the_bundled_node_runbook_passes_on_the_real_node(k8s_cluster, privileged_ns, toolbox_on_node):
    started = time.monotonic()
    result = run_cli("runbook", "run", "--kubeconfig", k8s_cluster.kubeconfig, "node",
                     f"node/{k8s_cluster.node_name}", "-n", privileged_ns, "--profile", "node", "-o", "json",
                     timeout=240)
    out, err = text(result)
    assert result.returncode == 0, out + err
    report = json.loads(out)
    steps = {s["name"]: s for s in report["steps"]}
    assert set(steps) == {"disk space and inodes", "memory pressure", "kubelet status", "containerd status",
                          "conntrack table"}
    assert all(s["passed"] for s in steps.values()), steps
    assert "healthz: ok" in steps["kubelet status"]["stdout"]
    assert node_pods(k8s_cluster, privileged_ns) == [], f"left after {time.monotonic() - started:.1f}s"


def test_a_fleet_of_nodes_by_label(k8s_cluster, privileged_ns, toolbox_on_node):
    selector = f"kubernetes.io/hostname={k8s_cluster.node_name}"
    refused = kube(k8s_cluster, "attach", "-l", selector, "--nodes", "-n", privileged_ns, "--", "true")
    assert refused.returncode == ExitCode.INVALID_INPUT and "--profile node" in text(refused)[1]
    result = kube(k8s_cluster, "attach", "-l", selector, "--nodes", "-n", privileged_ns, "--profile", "node",
                  "-o", "json", "--", "sh", "-c", "test -r /host/etc/os-release && echo readable", timeout=180)
    assert result.returncode == 0, text(result)[1]
    (record,) = json.loads(result.stdout)
    assert (record["target"], record["status"], record["stdout"]) == (f"node/{k8s_cluster.node_name}", "passed",
                                                                     "readable\n")
    assert node_pods(k8s_cluster, privileged_ns) == []
    none = kube(k8s_cluster, "attach", "-l", "io.debugkit.test/no-such-label=1", "--nodes", "-n", privileged_ns,
                "--profile", "node", "--", "true")
    assert none.returncode == ExitCode.TARGET_NOT_FOUND and "matches no nodes" in text(none)[1]
