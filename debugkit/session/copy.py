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
import json
import os
import posixpath
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from debugkit.core.errors import (
    DebugkitError,
    DestinationExists,
    InvalidInput,
    NotADirectory,
    PathForbidden,
    PathNotFound,
    SpecialFile,
)
from debugkit.core.escape import safe
from debugkit.runtimes.base import HELPER_PATH, ExecSession
from debugkit.runtimes.execution import BoundedCapture
from debugkit.session.progress import Progress
from debugkit.session.tarsink import TarSink

TARGET_ROOT = "/proc/1/root"
SIDECAR_ROOT = "/"
SCHEMES = ("docker://", "podman://", "k8s://")
# The helper's exit codes (toolbox-image/helper): what each means here.
HELPER_NOT_FOUND, HELPER_FORBIDDEN, HELPER_NOT_DIR, HELPER_EXISTS, HELPER_SPECIAL = 2, 3, 4, 5, 6


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

def remote_stat(session: ExecSession, root: str, path: str, *, follow: bool = False) -> dict:
    """The helper's stat of PATH inside ROOT (a final symlink unfollowed unless `follow`)."""
    argv = [HELPER_PATH, "stat", "--root", root] + (["--follow"] if follow else []) + [path]
    result = session.exec(argv, timeout=30, max_output=MAX_STAT)
    if result.exit_code != 0:
        detail = last_line(result.stderr) or f"exit {result.exit_code}"
        if result.exit_code == HELPER_FORBIDDEN or "permission denied" in detail:
            return {"path": path, "exists": False, "error": "permission denied", "root": True}
        raise DebugkitError(f"cp: cannot examine {safe(path)} in the sidecar: {safe(detail)}")
    return parse_stat(result.stdout, path, truncated=result.truncated)


MAX_STAT = 64 << 10   # the helper's stat line: a path and a link target of PATH_MAX each, JSON-escaped
STAT_TYPES = ("file", "dir", "symlink", "other")
_OCTAL_MODE = re.compile(r"[0-7]{1,6}", re.ASCII)


def parse_stat(data: bytes, path: str, *, truncated: bool = False) -> dict:
    """The helper's stat line, checked as hostile input (the target can write into the
    helper's output): bounded, one JSON object of the shape the helper writes, with the
    right types; only the fields used are kept, and `path` is ours, not theirs."""
    def unusable(why: str) -> DebugkitError:
        return DebugkitError(f"cp: the sidecar's answer about {safe(path)} is unusable: {why}")

    if truncated or len(data) > MAX_STAT:
        raise unusable(f"more than {MAX_STAT} bytes")
    try:
        info = json.loads(data)
    except (ValueError, RecursionError):
        raise unusable("not JSON") from None
    if not isinstance(info, dict) or not isinstance(info.get("exists"), bool):
        raise unusable("not a stat object")
    if not info["exists"]:
        error = info.get("error")
        if not isinstance(error, str):
            raise unusable("no error for a missing path")
        return {"path": path, "exists": False, "error": error[:200]}
    out = {"path": path, "exists": True}
    for key, kind, check in (("type", str, lambda v: v in STAT_TYPES),
                             ("mode", str, lambda v: _OCTAL_MODE.fullmatch(v) is not None),
                             ("uid", int, lambda v: 0 <= v < 1 << 32), ("gid", int, lambda v: 0 <= v < 1 << 32),
                             ("size", int, lambda v: 0 <= v < 1 << 63)):
        value = info.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or not check(value):
            raise unusable(f"a wrong {key}")
        out[key] = value
    link = info.get("link")
    if out["type"] == "symlink":
        if not isinstance(link, str) or len(link) > 4096:
            raise unusable("a wrong link")
        out["link"] = link
    return out


def last_line(stderr: bytes) -> str:
    """The helper's last line on stderr (its error), without its prefix."""
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1].removeprefix("debugkit-helper: ") if lines else ""


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
    detail = last_line(stderr)
    shown = safe(detail or path)
    if code == HELPER_NOT_FOUND:
        return PathNotFound(f"cp: no such file or directory in {where}: {safe(path)}")
    if code == HELPER_FORBIDDEN:
        failed = _FAILED_PATH.match(detail)
        return forbidden(session, failed.group(1) if failed else path, where=where, writing=writing, root=root)
    if code == HELPER_NOT_DIR:
        return NotADirectory(f"cp: {where}: {shown}")
    if code == HELPER_EXISTS:
        return DestinationExists(f"cp: {where}: {shown}", hint="pass --force to replace it")
    if code == HELPER_SPECIAL:
        return SpecialFile(f"cp: {where}: {shown}", hint="cp copies regular files, directories and symlinks")
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
    that exists (without --force), one that is not a regular file, a directory or a
    symlink (even with --force), or a missing directory costs no sidecar."""
    path = remote_path(remote)
    name = posixpath.basename(path) or "root"
    dest = Path(local)
    if local.endswith("/"):
        # A trailing slash names a directory, through a symlink too (as `cp` and `ls` take it).
        if not os.path.isdir(local):
            raise (NotADirectory if os.path.lexists(local.rstrip("/") or "/") else PathNotFound)(
                f"cp: {safe(local)} is not a local directory")
        dest = dest / name
    elif dest.is_dir() and not dest.is_symlink():
        dest = dest / name
    if not dest.parent.is_dir():
        raise PathNotFound(f"cp: the local directory {safe(dest.parent)} does not exist")
    check_local_dest(dest)
    return OutPlan(path, dest, force, os.path.lexists(dest))


def special_kind(mode: int) -> str | None:
    """What a device, FIFO or socket is, for a message; None for what cp copies."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
        return None
    return ("a FIFO" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode) else
            "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "a special file")


def check_local_dest(dest: Path, *, dir_fd: int | None = None) -> None:
    """The rule `--report` follows: write only to a regular file or a new path (or, for cp,
    a directory or a symlink, replaced as a whole). A device, FIFO or socket is never
    replaced, even with --force: `cp T:/x /dev/null` as root would replace the device."""
    try:
        mode = os.lstat(dest.name if dir_fd is not None else dest, dir_fd=dir_fd).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise local_error(exc, "examine", dest) from None
    kind = special_kind(mode)
    if kind:
        raise SpecialFile(f"cp: {safe(dest)} is {kind}: cp writes only to a regular file, a directory or a new path, "
                          f"even with --force")


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
        if info.get("type") not in ("dir", "file", "symlink"):
            raise SpecialFile(f"cp: {safe(plan.path)} in {where} is not a regular file, a directory or a symlink",
                              hint="cp copies regular files, directories and symlinks")
        _check_dest(dest, "dir" if info.get("type") == "dir" else "file", plan.path)
        raise DestinationExists(f"cp: {safe(dest)} exists", hint="pass --force to replace it")
    with _Workspace(dest, replacing_dir=plan.exists and dest.is_dir() and not dest.is_symlink()) as work:
        meter = Progress(None, enabled=progress)
        sink = TarSink(work.staging, meter, hashing=checksum,
                       check_top=lambda kind: _check_dest(dest, kind, plan.path))
        try:
            errors = BoundedCapture()
            try:
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


class _Workspace:
    """The staging directory beside the destination (`.debugkit-cp-XXXXXXXX`: a fixed
    short name, so any destination name within NAME_MAX fits), and, when an existing
    directory is to be replaced, an empty directory of an unpredictable name
    (`.debugkit-old-XXXXXXXX`) that the old one is renamed onto. Both are made with
    mkdtemp (mode 0700) before any byte is transferred, so nobody can have prepared them,
    and a directory where they cannot be made fails before the transfer, not after it."""

    def __init__(self, dest: Path, *, replacing_dir: bool):
        self.dest = dest
        self.replacing_dir = replacing_dir
        self.parent_fd = -1
        self.staging: Path | None = None
        self.aside: str | None = None

    def __enter__(self) -> "_Workspace":
        parent = self.dest.parent
        try:
            self.parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self.staging = Path(tempfile.mkdtemp(prefix=".debugkit-cp-", dir=parent))
            if self.replacing_dir:
                self.aside = os.path.basename(tempfile.mkdtemp(prefix=".debugkit-old-", dir=parent))
        except OSError as exc:
            self.__exit__(None, None, None)
            raise local_error(exc, "write in", parent) from None
        return self

    def replace(self, top: str, staging_fd: int) -> None:
        """Move the finished copy into place, relative to the directories' descriptors: a
        file (or symlink) at once (rename), a directory by renaming the old one onto the
        empty aside first. The destination is checked again here, just before."""
        name = self.dest.name
        source, source_fd = (top, staging_fd) if top != "." else (self.staging.name, self.parent_fd)
        check_local_dest(self.dest, dir_fd=self.parent_fd)
        try:
            old = os.lstat(name, dir_fd=self.parent_fd).st_mode
        except FileNotFoundError:
            old = 0
        try:
            if stat.S_ISDIR(old):
                if self.aside is None:  # it became a directory during the transfer
                    self.aside = os.path.basename(tempfile.mkdtemp(prefix=".debugkit-old-", dir=self.dest.parent))
                os.rename(name, self.aside, src_dir_fd=self.parent_fd, dst_dir_fd=self.parent_fd)
                try:
                    os.rename(source, name, src_dir_fd=source_fd, dst_dir_fd=self.parent_fd)
                except OSError:
                    os.rename(self.aside, name, src_dir_fd=self.parent_fd, dst_dir_fd=self.parent_fd)
                    raise
            else:
                os.rename(source, name, src_dir_fd=source_fd, dst_dir_fd=self.parent_fd)
        except OSError as exc:
            raise local_error(exc, "replace", self.dest) from None

    def __exit__(self, *exc) -> None:
        for made in (self.staging.name if self.staging else None, self.aside):
            if made:  # what is left of them: the old copy, or an interrupted one
                shutil.rmtree(self.dest.parent / made, ignore_errors=True)
        if self.parent_fd >= 0:
            os.close(self.parent_fd)
            self.parent_fd = -1


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


# -- local -> target ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InPlan:
    """What a copy into the target sends, checked before any sidecar exists."""

    local: str     # as typed: a trailing slash follows a symlink to a directory
    name: str      # the name it gets in the target
    kind: str      # "file", "dir" or "symlink"


def plan_in(local: str) -> InPlan:
    """The local side of a copy in: a regular file, a directory or a symlink (sent as a
    link). A trailing slash names a directory, through a symlink too. A FIFO, a device
    or a socket is refused (87): reading /dev/zero or a FIFO is no copy."""
    try:
        st = os.stat(local) if local.endswith("/") else os.lstat(local)
    except FileNotFoundError:
        raise PathNotFound(f"cp: no such local file or directory: {safe(local)}") from None
    except NotADirectoryError:
        raise NotADirectory(f"cp: {safe(local)} is not a local directory") from None
    except OSError as exc:
        raise local_error(exc, "read", local) from None
    kind = special_kind(st.st_mode)
    if kind:
        raise SpecialFile(f"cp: {safe(local)} is {kind}: cp copies regular files, directories and symlinks")
    if local.endswith("/") and not stat.S_ISDIR(st.st_mode):
        raise NotADirectory(f"cp: {safe(local)} is not a local directory")
    name = Path(local).name or Path(os.path.abspath(local)).name
    return InPlan(local, name, "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode)
                  else "file")


def copy_in(session: ExecSession, plan: InPlan, remote: str, *, force: bool, progress: bool,
            checksum: bool = False) -> Copied:
    """Writes go into the target's filesystem with the target's user's rights, no more."""
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
    read_fd, write_fd = os.pipe()
    writer_error: list[BaseException] = []
    counted = [0]
    skipped: list[str] = []

    def write_archive() -> None:
        try:
            with os.fdopen(write_fd, "wb", buffering=1 << 20) as sink:
                with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1 << 20) as tar:
                    counted[0] = _add(tar, local, name, meter, sums, checksum, skipped)
        except BrokenPipeError:
            pass  # the helper stopped reading: its exit code says why
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            writer_error.append(exc)

    worker = threading.Thread(target=write_archive, daemon=True, name="debugkit-cp")
    worker.start()
    errors = BoundedCapture()
    argv = [HELPER_PATH, "tar-in", "--root", TARGET_ROOT] + (["--force"] if force else []) + [dest_dir]
    try:
        code = session.exec_io(argv, stdin_fd=read_fd, stdout=BoundedCapture(), stderr=errors)
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
    warnings = helper_warnings(errors.getvalue()) + _skipped_warning(skipped)
    return Copied(posixpath.join(dest_dir, name), sums, meter.done, counted[0], warnings)


def _add(tar: tarfile.TarFile, source: str, arcname: str, meter: Progress, sums: list, checksum: bool,
         skipped: list) -> int:
    """The local tree as a tar: files, directories and symlinks (as links, never followed;
    the top one too, unless it is named with a trailing slash); the number of regular
    files. Sockets, FIFOs and devices are skipped (and listed), as the helper does."""
    info = tar.gettarinfo(source, arcname=arcname)
    if info is None:  # a socket: tarfile has no type for it
        skipped.append(source)
        return 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.isfile():
        fh = _open_regular(source)
        if fh is None:  # it became something else since it was examined
            skipped.append(source)
            return 0
        with fh:
            info.size = os.fstat(fh.fileno()).st_size
            digest = hashlib.sha256() if checksum else None
            tar.addfile(info, _Counting(fh, digest, meter))
        if digest is not None:
            sums.append((digest.hexdigest(), arcname))
        return 1
    if info.isdir():
        tar.addfile(info)
        return sum(_add(tar, os.path.join(source, child), f"{arcname}/{child}", meter, sums, checksum, skipped)
                   for child in sorted(os.listdir(source)))
    if info.issym():
        tar.addfile(info)
    else:
        skipped.append(source)
    return 0


def _open_regular(path: str):
    """PATH opened for reading only if it is (still) a regular file: never a FIFO that
    would block the open, never through a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _skipped_warning(skipped: list[str]) -> list[str]:
    if not skipped:
        return []
    shown = ", ".join(safe(p) for p in skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
    return [f"not copied: {len(skipped)} local socket(s), device(s) or FIFO(s): {shown}"]


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
