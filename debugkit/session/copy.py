"""`debugkit cp`: evidence out of a target (and, with --write, files into it), through its
sidecar and as the target's own user, on every runtime.

No tool is needed in the target. The sidecar's debugkit-helper walks the target's root
(`/proc/1/root`) with openat2(RESOLVE_IN_ROOT): a symlink is copied as a link and never
followed out of the target's root. Bytes stream through an exec as a tar, in constant
memory: out of the target, the exec's output is parsed as it arrives (`tarsink.TarSink`, no
thread, no pipe) and written under a temporary directory beside the destination, which is
renamed into place at the end, so an interrupted copy leaves nothing half-written.
Semantics follow `docker cp`:

    SRC file, DST a directory   -> DST/basename(SRC)
    SRC file, DST a file        -> replaced only with --force
    SRC directory, DST a file   -> refused (84)
    SRC file, DST/NAME a dir    -> refused (83), even with --force
    SRC directory, DST/NAME a directory -> replaced as a whole only with --force
    DST does not exist          -> created with that name (its parent must exist)
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from debugkit import runtimes
from debugkit.core.errors import (
    DebugkitError,
    DestinationExists,
    InvalidInput,
    NotADirectory,
    PathForbidden,
    PathNotFound,
)
from debugkit.core.escape import safe
from debugkit.runtimes.base import HELPER_PATH, ExecSession, helper_mismatch
from debugkit.session.progress import Progress
from debugkit.session.tarsink import TarSink

TARGET_ROOT = "/proc/1/root"
SIDECAR_ROOT = "/"
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
    scheme = next((s for s in runtimes.syntax().schemes if text.startswith(s)), "")
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

def remote_stat(session: ExecSession, root: str, path: str, *, follow: bool = False) -> dict:
    """The helper's stat of PATH inside ROOT (a final symlink unfollowed unless `follow`)."""
    argv = [HELPER_PATH, "stat", "--root", root] + (["--follow"] if follow else []) + [path]
    result = session.exec(argv, timeout=30)
    mismatch = helper_mismatch(result.exit_code, result.stderr)
    if mismatch is not None:
        raise mismatch
    if result.exit_code != 0:
        detail = result.stderr.decode(errors="replace").strip() or f"exit {result.exit_code}"
        if result.exit_code == HELPER_FORBIDDEN or "permission denied" in detail:
            return {"path": path, "exists": False, "error": "permission denied", "root": True}
        raise DebugkitError(f"cp: cannot examine {safe(path)} in the sidecar: {safe(detail)}")
    try:
        return json.loads(result.stdout)
    except ValueError as exc:
        raise DebugkitError(f"cp: the helper's answer about {safe(path)} is not JSON") from exc


def who(session: ExecSession) -> str:
    """Whose rights the sidecar uses, as a person reads it."""
    spec = session.plan.spec
    if spec.run_as_root:
        return f"the sidecar (root, --profile {spec.profile})"
    whose = "the sidecar's user" if spec.identity.source == "flag" else "the target's user"
    return f"{whose} ({spec.uid}:{spec.gid})"


def profile_that_reads(info: dict) -> str:
    """The least profile whose sidecar could read (a file) or list (a directory) what the
    target's user cannot: `ptrace` runs as root with only CAP_SYS_PTRACE, so it reads what
    root's owner, group or other bits allow (no CAP_DAC_OVERRIDE); anything else takes
    `sysadmin`. Without the owner and mode (the target's root itself was refused): ptrace,
    which may open /proc/1/root of a process of another user."""
    try:
        uid, gid, mode = int(info["uid"]), int(info["gid"]), int(str(info["mode"]), 8)
    except (KeyError, TypeError, ValueError):
        return "ptrace"
    need = 0o5 if info.get("type") == "dir" else 0o4
    bits = (mode >> 6) if uid == 0 else (mode >> 3) if gid == 0 else mode
    return "ptrace" if bits & need == need else "sysadmin"


PROFILE_HINTS = {
    "ptrace": "--profile ptrace (root with only CAP_SYS_PTRACE) can read it",
    "sysadmin": "only --profile sysadmin (privileged root) can read it",
}


def forbidden(session: ExecSession, path: str, *, where: str, writing: bool, root: str) -> PathForbidden:
    """Permission denied, with the owner and mode when the helper can see them, and, for a
    read, the profile that could do it."""
    info = remote_stat(session, root, path) if root else {}
    owner = ""
    if info.get("exists"):
        owner = f" (owner {info.get('uid')}:{info.get('gid')}, mode {info.get('mode')})"
    if writing:
        return PathForbidden(f"cp: {who(session)} cannot write to {safe(path)} in {where}{owner}",
                             hint="cp --write writes with the target's user's rights, no more")
    if info.get("root") or (not info.get("exists") and "permission" in str(info.get("error"))):
        # The root itself (a target that is not dumpable or runs as another user), or a
        # directory on the way: the helper cannot even look at it.
        info = {}
    hint = PROFILE_HINTS[profile_that_reads(info)]
    return PathForbidden(f"cp: {who(session)} cannot read {safe(path)} in {where}{owner}", hint=hint)


_FAILED_PATH = re.compile(r"^(/.*?): (?:permission denied|cannot list it: permission denied|read error: "
                          r"permission denied)$")


def helper_failure(code: int, stderr: bytes, session: ExecSession, *, path: str, where: str, writing: bool,
                   root: str) -> DebugkitError:
    detail = stderr.decode(errors="replace").strip().splitlines()
    detail = detail[-1].removeprefix("debugkit-helper: ") if detail else ""
    shown = safe(detail or path)
    mismatch = helper_mismatch(code, stderr)
    if mismatch is not None:
        return mismatch
    if code == HELPER_NOT_FOUND:
        return PathNotFound(f"cp: no such file or directory in {where}: {safe(path)}")
    if code == HELPER_FORBIDDEN:
        failed = _FAILED_PATH.match(detail)
        return forbidden(session, failed.group(1) if failed else path, where=where, writing=writing, root=root)
    if code == HELPER_NOT_DIR:
        return NotADirectory(f"cp: {where}: {shown}")
    if code == HELPER_EXISTS:
        return DestinationExists(f"cp: {where}: {shown}", hint="pass --force to replace it")
    return DebugkitError(f"cp failed in {where} (exit {code}): {shown}")


_SKIPPED_SPECIAL = re.compile(r"^skipping (/.*): an? (socket|FIFO|character device|block device)$")
_SKIPPED_PSEUDO = re.compile(r"^skipping the contents of (/.*): an? (\S+) filesystem$")


def helper_warnings(stderr: bytes) -> list[str]:
    """The helper's warnings (a file that changed while it was read, ...), with the skipped
    special files and kernel filesystems (a copy of /) summed up in a line each."""
    lines = [line.removeprefix("debugkit-helper: warning: ")
             for line in stderr.decode(errors="replace").splitlines()
             if line.startswith("debugkit-helper: warning: ")]
    special, pseudo, other = [], [], []
    for line in lines:
        if match := _SKIPPED_SPECIAL.match(line):
            special.append(match.group(1))
        elif match := _SKIPPED_PSEUDO.match(line):
            pseudo.append(f"{match.group(1)} ({match.group(2)})")
        else:
            other.append(line)
    if special:
        shown = ", ".join(special[:3]) + (f" and {len(special) - 3} more" if len(special) > 3 else "")
        other.append(f"not copied: {len(special)} socket(s), device(s) or FIFO(s): {shown}")
    if pseudo:
        other.append(f"copied empty: {', '.join(pseudo)} (kernel filesystems, not files)")
    return other


# -- target -> local -------------------------------------------------------------------------------------

@dataclass
class Copied:
    path: str
    files: list[tuple[str, str]]   # (sha256, path relative to the destination's parent); with --checksum
    bytes: int
    count: int = 0                 # regular files copied
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutPlan:
    """Where a copy out of the target goes, decided before any sidecar exists."""

    path: str      # in the target (or the sidecar), absolute and normalised
    dest: Path     # the local name the copy will have
    force: bool
    exists: bool   # dest exists: refused unless --force, or whatever the source's type (84)


def plan_out(remote: str, local: str, *, force: bool) -> OutPlan:
    """The local side of a copy out: checked before a sidecar is started, so a destination
    that exists (without --force) or a missing directory costs no sidecar."""
    path = remote_path(remote)
    name = posixpath.basename(path) or "root"
    dest = Path(local)
    if dest.is_dir() and not dest.is_symlink():
        dest = dest / name
    elif local.endswith("/"):
        raise (NotADirectory if dest.exists() else PathNotFound)(f"cp: {safe(local)} is not a local directory")
    if not dest.parent.is_dir():
        raise PathNotFound(f"cp: the local directory {safe(dest.parent)} does not exist")
    return OutPlan(path, dest, force, os.path.lexists(dest))


def copy_out(session: ExecSession, plan: OutPlan, *, from_sidecar: bool, progress: bool,
             checksum: bool = False) -> Copied:
    root = SIDECAR_ROOT if from_sidecar else TARGET_ROOT
    where = "the sidecar" if from_sidecar else "the target"
    dest = plan.dest
    if plan.exists and not plan.force:
        # Which error: a directory onto a file is refused even with --force (84).
        info = remote_stat(session, root, plan.path)
        if not info.get("exists"):  # a source that is not there is the first thing to say
            if "permission" in str(info.get("error")):
                raise forbidden(session, plan.path, where=where, writing=False, root=root)
            raise PathNotFound(f"cp: no such file or directory in {where}: {safe(plan.path)}")
        _check_dest(dest, "dir" if info.get("type") == "dir" else "file", plan.path)
        raise DestinationExists(f"cp: {safe(dest)} exists", hint="pass --force to replace it")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.debugkit-", dir=dest.parent))
    except OSError as exc:
        raise local_error(exc, "write in", dest.parent) from None
    try:
        meter = Progress(None, enabled=progress)
        sink = TarSink(staging, meter, hashing=checksum, check_top=lambda kind: _check_dest(dest, kind, plan.path))
        errors = io.BytesIO()
        try:
            code = session.exec_io([HELPER_PATH, "tar-out", "--root", root, plan.path], stdin_fd=None,
                                   stdout=sink, stderr=errors)
        finally:
            meter.finish()
        if code != 0:
            raise helper_failure(code, errors.getvalue(), session, path=plan.path, where=where, writing=False,
                                 root=root)
        sink.close()
        try:
            _replace(staging / sink.top, dest)
        except OSError as exc:
            raise local_error(exc, "replace", dest) from None
        return Copied(str(dest), sink.sums(dest.name), meter.done, sink.files, helper_warnings(errors.getvalue()))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def local_error(exc: OSError, verb: str, path) -> DebugkitError:
    """A local file system error as one line (permission denied: 82, like the target's)."""
    kind = PathForbidden if isinstance(exc, PermissionError) else PathNotFound \
        if isinstance(exc, FileNotFoundError) else DebugkitError
    return kind(f"cp: cannot {verb} {safe(path)} here: {exc.strerror or exc}")


def _check_dest(dest: Path, kind: str, path: str) -> None:
    """Once the archive's top entry says what the source is: may it take dest's place?"""
    if not os.path.lexists(dest):
        return
    is_dir = dest.is_dir() and not dest.is_symlink()
    if kind == "dir" and not is_dir:
        raise NotADirectory(f"cp: {safe(path)} is a directory and {safe(dest)} is not")
    if kind != "dir" and is_dir:
        raise DestinationExists(f"cp: {safe(dest)} is a directory; a {kind} does not replace it, even with --force")


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


# -- local -> target ---------------------------------------------------------------------------------------

def copy_in(session: ExecSession, local: str, remote: str, *, force: bool, progress: bool,
            checksum: bool = False) -> Copied:
    """Writes go into the target's filesystem with the target's user's rights, no more."""
    source = Path(local)
    if not source.exists() and not source.is_symlink():
        raise PathNotFound(f"cp: no such local file or directory: {safe(local)}")
    name = source.name or Path(os.path.abspath(local)).name
    path = remote_path(remote)
    # A trailing slash names a directory: a symlink to one is followed (inside the target's
    # root); without it a symlink is the entry itself, replaced only with --force.
    info = remote_stat(session, TARGET_ROOT, path, follow=remote.endswith("/"))
    source_is_dir = source.is_dir() and not source.is_symlink()
    if info.get("exists") and info.get("type") == "dir":
        dest_dir = path
    elif info.get("exists"):
        if source_is_dir:
            raise NotADirectory(f"cp: {safe(local)} is a directory and {safe(path)} in the target is not")
        if remote.endswith("/"):
            raise NotADirectory(f"cp: {safe(path)} in the target is not a directory")
        if not force:
            raise DestinationExists(f"cp: {safe(path)} exists in the target", hint="pass --force to replace it")
        dest_dir, name = posixpath.dirname(path) or "/", posixpath.basename(path)
    else:
        if "permission" in str(info.get("error")):
            raise forbidden(session, path, where="the target", writing=True, root="")
        if remote.endswith("/") or info.get("error") == "not a directory":
            raise PathNotFound(f"cp: no such directory in the target: {safe(remote)}")
        dest_dir, name = posixpath.dirname(path) or "/", posixpath.basename(path)
        parent = remote_stat(session, TARGET_ROOT, dest_dir)
        if not parent.get("exists"):
            if "permission" in str(parent.get("error")):
                raise forbidden(session, dest_dir, where="the target", writing=True, root="")
            raise PathNotFound(f"cp: no such directory in the target: {safe(dest_dir)}")
        if parent.get("type") != "dir":
            raise NotADirectory(f"cp: {safe(dest_dir)} in the target is not a directory")
    total = 0
    if source.is_symlink():
        total = 0
    elif source.is_file():
        total = source.stat().st_size
    else:
        total = sum(p.stat().st_size for p in source.rglob("*") if p.is_file() and not p.is_symlink())
    meter = Progress(total, enabled=progress)
    sums: list[tuple[str, str]] = []
    read_fd, write_fd = os.pipe()
    writer_error: list[BaseException] = []
    counted = [0]

    def write_archive() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=1 << 20) as sink:
                with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1 << 20) as tar:
                    counted[0] = _add(tar, source, name, meter, sums, checksum)
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
        # Closing our end stops the writer at its next write (EPIPE) if the exec ended early.
        with contextlib.suppress(OSError):
            os.close(read_fd)
        worker.join()
        meter.finish()
    if writer_error:  # first: the helper's complaint (a cut archive) would only be its consequence
        exc = writer_error[0]
        if isinstance(exc, OSError):
            raise local_error(exc, "read", getattr(exc, "filename", None) or local)
        raise DebugkitError(f"cp: cannot read {safe(local)}: {safe(exc)}")
    if code != 0:
        raise helper_failure(code, errors.getvalue(), session, path=posixpath.join(dest_dir, name),
                             where="the target", writing=True, root="")
    return Copied(posixpath.join(dest_dir, name), sums, meter.done, counted[0], helper_warnings(errors.getvalue()))


def _add(tar: tarfile.TarFile, source: Path, arcname: str, meter: Progress, sums: list, checksum: bool) -> int:
    """The local tree as a tar: files, directories and symlinks (as links, never followed);
    the number of regular files."""
    info = tar.gettarinfo(str(source), arcname=arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.isfile():
        digest = hashlib.sha256() if checksum else None
        with open(source, "rb") as fh:
            tar.addfile(info, _Counting(fh, digest, meter))
        if digest is not None:
            sums.append((digest.hexdigest(), arcname))
        return 1
    if info.isdir():
        tar.addfile(info)
        return sum(_add(tar, child, f"{arcname}/{child.name}", meter, sums, checksum)
                   for child in sorted(source.iterdir()))
    if info.issym():
        tar.addfile(info)
    return 0  # sockets, FIFOs and devices are skipped, as the helper does


class _Counting:
    def __init__(self, fh, digest, meter: Progress):
        self._fh, self._digest, self._meter = fh, digest, meter

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        if self._digest is not None:
            self._digest.update(data)
        self._meter.add(len(data))
        return data


def is_terminal() -> bool:
    try:
        return os.isatty(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
