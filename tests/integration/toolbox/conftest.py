"""Fixtures for the toolbox image tests: build once per session, run tools like a sidecar.

Everything runs on the real engine, offline: the image is built with debugkit's own
`build_toolbox()` (a near no-op when layers are cached), from the digest-pinned base
when it is local, otherwise from the offline `debian:bookworm-slim` that
scripts/docker-testenv imports from debootstrap.
"""
from __future__ import annotations

import io
import os
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterator

import pytest

from tests.helpers import REPO, wait_for

SESSION = uuid.uuid4().hex[:10]
# Not tests/conftest.py's TEST_LABEL: its session-end sweep would remove these containers
# from under a concurrently running session of this suite.
SUITE_LABELS = {
    "debugkit.test": "1",
    "debugkit.test.suite": "toolbox",
    "debugkit.test.session": SESSION,
}
RESTRICTED = dict(
    user="65532:65532",
    cap_drop=["ALL"],
    security_opt=["no-new-privileges"],
    read_only=True,
    tmpfs={"/tmp": "rw,nosuid,nodev,size=64m"},
)


@dataclass
class BuildRecord:
    ref: str
    seconds: float
    lines: list[str] = field(default_factory=list)


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:  # shown in assertion messages
        return f"exit {self.exit_code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def _sweep(client, labels: list[str]) -> None:
    for ctr in client.containers.list(all=True, filters={"label": labels}):
        _remove(ctr)
    for net in client.networks.list(filters={"label": labels}):
        net.remove()


@pytest.fixture(scope="session")
def sweep(docker_client) -> Iterator[None]:
    """Remove what a crashed earlier run of this suite left, and this session's own at the end."""
    _sweep(docker_client, ["debugkit.test=1", "debugkit.test.suite=toolbox"])
    yield
    _sweep(docker_client, ["debugkit.test=1", f"debugkit.test.session={SESSION}"])


def _base_image(client) -> str | None:
    """None (let build_toolbox choose) unless the environment names a base."""
    from debugkit.toolbox.build import OFFLINE_BASE_IMAGE, pinned_base_image

    chosen = os.environ.get("DEBUGKIT_TOOLBOX_BASE")
    if chosen:
        return chosen
    have = {t for image in client.images.list() for t in image.tags} | {
        d for image in client.images.list() for d in image.attrs.get("RepoDigests") or []
    }
    if OFFLINE_BASE_IMAGE not in have and pinned_base_image() not in have:
        subprocess.run([str(REPO / "scripts" / "docker-testenv"), "base"], check=True, timeout=600)
    return None


def _build(client, variant: str) -> BuildRecord:
    from debugkit.toolbox.build import build_toolbox

    lines: list[str] = []
    started = time.monotonic()
    ref = build_toolbox(variant=variant, base_image=_base_image(client), progress=lines.append, client=client)
    return BuildRecord(ref=ref, seconds=time.monotonic() - started, lines=lines)


@pytest.fixture(scope="session")
def built_toolbox(docker_client, sweep) -> BuildRecord:
    """The full toolbox, built (or found fully cached) once per session."""
    try:
        return _build(docker_client, "full")
    except Exception as exc:  # the build log is the useful part of a failure
        pytest.fail(f"toolbox build failed: {exc}", pytrace=True)


@pytest.fixture(scope="session")
def toolbox_ref(built_toolbox) -> str:
    return built_toolbox.ref


@pytest.fixture(scope="session")
def slim_ref(docker_client, built_toolbox) -> str:
    return _build(docker_client, "slim").ref


def _run(client, image: str, command, *, timeout: float = 60, **kwargs) -> Ran:
    labels = {**SUITE_LABELS, **kwargs.pop("labels", {})}
    ctr = client.containers.create(image, command, labels=labels, **kwargs)
    try:
        ctr.start()
        try:
            status = ctr.wait(timeout=timeout)
        except Exception as exc:  # requests' ReadTimeout: the command hung
            raise AssertionError(
                f"{command!r} did not finish within {timeout}s; logs:\n"
                + ctr.logs().decode(errors="replace")
            ) from exc
        return Ran(
            exit_code=status["StatusCode"],
            stdout=ctr.logs(stdout=True, stderr=False).decode(errors="replace"),
            stderr=ctr.logs(stdout=False, stderr=True).decode(errors="replace"),
        )
    finally:
        ctr.remove(force=True)


@pytest.fixture
def run(docker_client, toolbox_ref):
    """Run a command in the toolbox the way the `restricted` profile does.

    `run(cmd)` uses user 65532:65532, cap-drop ALL, no-new-privileges, a read-only root
    filesystem and a tmpfs at /tmp; keyword arguments override or add to that.
    """

    def _go(command, *, image: str | None = None, restricted: bool = True, **kwargs) -> Ran:
        options = {**(RESTRICTED if restricted else {}), **kwargs}
        return _run(docker_client, image or toolbox_ref, command, **options)

    return _go


@pytest.fixture
def network(docker_client):
    """A labelled user-defined bridge network (it has Docker's embedded DNS server)."""
    net = docker_client.networks.create(f"dk-tb-{uuid.uuid4().hex[:8]}", labels=SUITE_LABELS)
    yield net
    for ctr in docker_client.containers.list(all=True, filters={"network": net.id}):
        _remove(ctr)
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
        _remove(ctr)


def _remove(ctr) -> None:
    from docker.errors import APIError, NotFound

    try:
        ctr.remove(force=True)
    except NotFound:  # another fixture's teardown got there first
        pass
    except APIError as exc:
        if exc.status_code != 409:  # 409: its removal is already in progress
            raise


def tar_of(files: dict[str, bytes], *, mode: int = 0o644) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size = len(data)
            info.mode = mode
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _ChunkReader(io.RawIOBase):
    """A file object over the chunks of `container.export()` for tarfile's stream mode."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(target), len(self._buf))
        target[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def image_members(client, image: str) -> Iterator[tarfile.TarInfo]:
    """Every entry of the image's filesystem, read from `docker export` (nothing executed)."""
    ctr = client.containers.create(image, "true", labels=SUITE_LABELS)
    try:
        with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(ctr.export())), mode="r|") as tar:
            for member in tar:
                yield member
    finally:
        ctr.remove(force=True)


__all__ = ["Ran", "image_members", "tar_of", "wait_for"]
