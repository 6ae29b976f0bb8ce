from __future__ import annotations

import uuid

import pytest

from tests.conftest import TEST_LABEL, leaked_sidecars, wait_for

pytestmark = pytest.mark.docker


@pytest.fixture
def start_target(docker_client, fixture_images):
    """Start a fixture target; removed (with any sidecar of its own) at teardown."""
    started = []

    def start(kind: str = "named-user", **kwargs):
        name = f"dk-test-{kind}-{uuid.uuid4().hex[:8]}"
        ctr = docker_client.containers.run(
            fixture_images[kind], name=name, detach=True, labels={TEST_LABEL: "1"}, **kwargs
        )
        started.append(ctr)
        wait_for(lambda: b"listening on" in ctr.logs(), timeout=20, what=f"{name} to listen")
        ctr.reload()
        return ctr

    yield start
    for ctr in started:
        ctr.remove(force=True)


@pytest.fixture(autouse=True)
def no_leaked_sidecars(docker_client):
    """Every test must leave no debugkit sidecar behind: checked by label after each one."""
    before = {c.id for c in leaked_sidecars(docker_client)}
    yield
    def settled():
        return not [c for c in leaked_sidecars(docker_client) if c.id not in before]
    # An auto-removed sidecar may take a moment to disappear after its process ends.
    wait_for(settled, timeout=15, what="debugkit sidecars to be removed")
