"""Session fixtures on the real Docker engine, and each test's own audit log. The helpers
they and the tests share are in tests/helpers.py."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, IN_CI, REPO, RUN_ID, RUN_LABEL, sweep_stale_containers

# A suite started from a background job (`scripts/test &`) inherits an ignored SIGINT, and
# so does every CLI it starts. No workaround here: debugkit's sessions take SIGINT,
# SIGTERM and SIGHUP whatever they inherited, as kubectl does (issue 27), and
# test_lifecycle.py starts them with all three ignored to show it.


@pytest.fixture(autouse=True)
def audit_log(tmp_path, monkeypatch) -> Path:
    """Each test gets its own audit log and state directory (the record of the kept-alive
    sidecars it started): the CLI subprocesses inherit the variables, and no test trusts
    a sidecar another test, or an earlier run, left behind."""
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv("DEBUGKIT_AUDIT_LOG", str(path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return path


@pytest.fixture
def relay_root(tmp_path, monkeypatch) -> Path:
    """The CLI's XDG_RUNTIME_DIR, a directory of this test's: where port-forward and cp make
    their socket relay directories (session/relaydir.py)."""
    runtime_dir = tmp_path / "run"
    runtime_dir.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir))
    return runtime_dir / "debugkit" / "relay"


@pytest.fixture(scope="session")
def docker_client():
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(version="auto")
        client.ping()
    except Exception as exc:  # noqa: BLE001
        if IN_CI:
            pytest.fail(f"no Docker engine in CI (scripts/docker-testenv should have started one): {exc}")
        pytest.skip(f"no Docker engine: {exc} (run scripts/docker-testenv up)")
    sweep_stale_containers(client)
    yield client
    # Sweep by label: what this run started goes, even after a crashed test.
    for ctr in client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"}):
        ctr.remove(force=True)
    client.close()


@pytest.fixture(scope="session")
def fixture_images(docker_client):
    missing = [ref for ref in FIXTURES.values() if not docker_client.images.list(name=ref)]
    if missing:
        subprocess.run([str(REPO / "scripts" / "build-fixtures")], check=True, capture_output=True)
    return FIXTURES


@pytest.fixture(scope="session")
def toolbox_image(docker_client):
    from debugkit.session.defaults import toolbox_image as default_ref

    ref = default_ref()
    if not docker_client.images.list(name=ref):
        if IN_CI or os.environ.get("DEBUGKIT_BUILD_TOOLBOX") == "1":
            subprocess.run([str(REPO / "scripts" / "build-toolbox")], check=True)
        else:
            pytest.skip(f"toolbox image {ref} not built (run scripts/build-toolbox)")
    return ref
