"""Debugging what is not running, through a held copy (issue 23), on every real runtime:
a Docker container that exits 2 at start under --restart always, a Podman container that
exited 2, and a pod in CrashLoopBackOff in a `restricted` namespace.

For each: attach says 67 and suggests --copy; `attach --copy T -- target start` prints the
program's own error and exits 2; the sidecar sees the copy's files as the target's UID;
nothing is left afterwards; the original has the same ID and spec (Docker: the same state).
"""
from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from tests.helpers import RUN_ID, RUN_LABEL, TEST_LABEL, audit_records, run_cli, text, wait_for

# The fixture server refuses a flag it does not know with its own error and exit 2 (Go's flag package).
BAD_ARGS = ["-port", "8080"]
PROGRAM_ERROR = "flag provided but not defined: -port"
TARGET_UID = "65532"


class Crashing:
    """A target whose program exits 2 at start, and how to look at it from the outside."""

    def __init__(self, runtime: str, ref: str, snapshot, leftovers, env: dict, cleanup):
        self.runtime, self.ref, self.snapshot, self.leftovers, self.env = runtime, ref, snapshot, leftovers, env
        self.cleanup = cleanup

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return run_cli(*args, env=self.env, timeout=timeout)


def engine(cli: str, *args: str, check: bool = True) -> str:
    proc = subprocess.run([cli, *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cli} {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def engine_crashing(cli: str, image: str, scheme: str, *, restart: bool) -> Crashing:
    name = f"dk-copy-{uuid.uuid4().hex[:8]}"
    engine(cli, "run", "-d", "--name", name, "--label", f"{TEST_LABEL}=1", "--label", f"{RUN_LABEL}={RUN_ID}",
           "-p", "127.0.0.1::8080", *(["--restart", "always"] if restart else []), image, *BAD_ARGS)
    cid = engine(cli, "inspect", "--format", "{{.Id}}", name)
    wanted = ("restarting", "exited") if restart else ("exited",)
    wait_for(lambda: engine(cli, "inspect", "--format", "{{.State.Status}}", name) in wanted
             and engine(cli, "inspect", "--format", "{{.State.ExitCode}}", name) == "2",
             timeout=30, what=f"{name} to exit 2")

    def snapshot() -> dict:
        attrs = json.loads(engine(cli, "inspect", name))[0]
        state = attrs["State"]
        return {"Id": attrs["Id"], "Config": attrs["Config"], "HostConfig": attrs["HostConfig"],
                "Mounts": attrs.get("Mounts"),
                # Docker's restart loop moves the state by itself: with --restart always, what must
                # not change is that it is still the engine's loop (same policy) and no run was ours.
                "State": ({k: state.get(k) for k in ("ExitCode", "OOMKilled", "Dead", "Paused")} if restart
                          else state)}

    def leftovers(sessions: list[str]) -> list[str]:
        copies = engine(cli, "ps", "-a", "--format", "{{.Names}}", "--filter", f"label=io.debugkit.copy-of={cid}")
        sidecars = engine(cli, "ps", "-a", "--format", "{{.Names}}", "--filter", "label=io.debugkit.managed=true",
                          "--filter", f"label=io.debugkit.target={name}")
        volumes = [f"debugkit-copy-{s}" for s in sessions
                   if subprocess.run([cli, "volume", "inspect", f"debugkit-copy-{s}"], capture_output=True,
                                     timeout=60).returncode == 0]
        return copies.split() + sidecars.split() + volumes

    def cleanup() -> None:
        engine(cli, "rm", "-f", name, check=False)

    return Crashing(cli, f"{scheme}{name}", snapshot, leftovers, {}, cleanup)


def kube_crashing(cluster, namespace: str, image: str) -> Crashing:
    manifest = cluster.pod_manifest(namespace, image, container={
        "args": BAD_ARGS, "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}})
    manifest["metadata"]["labels"]["app"] = "crashing"
    name = manifest["metadata"]["name"]
    cluster.api.create_namespaced_pod(namespace, manifest)

    def crash_looping():
        pod = cluster.api.read_namespaced_pod(name, namespace)
        for st in pod.status.container_statuses or []:
            if st.state.waiting is not None and st.state.waiting.reason == "CrashLoopBackOff":
                return pod
        return None
    first = wait_for(crash_looping, timeout=120, interval=0.5, what=f"{name} to crash-loop")

    def snapshot() -> dict:
        pod = cluster.api.read_namespaced_pod(name, namespace)
        return {"uid": pod.metadata.uid, "spec": cluster.api.api_client.sanitize_for_serialization(pod.spec),
                "labels": pod.metadata.labels}

    def leftovers(sessions: list[str]) -> list[str]:
        pods = cluster.api.list_namespaced_pod(namespace, label_selector=f"io.debugkit.copy-of={first.metadata.uid}")
        return [p.metadata.name for p in pods.items]

    def cleanup() -> None:
        cluster.api.delete_namespaced_pod(name, namespace, grace_period_seconds=0)

    return Crashing("kubernetes", f"k8s://{namespace}/{name}/app", snapshot, leftovers,
                    {"KUBECONFIG": cluster.kubeconfig}, cleanup)


@pytest.fixture
def crashing(runtime, request, fixture_images, toolbox_everywhere, k8s_namespace):
    image = fixture_images["distroless"]
    if runtime == "docker":
        request.getfixturevalue("docker_client")
        made = engine_crashing("docker", image, "", restart=True)
    elif runtime == "podman":
        request.getfixturevalue("podman_service")
        made = engine_crashing("podman", f"localhost/{image}", "podman://", restart=False)
    else:
        cluster = request.getfixturevalue("k8s_cluster")
        made = kube_crashing(cluster, k8s_namespace, request.getfixturevalue("registry_images")("distroless"))
    yield made
    made.cleanup()


def copies_made(audit_log) -> list[dict]:
    return [r for r in audit_records(audit_log) if r.get("event") == "copy"]


def test_a_target_that_is_not_running_suggests_a_copy(crashing):
    result = crashing.cli("attach", crashing.ref, "--", "true")
    out, err = text(result)
    assert result.returncode == 67, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"debugkit attach --copy {crashing.ref}" in lines[0], err


def test_target_start_prints_the_programs_own_error_and_its_status(crashing, audit_log):
    before = crashing.snapshot()
    result = crashing.cli("attach", "--copy", crashing.ref, "--", "target", "start")
    out, err = text(result)
    assert result.returncode == 2, err
    assert PROGRAM_ERROR in err
    copy = copies_made(audit_log)[-1]
    assert copy["original"] in crashing.ref or crashing.ref.endswith(copy["original"])
    assert copy["copy"] != copy["original"] and copy["writable"] is False and copy["local_user"]
    assert [r["outcome"] for r in audit_records(audit_log) if r.get("event") == "copy end"] == ["removed"]
    assert crashing.leftovers([copy["session"]]) == []
    assert crashing.snapshot() == before


def test_the_sidecar_sees_the_copys_files_as_the_targets_user(crashing, audit_log):
    before = crashing.snapshot()
    script = 'id -u; ls "$DEBUGKIT_TARGET_ROOT"; target status; target start 2>/dev/null; target status'
    result = crashing.cli("attach", "--copy", crashing.ref, "--", "sh", "-c", script)
    out, err = text(result)
    assert result.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == TARGET_UID
    assert "server" in lines and "etc" in lines          # the fixture's own root: FROM scratch, /server
    assert any(line.startswith("held: not started") for line in lines)
    assert any(line.startswith("exited: status 2") for line in lines), out
    assert crashing.leftovers([c["session"] for c in copies_made(audit_log)]) == []
    assert crashing.snapshot() == before
