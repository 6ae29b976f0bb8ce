"""`cp` out and in through a unix socket in the session's relay directory
(session/copysock.py) on the local Docker and Podman engines: the sidecar mounts the
directory, the archive comes through it and matches, the directory is gone afterwards, a
file that grows while it is read is cut to the size it had, files copied in belong to the
target's user, and the exec stream is still there when forced."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from debugkit.runtimes.base import RELAY_MOUNT
from tests.helpers import wait_for
from tests.integration.transfer.helpers import sha256_file, tree_of_local, tree_of_tar

pytestmark = pytest.mark.transfer
MIB = 1 << 20


@pytest.fixture
def out(tmp_path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def relay_mounts(target) -> list[str]:
    """The relay mounts of the target's sidecars (their host directories)."""
    found = []
    try:
        names = target.sidecars()
    except Exception:  # noqa: BLE001 - Podman answers 500 for a container it is removing
        return []
    for name in names:
        try:
            attrs = target.owner.client.api.inspect_container(name)
        except Exception:  # noqa: BLE001 - removed meanwhile
            continue
        found += [m["Source"] for m in attrs.get("Mounts") or () if m.get("Destination") == RELAY_MOUNT]
    return found


def copy_through_the_relay(target, relay_root: Path, *args: str) -> None:
    """Run `debugkit ARGS` on `target`; while it runs, its sidecar must mount a relay
    directory under `relay_root`; it must succeed."""
    copying = target.popen(*args)
    try:
        wait_for(lambda: relay_mounts(target) or copying.poll() is not None, timeout=60,
                 what="the copy's sidecar")
        mounts = relay_mounts(target)
        assert mounts and all(m.startswith(str(relay_root)) for m in mounts), mounts
        assert copying.wait(timeout=240) == 0, copying.stderr.read()
    finally:
        if copying.poll() is None:
            copying.kill()
            copying.wait()


def test_cp_out_comes_through_the_relay_directory(engine, relay_root, out, image_archive):
    target = engine.target()
    target.sh("truncate -s 512M /proc/1/root/home/nonroot/big && echo end >> /proc/1/root/home/nonroot/big")
    copy_through_the_relay(target, relay_root, "cp", target.spec("/home/nonroot/big"), str(out / "big"))
    assert (out / "big").stat().st_size == 512 * MIB + 4
    assert target.sh("sha256sum /proc/1/root/home/nonroot/big").split()[0] == sha256_file(out / "big")
    assert not relay_root.exists() or os.listdir(relay_root) == []
    # A tree, with modes, mtimes and links, as the image has it.
    result = target.cli("cp", target.spec("/data"), str(out))
    assert result.returncode == 0, result.stderr
    assert tree_of_local(out / "data") == tree_of_tar(image_archive("/data"))


def test_cp_in_comes_through_the_relay_directory(engine, relay_root, tmp_path):
    target = engine.target()
    local = tmp_path / "upload"
    local.mkdir()
    (local / "big.bin").write_bytes(os.urandom(MIB) * 256)
    (local / "sub").mkdir()
    (local / "sub" / "small.txt").write_text("small\n")
    copy_through_the_relay(target, relay_root, "cp", "--write", str(local), target.spec("/home/nonroot/"))
    listing = target.sh("cd /proc/1/root/home/nonroot/upload && stat -c '%u:%g %n' big.bin sub/small.txt && "
                        "sha256sum big.bin && cat sub/small.txt")
    lines = listing.splitlines()
    assert lines[:2] == ["65532:65532 big.bin", "65532:65532 sub/small.txt"], listing
    assert lines[2].split()[0] == sha256_file(local / "big.bin") and lines[3] == "small", listing
    assert not relay_root.exists() or os.listdir(relay_root) == []


def test_a_file_that_grows_while_it_is_read(engine, relay_root, out):
    """The header says the size fstat gave when the file was opened; what is appended
    after that is not copied, and the copy says so. The bytes copied are the file's first
    ones, as they are in the target."""
    target = engine.target()
    path = "/proc/1/root/home/nonroot/growing"
    target.sh(f"head -c {64 * MIB} /dev/urandom > {path}")
    writer = target.popen("attach", target.ref, "--", "sh", "-c",
                          f"while :; do head -c 1048576 /dev/urandom >> {path}; done")
    try:
        time.sleep(1)
        result = target.cli("cp", target.spec("/home/nonroot/growing"), str(out / "growing"))
    finally:
        writer.kill()
        writer.wait()
    err = result.stderr.decode()
    assert result.returncode == 0, err
    match = re.search(r"growing grew while it was archived; cut to its size of (\d+)", err)
    assert match, err
    size = int(match.group(1))
    assert (out / "growing").stat().st_size == size >= 64 * MIB
    wait_for(lambda: not [s for s in target.sidecars()], timeout=60, what="the writer's sidecar to end")
    head = target.sh(f"head -c {size} {path} | sha256sum").split()[0]
    assert head == sha256_file(out / "growing")


def test_cp_out_through_the_exec_stream_when_forced(engine, relay_root, out, monkeypatch):
    monkeypatch.setenv("DEBUGKIT_RELAY", "exec")
    target = engine.target()
    target.sh("head -c 3000000 /dev/urandom > /proc/1/root/home/nonroot/blob")
    copying = target.popen("cp", target.spec("/home/nonroot/blob"), str(out / "blob"))
    seen: list = []
    while copying.poll() is None:
        seen += relay_mounts(target)
        time.sleep(0.05)
    assert copying.returncode == 0, copying.stderr.read()
    assert seen == [] and not relay_root.exists()
    assert target.sh("sha256sum /proc/1/root/home/nonroot/blob").split()[0] == sha256_file(out / "blob")
    (out / "back").write_bytes(b"back in\n")
    copying = target.popen("cp", "--write", str(out / "back"), target.spec("/home/nonroot/back"))
    while copying.poll() is None:
        seen += relay_mounts(target)
        time.sleep(0.05)
    assert copying.returncode == 0, copying.stderr.read()
    assert seen == [] and not relay_root.exists()
    assert target.sh("cat /proc/1/root/home/nonroot/back") == "back in\n"
