"""Helpers for the toolbox image tests (the fixtures are in conftest.py): build the image,
run tools in it like a sidecar, read its files.

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

from tests.helpers import REPO

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


def sweep_suite(client, labels: list[str]) -> None:
    for ctr in client.containers.list(all=True, filters={"label": labels}):
        remove_container(ctr)
    for net in client.networks.list(filters={"label": labels}):
        net.remove()


def base_image(client) -> str | None:
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


def build_variant(client, variant: str) -> BuildRecord:
    from debugkit.toolbox.build import build_toolbox

    lines: list[str] = []
    started = time.monotonic()
    ref = build_toolbox(variant=variant, base_image=base_image(client), progress=lines.append)
    return BuildRecord(ref=ref, seconds=time.monotonic() - started, lines=lines)


def run_container(client, image: str, command, *, timeout: float = 60, **kwargs) -> Ran:
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


def remove_container(ctr) -> None:
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
