"""Reading a file that a person names, with a size cap."""
from __future__ import annotations

import os


def read_capped(path: str | os.PathLike, max_bytes: int) -> bytes | None:
    """At most max_bytes + 1 bytes of path, so that the caller can tell a file larger than
    it accepts (a FIFO or a /proc file lies about its size); None when there is no such
    file. Any other OSError (a directory, no permission) is the caller's to word."""
    try:
        with open(path, "rb") as fh:
            return fh.read(max_bytes + 1)
    except FileNotFoundError:
        return None


class NotRegularFile(OSError):
    """A path that names a FIFO, a device, a socket or a directory where a file is needed."""


class FileTooLarge(OSError):
    """A file larger than its reader accepts."""


def _kind(mode: int) -> str:
    import stat

    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The whole content of a regular file of at most max_bytes. Never blocks on a FIFO and
    never reads a device: the file is opened non-blocking and checked with fstat before a
    byte is read. Raises FileNotFoundError, NotRegularFile, FileTooLarge or another OSError;
    each names the path, and strerror says what is wrong in words."""
    import stat

    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _kind(mode)
            raise NotRegularFile(0, kind if kind.startswith("not") else f"is {kind}, not a regular file", str(path))
        os.set_blocking(fd, True)
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise FileTooLarge(0, f"larger than {max_bytes} bytes", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)
