"""Fixtures for the toolbox image tests: build once per session, run tools like a sidecar.

Everything runs on the real engine, offline (see helpers.py for how the image is built).
"""
from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from tests.integration.toolbox.helpers import (
    RESTRICTED, SESSION, SUITE_LABELS, BuildRecord, Ran, build_variant, remove_container, run_container, sweep_suite,
    tar_of,
)


@pytest.fixture(scope="session")
def sweep(docker_client) -> Iterator[None]:
    """Remove what a crashed earlier run of this suite left, and this session's own at the end."""
    sweep_suite(docker_client, ["debugkit.test=1", "debugkit.test.suite=toolbox"])
    yield
    sweep_suite(docker_client, ["debugkit.test=1", f"debugkit.test.session={SESSION}"])


@pytest.fixture(scope="session")
def built_toolbox(docker_client, sweep) -> BuildRecord:
    """The full toolbox, built (or found fully cached) once per session."""
    try:
        return build_variant(docker_client, "full")
    except Exception as exc:  # the build log is the useful part of a failure
        pytest.fail(f"toolbox build failed: {exc}", pytrace=True)


@pytest.fixture(scope="session")
def toolbox_ref(built_toolbox) -> str:
    return built_toolbox.ref


@pytest.fixture(scope="session")
def slim_ref(docker_client, built_toolbox) -> str:
    return build_variant(docker_client, "slim").ref


@pytest.fixture
def run(docker_client, toolbox_ref):
    """Run a command in the toolbox the way the `restricted` profile does.

    `run(cmd)` uses user 65532:65532, cap-drop ALL, no-new-privileges, a read-only root
    filesystem and a tmpfs at /tmp; keyword arguments override or add to that.
    """

    def _go(command, *, image: str | None = None, restricted: bool = True, **kwargs) -> Ran:
        options = {**(RESTRICTED if restricted else {}), **kwargs}
        return run_container(docker_client, image or toolbox_ref, command, **options)

    return _go


@pytest.fixture
def network(docker_client):
    """A labelled user-defined bridge network (it has Docker's embedded DNS server)."""
    net = docker_client.networks.create(f"dk-tb-{uuid.uuid4().hex[:8]}", labels=SUITE_LABELS)
    yield net
    for ctr in docker_client.containers.list(all=True, filters={"network": net.id}):
        remove_container(ctr)
    net.remove()


@pytest.fixture
def started(docker_client):
    """Start long-running helper containers; all removed at teardown."""
    containers = []

    def _start(image: str, command, *, files: dict[str, bytes] | None = None, **kwargs):
        labels = {**SUITE_LABELS, **kwargs.pop("labels", {})}
        ctr = docker_client.containers.create(image, command, labels=labels, **kwargs)
        containers.append(ctr)
        if files:
            ctr.put_archive("/", tar_of(files))
        ctr.start()
        return ctr

    yield _start
    for ctr in containers:
        remove_container(ctr)
