"""The host directories of port-forward's socket relay (relaysock.py): made private,
removed with the session, collected by gc when a killed CLI left one.

    ROOT/                 0700, the operator's: nobody else on this machine gets past it
      <session id>/       0700, the operator's
        sock/             1777: bind-mounted into the sidecar at RELAY_MOUNT

The inner directory is world-writable because the helper that creates the sockets in it
runs as the target's UID (the sidecar's user, never root, no capabilities), which is in
general not the operator's, and the CLI can give it no other way in (chown needs root).
That opens nothing: on this machine only the operator can pass the 0700 parents, and in
the sidecar's mount namespace the directory is the sidecar's alone. The sticky bit keeps
the sockets debugkit itself creates there (cp's) from being renamed or removed by the
target's user; what that user can do to the helper's own sockets (replace one) is answered
by the secret every connection starts with (relaysock.py, copysock.py), and gains nothing
the user does not have already: a port of the target's to answer on, files of its own to
put in an archive.

The directory's name is the session's ID, as in the audit log and the sidecar's labels:
gc removes one whose session has ended or whose CLI is gone.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from pathlib import Path

INNER = "sock"


def relay_root() -> Path:
    """$XDG_RUNTIME_DIR/debugkit/relay (a tmpfs of the operator's, emptied at logout) when
    it is set and is the operator's own, ~/.cache/debugkit/relay otherwise."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        with contextlib.suppress(OSError):
            info = os.stat(runtime_dir)
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
                return Path(runtime_dir) / "debugkit" / "relay"
    return Path(os.path.expanduser("~")) / ".cache" / "debugkit" / "relay"


def _private_dir(path: Path) -> None:
    """path exists, is a real directory of the operator's and is 0700 (made or checked)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise OSError(f"{path} is not a directory of this user's")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)


def inner_path(session_id: str) -> str:
    """Where make() puts the session's inner directory (nothing is made)."""
    return str(relay_root() / session_id / INNER)


def make(session_id: str) -> Path:
    """The session's inner directory (to bind-mount), made private as described above."""
    root = relay_root()
    root.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _private_dir(root)
    session = root / session_id
    os.mkdir(session, 0o700)
    inner = session / INNER
    os.mkdir(inner)
    os.chmod(inner, 0o1777)  # see the module's docstring: writable by the target's UID, sticky
    return inner


class Reachable:
    """Sockets in the inner directory by a short name: a unix socket's path is at most 107
    bytes, and a home directory can make the full one longer. /proc/self/fd/N/NAME goes
    through a descriptor of the directory instead (which also stays this directory, whatever
    happens to the path)."""

    def __init__(self, inner: Path):
        self.fd = os.open(inner, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def path(self, name: str) -> str:
        return f"/proc/self/fd/{self.fd}/{name}"

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def remove(inner: Path) -> None:
    """The session's directory and whatever is in it. rmtree does not follow symlinks."""
    shutil.rmtree(inner.parent, ignore_errors=True)


def leftovers(*, alive, older_than_s: int) -> list[tuple[str, Path, str]]:
    """(session ID, directory, why) of every relay directory whose session is over:
    `alive(session_id)` says True (its CLI runs), False (ended or its CLI is gone) or
    None (the audit log does not know it: then only one older than `older_than_s`)."""
    root = relay_root()
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    out = []
    now = time.time()
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        state = alive(entry.name)
        if state is False:
            out.append((entry.name, Path(entry.path), "its session is over"))
        elif state is None:
            with contextlib.suppress(OSError):
                age = now - entry.stat(follow_symlinks=False).st_mtime
                if age >= older_than_s:
                    out.append((entry.name, Path(entry.path), f"older than {older_than_s}s, no audit record"))
    return out
