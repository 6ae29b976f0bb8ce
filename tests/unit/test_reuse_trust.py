"""Reuse trusts only the kept-alive sidecar this person's debugkit recorded starting, and only
when it is exactly what the plan would start (issue 27, item 3). The engines' answers
here are plain data shaped like theirs: the decision is pure; the real engines are in
tests/integration (test_reuse_trust in docker/ and kubernetes/)."""
from __future__ import annotations

import pytest

from debugkit.core.identity import Identity
from debugkit.core.profiles import apply_profile
from debugkit.core.reuse import NOT_RECORDED, RUNNING, SidecarFacts, reuse_refusal
from debugkit.core.spec import base_spec
from debugkit.runtimes import reuse_records
from debugkit.runtimes.docker import translate as docker
from debugkit.runtimes.kubernetes import translate as kube

TARGET = Identity(uid=65532, gid=65532, groups=(65532,), source="config")
WANTED = SidecarFacts(name="debugkit-a", image="sha256:img", user="65532:65532", security={"Capabilities": []},
                      command=("helper", "keepalive", "--socket", "debugkit-a"))


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.mark.parametrize("change,why", [
    ({}, None),
    ({"user": "4242:4242"}, "it runs as 4242:4242, not 65532:65532"),
    ({"user": "0:0"}, "it runs as 0:0, not 65532:65532"),
    ({"image": "sha256:other"}, "its image is sha256:other, not sha256:img"),
    ({"security": {"Capabilities": ["SYS_ADMIN"]}}, "security settings differ from the plan's (Capabilities)"),
    ({"command": ("sleep", "3600")}, "another command than debugkit's keep-alive"),
    ({"state": "waiting: ErrImagePull"}, "it is not running (waiting: ErrImagePull)"),
])
def test_a_recorded_sidecar_is_reused_only_when_it_is_exactly_the_plans(change, why):
    found = SidecarFacts(**{**WANTED.__dict__, **change})
    refusal = reuse_refusal(found, WANTED, recorded=True)
    assert refusal == why if why is None else why in refusal


def test_an_exact_match_that_this_debugkit_did_not_record_is_not_reused():
    assert reuse_refusal(WANTED, WANTED, recorded=False) == NOT_RECORDED


def test_a_recorded_image_digest_must_still_be_the_one_it_runs():
    found = SidecarFacts(**{**WANTED.__dict__, "digest": "sha256:new"})
    assert "digest" in reuse_refusal(found, WANTED, recorded=True, recorded_digest="sha256:old")
    assert reuse_refusal(found, WANTED, recorded=True, recorded_digest="sha256:new") is None


def test_records_are_this_persons_files_0600_in_a_0700_directory(tmp_path):
    import os
    import stat

    reuse_records.remember("docker", "unix:///s", "k", reuse_records.Record("debugkit-a", "id1"))
    assert reuse_records.recall("docker", "unix:///s", "k") == reuse_records.Record("debugkit-a", "id1")
    assert reuse_records.recall("docker", "unix:///other", "k") is None
    (path,) = (tmp_path / "state" / "debugkit" / "kept-alive").iterdir()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent.parent).st_mode) == 0o700
    path.write_text("[" * 100000)  # a damaged record is no record
    assert reuse_records.recall("docker", "unix:///s", "k") is None
    reuse_records.remember("docker", "unix:///s", "k", reuse_records.Record("debugkit-b", "id2"))
    reuse_records.forget("docker", "unix:///s", "k", "debugkit-a")  # not the current one: kept
    assert reuse_records.recall("docker", "unix:///s", "k").name == "debugkit-b"


def test_writing_a_record_removes_the_ones_untouched_for_a_week(tmp_path):
    import os
    import time

    reuse_records.remember("docker", "unix:///s", "old", reuse_records.Record("debugkit-old", "id0"))
    reuse_records.remember("docker", "unix:///s", "recent", reuse_records.Record("debugkit-recent", "id1"))
    directory = tmp_path / "state" / "debugkit" / "kept-alive"
    (old,) = [p for p in directory.iterdir() if "debugkit-old" in p.read_text()]
    week_ago = time.time() - reuse_records.STALE_RECORD_S - 60
    os.utime(old, (week_ago, week_ago))
    reuse_records.remember("docker", "unix:///s", "new", reuse_records.Record("debugkit-new", "id2"))
    assert reuse_records.recall("docker", "unix:///s", "old") is None
    assert reuse_records.recall("docker", "unix:///s", "recent").name == "debugkit-recent"
    assert reuse_records.recall("docker", "unix:///s", "new").name == "debugkit-new"
    assert len(list(directory.iterdir())) == 2


# -- Docker: the plan's create request against the engine's inspect --------------------------------------------

def docker_plan(**changes):
    spec = apply_profile(base_spec(image="debugkit/toolbox:0.1.0", identity=TARGET, target_name="web",
                                   target_id="t1", runtime="docker", cli_pid=1, cli_host="h", local_user="me",
                                   session_id="abcd1234"), "restricted")
    main = docker.main_command(spec.name, (), mode="exec", helper=True, keep_alive=600, session_id="abcd1234")
    return docker.create_request(spec.evolve(command=main, **changes), target_id="t1")


def inspected(request: dict, *, image_id="sha256:img", running=True, **config_changes) -> dict:
    """The engine's inspect of a container created from `request`, as Docker reports it."""
    body = request["body"]
    return {"Id": "c1", "Name": f"/{request['name']}", "Image": image_id,
            "State": {"Running": running, "Status": "running" if running else "exited"},
            "Config": {"User": body["User"], "Entrypoint": body["Entrypoint"], "Cmd": body["Cmd"], **config_changes},
            "HostConfig": {**body["HostConfig"], "CapAdd": None, "GroupAdd": None}}


class Engine:
    """Answers inspect and the label listing from plain data; records nothing else."""

    host = "unix:///var/run/docker.sock"

    def __init__(self, containers: dict[str, dict]):
        self.by_id = containers

    def inspect_container(self, ident):
        from debugkit.runtimes.docker.engine import EngineNotFound

        if ident not in self.by_id:
            raise EngineNotFound(404, "No such container")
        return self.by_id[ident]

    def containers(self, **_filters):
        return [{"Names": [found["Name"]]} for found in self.by_id.values() if found["State"]["Running"]]


def docker_runtime(engine):
    from debugkit.runtimes.docker.runtime import DockerRuntime

    return DockerRuntime(api=engine, address="unix:///var/run/docker.sock")


def test_docker_reuses_the_recorded_sidecar_that_matches():
    request = docker_plan()
    runtime = docker_runtime(Engine({"c1": inspected(request)}))
    reuse_records.remember("docker", Engine.host, "key", reuse_records.Record(request["name"], "c1"))
    assert runtime.trusted_reuse("key", request, image_id="sha256:img", helper=True, keep_alive=600) == \
        (request["name"], None)


def test_docker_names_and_skips_a_lookalike_running_as_root():
    """The review's case: a container with the reuse key, running as uid 0, took the command."""
    request = docker_plan()
    planted = inspected(request, User="0:0")
    planted["Name"] = "/debugkit-planted"
    runtime = docker_runtime(Engine({"p1": planted}))
    reuse, why = runtime.trusted_reuse("key", request, image_id="sha256:img", helper=True, keep_alive=600)
    assert reuse is None and why.startswith("not reusing debugkit-planted: this debugkit has no record")


def test_docker_refuses_a_recorded_sidecar_that_differs_and_forgets_it():
    request = docker_plan()
    runtime = docker_runtime(Engine({"c1": inspected(request, image_id="sha256:other")}))
    reuse_records.remember("docker", Engine.host, "key", reuse_records.Record(request["name"], "c1"))
    reuse, why = runtime.trusted_reuse("key", request, image_id="sha256:img", helper=True, keep_alive=600)
    assert reuse is None and "its image is sha256:other" in why
    assert reuse_records.recall("docker", Engine.host, "key") is None


def test_docker_says_nothing_when_the_recorded_sidecar_has_simply_ended():
    request = docker_plan()
    reuse_records.remember("docker", Engine.host, "key", reuse_records.Record(request["name"], "gone"))
    assert docker_runtime(Engine({})).trusted_reuse("key", request, image_id="sha256:img", helper=True,
                                                     keep_alive=600) == (None, None)


# -- Kubernetes: the plan's ephemeral container against the pod's spec and status ------------------------------

def kube_container(name="debugkit-a", **sc_changes):
    spec = apply_profile(base_spec(image="reg/toolbox:1", identity=TARGET, target_name="ns/p/app", target_id="u1",
                                   runtime="kubernetes", cli_pid=1, cli_host="h", local_user="me",
                                   session_id=name.removeprefix("debugkit-")), "restricted")
    spec = spec.evolve(command=tuple(kube.keepalive_command(spec.name, idle=600, helper=True))).with_env(
        **{kube.ENV_REUSE: "key"})
    container = kube.ephemeral_container(spec, target_container="app")
    container["securityContext"].update(sc_changes)
    return container


def pod(*containers, states=None):
    states = states or {}
    return {"metadata": {"uid": "u1", "name": "p"}, "spec": {"containers": [{"name": "app"}],
                                                            "ephemeralContainers": list(containers)},
            "status": {"ephemeralContainerStatuses": [
                {"name": c["name"], "state": states.get(c["name"], {"running": {}}),
                 "imageID": "reg/toolbox@sha256:" + "a" * 64} for c in containers]}}


def kube_reuse(the_pod, planned):
    from debugkit.runtimes.kubernetes.identity import PodTarget
    from debugkit.runtimes.kubernetes.runtime import KubernetesRuntime

    pt = PodTarget("ns", "p", "app", the_pod)
    return KubernetesRuntime(api=object()).trusted_reuse(pt, "key", planned, keep_alive=600, helper=True)


def test_kubernetes_ignores_a_planted_container_running_as_4242():
    """The review's case: anyone who may patch pods/ephemeralcontainers planted one with the key."""
    ours, planted = kube_container("debugkit-ours"), kube_container("debugkit-planted", runAsUser=4242)
    reuse_records.remember("kubernetes", "u1", "key", reuse_records.Record("debugkit-ours", "debugkit-ours"))
    assert kube_reuse(pod(ours, planted), kube_container("debugkit-new")) == ("debugkit-ours", None)
    # Without a record of ours, the planted one is named, and a new container starts.
    reuse_records.forget("kubernetes", "u1", "key", "debugkit-ours")
    reuse, why = kube_reuse(pod(ours, planted), kube_container("debugkit-new"))
    assert reuse is None and why.startswith("not reusing debugkit-planted: this debugkit has no record")


def test_kubernetes_a_planted_container_that_cannot_start_does_not_stop_the_next_attach():
    planted = kube_container("debugkit-planted")
    planted["image"] = "reg/nothing:1"
    the_pod = pod(planted, states={"debugkit-planted": {"waiting": {"reason": "ErrImagePull"}}})
    assert kube_reuse(the_pod, kube_container("debugkit-new"))[0] is None


def test_kubernetes_refuses_a_recorded_container_that_cannot_start_or_differs():
    ours = kube_container("debugkit-ours")
    reuse_records.remember("kubernetes", "u1", "key", reuse_records.Record("debugkit-ours", "debugkit-ours"))
    reuse, why = kube_reuse(pod(ours, states={"debugkit-ours": {"waiting": {"reason": "ImagePullBackOff"}}}),
                            kube_container("debugkit-new"))
    assert reuse is None and "it is not running (waiting: ImagePullBackOff)" in why
    reuse_records.remember("kubernetes", "u1", "key", reuse_records.Record("debugkit-ours", "debugkit-ours"))
    starting = pod(ours, states={"debugkit-ours": {"waiting": {"reason": "ContainerCreating"}}})
    assert kube_reuse(starting, kube_container("debugkit-new")) == ("debugkit-ours", None)
    # Once reused, the record pins the image digest it runs: a later answer with another is refused.
    assert reuse_records.recall("kubernetes", "u1", "key").digest == "sha256:" + "a" * 64
    moved = pod(ours)
    moved["status"]["ephemeralContainerStatuses"][0]["imageID"] = "reg/toolbox@sha256:" + "b" * 64
    reuse, why = kube_reuse(moved, kube_container("debugkit-new"))
    assert reuse is None and "digest" in why


def test_podmans_expanded_capdrop_means_the_same_as_dockers_all():
    """Podman 4.3 reports CapDrop: [ALL] as the list of the defaults it dropped."""
    docker_side = {"CapDrop": ["ALL"], "CapAdd": ["NET_ADMIN", "NET_RAW"]}
    podman_side = {"CapDrop": sorted(docker.DEFAULT_CAPS - {"NET_RAW"}), "CapAdd": ["CAP_NET_ADMIN", "NET_RAW"]}
    assert docker.effective_caps(docker_side) == docker.effective_caps(podman_side) == ["NET_ADMIN", "NET_RAW"]
    assert docker.effective_caps({"CapDrop": sorted(docker.DEFAULT_CAPS)}) == []
    assert docker.effective_caps({"CapDrop": ["NET_RAW"]}) == sorted(docker.DEFAULT_CAPS - {"NET_RAW"})


def test_the_facts_of_a_container_made_from_the_plan_match_the_plan():
    request = docker_plan()
    assert docker.inspected_facts(inspected(request)) == docker.planned_facts(
        request, image_id="sha256:img", name=request["name"],
        command=[*request["body"]["Entrypoint"], *request["body"]["Cmd"]])
    container = kube_container("debugkit-a")
    found = kube.found_facts(container, {"state": {"running": {}}})
    assert reuse_refusal(found, kube.planned_facts(container, name="debugkit-a", command=container["command"]),
                         recorded=True) is None
    assert found.state == RUNNING
