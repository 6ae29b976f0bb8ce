from __future__ import annotations

import uuid

import pytest

from tests.helpers import leaked_sidecars, labels_for_test, wait_for

pytestmark = pytest.mark.docker


@pytest.fixture
def started_targets():
    """IDs of the targets this test started: the leak check looks at their sidecars only."""
    return []


@pytest.fixture
def start_target(docker_client, fixture_images, started_targets):
    """Start a fixture target; removed (with any sidecar of its own) at teardown."""
    started = []

    def start(kind: str = "named-user", **kwargs):
        name = f"dk-test-{kind}-{uuid.uuid4().hex[:8]}"
        ctr = docker_client.containers.run(
            fixture_images[kind], name=name, detach=True, labels=labels_for_test(), **kwargs
        )
        started.append(ctr)
        started_targets.append(ctr.id)
        wait_for(lambda: b"listening on" in ctr.logs(), timeout=20, what=f"{name} to listen")
        ctr.reload()
        return ctr

    yield start
    for ctr in started:
        try:
            ctr.remove(force=True)
        except Exception:  # noqa: BLE001 - already gone (a test killed it, or the engine restarted)
            pass


@pytest.fixture(autouse=True)
def no_leaked_sidecars(docker_client, started_targets):
    """Every test must leave no debugkit sidecar behind: checked by label after each one."""
    yield

    def settled():
        return not [c for c in leaked_sidecars(docker_client)
                    if c.labels.get("io.debugkit.target-id") in started_targets]
    # An auto-removed sidecar may take a moment to disappear after its process ends.
    wait_for(settled, timeout=15, what="debugkit sidecars to be removed")
