"""Find a target container on a Docker-API engine and learn who it runs as.

Nothing is ever executed inside the target: its passwd and group files are read through
the archive API, its process through /proc (local engines only, after checking the PID
really is this container's) or the engine's top API.
"""
from __future__ import annotations

import contextlib
import os
import posixpath
from dataclasses import dataclass, field

from debugkit.core import identity as ident
from debugkit.core import userdb
from debugkit.core.errors import IdentityUnresolved, TargetNotFound, TargetNotRunning
from debugkit.core.spec import LABEL_MANAGED
from debugkit.runtimes.base import LABEL_COPY_OF, IdentitySource

# How many symbolic links /etc/passwd may go through (/etc/passwd -> ../usr/share/...).
MAX_LINK_HOPS = 8
CHUNK = 1 << 16
SHELLS = ("/bin/sh", "/bin/bash", "/bin/ash", "/busybox/sh")


@dataclass
class TargetInfo:
    """What the engine said about a target container."""

    id: str
    name: str
    image: str
    image_id: str
    pid: int
    status: str
    configured_user: str
    group_add: tuple[str, ...] = ()
    # The wanted entries of the image's /etc/passwd and /etc/group, read on first need
    # (None: not read yet), or why they could not be read.
    etc: userdb.UserDb | None = None
    etc_error: str | None = None
    notes: list[str] = field(default_factory=list)
    image_only: bool = False      # image/REF: no container; /etc is read through a created, never started, one


class ContainerProbe:
    """Target discovery and identity sources over one engine client."""

    def __init__(self, api, *, engine: str = "Docker", local: bool = True, cli: str = "docker"):
        self.api = api
        self.engine = engine
        self.local = local   # the engine's PIDs are this machine's (a unix socket here)
        self.cli = cli

    # -- the target -------------------------------------------------------------------

    def find_target(self, name: str, *, require_running: bool = True, ref: str | None = None) -> TargetInfo:
        from debugkit.runtimes.docker.engine import EngineNotFound

        try:
            attrs = self.api.inspect_container(name)
        except EngineNotFound as exc:
            raise TargetNotFound(f"no container named {name!r} on {self.engine}",
                                 hint=f"see `{self.cli} ps`") from exc
        state = attrs.get("State", {})
        status = state.get("Status", "unknown")
        if require_running and (status != "running" or state.get("Paused")):
            if state.get("Paused"):
                raise TargetNotRunning(f"container {name!r} is paused, not running",
                                       hint=f"unpause it first: {self.cli} unpause {name}")
            raise TargetNotRunning(f"container {name!r} is {status}, not running",
                                   hint=f"debug it through a held copy: debugkit attach --copy {ref or name}")
        config = attrs.get("Config") or {}
        labels = config.get("Labels") or {}
        if labels.get(LABEL_MANAGED) == "true" and LABEL_COPY_OF not in labels:
            raise TargetNotFound(f"{name!r} is itself a debugkit sidecar; attach to its target instead")
        return TargetInfo(
            id=attrs["Id"],
            name=attrs.get("Name", "").lstrip("/") or name,
            image=config.get("Image", ""),
            image_id=attrs.get("Image", ""),
            pid=int(state.get("Pid") or 0),
            status=status,
            configured_user=config.get("User") or "",
            group_add=tuple((attrs.get("HostConfig") or {}).get("GroupAdd") or ()),
        )

    def find_image(self, image: str) -> TargetInfo:
        """An image as a target (image/REF): who a container of it would run as."""
        from debugkit.runtimes.docker.engine import EngineNotFound

        try:
            attrs = self.api.inspect_image(image)
        except EngineNotFound as exc:
            raise TargetNotFound(f"no image {image!r} in the {self.engine} engine",
                                 hint=f"{self.cli} pull {image}") from exc
        config = attrs.get("Config") or {}
        user = config.get("User") or ""
        return TargetInfo(id=attrs["Id"], name=image, image=image, image_id=attrs["Id"], pid=0, status="image",
                          configured_user=user if isinstance(user, str) else "", image_only=True)

    def scan_file(self, container_id: str, path: str, scan, *, hops: int = MAX_LINK_HOPS):
        """scan(chunks) over a file of a container, streamed through the archive API (never
        held whole), following symbolic links as the runtime does; None when there is no
        such regular file (the runtime then reads none either). userdb.Unreadable when the
        links go on, or the archive is far larger than the file can be."""
        import tarfile  # here, not at the top: attach rarely needs it and it is slow to import

        from debugkit.runtimes.docker.engine import EngineNotFound

        try:
            resp, conn = self.api.get_archive_stream(container_id, path)
        except EngineNotFound:
            return None
        follow = None
        try:
            stream = _Bounded(resp, userdb.MAX_FILE_BYTES + (1 << 20))
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                member = tar.next()
                if member is None:
                    return None
                if member.isfile():
                    fh = tar.extractfile(member)
                    return scan(iter(lambda: fh.read(CHUNK), b""))
                if not member.issym():
                    return None  # a directory or a device: the runtimes open no such file
                follow = posixpath.normpath(posixpath.join(posixpath.dirname(path), member.linkname))
        except tarfile.TarError as exc:
            raise userdb.Unreadable(f"the engine sent a broken archive of {path}: {exc}") from None
        finally:
            conn.close()
        if hops <= 0:
            raise userdb.Unreadable(f"{path} is a chain of more than {MAX_LINK_HOPS} symbolic links")
        return self.scan_file(container_id, follow, scan, hops=hops - 1)

    def shell(self, target: TargetInfo) -> str | None:
        from debugkit.runtimes.docker.engine import EngineError

        for shell in SHELLS:
            try:
                self.api.stat_path(target.id, shell)
                return shell
            except EngineError:
                continue
        return None

    def load_etc(self, target: TargetInfo, *, uids=()) -> None:
        """Read the entries of passwd and group that resolving the configured user, the
        additional groups and `uids` needs (two streamed archive calls, so only when a name
        or a primary group matters), or remember why they cannot be read."""
        from debugkit.runtimes.docker.engine import EngineError

        wanted = userdb.Wanted.for_user(target.configured_user, uids=uids, groups=target.group_add)
        if target.etc_error is not None or (target.etc is not None and target.etc.wanted.covers(wanted)):
            return
        if target.etc is not None:
            wanted = wanted.union(target.etc.wanted)
        container, created = target.id, None
        try:
            if target.image_only:  # the archive API reads containers: one created, never started
                created = container = self.api.create_container({"Image": target.id, "Cmd": ["/nonexistent"],
                                                                 "Labels": {LABEL_MANAGED: "probe"}})["Id"]
            users = self.scan_file(container, "/etc/passwd", lambda chunks: userdb.scan_passwd(chunks, wanted))
            names = {u.name for u in users or ()}
            groups = self.scan_file(container, "/etc/group",
                                    lambda chunks: userdb.scan_group(chunks, wanted, names))
        except userdb.Unreadable as exc:
            target.etc_error = str(exc)
            return
        except EngineError as exc:
            target.etc_error = f"the engine would not give the image's /etc/passwd: {exc.explanation}"
            return
        finally:
            if created is not None:
                with contextlib.suppress(EngineError, OSError):
                    self.api.remove_container(created, force=True)
        target.etc = userdb.UserDb(users or (), groups or (), users is not None, groups is not None, wanted)

    def etc(self, target: TargetInfo) -> userdb.UserDb:
        """The loaded entries, or IdentityUnresolved saying why the runtime's answer is unknown."""
        if target.etc_error is not None:
            raise IdentityUnresolved(f"{target.etc_error}, so the user the runtime chose from it is uncertain",
                                     hint="pass --user UID:GID")
        return target.etc if target.etc is not None else userdb.EMPTY

    # -- identity ---------------------------------------------------------------------

    def local_proc_status(self, target: TargetInfo) -> str | None:
        """/proc/<pid>/status, but only when that PID really is this container's process
        (a remote or VM-hosted engine reports PIDs that mean nothing here)."""
        if target.pid <= 0 or not self.local:
            return None
        try:
            with open(f"/proc/{target.pid}/cgroup", encoding="utf-8") as fh:
                if target.id not in fh.read():
                    return None
            with open(f"/proc/{target.pid}/status", encoding="utf-8") as fh:
                return fh.read()
        except OSError:
            return None

    def process_identity(self, target: TargetInfo) -> ident.Identity:
        if target.image_only:
            raise IdentityUnresolved("an image has no process; a container of it starts as the image's USER")
        status = self.local_proc_status(target)
        if status is not None:
            return ident.identity_from_status(status, source=ident.SOURCE_PROCESS)
        from debugkit.runtimes.docker.engine import EngineError

        try:
            top = self.api.top(target.id, ps_args="-o pid,ruid,euid,rgid,egid,supgid")
        except EngineError as exc:
            raise IdentityUnresolved(f"the engine's top API failed: {exc.explanation}") from exc
        titles = [str(t).upper() for t in top.get("Titles") or []]
        rows = [dict(zip(titles, proc)) for proc in top.get("Processes") or []]
        if not rows:
            raise IdentityUnresolved("the engine's top API returned no processes")
        main = next((r for r in rows if r.get("PID") == str(target.pid)), rows[0])
        return ident.identity_from_ps_row(main)

    def dumpable(self, target: TargetInfo) -> bool | None:
        """False when the kernel hides the target's /proc entries from its own UID.

        A process that changed UID at runtime (started as root, then dropped) is not
        dumpable: its /proc/<pid> files belong to root, and /proc/1/root then needs
        CAP_SYS_PTRACE (the `ptrace` profile) even for the same UID. None: unknown."""
        status = self.local_proc_status(target)
        if status is None:
            return None
        try:
            st = os.stat(f"/proc/{target.pid}/environ")
            running_as = ident.identity_from_status(status)
        except (OSError, IdentityUnresolved):
            return None
        return not (st.st_uid == 0 and running_as.uid != 0)

    def zombies(self, target: TargetInfo) -> int | None:
        """Zombie children of the target's main process (local engines), else None."""
        if self.local_proc_status(target) is None:
            return None
        count = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2:].split()
            if len(fields) > 1 and fields[0] == b"Z" and int(fields[1]) == target.pid:
                count += 1
        return count

    def configured_identity(self, target: TargetInfo) -> ident.Identity:
        self.load_etc(target)
        db = self.etc(target)
        extra = []
        for g in target.group_add:
            number = userdb.numeric_arg(g)
            found = db.group_named(g) if number is None else None
            if number is not None or found is not None:
                extra.append(number if number is not None else found.gid)
        resolved = ident.runtime_user(target.configured_user or "0", db, extra_groups=extra)
        if not target.configured_user:
            resolved = resolved.with_note("no USER configured: the runtime starts the process as root")
        return resolved

    def _source(self, name: str, fn, target: TargetInfo) -> IdentitySource:
        try:
            return IdentitySource(name, identity=ident.name_identity(fn(target), target.etc))
        except IdentityUnresolved as exc:
            return IdentitySource(name, error=str(exc))

    def identity_sources(self, target: TargetInfo, *, stop_at_first: bool = False) -> list[IdentitySource]:
        """Every source in order of trust (inspect: each one named from the image's passwd),
        or up to the first that answers (attach)."""
        out = [self._source("process", self.process_identity, target)]
        if stop_at_first and out[-1].identity is not None:
            return out
        if not stop_at_first and out[0].identity is not None:
            self.load_etc(target, uids=(out[0].identity.uid,))
            out[0] = out[0]._replace(identity=ident.name_identity(out[0].identity, target.etc))
        out.append(self._source(ident.SOURCE_CONFIG, self.configured_identity, target))
        return out

    def resolve_identity(self, target: TargetInfo, user, sources: list[IdentitySource]) -> ident.Identity:
        """--user wins; otherwise the first source that answered."""
        if user is not None:
            uid, gid = ident.parse_user_flag(user.text)
            if gid is not None:
                return ident.name_identity(ident.identity_from_flag(user.text), target.etc)
            # The group of a bare UID is the one the runtime would give it: from the image's
            # passwd, else 0; unknown when that passwd cannot be read.
            self.load_etc(target, uids=(uid,))
            db = None if target.etc_error is not None else (target.etc or userdb.EMPTY)
            return ident.name_identity(ident.identity_from_flag(user.text, db=db), db)
        for source in sources:
            if source.identity is not None:
                return source.identity
        errors = "; ".join(f"{s.source}: {s.error}" for s in sources)
        raise IdentityUnresolved(f"cannot determine the target's user ({errors})", hint="pass --user UID[:GID]")


class _Bounded:
    """A response body read as a file, that ends in userdb.Unreadable past `limit` bytes."""

    def __init__(self, raw, limit: int):
        self.raw = raw
        self.left = limit

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.left + 1
        data = self.raw.read(min(size, self.left + 1))
        self.left -= len(data)
        if self.left < 0:
            raise userdb.Unreadable("the engine's archive of /etc is larger than any passwd file")
        return data
