"""The local side of `debugkit cp`: what may be read and written on this machine, checked
before any sidecar starts and again just before the rename (only regular files,
directories, symlinks and new paths; never a device, FIFO or socket), the workspace
beside the destination, and the local tree as a tar for a copy in. See copy.py."""
from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from debugkit.core.errors import DebugkitError, DestinationExists, NotADirectory, PathForbidden, PathNotFound, SpecialFile
from debugkit.core.escape import safe
from debugkit.session.copyhelper import remote_path
from debugkit.session.progress import Progress


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


class Workspace:
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

    def __enter__(self) -> "Workspace":
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


def check_dest(dest: Path, kind: str, path: str) -> None:
    """Once the archive's top entry says what the source is: may it take dest's place?"""
    if not os.path.lexists(dest):
        return
    is_dir = dest.is_dir() and not dest.is_symlink()
    if kind == "dir" and not is_dir:
        raise NotADirectory(f"cp: {safe(path)} is a directory and {safe(dest)} is not")
    if kind != "dir" and is_dir:
        raise DestinationExists(f"cp: {safe(dest)} is a directory; a {kind} does not replace it, even with --force")


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


def add_tree(tar: tarfile.TarFile, source: str, arcname: str, meter: Progress, sums: list, checksum: bool,
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
        return sum(add_tree(tar, os.path.join(source, child), f"{arcname}/{child}", meter, sums, checksum, skipped)
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


def skipped_warning(skipped: list[str]) -> list[str]:
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
