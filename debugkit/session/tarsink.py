"""The helper's tar stream out of a target, parsed as it arrives and written under a
staging directory (`debugkit cp` out of a target; see copy.py)."""
from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import tarfile
from pathlib import Path

from debugkit.core.errors import DebugkitError
from debugkit.core.escape import safe
from debugkit.session.progress import Progress

BLOCK = tarfile.BLOCKSIZE
MAX_PAX = 1 << 20   # an extended header larger than this is not one the helper writes


class TarSink:
    """The helper's tar stream, parsed as it arrives (`write`, called with each piece of
    the exec's stdout) and written under a fresh staging directory: no thread, no pipe,
    one copy of each byte into its file. Only plain files, directories and symlinks
    (ustar with PAX or GNU long names, as Go's archive/tar writes); no absolute names, no
    `..`, one top-level entry, nothing below a symlink (so nothing is ever written through
    one); setuid and setgid bits dropped. Any fault is a DebugkitError raised from write()."""

    def __init__(self, staging: Path, meter: Progress, *, hashing: bool = False, check_top=None):
        self.staging = staging
        self.meter = meter
        self.hashing = hashing
        self.check_top = check_top
        self.top = ""
        self.files = 0
        self.ended = False                  # the end-of-archive block arrived
        self._pending = bytearray()         # a header, or a PAX/GNU record, being assembled
        self._want = BLOCK                  # bytes _pending must reach
        self._meta: tuple | None = None     # ("pax" | "gnu-name" | "gnu-link", padded size, size)
        self._pax: dict[str, str] = {}      # for the next header
        self._left = 0                      # bytes of the current file still to come
        self._pad = 0                       # padding after them
        self._fd = -1
        self._member: tuple | None = None   # (path, mode, mtime, digest or None, name)
        self._links: set[str] = set()
        self._sums: list[tuple[str, str]] = []
        self._dirs: list[tuple[Path, int, float]] = []

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
        digest = self._member[3]
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
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
            if info.size > MAX_PAX:
                raise DebugkitError(f"cp: refused an extended header of {info.size} bytes")
            kind = {tarfile.XHDTYPE: "pax", tarfile.XGLTYPE: "global", tarfile.GNUTYPE_LONGNAME: "gnu-name",
                    tarfile.GNUTYPE_LONGLINK: "gnu-link"}[info.type]
            padded = -(-info.size // BLOCK) * BLOCK
            if padded:
                self._meta, self._want = (kind, info.size), padded
            return
        for key, value in self._pax.items():
            if key == "path":
                info.name = value
            elif key == "linkpath":
                info.linkname = value
            elif key == "size":
                info.size = int(value)
            elif key == "mtime":
                info.mtime = float(value)
        self._pax = {}
        self._entry(info)

    def _record(self, block: bytes) -> None:
        kind, size = self._meta
        self._meta = None
        data = block[:size]
        if kind == "gnu-name":
            self._pax["path"] = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif kind == "gnu-link":
            self._pax["linkpath"] = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif kind == "pax":
            pos = 0
            while pos < len(data) and data[pos:pos + 1] != b"\0":
                space = data.index(b" ", pos)
                length = int(data[pos:space])
                if length <= 0:
                    raise ValueError("a PAX record of no length")
                key, _, value = data[space + 1:pos + length - 1].partition(b"=")
                self._pax[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
                pos += length

    def _entry(self, member: tarfile.TarInfo) -> None:
        name = posixpath.normpath(member.name)
        if name.startswith("/") or name == ".." or name.startswith("../"):
            raise DebugkitError(f"cp: refused an archive entry outside the copy: {safe(member.name)}")
        parts = name.split("/")
        kind = "dir" if member.isdir() else "symlink" if member.issym() else "file" if member.isfile() else "other"
        if not self.top:
            self.top = parts[0]
            if self.check_top is not None:
                self.check_top(kind)
        elif parts[0] != self.top and self.top != ".":
            raise DebugkitError(f"cp: refused a second top-level archive entry: {safe(member.name)}")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in self._links:
                raise DebugkitError(f"cp: refused an archive entry below a symlink: {safe(member.name)}")
        path = self.staging / name
        mode = member.mode & 0o1777  # no setuid or setgid on this machine
        size = member.size if member.isreg() else 0
        if member.isdir():
            path.mkdir(mode=0o700, exist_ok=True)
            self._dirs.append((path, mode | 0o700, member.mtime))
        elif member.issym():
            os.symlink(member.linkname, path)
            os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
            self._links.add(name)
        elif member.isreg():
            if self.meter.total is None and kind == "file" and name == self.top:
                self.meter.total = size
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            self._member = (path, mode, member.mtime, hashlib.sha256() if self.hashing else None, name)
            self._left = size
            if not size:
                self._end_file()
        # devices, FIFOs and sockets are not copied (the helper does not send them); their
        # data, if any, is skipped
        self._pad = (-size) % BLOCK if member.isreg() else 0
        if not member.isreg() and member.size and not member.isdir() and not member.issym():
            self._pad = -(-member.size // BLOCK) * BLOCK

    def _end_file(self) -> None:
        path, mode, mtime, digest, name = self._member
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
        mtimes, innermost first."""
        if self._left or self._meta is not None or self._pending or not self.top:
            self._abort()
            raise DebugkitError("cp: the archive from the sidecar ended early")
        for directory, mode, mtime in reversed(self._dirs):
            os.chmod(directory, mode)
            os.utime(directory, (mtime, mtime))

    def sums(self, final_top: str) -> list[tuple[str, str]]:
        if self.top == ".":
            return [(digest, f"{final_top}/{name}") for digest, name in self._sums]
        return [(digest, final_top + name[len(self.top):]) for digest, name in self._sums]
