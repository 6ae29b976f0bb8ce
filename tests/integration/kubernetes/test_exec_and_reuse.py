"""Kubernetes runs commands as execs in one reusable debug container per pod, person and
profile (issue 13): exit codes come from the exec stream, not the container's status."""
from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli
from tests.integration.kubernetes.test_debugkit_attach import (  # noqa: F401 - fixtures
    kube, registry_image, restricted_ns, target_pod, toolbox_on_node)

pytestmark = pytest.mark.kubernetes


def debug_containers(cluster, namespace, pod):
    """(name -> state kind) of the pod's debug containers, and their spec names in order."""
    current = cluster.api.read_namespaced_pod(pod, namespace)
    states = {}
    for status in current.status.ephemeral_container_statuses or []:
        state = status.state
        states[status.name] = "running" if state.running else "terminated" if state.terminated else "waiting"
    return states, [c.name for c in current.spec.ephemeral_containers or []]


@pytest.mark.parametrize("command, code", [
    (("true",), 0), (("sh", "-c", "exit 3"), 3), (("sh", "-c", "exit 42"), 42),
    (("/etc/passwd",), 126), (("no-such-command",), 127), (("sh", "-c", "kill -9 $$"), 137),
])
def test_exit_codes_come_from_the_exec_while_the_container_still_runs(k8s_cluster, target_pod, restricted_ns,
                                                                     toolbox_on_node, command, code):
    pod = target_pod.metadata.name
    result = kube(k8s_cluster, "attach", f"pod/{pod}", "-n", restricted_ns, "--", *command)
    assert result.returncode == code, result.stderr
    states, names = debug_containers(k8s_cluster, restricted_ns, pod)
    # The debug container has not terminated: the code cannot have come from its status
    # (which the kubelet publishes only at its next relist, up to a second later).
    assert len(names) == 1 and states.get(names[0]) != "terminated", states


def test_five_attaches_add_one_debug_container_and_new_adds_another(k8s_cluster, target_pod, restricted_ns,
                                                                    toolbox_on_node):
    pod = target_pod.metadata.name
    for _ in range(5):
        result = kube(k8s_cluster, "attach", f"pod/{pod}", "-n", restricted_ns, "--", "echo", "ready")
        assert result.returncode == 0 and result.stdout == b"ready\n", result.stderr
    _, names = debug_containers(k8s_cluster, restricted_ns, pod)
    assert len(names) == 1, names
    fresh = kube(k8s_cluster, "attach", f"pod/{pod}", "-n", restricted_ns, "--new", "--", "true")
    assert fresh.returncode == 0, fresh.stderr
    _, names = debug_containers(k8s_cluster, restricted_ns, pod)
    assert len(names) == 2, names
    ps = kube(k8s_cluster, "ps", "-o", "json", "--runtime", "kubernetes", "-n", restricted_ns)
    rows = {row["name"]: row for row in json.loads(ps.stdout)}
    assert all(rows[n]["reusable"] and rows[n]["keep_alive_s"] == 600 for n in names), rows
    assert rows[names[0]]["idle_s"] is not None


def test_another_identity_or_image_gets_its_own_container(k8s_cluster, target_pod, restricted_ns, toolbox_on_node):
    pod = target_pod.metadata.name
    assert kube(k8s_cluster, "attach", f"pod/{pod}", "-n", restricted_ns, "--", "true").returncode == 0
    other_user = kube(k8s_cluster, "attach", f"pod/{pod}", "-n", restricted_ns, "-u", "12345:12345", "--", "id", "-u")
    assert other_user.returncode == 0 and other_user.stdout == b"12345\n", other_user.stderr
    _, names = debug_containers(k8s_cluster, restricted_ns, pod)
    assert len(names) == 2, names


def test_keep_alive_zero_ends_the_container_with_the_command(k8s_cluster, target_pod, restricted_ns,
                                                             toolbox_on_node):
    from tests.helpers import wait_for

    pod = target_pod.metadata.name
    result = kube(k8s_cluster, "attach", f"pod/{pod}", "-n", restricted_ns, "--keep-alive", "0", "--",
                  "sh", "-c", "exit 7")
    assert result.returncode == 7, result.stderr
    _, names = debug_containers(k8s_cluster, restricted_ns, pod)
    wait_for(lambda: debug_containers(k8s_cluster, restricted_ns, pod)[0].get(names[0]) == "terminated",
             timeout=30, what="the debug container to end")


def test_a_bad_keep_alive_is_refused_before_any_call():
    result = run_cli("attach", "pod/x", "--keep-alive", "ten minutes", "--", "true")
    assert result.returncode == 64 and b"--keep-alive" in result.stderr, result.stderr


def test_people_debugging_one_pod_at_once_each_get_their_container(k8s_cluster, target_pod, restricted_ns,
                                                                  toolbox_on_node):
    """Each adds its debug container while the others add theirs: none may replace the
    list the others just added to (a JSON patch from the pod as read would)."""
    import concurrent.futures

    pod = target_pod.metadata.name
    people = 4

    def attach(_):
        return kube(k8s_cluster, "attach", f"pod/{pod}", "-n", restricted_ns, "--new", "--keep-alive", "0",
                    "--", "echo", "ready", timeout=180)

    with concurrent.futures.ThreadPoolExecutor(people) as pool:
        results = list(pool.map(attach, range(people)))
    assert [(r.returncode, r.stdout) for r in results] == [(0, b"ready\n")] * people, \
        [r.stderr.decode(errors="replace") for r in results]
    _, names = debug_containers(k8s_cluster, restricted_ns, pod)
    assert len(set(names)) == people, names


def test_the_reason_is_in_the_pod_spec_ps_and_the_audit_log(k8s_cluster, target_pod, restricted_ns, toolbox_on_node,
                                                            audit_log):
    from tests.helpers import audit_records

    pod = target_pod.metadata.name
    reason = "INC-77: readiness flapping"
    result = kube(k8s_cluster, "attach", f"pod/{pod}", "-n", restricted_ns, "--new", "--reason", reason, "--", "true")
    assert result.returncode == 0, result.stderr
    spec = k8s_cluster.api.read_namespaced_pod(pod, restricted_ns).spec.ephemeral_containers[-1]
    assert {e.name: e.value for e in spec.env or []}.get("DEBUGKIT_REASON") == reason
    ps = kube(k8s_cluster, "ps", "-o", "json", "--runtime", "kubernetes", "-n", restricted_ns)
    assert [row["reason"] for row in json.loads(ps.stdout) if row["name"] == spec.name] == [reason]
    assert audit_records(audit_log)[0]["reason"] == reason


# -- issue 27 ----------------------------------------------------------------------------------------------------

def test_a_planted_debug_container_that_cannot_start_does_not_stop_later_attaches(k8s_cluster, target_pod,
                                                                                  restricted_ns, toolbox_on_node,
                                                                                  tmp_path):
    """Item 3: a container with the reuse key, planted by someone who may patch
    pods/ephemeralcontainers and stuck in ErrImagePull, made every later attach fail."""
    pod = target_pod.metadata.name
    first = kube(k8s_cluster, "attach", f"pod/{pod}", "-n", restricted_ns, "--", "true",
                 env={"XDG_STATE_HOME": str(tmp_path / "someone")})
    assert first.returncode == 0, first.stderr
    current = k8s_cluster.api.read_namespaced_pod(pod, restricted_ns)
    (original,) = k8s_cluster.api.api_client.sanitize_for_serialization(current.spec.ephemeral_containers)
    broken = {**original, "name": "debugkit-broken", "image": "127.0.0.1:1/nothing/here:1",
              "command": ["sleep", "600"]}
    # A JSON patch appends it after ours, newest last, as a plant by hand with kubectl does.
    k8s_cluster.api.patch_namespaced_pod_ephemeralcontainers(
        pod, restricted_ns, [{"op": "add", "path": "/spec/ephemeralContainers/-", "value": broken}])
    for attempt in range(2):
        ran = kube(k8s_cluster, "attach", f"pod/{pod}", "-n", restricted_ns, "--timeout", "60", "--", "id", "-u",
                   env={"XDG_STATE_HOME": str(tmp_path / f"me{attempt}")})
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == b"65532\n"
    states, _ = debug_containers(k8s_cluster, restricted_ns, pod)
    assert states.get("debugkit-broken") != "running"


def test_custom_may_not_replace_the_command_or_outlive_keep_alive(k8s_cluster, target_pod, restricted_ns,
                                                                 toolbox_on_node, tmp_path):
    """Item 18: `command: [sleep, "3600"]` in --custom ran despite --keep-alive 0."""
    pod = target_pod.metadata.name
    custom = tmp_path / "custom.yaml"
    custom.write_text('command: [sleep, "3600"]\n')
    refused = kube(k8s_cluster, "attach", f"pod/{pod}", "-n", restricted_ns, "--keep-alive", "0",
                   "--custom", str(custom), "--", "true")
    assert refused.returncode == 64 and b"--custom may not set 'command'" in refused.stderr, refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    _, names = debug_containers(k8s_cluster, restricted_ns, pod)
    assert names == []  # refused before the pod was patched
