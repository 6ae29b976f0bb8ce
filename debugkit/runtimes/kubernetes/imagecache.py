"""What debugkit read about an image's user, kept between commands.

Reading it costs every first attach 70-150 ms: an image inspect and export from the local
engine, a throwaway container, /etc/passwd and /etc/group streamed out (or the same from a
registry). The facts are a function of the image's content alone, and the key is the
image ID the node reports, which is a digest of that content: the config digest, or a
manifest or index digest, with the node's name for a repo digest (an index resolves by
architecture). So a cached entry can never describe other content than the one the node
runs; a new image has a new ID and is read again.

One small file per key under $XDG_STATE_HOME/debugkit/image-facts/ (the state directory
is 0700, each file 0600), which holds the key itself (checked on read), the image's
User, the passwd and group entries debugkit needed, and where they were read. Failures
are not kept (a registry that was down may answer next time). An entry unused for 30 days
is removed when another is written; one that is missing, unreadable or malformed is no
entry, and the image is read again.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from debugkit.core import jsonsafe, userdb
from debugkit.core.files import prune_json_files, read_regular, state_dir, state_home, write_private_json

MAX_ENTRY_BYTES = 64 << 10
STALE_ENTRY_S = 30 * 24 * 3600
DIRECTORY = "image-facts"


@dataclass(frozen=True)
class ImageFacts:
    """What the image says about its user: the config's User, the entries of its
    /etc/passwd and /etc/group that resolving it needs (None, with `etc_error`, when those
    files are past debugkit's bounds), and where it was all read."""

    user: str
    etc: userdb.UserDb | None
    via: str
    etc_error: str | None = None


def content_addressed(image_id: str) -> bool:
    """Whether the node's image ID is a digest of the image's content (`sha256:HEX`,
    `REPO@sha256:HEX`): only then may what was read under it be kept."""
    import re

    return re.search(r"(^|@)sha256:[0-9a-f]{64}$", image_id.removeprefix("docker-pullable://")) is not None


def _path(key: tuple, *, create: bool) -> tuple[Path, str]:
    import json

    from debugkit.core.digest import hex_digest

    text = json.dumps(list(key))
    name = hex_digest(text.encode())[:32] + ".json"
    if create:
        directory = state_dir() / DIRECTORY  # the state directory made 0700 first
        directory.mkdir(mode=0o700, exist_ok=True)
    else:
        directory = state_home() / "debugkit" / DIRECTORY
    return directory / name, text


def recall(key: tuple) -> ImageFacts | None:
    """The ImageFacts kept for `key`, or None."""
    path, text = _path(key, create=False)
    try:
        data = jsonsafe.loads(read_regular(path, MAX_ENTRY_BYTES), max_bytes=MAX_ENTRY_BYTES)
        if data["key"] != text:
            return None
        etc = data["etc"]
        facts = ImageFacts(_str(data["user"]), None if etc is None else _userdb(etc),
                           f"{_str(data['via'])} (kept from an earlier read of this image ID)",
                           None if data["etc_error"] is None else _str(data["etc_error"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.utime(path)  # in use: not stale
    except OSError:
        pass
    return facts


def remember(key: tuple, facts: ImageFacts) -> None:
    """Keep `facts` for `key` (best effort: the next command reads the image again)."""
    etc = facts.etc
    value = {"key": _path(key, create=False)[1], "user": facts.user, "via": facts.via, "etc_error": facts.etc_error,
             "etc": None if etc is None else {
                 "passwd": [[e.name, e.uid, e.gid, e.home] for e in etc.passwd],
                 "group": [[g.name, g.gid, list(g.members)] for g in etc.group],
                 "has_passwd": etc.has_passwd, "has_group": etc.has_group,
                 "wanted": {"names": sorted(etc.wanted.names), "uids": sorted(etc.wanted.uids),
                            "groups": sorted(etc.wanted.groups), "gids": sorted(etc.wanted.gids),
                            "everything": etc.wanted.everything}}}
    try:
        path, _ = _path(key, create=True)
        write_private_json(path, value)
        prune_json_files(path.parent, keep=path, max_age_s=STALE_ENTRY_S)
    except OSError:
        pass


def _str(value) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _int(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("not an integer")
    return value


def _bool(value) -> bool:
    if not isinstance(value, bool):
        raise TypeError("not a boolean")
    return value


def _userdb(etc: dict) -> userdb.UserDb:
    wanted = etc["wanted"]
    return userdb.UserDb(
        passwd=tuple(userdb.PasswdEntry(_str(n), _int(u), _int(g), _str(h)) for n, u, g, h in etc["passwd"]),
        group=tuple(userdb.GroupEntry(_str(n), _int(g), tuple(_str(m) for m in members))
                    for n, g, members in etc["group"]),
        has_passwd=_bool(etc["has_passwd"]), has_group=_bool(etc["has_group"]),
        wanted=userdb.Wanted(frozenset(_str(n) for n in wanted["names"]), frozenset(_int(u) for u in wanted["uids"]),
                             frozenset(_str(g) for g in wanted["groups"]),
                             frozenset(_int(g) for g in wanted["gids"]), _bool(wanted["everything"])))
