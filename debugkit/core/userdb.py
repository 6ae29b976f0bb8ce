"""An image's /etc/passwd and /etc/group, read the way the container runtimes read them.

Docker 29 (moby/sys/user 0.4.1), Podman 4.3 and containerd 1.6 (runc's libcontainer/user)
share one parser: each line is trimmed of white space and blank lines are skipped (group
also skips `#` comments; passwd does not), fields are split on `:`, a numeric field goes
through Go's strconv.Atoi with any error ignored (so `x` or an empty field is 0), missing
fields stay 0 or empty, and the first matching entry wins. A passwd line of 64 KiB or
more fails Go's bufio.Scanner, and with it the runtime's lookup.

The files are read as a stream of chunks, never whole: only the entries a lookup will ask
about are kept (`Wanted`), each line is bounded and so is the whole file. A file past a
bound is `Unreadable`: an identity that needs it is then uncertain, never guessed.
Pure: chunks of bytes in, entries out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

# bufio.Scanner's default token limit: every runtime's passwd parser fails on a longer line.
MAX_PASSWD_LINE = 64 * 1024
# moby/sys/user 0.4.1 allows a group line this long (a group's member list can be long).
MAX_GROUP_LINE = 1 << 20
# Far past any real user database (moby/sys/user 0.4.1 itself stops at 10 MiB); a file
# larger than this is not read to its end, and what it would say is uncertain.
MAX_FILE_BYTES = 64 << 20
# How much of a group file is held while the user's name is still unknown (see scan_group).
MAX_DEFERRED_BYTES = 16 << 20
# Runtimes accept IDs up to MaxInt32 (runc's limit, which containerd and moby follow).
MAX_ID = 2_147_483_647
_GO_INT = re.compile(rb"[+-]?[0-9]+")
_INT64 = (-(1 << 63), (1 << 63) - 1)


class Unreadable(Exception):
    """A passwd or group file past a bound (a line, the whole file): what it says is unknown."""


def go_atoi(field_bytes: bytes) -> int:
    """strconv.Atoi with its error ignored, as the runtimes' parsers use it: an optional
    sign and ASCII digits, clamped to int64 when out of range; anything else is 0."""
    if not _GO_INT.fullmatch(field_bytes):
        return 0
    return max(_INT64[0], min(int(field_bytes), _INT64[1]))


def numeric_arg(text: str) -> int | None:
    """A user or group argument as the runtimes read it: a number (Atoi succeeds) is an ID,
    anything else a name. An ID outside 0..MAX_ID is refused by every runtime."""
    if not _GO_INT.fullmatch(text.encode("utf-8", "surrogatepass")):
        return None
    return int(text)


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str = ""


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Wanted:
    """What lookups will ask of the files: passwd entries by name or UID, groups by name or
    GID, and the groups that list a user. Only those are kept while a file streams by.
    `everything` keeps every entry (small texts in tests, and inspect's full view)."""

    names: frozenset[str] = frozenset()
    uids: frozenset[int] = frozenset()
    groups: frozenset[str] = frozenset()
    gids: frozenset[int] = frozenset()
    everything: bool = False

    @classmethod
    def for_user(cls, user: str = "", *, uids: Iterable[int] = (), groups: Iterable[str] = ()) -> "Wanted":
        """The entries resolving `user[:group]` reads, plus the named UIDs (a process's,
        --user's) and additional groups (names or GIDs)."""
        user_part, _, group_part = (user or "").partition(":")
        names, want_uids, want_groups, want_gids = set(), set(uids), set(), set()
        number = numeric_arg(user_part)
        if number is not None:
            want_uids.add(number)
        elif user_part:
            names.add(user_part)
        else:
            want_uids.add(0)  # no user: the runtime's default, root
        for group in ([group_part] if group_part else []) + list(groups):
            number = numeric_arg(group)
            if number is not None:
                want_gids.add(number)
            else:
                want_groups.add(group)
        return cls(frozenset(names), frozenset(want_uids), frozenset(want_groups), frozenset(want_gids))

    def union(self, other: "Wanted") -> "Wanted":
        return Wanted(self.names | other.names, self.uids | other.uids, self.groups | other.groups,
                      self.gids | other.gids, self.everything or other.everything)

    def covers(self, other: "Wanted") -> bool:
        return self.everything or (other.names <= self.names and other.uids <= self.uids
                                    and other.groups <= self.groups and other.gids <= self.gids)


EVERYTHING = Wanted(everything=True)


@dataclass(frozen=True)
class UserDb:
    """The wanted entries of an image's passwd and group files, in file order; whether each
    file exists (an image without /etc/passwd runs a bare UID with GID 0, as one whose
    passwd lacks it does, but a name cannot resolve there)."""

    passwd: tuple[PasswdEntry, ...] = ()
    group: tuple[GroupEntry, ...] = ()
    has_passwd: bool = False
    has_group: bool = False
    wanted: Wanted = field(default=EVERYTHING, compare=False)

    def user_named(self, name: str) -> PasswdEntry | None:
        return next((e for e in self.passwd if e.name == name), None)

    def user_with_uid(self, uid: int) -> PasswdEntry | None:
        return next((e for e in self.passwd if e.uid == uid), None)

    def group_named(self, name: str) -> GroupEntry | None:
        return next((g for g in self.group if g.name == name), None)

    def group_with_gid(self, gid: int) -> GroupEntry | None:
        return next((g for g in self.group if g.gid == gid), None)

    def memberships(self, user_name: str) -> tuple[int, ...]:
        """GIDs of every group that lists user_name, in file order (runc's rule)."""
        return tuple(g.gid for g in self.group if user_name in g.members)


EMPTY = UserDb()


def lines(chunks: Iterable[bytes], *, max_line: int, what: str,
          max_bytes: int = MAX_FILE_BYTES) -> Iterator[bytes]:
    """The lines of a file that arrives in chunks, each trimmed of white space, blank ones
    skipped. Unreadable when a line reaches max_line bytes or the file passes max_bytes."""
    pending = b""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise Unreadable(f"{what} is larger than {max_bytes >> 20} MiB")
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if len(line) >= max_line:
                raise Unreadable(f"{what} has a line of {max_line} bytes or more (the runtimes' own limit)")
            line = line.strip()
            if line:
                yield line
        if len(pending) >= max_line:
            raise Unreadable(f"{what} has a line of {max_line} bytes or more (the runtimes' own limit)")
    pending = pending.strip()
    if pending:
        yield pending


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def scan_passwd(chunks: Iterable[bytes], wanted: Wanted = EVERYTHING) -> tuple[PasswdEntry, ...]:
    """The wanted passwd entries (by name or UID), in file order."""
    out = []
    for line in lines(chunks, max_line=MAX_PASSWD_LINE, what="the image's /etc/passwd"):
        parts = line.split(b":")
        name = _text(parts[0])
        uid = go_atoi(parts[2]) if len(parts) > 2 else 0
        if wanted.everything or name in wanted.names or uid in wanted.uids:
            gid = go_atoi(parts[3]) if len(parts) > 3 else 0
            out.append(PasswdEntry(name, uid, gid, _text(parts[5]) if len(parts) > 5 else ""))
    return tuple(out)


def scan_group(chunks: Iterable[bytes], wanted: Wanted = EVERYTHING,
               members: Iterable[str] | None = ()) -> tuple[GroupEntry, ...]:
    """The wanted groups (by name or GID) and those listing any of `members`, in file order;
    a group's member list keeps only those members (enough to answer memberships).
    `members` None: the user's name is not known yet (a registry layer may hold /etc/group
    before /etc/passwd): every group that lists someone is kept, up to MAX_DEFERRED_BYTES,
    for narrow_groups to filter once passwd has been read."""
    keep_all = wanted.everything or members is None
    members = frozenset(members or ()) | wanted.names
    out = []
    kept = 0
    for line in lines(chunks, max_line=MAX_GROUP_LINE, what="the image's /etc/group"):
        if line.startswith(b"#"):
            continue
        parts = line.split(b":")
        name = _text(parts[0])
        gid = go_atoi(parts[2]) if len(parts) > 2 else 0
        listed = tuple(_text(m) for m in parts[3].split(b",")) if len(parts) > 3 and parts[3] else ()
        if not keep_all:
            listed = tuple(m for m in listed if m in members)
        if keep_all or name in wanted.groups or gid in wanted.gids or listed:
            if keep_all and not wanted.everything:
                kept += len(line)
                if kept > MAX_DEFERRED_BYTES:
                    raise Unreadable(f"the image's /etc/group lists more members than debugkit holds "
                                     f"({MAX_DEFERRED_BYTES >> 20} MiB)")
            out.append(GroupEntry(name, gid, listed))
    return tuple(out)


def narrow_groups(groups: Iterable[GroupEntry], wanted: Wanted, names: Iterable[str]) -> tuple[GroupEntry, ...]:
    """The groups of a deferred scan_group that `wanted` and the users `names` need."""
    members = frozenset(names) | wanted.names
    out = []
    for group in groups:
        listed = tuple(m for m in group.members if m in members)
        if wanted.everything or group.name in wanted.groups or group.gid in wanted.gids or listed:
            out.append(GroupEntry(group.name, group.gid, group.members if wanted.everything else listed))
    return tuple(out)


def from_text(passwd: str | None, group: str | None = None, wanted: Wanted = EVERYTHING) -> UserDb:
    """A UserDb from whole texts (None: the file does not exist)."""
    users = scan_passwd([passwd.encode("utf-8", "surrogateescape")], wanted) if passwd is not None else ()
    members = {u.name for u in users}
    groups = scan_group([group.encode("utf-8", "surrogateescape")], wanted, members) if group is not None else ()
    return UserDb(users, groups, passwd is not None, group is not None, wanted)
