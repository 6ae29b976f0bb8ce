"""Who the target really runs as: pure parsing and precedence, no I/O.

Backends gather raw material (a /proc status file, a configured user string, the
image's own passwd and group files) and these functions turn it into an `Identity`
that says where each part came from. Nothing here guesses: an identity that
cannot be established raises `IdentityUnresolved`, never silently root or 1000.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

from debugkit.core.errors import IdentityUnresolved, InvalidInput

# Sources, most trusted first (DESIGN.md, "Resolving the target's identity").
SOURCE_FLAG = "flag"                  # --user
SOURCE_PROCESS = "process"            # /proc/<pid>/status of the running main process
SOURCE_ENGINE_TOP = "process-top"     # the same facts through the engine's top API
SOURCE_CONFIG = "config"              # Docker Config.User / K8s securityContext
SOURCE_IMAGE = "image-config"         # the image config's User (K8s, no securityContext)


# IDs Docker, Podman and Kubernetes all accept (runAsUser is validated to this range).
MAX_ID = 2_147_483_647
_DECIMAL = re.compile(r"[0-9]+")


def is_decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and '٣', which no runtime does."""
    return bool(_DECIMAL.fullmatch(text))


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
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    source: str = ""
    user_name: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def user_spec(self) -> str:
        return f"{self.uid}:{self.gid}"

    def with_note(self, note: str) -> "Identity":
        return replace(self, notes=self.notes + (note,))

    def as_dict(self) -> dict:
        return {
            "uid": self.uid,
            "gid": self.gid,
            "groups": list(self.groups),
            "source": self.source,
            "user_name": self.user_name,
            "notes": list(self.notes),
        }


def _records(text: str) -> Iterable[list[str]]:
    """The colon-separated fields of each non-blank, non-comment line."""
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            yield line.split(":")


def parse_passwd(text: str) -> dict[str, PasswdEntry]:
    """Entries of an /etc/passwd file by name; malformed lines are skipped, as libc does."""
    entries: dict[str, PasswdEntry] = {}
    for parts in _records(text):
        if len(parts) < 4 or not is_decimal(parts[2]) or not is_decimal(parts[3]):
            continue
        home = parts[5] if len(parts) > 5 else ""
        entries.setdefault(parts[0], PasswdEntry(parts[0], int(parts[2]), int(parts[3]), home))
    return entries


def parse_group(text: str) -> dict[str, GroupEntry]:
    entries: dict[str, GroupEntry] = {}
    for parts in _records(text):
        if len(parts) < 3 or not is_decimal(parts[2]):
            continue
        members = tuple(m for m in (parts[3].split(",") if len(parts) > 3 else []) if m)
        entries.setdefault(parts[0], GroupEntry(parts[0], int(parts[2]), members))
    return entries


_STATUS_IDS = re.compile(r"^(Uid|Gid|Groups):\s*(.*)$", re.MULTILINE)


def identity_from_status(text: str, *, source: str = SOURCE_PROCESS) -> Identity:
    """Read /proc/<pid>/status. The effective IDs decide file access, so they win;
    a real ID that differs (a setuid binary, a half-dropped process) is noted."""
    found = {key: value.split() for key, value in _STATUS_IDS.findall(text)}
    if "Uid" not in found or "Gid" not in found:
        raise IdentityUnresolved("process status has no Uid/Gid lines")
    try:
        ids = [int(found[key][i]) for key in ("Uid", "Gid") for i in (0, 1)]
    except (IndexError, ValueError) as exc:
        raise IdentityUnresolved("process status has malformed Uid/Gid lines") from exc
    groups = tuple(int(g) for g in found.get("Groups", []) if is_decimal(g))
    return _effective(ids[0], ids[1], ids[2], ids[3], groups, source)


def _effective(ruid: int, euid: int, rgid: int, egid: int, groups: tuple[int, ...], source: str) -> Identity:
    """The effective IDs decide file access, so they win; differing real IDs are noted."""
    ident = Identity(uid=euid, gid=egid, groups=groups, source=source)
    if (ruid, rgid) != (euid, egid):
        ident = ident.with_note(f"real IDs {ruid}:{rgid} differ from effective {euid}:{egid}")
    return ident


def identity_from_ps_row(row: Mapping[str, str], *, source: str = SOURCE_ENGINE_TOP) -> Identity:
    """A row of `ps -o pid,ruid,euid,rgid,egid,supgid` as returned by the engine's top API."""
    values = [row.get(key, "") for key in ("RUID", "EUID", "RGID", "EGID")]
    if not all(is_decimal(v) for v in values):
        raise IdentityUnresolved(f"engine top output lacks numeric IDs: {dict(row)}")
    ruid, euid, rgid, egid = (int(v) for v in values)
    supgid = row.get("SUPGID", "-")
    groups = tuple(int(g) for g in supgid.split(",") if is_decimal(g.strip()))
    return _effective(ruid, euid, rgid, egid, groups, source)


def parse_user_flag(value: str) -> tuple[int, int | None]:
    """`--user UID[:GID]`: ASCII decimal only, so it means the same thing everywhere."""
    match = re.fullmatch(r"([0-9]+)(?::([0-9]+))?", value.strip(" \t"))
    if not match:
        raise InvalidInput(
            f"invalid --user {value!r}: expected UID or UID:GID, both numeric (e.g. 65532:65532)"
        )
    uid = int(match.group(1))
    gid = int(match.group(2)) if match.group(2) is not None else None
    if uid > MAX_ID or (gid is not None and gid > MAX_ID):
        raise InvalidInput(f"invalid --user {value!r}: IDs must be at most {MAX_ID}")
    return uid, gid


def identity_from_flag(value: str, *, passwd: Mapping[str, PasswdEntry] | None = None) -> Identity:
    uid, gid = parse_user_flag(value)
    ident = Identity(uid=uid, gid=uid if gid is None else gid, source=SOURCE_FLAG)
    if gid is None:
        primary = _primary_gid_for_uid(uid, passwd or {})
        if primary is None:
            ident = ident.with_note(f"no GID given and no passwd entry for {uid} in the target: GID = UID")
        else:
            ident = replace(ident, gid=primary).with_note(
                f"no GID given: {primary}, the primary group of {uid} in the target's /etc/passwd")
    return replace(ident, groups=(ident.gid,))


def _primary_gid_for_uid(uid: int, passwd: Mapping[str, PasswdEntry]) -> int | None:
    for entry in passwd.values():
        if entry.uid == uid:
            return entry.gid
    return None


def _name_for_uid(uid: int, passwd: Mapping[str, PasswdEntry]) -> str | None:
    for entry in passwd.values():
        if entry.uid == uid:
            return entry.name
    return None


def supplementary_groups(user_name: str | None, groups: Mapping[str, GroupEntry]) -> tuple[int, ...]:
    if not user_name:
        return ()
    return tuple(sorted(g.gid for g in groups.values() if user_name in g.members))


def resolve_configured_user(
    user: str,
    *,
    passwd: Mapping[str, PasswdEntry] | None,
    groups: Mapping[str, GroupEntry] | None,
    missing_gid: str = "uid",
    extra_groups: Iterable[int] = (),
    source: str = SOURCE_CONFIG,
) -> Identity:
    """Resolve a configured `user[:group]` (names or numbers) the way the runtime would.

    `missing_gid` says what the runtime does with a numeric UID that has neither an
    explicit group nor a passwd entry: Docker (runc) uses GID 0 ("zero"); the design's
    rule for other sources is GID = UID ("uid"). Either way it is reported in `notes`.
    """
    passwd = passwd or {}
    groups = groups or {}
    user = (user or "").strip()
    if not user:
        raise IdentityUnresolved("no user is configured")
    user_part, _, group_part = user.partition(":")
    notes: list[str] = []

    if is_decimal(user_part):
        uid = int(user_part)
        name = _name_for_uid(uid, passwd)
        primary = _primary_gid_for_uid(uid, passwd)
    else:
        entry = passwd.get(user_part)
        if entry is None:
            where = "the image's /etc/passwd" if passwd else "an image without /etc/passwd"
            raise IdentityUnresolved(f"user {user_part!r} is not in {where}")
        uid, name, primary = entry.uid, entry.name, entry.gid
        notes.append(f"user {user_part!r} -> {uid} via /etc/passwd")

    if group_part:
        if is_decimal(group_part):
            gid = int(group_part)
        else:
            gentry = groups.get(group_part)
            if gentry is None:
                raise IdentityUnresolved(f"group {group_part!r} is not in the image's /etc/group")
            gid = gentry.gid
            notes.append(f"group {group_part!r} -> {gid} via /etc/group")
        # runc adds no /etc/group memberships when the group is explicit.
        supp: tuple[int, ...] = ()
    else:
        if primary is not None:
            gid = primary
        elif missing_gid == "zero":
            gid = 0
            notes.append(f"UID {uid} has no passwd entry and no group: the runtime runs it with GID 0")
        else:
            gid = uid
            notes.append(f"UID {uid} has no passwd entry and no group: assuming GID = UID")
        supp = supplementary_groups(name, groups)

    if uid > MAX_ID or gid > MAX_ID:
        raise IdentityUnresolved(f"the configured user {user!r} is outside the range runtimes accept (0-{MAX_ID})")
    all_groups = tuple(dict.fromkeys((gid, *supp, *extra_groups)))
    return Identity(uid=uid, gid=gid, groups=all_groups, source=source, user_name=name, notes=tuple(notes))


def name_identity(ident: Identity, passwd: Mapping[str, PasswdEntry] | None) -> Identity:
    """Attach the passwd name for display, if the image has one for this UID."""
    if ident.user_name or not passwd:
        return ident
    name = _name_for_uid(ident.uid, passwd)
    return replace(ident, user_name=name) if name else ident
