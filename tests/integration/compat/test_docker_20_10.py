"""A smoke run on the oldest Docker engine debugkit still claims: Debian bookworm's Docker
20.10 (API 1.41, containerd 1.6, runc 1.1), started by `scripts/docker-testenv legacy up` in
a network namespace of its own beside the current engine. The contract suite covers the
current engines in depth; this checks that the main paths still work on the old one."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from tests.helpers import FIXTURES, IN_CI, REPO, RUN_ID, RUN_LABEL, labels_for_test, run_cli, text, wait_for

pytestmark = pytest.mark.docker


def _testenv(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "scripts" / "docker-testenv"), "legacy", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def legacy_engine(docker_client, fixture_images, toolbox_image):
    """DOCKER_HOST of the legacy engine, holding the toolbox and the named-user fixture."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI must run the Docker 20.10 smoke tests, which need root")
        pytest.skip("the legacy engine needs root")
    up = _testenv("up", toolbox_image, FIXTURES["named-user"])
    assert up.returncode == 0, f"scripts/docker-testenv legacy up failed:\n{up.stderr}"
    host = _testenv("env").stdout.strip().removeprefix("export DOCKER_HOST=")
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=host, version="auto")
    assert client.version()["Version"].startswith("20.10."), client.version()["Version"]
    yield host, client
    for ctr in client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"}):
        ctr.remove(force=True)
    client.close()


@pytest.fixture
def legacy_target(legacy_engine):
    host, client = legacy_engine
    ctr = client.containers.run(FIXTURES["named-user"], name=f"dk-legacy-{uuid.uuid4().hex[:8]}",
                                detach=True, labels=labels_for_test())
    wait_for(lambda: b"listening on" in ctr.logs(), timeout=20, what="the target to listen")
    yield host, ctr
    try:
        ctr.remove(force=True)
    except Exception:  # noqa: BLE001 - a test removed it already
        pass


def _cli(host: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return run_cli(*args, env={"DOCKER_HOST": host}, **kwargs)


def test_attach_runs_as_the_targets_process_identity(legacy_target):
    host, target = legacy_target
    result = _cli(host, "attach", target.name, "--", "sh", "-c", "id -u; id -g; ls $DEBUGKIT_TARGET_ROOT/server")
    out, err = text(result)
    assert result.returncode == 0, err
    uid, gid, server = out.split()
    assert (uid, gid) == ("65532", "65532") and server.endswith("/server"), out


def test_exit_code_and_streams_pass_through(legacy_target):
    host, target = legacy_target
    result = _cli(host, "attach", target.name, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    out, err = text(result)
    assert (result.returncode, out, err.strip().splitlines()[-1]) == (7, "out\n", "err")


def test_inspect_names_the_engine_and_the_process_source(legacy_target):
    host, target = legacy_target
    result = _cli(host, "inspect", target.name, "-o", "json")
    out, err = text(result)
    assert result.returncode == 0, err
    report = json.loads(out)
    assert (report["engine"], report["source"]) == (host, "process"), report
    assert (report["uid"], report["gid"]) == (65532, 65532)


def test_keep_alive_sidecar_is_listed_reused_and_collected(legacy_target, legacy_engine):
    host, target = legacy_target
    first = _cli(host, "attach", "--keep-alive", "5m", target.name, "--", "true")
    assert first.returncode == 0, text(first)[1]
    second = _cli(host, "attach", "--keep-alive", "5m", target.name, "--", "true")
    assert second.returncode == 0, text(second)[1]
    _, client = legacy_engine
    sidecars = client.containers.list(filters={"label": ["io.debugkit.managed=true",
                                                         f"io.debugkit.target-id={target.id}"]})
    assert len(sidecars) == 1, [c.name for c in sidecars]
    ps = _cli(host, "ps", "--runtime", "docker", "-o", "json")
    assert ps.returncode == 0, text(ps)[1]
    assert sidecars[0].name in text(ps)[0]
    # A kept-alive sidecar ends with its target.
    target.remove(force=True)
    wait_for(lambda: not client.containers.list(all=True, filters={"label": f"io.debugkit.target-id={target.id}"}),
             timeout=30, what="the kept-alive sidecar to end with its target")
    # This test is about the Docker 20.10 engine alone: another runtime's state on this machine
    # (a stopped Podman service) must not decide it.
    gc = _cli(host, "gc", "--runtime", "docker", "--dry-run", "-o", "json")
    assert gc.returncode == 0, text(gc)[1]
    assert sidecars[0].name not in text(gc)[0]  # it ended itself: nothing is left to collect


def test_cp_out_reads_as_the_targets_user(legacy_target, tmp_path):
    host, target = legacy_target
    result = _cli(host, "cp", f"{target.name}:/home/nonroot/secret.txt", str(tmp_path / "secret.txt"))
    assert result.returncode == 0, text(result)[1]
    assert (tmp_path / "secret.txt").stat().st_size > 0


def test_runbook_runs_in_one_sidecar(legacy_target):
    host, target = legacy_target
    result = _cli(host, "runbook", "run", "processes", target.name, "-o", "json")
    assert result.returncode == 0, text(result)[1]
