"""Writing a report file safely: never over a device, a FIFO, a symlink or /proc.

The path is checked before any step runs, so a bad --report costs no sidecar. The file is
written to a temporary name in the same directory and renamed over the path: a reader
sees the old file or the whole new one. A new file honours the umask; an existing one
keeps its mode, because a report carries --var values and command output.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from debugkit.core.errors import CannotWrite, InvalidInput

FORBIDDEN_TREES = ("/proc", "/sys", "/dev")


def report_format_for(path: str) -> str:
    """--report PATH: JSON for *.json, Markdown otherwise."""
    return "json" if path.lower().endswith(".json") else "markdown"


def check_report_path(path: str) -> None:
    """Refuse a --report PATH that is not a new path or an existing regular file."""
    if not path:
        raise InvalidInput("--report must not be empty: give a file name")
    if path.endswith("/"):
        raise InvalidInput(f"--report {path} names a directory: give a file name")
    target = Path(path)
    real = os.path.realpath(target.parent if str(target.parent) else ".")
    if any(real == tree or real.startswith(tree + "/") for tree in FORBIDDEN_TREES):
        raise InvalidInput(f"--report {path}: not a place for a report ({real} is a kernel file system)")
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise InvalidInput(f"--report {path}: {exc.strerror or exc}") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise InvalidInput(f"--report {path} is a symbolic link: give the path of the file itself")
        if stat.S_ISDIR(st.st_mode):
            raise InvalidInput(f"--report {path} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"--report {path} is not a regular file (a device, FIFO or socket)")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise InvalidInput(f"--report {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InvalidInput(f"--report {path}: directory {directory} is not writable")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: str, content: str) -> None:
    """Write to a temporary file next to PATH, then rename it over PATH."""
    check_report_path(path)
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        mode = stat.S_IMODE(os.lstat(target).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~current_umask()
    except OSError as exc:
        raise InvalidInput(f"cannot write the report to {path}: {exc.strerror or exc}") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise InvalidInput(f"cannot write the report to {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:  # ENOSPC, EDQUOT, EIO: the path was fine, the disk was not
        _unlink(tmp)
        raise CannotWrite(f"cannot write the report to {path}: {exc.strerror or exc}") from None
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
