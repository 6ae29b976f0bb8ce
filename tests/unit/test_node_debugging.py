"""Node debugging (node/NAME), the pure parts: the target's shape, the rules on the flags
that must be typed, the pod it becomes and the PodSecurity levels that admit that pod."""
from __future__ import annotations

import pytest

from debugkit import runtimes
from debugkit.core.errors import ExitCode, InvalidInput
from debugkit.core.identity import Identity
from debugkit.core.options import Flags, check_node_flags
from debugkit.core.profiles import apply_profile
from debugkit.core.spec import base_spec
from debugkit.core.targets import NodeRef, NodeSetRef, PodRef, parse_many, parse_target
from debugkit.runtimes.kubernetes import nodepod, podsecurity


def node_spec(profile: str):
    spec = base_spec(image="toolbox", identity=Identity(0, 0, source="node"), target_name="node/n1",
                     target_id="uid-1", runtime="kubernetes", cli_pid=42, cli_host="laptop.example.com",
                     local_user="ana", reason="INC-1: disk full", session_id="abcd1234")
    return apply_profile(spec, profile)


def test_node_targets_parse_to_a_node_of_the_pods_runtime():
    syntax = runtimes.syntax()
    ref = parse_target("node/worker-1.example", syntax, namespace="ops")
    assert ref == NodeRef(node="worker-1.example", namespace="ops", runtime=syntax.pods)
    assert str(ref) == "node/worker-1.example"
    assert parse_many("node/worker-1", syntax) is None  # one target, not a fleet
    assert isinstance(parse_target("pod/node", syntax), PodRef)
    for bad in ("node/", "node/a/b", "node/UPPER"):
        with pytest.raises(InvalidInput):
            parse_target(bad, syntax)
    with pytest.raises(InvalidInput, match="--container applies to pods"):
        parse_target("node/n1", syntax, container="app")


@pytest.mark.parametrize("typed", [None, "restricted", "ptrace", "netadmin"])
def test_a_node_needs_node_or_sysadmin_typed(typed):
    ref = NodeRef("n1", runtime="kubernetes")
    with pytest.raises(InvalidInput) as info:
        check_node_flags(ref, Flags(target="node/n1", profile=typed))
    assert info.value.exit_code == ExitCode.INVALID_INPUT
    assert "--profile node" in str(info.value) and "--profile sysadmin" in str(info.value)


def test_node_flags_that_do_not_apply_are_refused():
    ref = NodeRef("n1", runtime="kubernetes")
    check_node_flags(ref, Flags(target="node/n1", profile="node"))
    check_node_flags(ref, Flags(target="node/n1", profile="sysadmin"))
    for flag, value in (("user", "0"), ("custom", "x.yaml"), ("keep-alive", "60")):
        with pytest.raises(InvalidInput, match=f"--{flag} does not apply to node/n1"):
            check_node_flags(ref, Flags(target="node/n1", profile="node", **{flag.replace("-", "_"): value}))
    with pytest.raises(InvalidInput, match="--profile node applies to node/NAME targets only"):
        check_node_flags(PodRef("p", runtime="kubernetes"), Flags(target="pod/p", profile="node"))


def test_the_node_profile_pod_reads_the_host_and_adds_nothing():
    pod = nodepod.node_pod(node_spec("node"), node="n1", namespace="ops", helper=True)
    spec, (container,) = pod["spec"], pod["spec"]["containers"]
    assert (spec["nodeName"], spec["hostPID"], spec["hostNetwork"]) == ("n1", True, True)
    assert "hostIPC" not in spec and spec["restartPolicy"] == "Never"
    assert spec["tolerations"] == [{"operator": "Exists"}] and spec["automountServiceAccountToken"] is False
    assert spec["volumes"] == [{"name": "host-root", "hostPath": {"path": "/"}}]
    assert container["volumeMounts"] == [{"name": "host-root", "mountPath": "/host", "readOnly": True}]
    sc = container["securityContext"]
    assert sc["runAsUser"] == 0 and "privileged" not in sc and "capabilities" not in sc
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    # The keep-alive ends with the session's last command: a killed CLI leaves a finished pod.
    assert container["command"][1:] == ["keepalive", "--socket", "debugkit-abcd1234", "--idle", "0", "--first",
                                        "120"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DEBUGKIT_TARGET_ROOT"] == "/host"


def test_the_sysadmin_pod_is_privileged_with_host_writable():
    pod = nodepod.node_pod(node_spec("sysadmin"), node="n1", namespace="ops", helper=True)
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"]["privileged"] is True
    assert container["volumeMounts"][0]["readOnly"] is False


def test_the_pod_is_labelled_for_ps_and_gc_and_annotated_with_what_labels_cannot_hold():
    meta = nodepod.node_pod(node_spec("node"), node="n1", namespace="ops", helper=True)["metadata"]
    assert meta["name"] == "debugkit-abcd1234" and meta["namespace"] == "ops"
    labels, notes = meta["labels"], meta["annotations"]
    assert labels["io.debugkit.managed"] == "true" and labels["io.debugkit.kind"] == "node"
    assert labels["io.debugkit.session"] == "abcd1234" and labels["io.debugkit.cli-pid"] == "42"
    assert labels["io.debugkit.profile"] == "node" and labels["io.debugkit.node"] == "n1"
    assert notes["io.debugkit.reason"] == "INC-1: disk full" and notes["io.debugkit.target"] == "node/n1"
    assert notes["io.debugkit.cli-host"] == "laptop.example.com"
    assert all(nodepod.label_value(v) == v for v in labels.values())
    # A node name too long for a label is only in the annotations and the pod's nodeName.
    long_node = "n" * 70
    meta = nodepod.node_pod(node_spec("node"), node=long_node, namespace="ops", helper=True)["metadata"]
    assert "io.debugkit.node" not in meta["labels"]


@pytest.mark.parametrize("profile", ["node", "sysadmin"])
def test_only_privileged_admits_a_node_pod(profile):
    pod = nodepod.node_pod(node_spec(profile), node="n1", namespace="ops", helper=True)
    assert podsecurity.pod_violations("privileged", pod) == []
    assert podsecurity.pod_violations(None, pod) == []  # no label: the cluster's default
    baseline = podsecurity.pod_violations("baseline", pod)
    assert "hostPID: true is not allowed" in baseline and "hostNetwork: true is not allowed" in baseline
    assert any("hostPath" in reason for reason in baseline)
    assert len(podsecurity.pod_violations("restricted", pod)) > len(baseline)


def test_nodes_by_label_are_a_fleet_that_needs_the_typed_profile_too():
    syntax = runtimes.syntax()
    many = parse_many(None, syntax, selector="node-role=worker", namespace="ops", nodes=True)
    assert many == NodeSetRef(selector="node-role=worker", namespace="ops", runtime=syntax.pods)
    assert str(many) == "-l node-role=worker --nodes"
    for kwargs, message in (({}, "--nodes goes with -l"),
                            ({"selector": "a=b", "all_namespaces": True}, "apply to pods"),
                            ({"selector": "a=b", "container": "app"}, "apply to pods")):
        with pytest.raises(InvalidInput, match=message):
            parse_many(None, syntax, nodes=True, **kwargs)
    with pytest.raises(InvalidInput, match="--profile node"):
        check_node_flags(many, Flags(target=str(many)))
    check_node_flags(many, Flags(target=str(many), profile="node"))
