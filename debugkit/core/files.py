"""Files debugkit reads because a person names them, and the one directory it keeps state in."""
from __future__ import annotations

import os
import stat
from pathlib import Path


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


def state_home() -> Path:
    """$XDG_STATE_HOME, else ~/.local/state (the XDG base directory rule)."""
    return Path(os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state"))


def state_dir() -> Path:
    """$XDG_STATE_HOME/debugkit, created 0700 by whichever command needs it first (the audit
    log, a toolbox build log, the record of kept-alive sidecars). One made wider by an older
    debugkit is narrowed to 0700 when it is ours."""
    path = state_home() / "debugkit"
    private_dir(path)
    return path


def private_dir(path: Path) -> None:
    """`path` as a directory only its owner may enter: created 0700 (parents as the umask
    says), or narrowed to 0700 when it exists, belongs to us and is wider. Raises OSError."""
    try:
        path.mkdir(mode=0o700)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(20, "not a directory", str(path))
    if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)


def write_private_json(path: Path, value) -> None:
    """`value` as JSON at `path`, atomically (a temporary file renamed over it) and 0600.
    Raises OSError; leaves no temporary file behind."""
    import json

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(value, fh)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def prune_json_files(directory: Path, *, keep: Path, max_age_s: float) -> None:
    """Remove the *.json files of `directory` untouched for `max_age_s` (best effort; never
    `keep`), so that a directory of records does not grow for ever."""
    import time

    limit = time.time() - max_age_s
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.name == keep.name or not entry.name.endswith(".json"):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < limit:
                os.unlink(entry.path)
        except OSError:
            pass
