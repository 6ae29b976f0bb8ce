"""The helper's tar stream out of a target, parsed as it arrives and written under a
staging directory (`debugkit cp` out of a target; see copy.py).

Every byte of it is hostile. The target's processes run as the sidecar's user, so a
compromised target can write its own archive into the helper's output; and debugkit is
often run as root. So the parser trusts nothing that it has not checked:

- it works relative to directory file descriptors, each opened with O_NOFOLLOW from the
  staging directory down: no path is ever resolved through a symlink, whoever made it
  (the archive, or anyone who can write in the staging directory);
- it creates only regular files (O_EXCL), directories and symlinks, and changes modes
  and times only through descriptors of what it created: nothing outside the staging
  directory is created, changed, chmodded or followed;
- names are relative, without `..`, under one top-level entry, and an entry is never
  created over another one (a directory may repeat; nothing goes below a symlink);
- every number is bounded: sizes (no negative ones), extended headers, names, link
  targets, depth and the number of entries. Hard links, devices, FIFOs and anything
  else the helper never sends are refused.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import tarfile
from pathlib import Path

from debugkit.core.errors import DebugkitError
from debugkit.core.escape import safe
from debugkit.session.progress import Progress

BLOCK = tarfile.BLOCKSIZE
MAX_PAX = 1 << 20          # an extended header larger than this is not one the helper writes
MAX_NAME = 4096            # PATH_MAX: a name, or a symlink's target, in bytes
MAX_DEPTH = 256            # directories below the top-level entry
MAX_ENTRIES = 2_000_000    # a whole distribution's root has about 100 000
MAX_SIZE = (1 << 63) - 1   # what a tar header (or Go's archive/tar) can say at most
MAX_MTIME = 1 << 40        # seconds either side of 1970: beyond any clock, within every filesystem's range
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
META = {tarfile.XHDTYPE: "pax", tarfile.XGLTYPE: "global", tarfile.GNUTYPE_LONGNAME: "gnu-name",
        tarfile.GNUTYPE_LONGLINK: "gnu-link"}
KINDS = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink"}
REFUSED_KINDS = {tarfile.LNKTYPE: "a hard link", tarfile.CHRTYPE: "a character device",
                 tarfile.BLKTYPE: "a block device", tarfile.FIFOTYPE: "a FIFO"}
PAX_KEYS = ("path", "linkpath", "size", "mtime")   # the others are not needed (and not kept)


class Refused(DebugkitError):
    """An archive entry the parser will not write: the archive is not one the helper makes."""


class TarSink:
    """The helper's tar stream, parsed as it arrives (`write`, called with each piece of
    the exec's stdout) and written under a fresh staging directory: no thread, no pipe,
    one copy of each byte into its file. Only plain files, directories and symlinks
    (ustar with PAX or GNU long names, as Go's archive/tar writes); setuid and setgid
    bits dropped. Any fault is a DebugkitError raised from write() or close(); release()
    closes the descriptors, whatever happened."""

    def __init__(self, staging: Path, meter: Progress, *, hashing: bool = False, check_top=None):
        self.staging = staging
        self.meter = meter
        self.hashing = hashing
        self.check_top = check_top
        self.top = ""
        self.files = 0
        self.entries = 0
        self.ended = False                  # the end-of-archive block arrived
        self.root_fd = os.open(staging, DIR_FLAGS)
        self._chain: list[tuple[str, int]] = []   # open directories from the root down (the last entry's parent)
        self._pending = bytearray()         # a header, or a PAX/GNU record, being assembled
        self._want = BLOCK                  # bytes _pending must reach
        self._meta: tuple | None = None     # (kind, size) of the extended header being assembled
        self._pax: dict[str, str] = {}      # for the next header
        self._left = 0                      # bytes of the current file still to come
        self._pad = 0                       # padding after them
        self._fd = -1
        self._member: tuple | None = None   # (mode, mtime, digest or None, name)
        self._sums: list[tuple[str, str]] = []
        self._dirs: list[tuple[tuple[str, ...], int, float]] = []

    # -- the stream -------------------------------------------------------------------------

    def write(self, data) -> None:
        try:
            self._feed(memoryview(data).cast("B"))
        except DebugkitError:
            self._abort()
            raise
        except OSError as exc:
            self._abort()
            raise DebugkitError(f"cp: cannot write the copy under {safe(self.staging.parent)}: "
                                f"{exc.strerror or exc}") from None
        except Exception as exc:  # noqa: BLE001 - a malformed archive, in any of the ways tarfile says it
            self._abort()
            raise DebugkitError(f"cp: the archive from the sidecar is unusable: {safe(exc)}") from None

    def flush(self) -> None:
        pass

    def _feed(self, view: memoryview) -> None:
        pos, end = 0, len(view)
        while pos < end:
            if self._left:
                n = min(self._left, end - pos)
                self._data(view[pos:pos + n])
                pos += n
                continue
            if self._pad:
                n = min(self._pad, end - pos)
                self._pad -= n
                pos += n
                continue
            if self.ended:
                return  # zero blocks after the end
            n = min(self._want - len(self._pending), end - pos)
            self._pending += view[pos:pos + n]
            pos += n
            if len(self._pending) == self._want:
                block, self._pending = bytes(self._pending), bytearray()
                self._want = BLOCK
                if self._meta is not None:
                    self._record(block)
                else:
                    self._header(block)

    def _data(self, chunk: memoryview) -> None:
        count = len(chunk)
        self._left -= count
        digest = self._member[2]
        if digest is not None:
            digest.update(chunk)
        while chunk:
            chunk = chunk[os.write(self._fd, chunk):]
        self.meter.add(count)
        if not self._left:
            self._end_file()

    def _header(self, block: bytes) -> None:
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.EOFHeaderError:
            self.ended = True
            return
        if info.type in META:
            if not 0 <= info.size <= MAX_PAX:
                raise Refused(f"cp: refused an extended header of {info.size} bytes")
            padded = -(-info.size // BLOCK) * BLOCK
            if padded:
                self._meta, self._want = (META[info.type], info.size), padded
            return
        pax, self._pax = self._pax, {}
        name = pax.get("path", info.name)
        linkname = pax.get("linkpath", info.linkname)
        size = _number(pax["size"], int) if "size" in pax else info.size
        mtime = _number(pax["mtime"], float) if "mtime" in pax else info.mtime
        self._entry(info.type, name, linkname, size, mtime, info.mode)

    def _record(self, block: bytes) -> None:
        kind, size = self._meta
        self._meta = None
        data = block[:size]
        if kind == "gnu-name":
            self._pax["path"] = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif kind == "gnu-link":
            self._pax["linkpath"] = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif kind == "pax":
            pos = 0
            while pos < len(data) and data[pos:pos + 1] != b"\0":
                space = data.index(b" ", pos, pos + 20)
                length = int(data[pos:space])
                if not space - pos < length <= len(data) - pos:
                    raise Refused("cp: refused a PAX record whose length does not fit its header")
                key, _, value = data[space + 1:pos + length - 1].partition(b"=")
                key = key.decode("utf-8", "surrogateescape")
                if key in PAX_KEYS:
                    self._pax[key] = value.decode("utf-8", "surrogateescape")
                pos += length
        # a global header ("global") only sets defaults for what follows: the helper writes none

    # -- one entry ---------------------------------------------------------------------------

    def _entry(self, typeflag: bytes, raw_name: str, linkname: str, size: int, mtime: float, mode: int) -> None:
        kind = KINDS.get(typeflag)
        if kind is None:
            what = REFUSED_KINDS.get(typeflag, f"type {typeflag!r}")
            raise Refused(f"cp: refused an archive entry that is {what}: {safe(raw_name)}")
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            raise Refused(f"cp: refused an archive of more than {MAX_ENTRIES} entries")
        if not 0 <= size <= MAX_SIZE or (kind != "file" and size):
            raise Refused(f"cp: refused an archive entry with a size of {size}: {safe(raw_name)}")
        if not -MAX_MTIME <= mtime <= MAX_MTIME:
            raise Refused(f"cp: refused an archive entry with a time of {mtime}: {safe(raw_name)}")
        parts = self._parts(raw_name)
        if kind == "symlink" and not 0 < len(linkname.encode("utf-8", "surrogateescape")) <= MAX_NAME \
                or "\0" in linkname:
            raise Refused(f"cp: refused a symlink with an unusable target: {safe(raw_name)}")
        if not self.top:
            self.top = parts[0] if parts else "."
            if self.check_top is not None:
                self.check_top(kind)
        elif (parts[:1] != [self.top]) if self.top != "." else not parts:
            raise Refused(f"cp: refused a second top-level archive entry: {safe(raw_name)}")
        inner = parts[1:] if self.top != "." else parts   # below the top-level entry
        if len(inner) > MAX_DEPTH:
            raise Refused(f"cp: refused an archive entry more than {MAX_DEPTH} directories deep: {safe(raw_name)}")
        mode &= 0o1777  # no setuid or setgid on this machine
        if not parts:   # "./": the root of a copy of `/`, which is the staging directory itself
            if kind != "dir":
                raise Refused(f"cp: refused an archive entry outside the copy: {safe(raw_name)}")
            self._dirs.append(((), mode | 0o700, mtime))
            return
        parent = self._open_dir(parts[:-1], raw_name)
        leaf = parts[-1]
        if kind == "dir":
            try:
                os.mkdir(leaf, 0o700, dir_fd=parent)
            except FileExistsError:
                # An entry may repeat a directory, never turn something else into one.
                fd = self._open_child(parent, leaf, raw_name)
                os.close(fd)
            self._dirs.append((tuple(parts), mode | 0o700, mtime))
        elif kind == "symlink":
            try:
                os.symlink(linkname, leaf, dir_fd=parent)
            except FileExistsError:
                raise Refused(f"cp: refused a second archive entry for {safe(raw_name)}") from None
            os.utime(leaf, (mtime, mtime), dir_fd=parent, follow_symlinks=False)
        else:
            if self.meter.total is None and len(parts) == 1:
                self.meter.total = size
            try:
                self._fd = os.open(leaf, FILE_FLAGS, 0o600, dir_fd=parent)
            except FileExistsError:
                raise Refused(f"cp: refused a second archive entry for {safe(raw_name)}") from None
            self._member = (mode, mtime, hashlib.sha256() if self.hashing else None, "/".join(parts))
            self._left = size
            self._pad = (-size) % BLOCK
            if not size:
                self._end_file()

    def _parts(self, raw_name: str) -> list[str]:
        """The name's components: relative, no `..`, within the bounds."""
        if "\0" in raw_name or len(raw_name.encode("utf-8", "surrogateescape")) > MAX_NAME:
            raise Refused(f"cp: refused an archive entry with an unusable name: {safe(raw_name[:200])}")
        parts = [p for p in raw_name.split("/") if p not in ("", ".")]
        if raw_name.startswith("/") or ".." in parts:
            raise Refused(f"cp: refused an archive entry outside the copy: {safe(raw_name)}")
        return parts

    def _open_dir(self, parts, raw_name: str) -> int:
        """The directory PARTS below the staging directory, opened with O_NOFOLLOW one
        component at a time (the open chain of the previous entry is reused)."""
        keep = 0
        while keep < len(self._chain) and keep < len(parts) and self._chain[keep][0] == parts[keep]:
            keep += 1
        for _name, fd in self._chain[keep:]:
            os.close(fd)
        del self._chain[keep:]
        for part in parts[keep:]:
            fd = self._open_child(self._chain[-1][1] if self._chain else self.root_fd, part, raw_name)
            self._chain.append((part, fd))
        return self._chain[-1][1] if self._chain else self.root_fd

    @staticmethod
    def _open_child(parent: int, name: str, raw_name: str) -> int:
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Refused(f"cp: refused an archive entry below (or over) a symlink or a file: "
                              f"{safe(raw_name)}") from None
            if exc.errno == errno.ENOENT:
                raise Refused(f"cp: refused an archive entry whose directory came before it in no entry: "
                              f"{safe(raw_name)}") from None
            raise

    def _end_file(self) -> None:
        mode, mtime, digest, name = self._member
        os.fchmod(self._fd, mode)
        os.utime(self._fd, (mtime, mtime))
        os.close(self._fd)
        self._fd = -1
        self._member = None
        self.files += 1
        if digest is not None:
            self._sums.append((digest.hexdigest(), name))

    def _abort(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        """After the exec: the archive must be complete; directories get their modes and
        mtimes, innermost first, each through a descriptor opened without following."""
        if self._left or self._meta is not None or self._pending or not self.top:
            self._abort()
            raise DebugkitError("cp: the archive from the sidecar ended early")
        try:
            for parts, mode, mtime in reversed(self._dirs):
                fd = self._open_dir(parts, "/".join(parts)) if parts else self.root_fd
                os.fchmod(fd, mode)
                os.utime(fd, (mtime, mtime))
        except OSError as exc:
            raise DebugkitError(f"cp: cannot write the copy under {safe(self.staging.parent)}: "
                                f"{exc.strerror or exc}") from None
        finally:
            self._open_dir((), "")

    def release(self) -> None:
        """Close every descriptor (after close(), or after a failure)."""
        self._abort()
        for _name, fd in self._chain:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._chain = []
        if self.root_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.root_fd)
            self.root_fd = -1

    def sums(self, final_top: str) -> list[tuple[str, str]]:
        if self.top == ".":
            return [(digest, f"{final_top}/{name}") for digest, name in self._sums]
        return [(digest, final_top + name[len(self.top):]) for digest, name in self._sums]


def _number(text: str, kind):
    """A PAX number; anything else (nan, inf, words) is refused."""
    try:
        value = kind(text)
    except ValueError:
        raise Refused(f"cp: refused a PAX value that is not a number: {safe(text[:40])}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise Refused(f"cp: refused a PAX value that is not a number: {safe(text[:40])}")
    return value
