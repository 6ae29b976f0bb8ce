"""The ephemeral container and the PodSecurity pre-check, as plain data (no cluster)."""
import pytest

from debugkit.runtimes.kubernetes import podsecurity
from debugkit.runtimes.kubernetes.errors import summarize_pod_security
from debugkit.runtimes.kubernetes.translate import GATE, ephemeral_container
from debugkit.core.errors import InvalidInput
from debugkit.core.identity import Identity
from debugkit.core.profiles import apply_profile
from debugkit.core.spec import base_spec

TARGET = Identity(uid=65532, gid=65532, groups=(65532,), source="image-config")


def spec(profile="restricted", **kw):
    s = base_spec(image="debugkit/toolbox:0.1.0", identity=TARGET, target_name="ns/pod/app", target_id="uid-1",
                  runtime="kubernetes", cli_pid=1, cli_host="h", local_user="me", session_id="abcd1234", **kw)
    return apply_profile(s, profile)


def test_restricted_container_matches_the_design():
    c = ephemeral_container(spec(command=GATE + ("id",), stdin=True), target_container="app")
    assert c["name"] == "debugkit-abcd1234" and c["targetContainerName"] == "app"
    assert c["command"][-1] == "id" and c["stdin"] and c["stdinOnce"] and not c["tty"]
    assert {"name": "DEBUGKIT_SESSION", "value": "abcd1234"} in c["env"]
    assert c["securityContext"] == {
        "runAsUser": 65532, "runAsGroup": 65532, "runAsNonRoot": True, "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert podsecurity.violations("restricted", c) == []


@pytest.mark.parametrize("profile,admitted_at", [
    ("restricted", {"privileged", "baseline", "restricted"}),
    ("netadmin", {"privileged"}),
    ("ptrace", {"privileged"}),
    ("sysadmin", {"privileged"}),
])
def test_each_profile_against_each_level(profile, admitted_at):
    c = ephemeral_container(spec(profile), target_container="app")
    for level in podsecurity.LEVELS:
        assert (podsecurity.violations(level, c) == []) == (level in admitted_at), (profile, level)


def test_kubectl_default_debug_container_is_rejected_by_restricted():
    # What `kubectl debug --target` sends by default: no securityContext at all.
    kubectl_default = {"name": "debugger-x", "image": "busybox", "targetContainerName": "app"}
    reasons = podsecurity.violations("restricted", kubectl_default)
    assert "allowPrivilegeEscalation must be false" in reasons
    assert "runAsNonRoot must be true" in reasons
    assert podsecurity.violations("baseline", kubectl_default) == []


def test_pod_level_security_context_counts():
    c = {"securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}
    pod_sc = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert podsecurity.violations("restricted", c, pod_sc) == []


def test_custom_spec_is_merged_last_but_cannot_rename():
    c = ephemeral_container(spec(), target_container="app",
                            custom={"securityContext": {"readOnlyRootFilesystem": False}, "workingDir": "/tmp"})
    assert c["securityContext"]["readOnlyRootFilesystem"] is False and c["securityContext"]["runAsUser"] == 65532
    assert c["workingDir"] == "/tmp"
    with pytest.raises(InvalidInput):
        ephemeral_container(spec(), target_container="app", custom={"targetContainerName": "other"})


def test_pod_security_message_is_summarised_to_the_violating_fields():
    message = ('pods "web" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
               '(container "debugger-abc" must set securityContext.allowPrivilegeEscalation=false), unrestricted '
               'capabilities (container "debugger-abc" must set securityContext.capabilities.drop=["ALL"]), '
               'runAsNonRoot != true (pod or container "debugger-abc" must set securityContext.runAsNonRoot=true)')
    assert summarize_pod_security(message) == (
        "restricted: allowPrivilegeEscalation != false; unrestricted capabilities; runAsNonRoot != true")
