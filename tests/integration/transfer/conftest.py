"""cp and port-forward against the real engines and the real node: Docker, Podman and
Kubernetes, the same tests on each. `rt` is parametrised over the runtimes; see helpers.py
for the target image, `Target` and the runtime helpers. The node is
tests/integration/conftest.py's session fixture k8s_cluster.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.transfer.image import build_image
from tests.helpers import RUN_ID, RUN_LABEL, labels_for_test, sweep_stale_containers
from tests.integration.transfer.helpers import (
    PODMAN_SOCKET, RUNTIMES, RuntimeHelper, Target, podman_copy, runtime_helper,
)


@pytest.fixture(scope="session")
def transfer_image(docker_client, tmp_path_factory) -> str:
    """debugkit-fixture/transfer:<content hash>, built once (reused across runs)."""
    if shutil.which("go") is None:
        pytest.skip("the transfer target is built with Go (go not found)")
    return build_image(tmp_path_factory.mktemp("transfer-ctx"))


@pytest.fixture(scope="session")
def image_archive(docker_client, transfer_image):
    """path -> the archive API's tar of it, from a created (never started) container that
    lives only for the call (a concurrent session's sweep may remove idle containers)."""
    cache: dict[str, bytes] = {}

    def archive(path: str) -> bytes:
        if path not in cache:
            ctr = docker_client.containers.create(transfer_image, labels=labels_for_test())
            try:
                stream, _stat = ctr.get_archive(path)
                cache[path] = b"".join(stream)
            finally:
                ctr.remove(force=True)
        return cache[path]

    return archive


@pytest.fixture(scope="session")
def podman_client():
    docker = pytest.importorskip("docker")
    if not os.path.exists(PODMAN_SOCKET.removeprefix("unix://")):
        pytest.skip("no Podman service (run scripts/podman-testenv up && scripts/podman-testenv images)")
    client = docker.DockerClient(base_url=PODMAN_SOCKET, version="1.41")
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Podman service not answering: {exc}")
    sweep_stale_containers(client)  # of runs that died with the service (their teardown could not reach it)
    yield client
    for ctr in client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"}):
        with contextlib.suppress(Exception):
            ctr.remove(force=True)
    client.close()


@pytest.fixture(scope="session")
def podman_images(podman_client, docker_client, transfer_image, toolbox_image):
    """The transfer target and the toolbox in Podman's store, as Docker has them."""
    refs = {}
    for ref in (transfer_image, toolbox_image):
        docker_attrs = docker_client.images.get(ref).attrs
        local = podman_copy(podman_client, ref, docker_attrs)
        if local is None:
            save = subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE)
            load = subprocess.run(["podman", "load", "-q"], stdin=save.stdout, capture_output=True, text=True)
            save.wait()
            assert load.returncode == 0, load.stderr
            local = podman_copy(podman_client, ref, docker_attrs)
            assert local is not None, f"Podman holds no copy of Docker's {ref} after loading it"
        refs[ref] = local
    return refs


@pytest.fixture(scope="module")
def toolbox_on_node(k8s_cluster, toolbox_image):
    return k8s_cluster.load_image(toolbox_image)


@pytest.fixture(scope="module", params=RUNTIMES)
def rt(request) -> RuntimeHelper:
    helper, cleanup = runtime_helper(request, request.param)
    try:
        yield helper
    finally:
        cleanup()


@pytest.fixture(scope="module")
def shared(rt) -> Target:
    """One target per runtime for the tests that only read, or write where no other looks."""
    return rt.target()


@pytest.fixture
def fresh(rt) -> Target:
    return rt.target()


@pytest.fixture(scope="module", params=("docker",))
def docker_rt(request) -> RuntimeHelper:
    helper, cleanup = runtime_helper(request, "docker")
    try:
        yield helper
    finally:
        cleanup()


@pytest.fixture
def out(tmp_path) -> Path:
    """A local directory of its own for a test's copies (tmp_path also holds the audit log)."""
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture(scope="module", params=("docker", "podman"))
def engine(request):
    """A local Docker or Podman engine (the socket relay's runtimes), module by module."""
    helper, cleanup = runtime_helper(request, request.param)
    try:
        yield helper
    finally:
        cleanup()
