"""One suite, every real runtime: the same user stories against Docker, Podman and Kubernetes.

`target` is parametrised over the three runtimes (see targets.py for what a target gives
the tests). The Kubernetes targets live in one `restricted` namespace per module; the node
is tests/integration/conftest.py's session fixture k8s_cluster.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from tests.helpers import IN_CI, REPO, sweep_stale_containers
from tests.integration.contract.targets import (
    PODMAN_SOCKET, RUNTIMES, TARGET_IMAGE_KIND, EngineCli, Target, engine_target, kube_target, selected_runtimes,
)


@pytest.fixture(scope="session")
def podman_service(fixture_images):
    """Podman's Docker-compatible service with the fixtures and toolbox in its store."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI must run the Podman tests, but they need root (rootful Podman)")
        pytest.skip("rootful Podman needs root")
    for step in ("up", "images"):
        proc = subprocess.run([str(REPO / "scripts" / "podman-testenv"), step], capture_output=True, text=True,
                              timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"scripts/podman-testenv {step} failed:\n{proc.stderr[-3000:]}")
    # Targets of runs that died with the service (their teardown could not reach it).
    client = pytest.importorskip("docker").DockerClient(base_url=f"unix://{PODMAN_SOCKET}", version="1.41")
    try:
        sweep_stale_containers(client)
    finally:
        client.close()
    return PODMAN_SOCKET


@pytest.fixture(scope="module")
def k8s_namespace(request):
    if "kubernetes" not in selected_runtimes(request):
        yield None
        return
    cluster = request.getfixturevalue("k8s_cluster")
    with cluster.namespace("restricted", prefix="dk-contract") as ns:
        yield ns


def pytest_generate_tests(metafunc):
    if "runtime" in metafunc.fixturenames:
        wanted = os.environ.get("DEBUGKIT_CONTRACT_RUNTIMES")
        names = tuple(wanted.split(",")) if wanted else RUNTIMES
        marks = {"docker": pytest.mark.docker, "podman": pytest.mark.podman, "kubernetes": pytest.mark.kubernetes}
        metafunc.parametrize("runtime", [pytest.param(n, marks=marks[n]) for n in names], scope="module")


@pytest.fixture(scope="module")
def toolbox_everywhere(runtime, request, toolbox_image):
    """The default toolbox where the runtime looks for it."""
    if runtime == "kubernetes":
        request.getfixturevalue("k8s_cluster").load_image(toolbox_image)
    elif runtime == "podman":
        request.getfixturevalue("podman_service")
    return toolbox_image


@pytest.fixture(scope="session")
def registry_images(k8s_cluster, fixture_images):
    """A fixture image as a cluster sees one: in a registry (the project's local one), so
    debugkit reads its USER and /etc/passwd the way it does in production, and on the node.
    Pushed once per kind and session."""
    pushed: dict[str, str] = {}

    def image(kind: str = TARGET_IMAGE_KIND) -> str:
        if kind not in pushed:
            ref = subprocess.run([str(REPO / "scripts" / "registry-testenv"), "push", fixture_images[kind]],
                                 check=True, capture_output=True, text=True, timeout=300).stdout.strip()
            pushed[kind] = k8s_cluster.load_image(ref)
        return pushed[kind]
    return image



@pytest.fixture
def make_target(runtime, request, fixture_images, toolbox_everywhere, k8s_namespace):
    """Start a fresh target on the runtime under test; all of them are removed afterwards."""
    made: list[Target] = []

    def make(kind: str = TARGET_IMAGE_KIND, **pod) -> Target:
        """A target of the fixture `kind` (tests/fixtures/targets/KIND.Dockerfile)."""
        image = fixture_images[kind]
        if runtime == "docker":
            request.getfixturevalue("docker_client")
            target = engine_target(EngineCli("docker"), image, "", runtime, {})
        elif runtime == "podman":
            request.getfixturevalue("podman_service")
            target = engine_target(EngineCli("podman"), f"localhost/{image}", "podman://", runtime, {})
        else:
            cluster = request.getfixturevalue("k8s_cluster")
            target = kube_target(cluster, k8s_namespace, request.getfixturevalue("registry_images")(kind), **pod)
        made.append(target)
        return target

    yield make
    for target in made:
        try:
            target.cleanup()
        except Exception:  # noqa: BLE001 - already gone
            pass


@pytest.fixture
def target(make_target) -> Target:
    return make_target()
