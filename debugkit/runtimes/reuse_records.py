"""The local record of the kept-alive sidecars this person's debugkit started.

One small file per reuse key under $XDG_STATE_HOME/debugkit/kept-alive/ (the state
directory is 0700, each file 0600): the sidecar's name and ID, where it runs (an engine
address, a pod's UID), and, once known, the image digest it runs from. A reuse key alone
is written on the container, where anyone who can create containers can write it too;
this record is written only here, by this person's debugkit, right after it started the
sidecar (core/reuse.py decides with it). A record that is missing, unreadable or
malformed is no record: a new sidecar starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from debugkit.core import jsonsafe
from debugkit.core.files import prune_json_files, read_regular, state_dir, state_home, write_private_json

MAX_RECORD_BYTES = 4096
# A record written this long ago almost surely names a sidecar that ended itself (a kept-alive
# sidecar ends once idle for its keep-alive): writing a record removes these, so the directory
# does not grow with every target ever debugged. At worst, a sidecar reused all week long is
# not recognised any more, and the next attach starts a new one.
STALE_RECORD_S = 7 * 24 * 3600


@dataclass(frozen=True)
class Record:
    name: str
    id: str
    digest: str | None = None


def _path(runtime: str, scope: str, key: str, *, create: bool) -> Path:
    from debugkit.core.digest import hex_digest  # not hashlib: OpenSSL costs every attach 4-10 ms

    name = hex_digest("\0".join((runtime, scope, key)).encode())[:32]
    if create:
        directory = state_dir() / "kept-alive"  # the state directory made 0700 first
        directory.mkdir(mode=0o700, exist_ok=True)
    else:
        directory = state_home() / "debugkit" / "kept-alive"
    return directory / f"{name}.json"


def recall(runtime: str, scope: str, key: str) -> Record | None:
    """The sidecar this debugkit started for `key` at `scope`, or None."""
    try:
        data = jsonsafe.loads(read_regular(_path(runtime, scope, key, create=False), MAX_RECORD_BYTES),
                              max_bytes=MAX_RECORD_BYTES)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("name", "id")):
        return None
    digest = data.get("digest")
    return Record(data["name"], data["id"], digest if isinstance(digest, str) else None)


def remember(runtime: str, scope: str, key: str, record: Record) -> None:
    """Write the record (atomically, 0600). Best effort: a sidecar whose record cannot be
    written still runs this session; the next one starts its own."""
    try:
        path = _path(runtime, scope, key, create=True)
        write_private_json(path, {"name": record.name, "id": record.id, "digest": record.digest})
        prune_json_files(path.parent, keep=path, max_age_s=STALE_RECORD_S)
    except OSError:
        pass


def forget(runtime: str, scope: str, key: str, name: str) -> None:
    """Drop the record, if it is still the one for `name` (another session may have
    recorded a newer sidecar since)."""
    found = recall(runtime, scope, key)
    if found is not None and found.name == name:
        try:
            _path(runtime, scope, key, create=False).unlink()
        except OSError:
            pass
