"""`debugkit cp`: evidence out of a target (and, with --write, files into it), through its
sidecar and as the target's own user, on every runtime.

No tool is needed in the target. The sidecar's debugkit-helper walks the target's root
(`/proc/1/root`) with openat2(RESOLVE_IN_ROOT): a symlink is copied as a link and never
followed out of the target's root. Bytes stream through an exec as a tar, in constant
memory. Locally an entry is written under a temporary name and renamed into place, so an
interrupted copy leaves nothing half-written. Semantics follow `docker cp`:

    SRC file, DST a directory   -> DST/basename(SRC)
    SRC file, DST a file        -> replaced only with --force
    SRC directory, DST a file   -> refused (84)
    DST does not exist          -> created with that name (its parent must exist)
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import shutil
import stat
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from debugkit.core.errors import (
    DebugkitError,
    DestinationExists,
    InvalidInput,
    NotADirectory,
    PathForbidden,
    PathNotFound,
)
from debugkit.core.escape import safe
from debugkit.runtimes.base import HELPER_PATH, ExecSession

TARGET_ROOT = "/proc/1/root"
SIDECAR_ROOT = "/"
SCHEMES = ("docker://", "podman://", "k8s://")
# The helper's exit codes (toolbox-image/helper): what each means here.
HELPER_NOT_FOUND, HELPER_FORBIDDEN, HELPER_NOT_DIR, HELPER_EXISTS = 2, 3, 4, 5


@dataclass(frozen=True)
class Endpoint:
    target: str | None   # None: a local path
    path: str


def parse_endpoint(text: str) -> Endpoint:
    """`TARGET:PATH` (the attach syntax before the colon) or a local path. A local path
    with a colon is written `./a:b` or `/abs/a:b`, as with docker cp."""
    if not text:
        raise InvalidInput("cp: an empty path")
    if text.startswith(("/", "./", "../", "~")) or text in (".", ".."):
        return Endpoint(None, os.path.expanduser(text))
    scheme = next((s for s in SCHEMES if text.startswith(s)), "")
    rest = text[len(scheme):]
    if ":" not in rest:
        return Endpoint(None, text)
    target, _, path = rest.partition(":")
    if not target:
        raise InvalidInput(f"cp: no target before the colon in {text!r}")
    return Endpoint(scheme + target, path or "/")


def endpoints(src: str, dst: str) -> tuple[Endpoint, Endpoint]:
    a, b = parse_endpoint(src), parse_endpoint(dst)
    if (a.target is None) == (b.target is None):
        raise InvalidInput("cp: exactly one of SRC and DST must be TARGET:PATH (use ./name for a local path "
                           "with a colon)")
    return a, b


def remote_path(path: str) -> str:
    """Absolute and normalised, inside the root the helper resolves against."""
    return posixpath.normpath("/" + path.lstrip("/")) if path else "/"


# -- the helper's answers ----------------------------------------------------------------------------

def remote_stat(session: ExecSession, root: str, path: str) -> dict:
    result = session.exec([HELPER_PATH, "stat", "--root", root, path], timeout=30)
    if result.exit_code != 0:
        detail = result.stderr.decode(errors="replace").strip() or f"exit {result.exit_code}"
        raise DebugkitError(f"cp: cannot examine {path} in the sidecar: {safe(detail)}")
    try:
        return json.loads(result.stdout)
    except ValueError as exc:
        raise DebugkitError(f"cp: the helper's answer about {path} is not JSON") from exc


def who(session: ExecSession) -> str:
    spec = session.plan.spec
    return f"{spec.uid}:{spec.gid}"


def stat_error(session: ExecSession, info: dict, path: str, *, where: str, writing: bool = False) -> DebugkitError:
    reason = info.get("error") or "not found"
    if "permission" in reason:
        verb = "write" if writing else "read"
        profile = "sysadmin" if writing else "ptrace"
        return PathForbidden(f"the target's user ({who(session)}) cannot {verb} {path} in {where}",
                             hint=f"--profile {profile} runs the sidecar as root" +
                                  ("" if writing else " with CAP_SYS_PTRACE and can read it"))
    if "not a directory" in reason:
        return NotADirectory(f"{path} in {where}: a parent is not a directory")
    return PathNotFound(f"no such file or directory in {where}: {path}")


def helper_failure(code: int, stderr: bytes, session: ExecSession, *, path: str, where: str,
                   writing: bool) -> DebugkitError:
    detail = safe(stderr.decode(errors="replace").strip().removeprefix("debugkit-helper: "))
    if code == HELPER_NOT_FOUND:
        return PathNotFound(f"no such file or directory in {where}: {detail or path}")
    if code == HELPER_FORBIDDEN:
        return stat_error(session, {"error": "permission denied"}, detail or path, where=where, writing=writing)
    if code == HELPER_NOT_DIR:
        return NotADirectory(f"{where}: {detail or path}")
    if code == HELPER_EXISTS:
        return DestinationExists(f"{where}: {detail or path} exists", hint="pass --force to replace it")
    return DebugkitError(f"cp failed in {where} (exit {code}): {detail}")


# -- progress on a terminal ----------------------------------------------------------------------------

class Progress:
    """Bytes so far and the rate, on one updating line of stderr; silent when not a terminal."""

    def __init__(self, total: int | None, *, enabled: bool):
        self.total = total
        self.enabled = enabled
        self.done = 0
        self.started = time.monotonic()
        self._shown = 0.0

    def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.enabled and now - self._shown >= 0.2:
            self._shown = now
            rate = self.done / max(now - self.started, 1e-6)
            of = f" of {_human(self.total)}" if self.total else ""
            sys.stderr.write(f"\r\x1b[Kdebugkit: {_human(self.done)}{of} ({_human(rate)}/s)")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _human(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


# -- target -> local -------------------------------------------------------------------------------------

@dataclass
class Copied:
    path: str
    files: list[tuple[str, str]]   # (sha256, path relative to the destination's parent) of regular files
    bytes: int


def copy_out(session: ExecSession, remote: str, local: str, *, from_sidecar: bool, force: bool,
             progress: bool) -> Copied:
    root = SIDECAR_ROOT if from_sidecar else TARGET_ROOT
    where = "the sidecar" if from_sidecar else "the target"
    path = remote_path(remote)
    info = remote_stat(session, root, path)
    if not info.get("exists"):
        raise stat_error(session, info, path, where=where)
    src_is_dir = info.get("type") == "dir"
    name = posixpath.basename(path) or "root"
    dest = Path(local)
    if dest.is_dir() and not dest.is_symlink():
        dest = dest / name
    elif dest.exists() or dest.is_symlink():
        if src_is_dir:
            raise NotADirectory(f"cp: {path} is a directory and {local} is not")
    elif not dest.parent.is_dir():
        raise PathNotFound(f"cp: the local directory {dest.parent} does not exist")
    if (dest.exists() or dest.is_symlink()) and not force:
        raise DestinationExists(f"cp: {dest} exists", hint="pass --force to replace it")
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.debugkit-", dir=dest.parent))
    meter = Progress(info.get("size") if not src_is_dir else None, enabled=progress)
    try:
        extractor = _Extractor(staging, meter)
        read_fd, write_fd = os.pipe()
        worker = threading.Thread(target=extractor.run, args=(read_fd,), daemon=True, name="debugkit-cp")
        worker.start()
        errors = io.BytesIO()
        try:
            with os.fdopen(write_fd, "wb", buffering=0) as sink:
                code = session.exec_io([HELPER_PATH, "tar-out", "--root", root, path], stdin_fd=None,
                                       stdout=sink, stderr=errors)
        finally:
            worker.join()
        meter.finish()
        if code != 0:
            raise helper_failure(code, errors.getvalue(), session, path=path, where=where, writing=False)
        if extractor.error is not None:
            raise extractor.error
        produced = staging / extractor.top
        _replace(produced, dest)
        return Copied(str(dest), extractor.sums(dest.name), meter.done)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace(produced: Path, dest: Path) -> None:
    """Move the finished copy into place: a file at once (rename), a directory by moving
    the old one aside first."""
    if dest.is_dir() and not dest.is_symlink():
        aside = dest.with_name(f".{dest.name}.debugkit-old-{os.getpid()}")
        os.rename(dest, aside)
        os.rename(produced, dest)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(produced, dest)


class _Extractor:
    """Reads the helper's tar stream and writes it under a fresh staging directory. Only
    plain files, directories and symlinks; no absolute names, no `..`, nothing below a
    symlink (so no entry is ever written through one), setuid/setgid bits dropped."""

    def __init__(self, staging: Path, meter: Progress):
        self.staging = staging
        self.meter = meter
        self.top = ""
        self.error: BaseException | None = None
        self._links: set[str] = set()
        self._sums: list[tuple[str, str]] = []
        self._dirs: list[tuple[Path, int, float]] = []

    def run(self, fd: int) -> None:
        try:
            with os.fdopen(fd, "rb", buffering=1 << 20) as stream:
                with tarfile.open(fileobj=stream, mode="r|", bufsize=1 << 20) as tar:
                    for member in tar:
                        self._one(tar, member)
                for directory, mode, mtime in reversed(self._dirs):  # modes and mtimes after contents
                    os.chmod(directory, mode)
                    os.utime(directory, (mtime, mtime))
                stream.read()  # whatever follows the archive's end, so the writer never blocks
        except BaseException as exc:  # reported by the main thread
            self.error = exc if isinstance(exc, DebugkitError) else DebugkitError(f"cp: the archive is unusable: "
                                                                                   f"{exc}")
            with contextlib.suppress(OSError):
                os.read(fd, 0)

    def _one(self, tar, member: tarfile.TarInfo) -> None:
        name = posixpath.normpath(member.name)
        if name.startswith("/") or name == ".." or name.startswith("../"):
            raise DebugkitError(f"cp: refused an archive entry outside the copy: {safe(member.name)}")
        parts = name.split("/")
        if not self.top:
            self.top = parts[0]
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in self._links:
                raise DebugkitError(f"cp: refused an archive entry below a symlink: {safe(member.name)}")
        path = self.staging / name
        mode = member.mode & 0o1777  # no setuid or setgid on this machine
        if member.isdir():
            path.mkdir(mode=0o700, exist_ok=True)
            self._dirs.append((path, mode | 0o700, member.mtime))
        elif member.issym():
            os.symlink(member.linkname, path)
            self._links.add(name)
        elif member.isfile():
            source = tar.extractfile(member)
            digest = hashlib.sha256()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = source.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    self.meter.add(len(chunk))
                os.fchmod(out.fileno(), mode)
            os.utime(path, (member.mtime, member.mtime))
            self._sums.append((digest.hexdigest(), name))
        # devices, FIFOs and sockets are not copied (the helper does not send them)

    def sums(self, final_top: str) -> list[tuple[str, str]]:
        return [(digest, final_top + name[len(self.top):]) for digest, name in self._sums]


# -- local -> target ---------------------------------------------------------------------------------------

def copy_in(session: ExecSession, local: str, remote: str, *, force: bool, progress: bool) -> Copied:
    """Writes go into the target's filesystem with the target's user's rights, no more."""
    source = Path(local)
    if not source.exists() and not source.is_symlink():
        raise PathNotFound(f"cp: no such local file or directory: {local}")
    path = remote_path(remote)
    info = remote_stat(session, TARGET_ROOT, path)
    if info.get("exists") and info.get("type") == "dir":
        dest_dir, name = path, source.name
    elif info.get("exists"):
        if source.is_dir() and not source.is_symlink():
            raise NotADirectory(f"cp: {local} is a directory and {path} in the target is not")
        dest_dir, name = posixpath.dirname(path) or "/", posixpath.basename(path)
    else:
        if "permission" in str(info.get("error")):
            raise stat_error(session, info, path, where="the target", writing=True)
        dest_dir, name = posixpath.dirname(path) or "/", posixpath.basename(path)
        parent = remote_stat(session, TARGET_ROOT, dest_dir)
        if not parent.get("exists"):
            raise stat_error(session, parent, dest_dir, where="the target", writing=True)
        if parent.get("type") != "dir":
            raise NotADirectory(f"cp: {dest_dir} in the target is not a directory")
    total = sum(p.stat().st_size for p in ([source] if source.is_file() else source.rglob("*")) if p.is_file()) \
        if not source.is_symlink() else 0
    meter = Progress(total, enabled=progress)
    sums: list[tuple[str, str]] = []
    read_fd, write_fd = os.pipe()
    writer_error: list[BaseException] = []

    def write_archive() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=1 << 20) as sink:
                with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1 << 20) as tar:
                    _add(tar, source, name, meter, sums)
        except BrokenPipeError:
            pass  # the helper stopped reading: its exit code says why
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            writer_error.append(exc)

    worker = threading.Thread(target=write_archive, daemon=True, name="debugkit-cp")
    worker.start()
    errors = io.BytesIO()
    argv = [HELPER_PATH, "tar-in", "--root", TARGET_ROOT] + (["--force"] if force else []) + [dest_dir]
    try:
        code = session.exec_io(argv, stdin_fd=read_fd, stdout=io.BytesIO(), stderr=errors)
    finally:
        with contextlib.suppress(OSError):
            os.close(read_fd)
        worker.join()
        meter.finish()
    if code != 0:
        raise helper_failure(code, errors.getvalue(), session, path=posixpath.join(dest_dir, name),
                             where="the target", writing=True)
    if writer_error:
        raise DebugkitError(f"cp: cannot read {local}: {writer_error[0]}")
    return Copied(posixpath.join(dest_dir, name), sums, meter.done)


def _add(tar: tarfile.TarFile, source: Path, arcname: str, meter: Progress, sums: list) -> None:
    """The local tree as a tar: files, directories and symlinks (as links, never followed)."""
    info = tar.gettarinfo(str(source), arcname=arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.isfile():
        digest = hashlib.sha256()
        with open(source, "rb") as fh:
            reader = _Hashing(fh, digest, meter)
            tar.addfile(info, reader)
        sums.append((digest.hexdigest(), arcname))
    elif info.isdir():
        tar.addfile(info)
        for child in sorted(source.iterdir()):
            _add(tar, child, f"{arcname}/{child.name}", meter, sums)
    elif info.issym():
        tar.addfile(info)
    # sockets, FIFOs and devices are skipped, as the helper does


class _Hashing:
    def __init__(self, fh, digest, meter: Progress):
        self._fh, self._digest, self._meter = fh, digest, meter

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._digest.update(data)
        self._meter.add(len(data))
        return data


def is_terminal() -> bool:
    try:
        return os.isatty(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False

