"""Held copies (attach --copy, attach image/REF, runbook run --copy) written once over the
protocol: the flow through a runtime that exists only in the tests, the target syntax, and
the pure translations of the Docker and Kubernetes copies."""
from __future__ import annotations

import pytest

from debugkit.core.errors import ExitCode, InvalidInput
from debugkit.core.targets import ContainerRef, ImageRef, parse_target
from debugkit.runtimes import syntax
from debugkit.runtimes.docker import copyspec as docker_copy
from debugkit.runtimes.kubernetes import copyspec as kube_copy
from debugkit.session import audit
from tests.unit.test_fourth_runtime import fake, run  # noqa: F401 - the fixture


# -- the flow, once for every runtime ---------------------------------------------------------------

def events(records):
    return [r["event"] for r in records]


def test_attach_copy_holds_a_copy_attaches_to_it_and_removes_it(fake, capsys):  # noqa: F811
    fake.add("crashing", uid=65532, running=False)
    code, out, err = run(capsys, "attach", "--copy", "fake://crashing", "--", "exit", "2")
    assert code == 2
    assert out.startswith("exit 2 as 65532:65532 next to crashing-copy-")
    assert "held copy crashing-copy-" in err and "`target start` runs its program" in err
    assert fake.copies == {} and "crashing" in fake.containers and not fake.containers["crashing"].running
    records = audit.read().records
    assert events(records) == ["copy", "created", "start", "created", "end", "copy end"]
    copy = records[0]
    assert copy["original"] == "crashing" and copy["original_id"] == "id-crashing" and not copy["writable"]
    assert copy["dropped"] == ["published ports 80/tcp"] and copy["program"] == ["/app"] and copy["local_user"]
    assert records[2]["target"] == copy["copy"] and records[2]["session"] == copy["session"]
    assert records[-1]["outcome"] == "removed"


def test_copy_writable_is_audited_and_a_kept_copy_is_reused(fake, capsys):  # noqa: F811
    fake.add("crashing", running=False)
    first = run(capsys, "attach", "--copy", "--copy-writable", "--keep-alive", "10m", "fake://crashing", "--", "true")
    second = run(capsys, "attach", "--copy", "--keep-alive", "10m", "fake://crashing", "--", "true")
    assert first[0] == second[0] == 0
    made, reused = [r for r in audit.read().records if r["event"] == "copy"]
    assert made["writable"] is True and made["kept"] is True and not made["reused"]
    assert reused["reused"] is True and reused["copy"] == made["copy"] and reused["writable"] is False
    assert list(fake.copies) == [made["copy"]]  # kept: not removed at the session's end
    assert "copy end" not in events(audit.read().records)


def test_a_stopped_target_suggests_nothing_else_than_it_did(fake, capsys):  # noqa: F811
    fake.add("down", running=False)
    assert run(capsys, "attach", "fake://down", "--", "true")[0] == ExitCode.TARGET_NOT_RUNNING


@pytest.mark.parametrize("argv,message", [
    (["--copy-writable"], "--copy-writable applies to a held copy: add --copy"),
    (["--same-node"], "--same-node applies to a held copy: add --copy"),
    (["--copy", "--same-node"], "--same-node applies to a pod's copy"),
])
def test_copy_flags_out_of_place_are_refused_in_one_line(fake, capsys, argv, message):  # noqa: F811
    fake.add("web")
    code, out, err = run(capsys, "attach", *argv, "fake://web", "--", "true")
    assert code == ExitCode.INVALID_INPUT and out == ""
    assert err.startswith(f"debugkit: error: {message}") and err.count("\n") == 1
    assert fake.copies == {}


def test_a_runtime_without_copies_refuses_one_in_one_line(fake, capsys, monkeypatch):  # noqa: F811
    from debugkit.runtimes.base import Runtime
    from tests.unit import fake_runtime

    for name in ("plan_copy", "hold_copy", "remove_copy"):
        monkeypatch.setattr(fake_runtime.FakeRuntime, name, getattr(Runtime, name))
    fake.add("web")
    code, out, err = run(capsys, "attach", "--copy", "fake://web", "--", "true")
    assert code == ExitCode.INVALID_INPUT and err == "debugkit: error: fake cannot make a held copy of fake://web\n"
    assert [r["event"] for r in audit.read().records] == ["refused"]


def test_copy_takes_one_target_not_a_fleet(fake, capsys):  # noqa: F811
    code, _out, err = run(capsys, "attach", "--copy", "--filter", "label=a=b", "--runtime", "fake", "--", "true")
    assert code == ExitCode.INVALID_INPUT and "--copy takes one target" in err


@pytest.mark.parametrize("command", [("attach", "--copy"), ("runbook", "run", "processes", "--copy")])
def test_copy_takes_one_cluster(fake, capsys, command):  # noqa: F811
    fake.add("web")
    tail = ("--", "true") if command[0] == "attach" else ()
    code, out, err = run(capsys, *command, "--context", "a,b", "fake://web", *tail)
    assert (code, out) == (ExitCode.INVALID_INPUT, "")
    assert err == "debugkit: error: --copy takes one target in one cluster: give one --context\n"
    assert fake.copies == {}


# -- image/REF --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,image,runtime", [
    ("image/debugkit-fixture/named-user:1", "debugkit-fixture/named-user:1", "docker"),
    ("podman://image/localhost/app@sha256:" + "a" * 64, "localhost/app@sha256:" + "a" * 64, "podman"),
    ("docker://image/registry:5000/x/y:tag", "registry:5000/x/y:tag", "docker"),
])
def test_an_image_is_a_target(text, image, runtime):
    ref = parse_target(text, syntax())
    assert isinstance(ref, ImageRef) and ref.image == image and ref.runtime == runtime
    assert str(ref) == text.removeprefix("docker://")  # Docker's canonical form is the bare one


@pytest.mark.parametrize("text", ["image/", "image/a b", "image/-x", "podman://image/"])
def test_a_bad_image_reference_is_refused(text):
    with pytest.raises(InvalidInput, match="invalid image reference"):
        parse_target(text, syntax())


def test_a_container_name_is_still_a_container():
    assert isinstance(parse_target("imaged", syntax()), ContainerRef)


# -- Docker's copy, a pure translation --------------------------------------------------------------

ORIGINAL = {
    "Id": "c" * 64, "Name": "/web", "Image": "sha256:" + "i" * 64,
    "Config": {"Image": "shop/web:1", "Entrypoint": ["/server"], "Cmd": ["-port", "8080"], "Env": ["A=1"],
               "WorkingDir": "/srv", "User": "65532", "Labels": {"com.docker.compose.service": "web"},
               "Healthcheck": {"Test": ["CMD", "/server", "-check"]}},
    "HostConfig": {"NetworkMode": "shop_default", "PortBindings": {"8080/tcp": [{"HostPort": "80"}]},
                   "RestartPolicy": {"Name": "always"}, "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"],
                   "ReadonlyRootfs": True, "Privileged": True, "GroupAdd": ["2000"]},
    "Mounts": [{"Type": "volume", "Name": "data", "Destination": "/data", "RW": True},
               {"Type": "bind", "Source": "/etc/shop", "Destination": "/etc/shop", "RW": False},
               {"Type": "npipe", "Destination": "/pipe"}],
    "NetworkSettings": {"Networks": {"shop_default": {"Aliases": ["web", "cccccccccccc"]}}},
}


def docker_request(**kw):
    args = dict(original=ORIGINAL, image={"Id": ORIGINAL["Image"], "Config": {}}, name="web-debugkit-copy-s1",
                holder_volume="debugkit-copy-s1", session_id="s1", local_user="ana", writable=False, keep=False,
                runtime="docker", original_name="web")
    args.update(kw)
    return docker_copy.copy_request(**args)


def test_the_docker_copy_keeps_the_runnable_spec_and_holds_the_program():
    made = docker_request()
    body, host = made["body"], made["body"]["HostConfig"]
    assert body["Image"] == ORIGINAL["Image"] and body["Env"] == ["A=1"] and body["WorkingDir"] == "/srv"
    assert body["User"] == "65532" and body["Cmd"] == ["/server", "-port", "8080"] == made["program"]
    assert body["Entrypoint"] == [docker_copy.HOLDER, "hold", "--socket", "debugkit-target-s1", "--"]
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"] and host["ReadonlyRootfs"]
    assert host["GroupAdd"] == ["2000"] and host["NetworkMode"] == "shop_default"
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"shop_default": {}}}  # no aliases


def test_the_docker_copy_drops_what_routes_traffic_or_grants_privilege():
    made = docker_request()
    host, labels = made["body"]["HostConfig"], made["body"]["Labels"]
    assert "PortBindings" not in host and host["RestartPolicy"] == {"Name": "no"} and host["Privileged"] is False
    assert "com.docker.compose.service" not in labels and labels["io.debugkit.copy-of"] == "c" * 64
    assert "Healthcheck" not in made["body"]
    assert made["dropped"] == ["the npipe mount at /pipe", "network aliases web", "published ports 8080/tcp",
                               "privileged mode", "the restart policy always", "the original's labels",
                               "the health check"]


@pytest.mark.parametrize("writable,data_ro", [(False, True), (True, False)])
def test_docker_mounts_are_read_only_unless_writable(writable, data_ro):
    mounts = {m["Target"]: m for m in docker_request(writable=writable)["body"]["HostConfig"]["Mounts"]}
    assert mounts["/data"]["ReadOnly"] is data_ro and mounts["/data"]["Source"] == "data"
    assert mounts["/etc/shop"]["ReadOnly"] is True  # read-only in the original stays so
    assert mounts[docker_copy.HOLDER_DIR] == {"Type": "volume", "Source": "debugkit-copy-s1",
                                              "Target": docker_copy.HOLDER_DIR, "ReadOnly": True,
                                              "VolumeOptions": {"NoCopy": True}}


def test_an_image_copy_runs_the_images_own_program_and_user():
    image = {"Id": "sha256:" + "m" * 64, "Config": {"Entrypoint": ["/server"], "User": "nonroot:nonroot"}}
    made = docker_request(original=None, image=image, original_name="shop/web:1")
    assert made["body"]["Image"] == image["Id"] and made["body"]["User"] == "nonroot:nonroot"
    assert made["program"] == ["/server"] and made["dropped"] == []
    with pytest.raises(InvalidInput, match="no entrypoint or command"):
        docker_request(original=None, image={"Id": "sha256:x", "Config": {}}, original_name="empty")


def test_copy_names_are_container_names():
    assert docker_copy.copy_name("registry:5000/shop/web:1@sha256:ab", "s1") == "web-debugkit-copy-s1"
    assert docker_copy.copy_name("web", "s1") == "web-debugkit-copy-s1"


# -- Kubernetes' copy, a pure translation ------------------------------------------------------------

POD = {
    "metadata": {"name": "web-7d9", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"},
                 "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7"}]},
    "spec": {
        "nodeName": "node-1", "serviceAccountName": "web", "securityContext": {"runAsNonRoot": True},
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        "containers": [
            {"name": "app", "image": "shop/web:1", "args": ["-port", "8080"], "env": [{"name": "A", "value": "1"}],
             "ports": [{"containerPort": 8080}], "readinessProbe": {"httpGet": {"port": 8080}},
             "volumeMounts": [{"name": "data", "mountPath": "/data"}],
             "securityContext": {"allowPrivilegeEscalation": False}},
            {"name": "proxy", "image": "envoy"}],
    },
}


def kube_pod(**kw):
    args = dict(run=["/server", "-port", "8080"], name="web-7d9-debugkit-copy-s1", session_id="s1",
                local_user="ana", toolbox="debugkit/toolbox:0.1.0", writable=False, same_node=False, keep=False,
                cli_pid=42, cli_host="laptop")
    args.update(kw)
    return kube_copy.copy_pod(POD, "app", **args)


def test_the_pod_copy_keeps_the_container_and_drops_what_routes_traffic():
    pod, dropped = kube_pod()
    spec, meta = pod["spec"], pod["metadata"]
    assert meta["labels"] == {"io.debugkit.managed": "true", "io.debugkit.session": "s1", "io.debugkit.copy-of": "u-1",
                              "io.debugkit.local-user": "ana"}
    assert "ownerReferences" not in meta and "nodeName" not in spec and spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == "web" and spec["securityContext"] == {"runAsNonRoot": True}
    (ctr,) = spec["containers"]
    assert ctr["command"] == [kube_copy.IMAGE_HOLDER, "hold", "--", "/server", "-port", "8080"] and "args" not in ctr
    assert ctr["command"][0] == "/.debugkit/usr/local/lib/debugkit/debugkit-helper"
    assert spec["volumes"][-1] == {"name": kube_copy.HOLDER_VOLUME, "image": {"reference": "debugkit/toolbox:0.1.0",
                                                                              "pullPolicy": "IfNotPresent"}}
    assert "initContainers" not in spec
    assert "readinessProbe" not in ctr and "ports" not in ctr and ctr["env"] == [{"name": "A", "value": "1"}]
    assert ctr["volumeMounts"][0] == {"name": "data", "mountPath": "/data", "readOnly": True}
    assert dropped == ["the pod's labels (app)", "its owner references", "the other containers (proxy)",
                       "the readiness probe", "the container ports", "the node (node-1; --same-node keeps it)"]


def test_without_image_volumes_an_init_container_fills_the_helper_and_passes_restricted():
    from debugkit.runtimes.kubernetes import podsecurity

    pod, _ = kube_pod(same_node=True, writable=True, holder="init")
    assert pod["spec"]["nodeName"] == "node-1"
    assert pod["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] is False
    assert pod["spec"]["containers"][0]["command"][0] == kube_copy.HOLDER
    assert pod["spec"]["volumes"][-1] == {"name": kube_copy.HOLDER_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}}
    (installer,) = pod["spec"]["initContainers"]
    assert podsecurity.violations("restricted", installer, {"runAsNonRoot": True, "seccompProfile":
                                                            {"type": "RuntimeDefault"}}) == []


@pytest.mark.parametrize("container,config,program", [
    ({"command": ["/bin/app"], "args": ["-v"]}, None, ["/bin/app", "-v"]),
    ({"args": ["-v"]}, {"Entrypoint": ["/server"], "Cmd": ["-x"]}, ["/server", "-v"]),
    ({}, {"Entrypoint": ["/server"], "Cmd": ["-x"]}, ["/server", "-x"]),
])
def test_the_program_is_what_the_kubelet_would_run(container, config, program):
    assert kube_copy.program({"name": "app", **container}, config) == program
    with pytest.raises(InvalidInput):
        kube_copy.program({"name": "app"}, {})


class RefusingImageVolumes:
    """An API server without image volumes: the field is dropped, the volume has no source (422)."""

    def __init__(self, status=422, message="spec.volumes[1]: Required value: must specify a volume type"):
        self.status, self.message, self.created = status, message, []

    def create_pod(self, namespace, pod):
        from debugkit.runtimes.kubernetes.kubeclient import ApiError

        if any("image" in v for v in pod["spec"]["volumes"]):
            raise ApiError(self.status, "Invalid", self.message)
        self.created.append(pod)
        return {"metadata": {"uid": "u-copy", "name": pod["metadata"]["name"]}}

    def read_namespace(self, name):
        return {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}}

    def close(self):
        pass


@pytest.mark.parametrize("status,message", [(422, "must specify a volume type"),
                                            (403, 'violates PodSecurity "restricted:latest": restricted volume types')])
def test_a_cluster_without_image_volumes_gets_the_init_container(status, message):
    from debugkit.runtimes.base import CopyPlan
    from debugkit.runtimes.kubernetes.runtime import KubernetesRuntime

    api = RefusingImageVolumes(status, message)
    runtime = KubernetesRuntime(api=api)
    asked = dict(run=["/server"], name="p-debugkit-copy-s1", session_id="s1", local_user="ana", toolbox="tb:1",
                 writable=False, same_node=False, keep=False, cli_pid=1, cli_host="h")
    pod, _ = kube_copy.copy_pod(POD, "app", **asked)
    fallback, _ = kube_copy.copy_pod(POD, "app", holder="init", **asked)
    plan = CopyPlan(runtime="kubernetes", original="shop/web-7d9/app", original_id="u-1", name="p-debugkit-copy-s1",
                    request=pod, program=("/server",), details={"fallback": fallback})
    assert runtime.create_copy("shop", plan)["metadata"]["uid"] == "u-copy"
    (sent,) = api.created
    assert sent["spec"]["initContainers"][0]["name"] == kube_copy.INSTALLER


def test_another_refusal_is_not_retried():
    from debugkit.core.errors import DebugkitError
    from debugkit.runtimes.base import CopyPlan
    from debugkit.runtimes.kubernetes.runtime import KubernetesRuntime

    api = RefusingImageVolumes(403, 'pods is forbidden: User "ana" cannot create resource "pods"')
    pod, _ = kube_copy.copy_pod(POD, "app", run=["/server"], name="c", session_id="s", local_user="a", toolbox="t",
                                writable=False, same_node=False, keep=False, cli_pid=1, cli_host="h")
    plan = CopyPlan(runtime="kubernetes", original="o", original_id="u", name="c", request=pod, program=("/server",),
                    details={"fallback": pod})
    with pytest.raises(DebugkitError, match="cannot create"):
        KubernetesRuntime(api=api).create_copy("shop", plan)
    assert api.created == []


def test_a_target_caught_between_two_runs_of_its_restart_loop_is_not_running():
    from debugkit.core.errors import TargetNotRunning
    from debugkit.runtimes.docker.errors import start_error

    text = ("cannot join network namespace of container: Container 6243 is restarting, wait until the container "
            "is running")
    found = start_error(text)
    assert isinstance(found, TargetNotRunning) and found.exit_code == ExitCode.TARGET_NOT_RUNNING
    assert str(found).startswith("the target is restarting, not running")
