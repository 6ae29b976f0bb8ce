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

The local side (plans, the workspace beside the destination, the local tree as a tar) is
copylocal.py; what the helper answers besides the archive is copyhelper.py.
"""
from __future__ import annotations

import contextlib
import os
import posixpath
import sys
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from debugkit import runtimes
from debugkit.core.errors import (
    DebugkitError,
    DestinationExists,
    InvalidInput,
    NotADirectory,
    PathNotFound,
    SpecialFile,
)
from debugkit.core.escape import safe
from debugkit.runtimes.base import HELPER_PATH, BoundedCapture, ExecSession
from debugkit.session.copyhelper import forbidden, helper_failure, helper_warnings, remote_path, remote_stat
from debugkit.session.copylocal import InPlan, OutPlan, Workspace, add_tree, check_dest, local_error, skipped_warning
from debugkit.session.progress import Progress
from debugkit.session.tarsink import TarSink

TARGET_ROOT = "/proc/1/root"
SIDECAR_ROOT = "/"


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


# -- target -> local -------------------------------------------------------------------------------------

@dataclass
class Copied:
    path: str
    files: list[tuple[str, str]]   # (sha256, path relative to the destination's parent); with --checksum
    bytes: int
    count: int = 0                 # regular files copied
    warnings: list[str] = field(default_factory=list)


def copy_out(session: ExecSession, plan: OutPlan, *, from_sidecar: bool, progress: bool,
             checksum: bool = False, relay: Path | None = None) -> Copied:
    """`relay`: the session's relay directory (on a local engine, mounted in the sidecar):
    the archive comes through a socket there (copysock.py), else through the exec stream."""
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
        if info.get("type") not in ("dir", "file", "symlink"):
            raise SpecialFile(f"cp: {safe(plan.path)} in {where} is not a regular file, a directory or a symlink",
                              hint="cp copies regular files, directories and symlinks")
        check_dest(dest, "dir" if info.get("type") == "dir" else "file", plan.path)
        raise DestinationExists(f"cp: {safe(dest)} exists", hint="pass --force to replace it")
    with Workspace(dest, replacing_dir=plan.exists and dest.is_dir() and not dest.is_symlink()) as work:
        meter = Progress(None, enabled=progress)
        sink = TarSink(work.staging, meter, hashing=checksum,
                       check_top=lambda kind: check_dest(dest, kind, plan.path))
        try:
            errors = BoundedCapture()
            try:
                code = None
                if relay is not None:
                    from debugkit.session import copysock

                    code = copysock.tar_out(session, relay, ["--root", root, plan.path], sink, errors)
                if code is None:
                    errors = BoundedCapture()
                    code = session.exec_io([HELPER_PATH, "tar-out", "--root", root, plan.path], stdin_fd=None,
                                           stdout=sink, stderr=errors)
            finally:
                meter.finish()
            if code != 0:
                raise helper_failure(code, errors.getvalue(), session, path=plan.path, where=where, writing=False,
                                     root=root)
            sink.close()
            work.replace(sink.top, sink.root_fd)
        finally:
            sink.release()
        return Copied(str(dest), sink.sums(dest.name), meter.done, sink.files, helper_warnings(errors.getvalue()))


# -- local -> target ---------------------------------------------------------------------------------------

def copy_in(session: ExecSession, plan: InPlan, remote: str, *, force: bool, progress: bool,
            checksum: bool = False, relay: Path | None = None) -> Copied:
    """Writes go into the target's filesystem with the target's user's rights, no more.
    `relay`: as copy_out's."""
    local, name = plan.local, plan.name
    source = Path(local)
    path = remote_path(remote)
    # A trailing slash names a directory: a symlink to one is followed (inside the target's
    # root); without it a symlink is the entry itself, replaced only with --force.
    info = remote_stat(session, TARGET_ROOT, path, follow=remote.endswith("/"))
    source_is_dir = plan.kind == "dir"
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
    if plan.kind == "symlink":
        total = 0
    elif plan.kind == "file":
        total = source.stat().st_size
    else:
        total = sum(p.stat().st_size for p in source.rglob("*") if p.is_file() and not p.is_symlink())
    meter = Progress(total, enabled=progress)
    sums: list[tuple[str, str]] = []
    writer_error: list[BaseException] = []
    counted = [0]
    skipped: list[str] = []

    def produce(sink, caught=BaseException) -> None:
        try:
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1 << 20) as tar:
                counted[0] = add_tree(tar, local, name, meter, sums, checksum, skipped)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the helper stopped reading: its exit code says why
        except caught as exc:  # noqa: BLE001 - reported below
            writer_error.append(exc)

    errors = BoundedCapture()
    args = ["--root", TARGET_ROOT] + (["--force"] if force else []) + [dest_dir]
    code = None
    if relay is not None:
        from debugkit.session import copysock

        # In this thread: a signal interrupts it as it should (only the writer's own
        # failures are kept for below).
        try:
            code = copysock.tar_in(session, relay, args, lambda sink: produce(sink, Exception), errors)
        finally:
            if code is not None:
                meter.finish()
    if code is None:
        errors = BoundedCapture()
        read_fd, write_fd = os.pipe()

        def write_archive() -> None:
            try:
                with os.fdopen(write_fd, "wb", buffering=1 << 20) as sink:
                    produce(sink)
            except BrokenPipeError:
                pass
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                writer_error.append(exc)

        worker = threading.Thread(target=write_archive, daemon=True, name="debugkit-cp")
        worker.start()
        try:
            code = session.exec_io([HELPER_PATH, "tar-in", *args], stdin_fd=read_fd, stdout=BoundedCapture(),
                                   stderr=errors)
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
    warnings = helper_warnings(errors.getvalue()) + skipped_warning(skipped)
    return Copied(posixpath.join(dest_dir, name), sums, meter.done, counted[0], warnings)


def is_terminal() -> bool:
    try:
        return os.isatty(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
