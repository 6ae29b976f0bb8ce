"""Files debugkit reads because a person names them, and the one directory it keeps state in."""
from __future__ import annotations

import errno
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


def read_regular(path: str | os.PathLike, max_bytes: int) -> bytes:
    """At most max_bytes + 1 bytes of a regular file (so the caller can tell a larger one).
    A FIFO, a device or a directory is refused with OSError(EINVAL) before a byte is read:
    a FIFO would block, /dev/zero would never end. FileNotFoundError when it is not there."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return fh.read(max_bytes + 1)


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
