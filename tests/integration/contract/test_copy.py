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
import time
import uuid

import pytest

from tests.helpers import RUN_ID, RUN_LABEL, TEST_LABEL, audit_records, run_cli, text, wait_for

# The fixture server refuses a flag it does not know with its own error and exit 2 (Go's flag package).
BAD_ARGS = ["-port", "8080"]
PROGRAM_ERROR = "flag provided but not defined: -port"
TARGET_UID = "65532"
# What the engine's own restart loop does to a crashing container: anything else (stop,
# kill, exec_create, update, rename, destroy...) would be debugkit touching the original.
LOOP_ACTIONS = {"start", "die", "restart"}


class Crashing:
    """A target whose program exits 2 at start, and how to look at it from the outside."""

    def __init__(self, runtime: str, ref: str, snapshot, leftovers, env: dict, cleanup):
        self.runtime, self.ref, self.snapshot, self.leftovers, self.env = runtime, ref, snapshot, leftovers, env
        self.cleanup = cleanup
        self.runtime_name = {"docker": "docker", "podman": "podman"}.get(runtime, "kubernetes")

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return run_cli(*args, env=self.env, timeout=timeout)


def engine(cli: str, *args: str, check: bool = True) -> str:
    proc = subprocess.run([cli, *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cli} {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def engine_crashing(cli: str, image: str, scheme: str, *, restart: bool) -> Crashing:
    name = f"dk-copy-{uuid.uuid4().hex[:8]}"
    volume = f"{name}-data"
    engine(cli, "run", "-d", "--name", name, "--label", f"{TEST_LABEL}=1", "--label", f"{RUN_LABEL}={RUN_ID}",
           "-p", "127.0.0.1::8080", "-v", f"{volume}:/data", "-e", "ORIGINAL_ENV=kept",
           *(["--restart", "always"] if restart else []), image, *BAD_ARGS)
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
                # Docker's restart loop moves the state by itself (running for a moment, exit 0
                # until it dies again): with --restart always, the engine's events show that
                # nothing but that loop acted on it (events_since).
                "State": ({k: state.get(k) for k in ("OOMKilled", "Dead", "Paused")} if restart else state)}

    def events_since(since: float) -> set[str]:
        """What happened to the original since `since`, as the engine's event log says
        (Docker names it Action, Podman Status; Podman's --since takes whole seconds)."""
        out = engine(cli, "events", "--since", str(int(since)), "--until", str(int(time.time()) + 1), "--filter",
                     f"container={cid}", "--format", "json")
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        return {str(e.get("Action") or e.get("Status")).split(":", 1)[0].strip() for e in events
                if event_time(e) >= since}

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
        engine(cli, "volume", "rm", volume, check=False)

    made = Crashing(cli, f"{scheme}{name}", snapshot, leftovers, {}, cleanup)
    made.events_since = events_since
    made.loop_actions = LOOP_ACTIONS if restart else set()
    made.inspect_copy = lambda copy: json.loads(engine(cli, "inspect", copy))[0]
    return made


def event_time(event: dict) -> float:
    """An engine event's time in seconds: Docker's timeNano, Podman's RFC 3339 Time."""
    import datetime as dt

    if "timeNano" in event:
        return event["timeNano"] / 1e9
    stamp = str(event.get("Time", ""))
    head, _, frac = stamp.rstrip("Z").partition(".")
    whole = dt.datetime.fromisoformat(head).replace(tzinfo=dt.timezone.utc).timestamp()
    return whole + (float(f"0.{frac.split('+')[0]}") if frac else 0.0)


def kube_crashing(cluster, namespace: str, image: str) -> Crashing:
    manifest = cluster.pod_manifest(namespace, image, container={
        "args": BAD_ARGS, "ports": [{"containerPort": 8080}], "env": [{"name": "ORIGINAL_ENV", "value": "kept"}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}})
    manifest["metadata"]["labels"]["app"] = "crashing"
    manifest["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
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

    made = Crashing("kubernetes", f"k8s://{namespace}/{name}/app", snapshot, leftovers,
                    {"KUBECONFIG": cluster.kubeconfig}, cleanup)
    made.events_since = lambda since: set()  # the uid and the whole spec are compared instead
    made.loop_actions = set()
    made.inspect_copy = lambda copy: cluster.api.api_client.sanitize_for_serialization(
        cluster.api.read_namespaced_pod(copy, namespace))
    return made


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


def collect(crashing: Crashing, copy: str) -> None:
    """gc --older-than 1s until it removes `copy` (its age is counted in whole seconds)."""
    def removed():
        result = crashing.cli("gc", "--older-than", "1s", "--runtime", crashing.runtime_name)
        assert result.returncode == 0, text(result)
        return copy in result.stdout.decode()
    wait_for(removed, timeout=30, interval=0.5, what=f"gc to remove {copy}")


def copies_made(audit_log) -> list[dict]:
    return [r for r in audit_records(audit_log) if r.get("event") == "copy"]


def test_a_target_that_is_not_running_suggests_a_copy(crashing):
    result = crashing.cli("attach", crashing.ref, "--", "true")
    out, err = text(result)
    assert result.returncode == 67, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"debugkit attach --copy {crashing.ref}" in lines[0], err


def test_target_start_prints_the_programs_own_error_and_its_status(crashing, audit_log):
    before, since = crashing.snapshot(), time.time()
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
    assert crashing.events_since(since) <= crashing.loop_actions


def test_the_sidecar_sees_the_copys_files_as_the_targets_user(crashing, audit_log):
    before, since = crashing.snapshot(), time.time()
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
    assert crashing.events_since(since) <= crashing.loop_actions


def test_runbook_run_against_a_held_copy(crashing, tmp_path, audit_log):
    book = tmp_path / "crash.yaml"
    book.write_text("name: crash\ndescription: start the held program\nsteps:\n"
                    "  - name: start\n    run: target start\n    expect:\n      exit_code: 2\n"
                    "  - name: status\n    run: target status\n    expect:\n      stdout_matches: '^exited: status 2'\n")
    result = crashing.cli("runbook", "run", str(book), "--copy", crashing.ref)
    out, err = text(result)
    assert result.returncode == 0, out + err
    assert PROGRAM_ERROR in out and "PASSED: 2 passed" in out
    assert crashing.leftovers([c["session"] for c in copies_made(audit_log)]) == []


def test_a_kept_copy_is_reused_listed_and_collected(crashing, audit_log):
    """--keep-alive keeps the copy for the same person's next --copy; ps lists it, gc collects it."""
    first = crashing.cli("attach", "--copy", "--keep-alive", "5m", crashing.ref, "--", "target", "status")
    assert first.returncode == 0, text(first)
    second = crashing.cli("attach", "--copy", "--keep-alive", "5m", crashing.ref, "--", "target", "status")
    assert second.returncode == 0, text(second)
    made, reused = copies_made(audit_log)
    assert not made["reused"] and reused["reused"] and reused["copy"] == made["copy"], (made, reused)
    sessions = [made["session"]]
    assert made["copy"] in crashing.leftovers(sessions)
    listed = crashing.cli("ps", "-o", "json")
    assert made["copy"] in listed.stdout.decode(), text(listed)
    collect(crashing, made["copy"])
    wait_for(lambda: crashing.leftovers(sessions) == [] or None, timeout=60, what="the kept copy to be collected")


@pytest.mark.parametrize("writable", [False, True], ids=["read-only", "writable"])
def test_the_copy_keeps_the_runnable_spec_and_drops_what_routes_traffic(crashing, audit_log, writable):
    flags = ("--copy-writable",) if writable else ()
    result = crashing.cli("attach", "--copy", *flags, "--keep-alive", "5m", crashing.ref, "--", "sh", "-c",
                          'tr "\\0" "\\n" < /proc/1/environ | grep ^ORIGINAL_ENV=')
    out, err = text(result)
    assert result.returncode == 0 and out.strip() == "ORIGINAL_ENV=kept", out + err
    made = copies_made(audit_log)[-1]
    assert made["writable"] is writable
    copy = crashing.inspect_copy(made["copy"])
    try:
        if crashing.runtime == "kubernetes":
            meta, spec = copy["metadata"], copy["spec"]
            assert "app" not in meta["labels"] and not meta.get("ownerReferences")
            # (the scheduler gives the copy a node of its own choosing: the one node here)
            assert spec["restartPolicy"] == "Never" and any(d.startswith("the node") for d in made["dropped"])
            ctr = spec["containers"][0]
            assert not ctr.get("readinessProbe") and not ctr.get("ports")
            assert ctr["command"][-2:] == BAD_ARGS and ctr["command"][1] == "hold"
            data = next(m for m in ctr["volumeMounts"] if m["mountPath"] == "/data")
            assert bool(data.get("readOnly")) is (not writable)
            assert any("readiness probe" in d for d in made["dropped"]) and any("labels" in d for d in made["dropped"])
        else:
            host, config = copy["HostConfig"], copy["Config"]
            # (Podman lists the image's EXPOSEd ports with no host binding: nothing is published)
            assert not any((host.get("PortBindings") or {}).values())
            assert (host.get("RestartPolicy") or {}).get("Name") in ("no", "")
            assert "io.debugkit.test" not in (config.get("Labels") or {})
            entrypoint = config["Entrypoint"]  # Podman 4.3 shows it as one string
            entrypoint = entrypoint.split() if isinstance(entrypoint, str) else entrypoint
            assert config["Cmd"][-2:] == BAD_ARGS and entrypoint[1] == "hold"
            data = next(m for m in copy["Mounts"] if m["Destination"] == "/data")
            assert data["RW"] is writable
            assert any(d.startswith("published ports") for d in made["dropped"])
    finally:
        collect(crashing, made["copy"])
    wait_for(lambda: crashing.leftovers([made["session"]]) == [] or None, timeout=60, what="the copy to go")


def test_an_image_is_debugged_as_its_own_user(runtime, request, fixture_images, toolbox_everywhere, audit_log):
    """attach image/REF (Docker, Podman): no container at all; the identity is the image's USER
    nonroot:nonroot through its /etc/passwd, and inspect says so."""
    if runtime == "kubernetes":
        pytest.skip("a pod's node pulls images: image/REF is for Docker and Podman")
    if runtime == "docker":
        request.getfixturevalue("docker_client")
        ref = f"image/{fixture_images['named-user']}"
    else:
        request.getfixturevalue("podman_service")
        ref = f"podman://image/localhost/{fixture_images['named-user']}"
    result = run_cli("attach", ref, "--", "id", "-u")
    out, err = text(result)
    assert result.returncode == 0 and out.strip() == TARGET_UID, out + err
    shown = run_cli("inspect", ref, "-o", "json")
    facts = json.loads(shown.stdout)
    assert facts["uid"] == 65532 and facts["source"] == "config" and facts["configured_user"] == "nonroot:nonroot"
    assert any("via /etc/passwd" in note for note in facts["notes"]), facts
    process = next(s for s in facts["sources"] if s["source"] == "process")
    assert "an image has no process" in process["error"]
    session = copies_made(audit_log)[-1]["session"]
    cli = "docker" if runtime == "docker" else "podman"
    assert engine(cli, "ps", "-a", "-q", "--filter", f"label=io.debugkit.session={session}") == ""


def test_copy_of_a_deployment_takes_its_crash_looping_pod_and_nothing_adopts_the_copy(runtime, request, k8s_namespace,
                                                                                      toolbox_everywhere, audit_log):
    if runtime != "kubernetes":
        pytest.skip("workloads are Kubernetes'")
    cluster = request.getfixturevalue("k8s_cluster")
    image = request.getfixturevalue("registry_images")("distroless")
    name = f"crash-{uuid.uuid4().hex[:6]}"
    pod = cluster.pod_manifest(k8s_namespace, image, container={"args": BAD_ARGS})
    cluster.apps.create_namespaced_deployment(k8s_namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {TEST_LABEL: "1", RUN_LABEL: RUN_ID}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {k: v for k, v in pod["spec"].items() if k != "nodeName"}}}})
    try:
        def crash_looping():
            pods = cluster.api.list_namespaced_pod(k8s_namespace, label_selector=f"app={name}").items
            return [p for p in pods for st in p.status.container_statuses or []
                    if st.state.waiting is not None and st.state.waiting.reason == "CrashLoopBackOff"]
        (original,) = wait_for(crash_looping, timeout=120, interval=0.5, what=f"deploy/{name} to crash-loop")
        script = 'target start 2>&1 | head -1; n=$(ls "$DEBUGKIT_TARGET_ROOT" | wc -l); echo "files $n"'
        result = run_cli("attach", "--copy", f"deploy/{name}", "-n", k8s_namespace, "--", "sh", "-c", script,
                         env={"KUBECONFIG": cluster.kubeconfig}, timeout=180)
        out, err = text(result)
        assert result.returncode == 0 and PROGRAM_ERROR in out, out + err
        made = copies_made(audit_log)[-1]
        assert made["original"] == f"{k8s_namespace}/{original.metadata.name}/app"
        # The ReplicaSet neither adopted the copy nor replaced its pod: one pod, the same one.
        pods = cluster.api.list_namespaced_pod(k8s_namespace, label_selector=f"app={name}").items
        assert [p.metadata.uid for p in pods] == [original.metadata.uid]
        left = cluster.api.list_namespaced_pod(k8s_namespace, label_selector="io.debugkit.copy-of").items
        assert [p.metadata.name for p in left if p.metadata.deletion_timestamp is None] == []
    finally:
        cluster.apps.delete_namespaced_deployment(name, k8s_namespace)


def test_a_session_ended_by_sigterm_still_removes_its_copy(crashing, audit_log):
    import os
    import signal
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "debugkit", "attach", "--copy", crashing.ref, "--", "sleep", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env={**os.environ, **crashing.env})
    try:
        wait_for(lambda: any(r.get("event") == "start" for r in audit_records(audit_log)), timeout=120,
                 what="the session against the copy to start")
        session = copies_made(audit_log)[-1]["session"]
        assert crashing.leftovers([session]) != []  # the copy is there while the session runs
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert crashing.leftovers([session]) == []
    assert [r["outcome"] for r in audit_records(audit_log) if r.get("event") == "copy end"] == ["removed"]
