"""The ephemeral container and the PodSecurity pre-check, as plain data (no cluster)."""
import pytest

from debugkit.runtimes.kubernetes import podsecurity
from debugkit.runtimes.kubernetes.errors import summarize_pod_security
from debugkit.runtimes.kubernetes import translate
from debugkit.runtimes.kubernetes.translate import ephemeral_container
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
    keepalive = tuple(translate.keepalive_command("debugkit-abcd1234", idle=600, helper=True))
    c = ephemeral_container(spec(command=keepalive), target_container="app")
    assert c["name"] == "debugkit-abcd1234" and c["targetContainerName"] == "app"
    assert c["command"] == [translate.HELPER, "keepalive", "--socket", "debugkit-abcd1234", "--idle", "600",
                            "--first", "120"]
    assert not c["stdin"] and not c["tty"]
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


def test_commands_run_under_the_reaper_holding_the_keepalive():
    assert translate.exec_command("debugkit-1", ["sh", "-c", "exit 3"], helper=True) == [
        translate.HELPER, "reap", "--hold", "debugkit-1", "--", "sh", "-c", "exit 3"]
    # A command that reads none of our stdin: its reaper watches the exec's stdin instead.
    assert translate.exec_command("debugkit-1", ["true"], helper=True, watch_stdin=True) == [
        translate.HELPER, "reap", "--hold", "debugkit-1", "--watch-stdin", "--", "true"]
    # A foreign image: the helper when it has one, the bare command otherwise.
    fallback = translate.exec_command("debugkit-1", ["id"], helper=False)
    assert fallback[:2] == ["sh", "-c"] and fallback[3:] == ["debugkit-1", "id"]
    assert "debugkit-helper reap --hold" in fallback[2]


def test_the_reuse_key_separates_people_identities_images_and_profiles():
    base = dict(target_container="app", custom=None, local_user="alice")
    key = translate.reuse_key(spec(), **base)
    assert key == translate.reuse_key(spec(), **base)  # a later attach of the same kind matches
    assert key != translate.reuse_key(spec(), **{**base, "local_user": "bob"})
    assert key != translate.reuse_key(spec(), **{**base, "target_container": "sidecar"})
    assert key != translate.reuse_key(spec("ptrace"), **base)
    assert key != translate.reuse_key(spec(), **{**base, "custom": {"workingDir": "/tmp"}})
    other_image = apply_profile(base_spec(image="other:1", identity=TARGET, target_name="ns/pod/app",
                                          target_id="uid-1", runtime="kubernetes", cli_pid=1, cli_host="h",
                                          local_user="me", session_id="abcd1234"), "restricted")
    assert key != translate.reuse_key(other_image, **base)


def test_lookalikes_are_live_debug_containers_carrying_the_key_newest_first():
    from debugkit.runtimes.kubernetes.planning import lookalikes

    def ctr(name, key):
        return {"name": name, "env": [{"name": translate.ENV_REUSE, "value": key}]}

    pod = {"spec": {"ephemeralContainers": [ctr("debugkit-a", "k1"), ctr("debugkit-b", "k1"), ctr("other", "k1"),
                                            ctr("debugkit-c", "k1")]},
           "status": {"ephemeralContainerStatuses": [
               {"name": "debugkit-a", "state": {"running": {}}},
               {"name": "debugkit-b", "state": {"terminated": {"exitCode": 0}}},
               {"name": "other", "state": {"running": {}}}]}}
    assert lookalikes(pod, "k1") == ["debugkit-c", "debugkit-a"]
    assert lookalikes(pod, "k2") == []


def test_an_exec_into_a_container_whose_task_has_ended_means_not_running():
    from debugkit.runtimes.kubernetes.stream import ContainerNotReady, exit_code_of

    class Ended:
        def exit_code(self):
            return None

        def exec_failure_code(self):
            return None

        def status(self):
            return {"status": "Failure", "message": "Internal error occurred: error executing command in container: "
                    "failed to exec in container: failed to create exec \"32f2\": task fce7 not found: not found"}

    with pytest.raises(ContainerNotReady):
        exit_code_of(Ended(), what="debug container debugkit-x")
