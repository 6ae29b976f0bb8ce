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
from debugkit.core.userdb import EMPTY, MAX_ID, GroupEntry, PasswdEntry, UserDb, numeric_arg  # noqa: F401

# Sources, most trusted first (DESIGN.md, "Resolving the target's identity").
SOURCE_FLAG = "flag"                  # --user
SOURCE_PROCESS = "process"            # /proc/<pid>/status of the running main process
SOURCE_ENGINE_TOP = "process-top"     # the same facts through the engine's top API
SOURCE_CONFIG = "config"              # Docker Config.User / K8s securityContext
SOURCE_IMAGE = "image-config"         # the image config's User (K8s, no securityContext)


_DECIMAL = re.compile(r"[0-9]+")


def is_decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and '٣', which no runtime does."""
    return bool(_DECIMAL.fullmatch(text))


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


def identity_from_flag(value: str, *, db: UserDb | None = EMPTY) -> Identity:
    """--user UID[:GID]. A bare UID gets the group the runtime would give `--user UID` in
    this image: its passwd entry's, else GID 0 (runtime_user). `db` None: the image's files
    could not be read, so a bare UID's group is unknown and the person must give it."""
    uid, gid = parse_user_flag(value)
    if gid is not None:
        return Identity(uid=uid, gid=gid, groups=(gid,), source=SOURCE_FLAG)
    if db is None:
        raise IdentityUnresolved(f"--user {uid} has no group, and the target's /etc/passwd, which would give it, "
                                 f"cannot be read", hint=f"give one: --user {uid}:GID")
    resolved = runtime_user(str(uid), db, source=SOURCE_FLAG)
    entry = db.user_with_uid(uid)
    note = (f"no GID given: {resolved.gid}, the primary group of {uid} in the target's /etc/passwd" if entry else
            f"no GID given and no passwd entry for {uid} in the target: GID 0, as the runtime would run it")
    return replace(resolved, notes=(note,))


def runtime_user(
    user: str,
    db: UserDb,
    *,
    extra_groups: Iterable[int] = (),
    source: str = SOURCE_CONFIG,
) -> Identity:
    """The UID, GID and groups a runtime starts `user[:group]` (names or numbers) with in an
    image whose passwd and group files are `db`: the rule of runc's libcontainer/user, which
    Docker (moby/sys/user), Podman and containerd (oci.WithUser) all follow for the
    primary group:

    - a user found in passwd (by UID when numeric, else by name; the first entry wins)
      takes its UID and primary GID from there; a numeric one that is not there runs with
      GID 0, whether the image has no passwd or the passwd lacks it; a name that is not
      there cannot run;
    - an explicit group (a name from /etc/group, or a number) replaces the primary GID,
      and then no memberships are added;
    - otherwise every group that lists the user's name is a supplementary group (Docker,
      Podman; on Kubernetes containerd adds its own, see the kubernetes runtime).

    Every step that is not plain is said in `notes`."""
    user = (user or "").strip()
    if not user:
        raise IdentityUnresolved("no user is configured")
    parts = user.split(":")
    if len(parts) > 2:
        raise IdentityUnresolved(f"the configured user {user!r} is not USER or USER:GROUP")
    user_part, group_part = parts[0], (parts[1] if len(parts) > 1 else "")
    notes: list[str] = []
    number = numeric_arg(user_part) if user_part else 0
    if number is not None:
        if not 0 <= number <= MAX_ID:
            raise IdentityUnresolved(f"the configured user {user!r} is outside the range runtimes accept (0-{MAX_ID})")
        entry = db.user_with_uid(number)
    else:
        entry = db.user_named(user_part)
        if entry is None:
            where = "the image's /etc/passwd" if db.has_passwd else "an image without /etc/passwd"
            raise IdentityUnresolved(f"user {user_part!r} is not in {where}")
        notes.append(f"user {user_part!r} -> {entry.uid} via /etc/passwd")
    if entry is not None:
        uid, gid, name = entry.uid, entry.gid, entry.name
    else:
        uid, gid, name = number, 0, None
    supplementary: tuple[int, ...] = ()
    if group_part:
        group_number = numeric_arg(group_part)
        found = db.group_with_gid(group_number) if group_number is not None else db.group_named(group_part)
        if found is not None:
            gid = found.gid
        elif group_number is not None:
            gid = group_number
        else:
            raise IdentityUnresolved(f"group {group_part!r} is not in the image's /etc/group")
        if group_number is None:
            notes.append(f"group {group_part!r} -> {gid} via /etc/group")
    else:
        if entry is None:
            notes.append(f"UID {uid} has no passwd entry and no group: the runtime runs it with GID 0")
        elif name:
            supplementary = db.memberships(name)
    if not (0 <= uid <= MAX_ID and 0 <= gid <= MAX_ID):
        raise IdentityUnresolved(f"the configured user {user!r} is outside the range runtimes accept (0-{MAX_ID})")
    all_groups = tuple(dict.fromkeys((gid, *supplementary, *extra_groups)))
    return Identity(uid=uid, gid=gid, groups=all_groups, source=source, user_name=name, notes=tuple(notes))


def name_identity(ident: Identity, db: UserDb | None) -> Identity:
    """Attach the passwd name for display, if the image has one for this UID."""
    if ident.user_name or db is None:
        return ident
    entry = db.user_with_uid(ident.uid)
    return replace(ident, user_name=entry.name) if entry else ident
