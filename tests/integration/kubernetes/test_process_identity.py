"""Identity from the running process on the real node: an image that sets no USER and
whose process drops to 7777 at start (the drops-privs fixture, as postgres does through
gosu), in a `baseline` namespace. The debug container starts as a minimal identity probe
and runs every command as that process's user: no second container, no `--user`."""
from __future__ import annotations

import json

import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import run_cli, text

pytestmark = pytest.mark.kubernetes


@pytest.fixture(scope="module")
def toolbox_on_node(k8s_cluster, toolbox_image):
    return k8s_cluster.load_image(toolbox_image)


@pytest.fixture(scope="module")
def drops_image(k8s_cluster, fixture_images):
    return k8s_cluster.load_image(fixture_images["drops-privs"])


@pytest.fixture
def dropping_pod(k8s_cluster, drops_image):
    with k8s_cluster.namespace("baseline", prefix="dk-proc") as ns:
        pod = k8s_cluster.run_pod(ns, drops_image, name="db", restricted=False,
                                  container={"args": ["-drop", "7777:7777", "-groups", "7777,8888"]})
        assert pod.spec.security_context.run_as_user is None
        yield ns


def kube(cluster, command, *args, **kwargs):
    return run_cli(command, "--kubeconfig", cluster.kubeconfig, *args, **kwargs)


def test_attach_runs_as_the_process_and_inspect_names_the_process(k8s_cluster, dropping_pod, toolbox_on_node):
    ns = dropping_pod
    before = json.loads(kube(k8s_cluster, "inspect", "pod/db", "-n", ns, "-o", "json").stdout)
    assert before["source"] == "process" and before["uid"] is None  # read when the debug container starts
    assert before["ephemeral_container"]["securityContext"]["capabilities"] == {"drop": ["ALL"],
                                                                               "add": ["SETUID", "SETGID"]}
    result = kube(k8s_cluster, "attach", "pod/db", "-n", ns, "--", "sh", "-c",
                  "id -u; id -G; grep ^CapEff: /proc/self/status", timeout=180)
    out, err = text(result)
    assert result.returncode == 0, err
    assert out.splitlines() == ["7777", "7777 8888", "CapEff:\t0000000000000000"]
    # One debug container was added, and only one: the probe is the container itself.
    pod = k8s_cluster.api.read_namespaced_pod("db", ns)
    assert len(pod.spec.ephemeral_containers) == 1

    after = json.loads(kube(k8s_cluster, "inspect", "pod/db", "-n", ns, "-o", "json").stdout)
    assert (after["uid"], after["gid"], after["groups"], after["source"]) == (7777, 7777, [7777, 8888], "process")
    assert after["sources"][0]["source"] == "process" and after["sources"][0]["uid"] == 7777
    assert [s["source"] for s in after["sources"]] == ["process", "config", "image-config"]

    again = kube(k8s_cluster, "attach", "pod/db", "-n", ns, "--", "id", "-u", timeout=180)
    assert text(again)[0] == "7777\n"
    assert len(k8s_cluster.api.read_namespaced_pod("db", ns).spec.ephemeral_containers) == 1  # reused


def test_the_slim_toolbox_runs_as_the_process_too(k8s_cluster, dropping_pod, toolbox_image):
    """The slim toolbox has busybox, whose setpriv cannot change the UID: the drop is the
    helper's (`as-target`), so it works there as in the full toolbox, with no capability."""
    slim = k8s_cluster.load_image(f"{toolbox_image}-slim")
    result = kube(k8s_cluster, "attach", "pod/db", "-n", dropping_pod, "--new", "--", "sh", "-c",
                  "id -u; id -G; grep -E '^(CapEff|CapPrm|NoNewPrivs):' /proc/self/status", timeout=180,
                  env={"DEBUGKIT_IMAGE": slim})
    out, err = text(result)
    assert result.returncode == 0, err
    assert out.splitlines() == ["7777", "7777 8888", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000",
                                "NoNewPrivs:\t1"]


def test_a_user_flag_still_wins(k8s_cluster, dropping_pod, toolbox_on_node):
    result = kube(k8s_cluster, "attach", "pod/db", "-n", dropping_pod, "--user", "4242:4242", "--", "id", "-u",
                  timeout=180)
    assert result.returncode == 0 and text(result)[0] == "4242\n", text(result)[1]


def test_a_namespace_that_forbids_the_probe_says_pass_user(k8s_cluster, drops_image):
    # `restricted` would not run such a pod at all; a warn-only restricted label on a
    # baseline namespace is not enforcement. So: the probe needs root with two capabilities,
    # which an enforced `restricted` refuses; here checked on a pod that runs under
    # `baseline` and a namespace relabelled `restricted` afterwards.
    with k8s_cluster.namespace("baseline", prefix="dk-proc") as ns:
        k8s_cluster.run_pod(ns, drops_image, name="db", restricted=False,
                            container={"args": ["-drop", "7777:7777"]})
        k8s_cluster.api.patch_namespace(ns, {"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted"}}})
        result = kube(k8s_cluster, "attach", "pod/db", "-n", ns, "--", "true")
        err = text(result)[1]
        assert result.returncode == ExitCode.IDENTITY_UNRESOLVED, err
        assert "CAP_SETUID" in err and "--user" in err
        assert not k8s_cluster.api.read_namespaced_pod("db", ns).spec.ephemeral_containers
