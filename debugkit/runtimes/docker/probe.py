"""Find a target container on a Docker-API engine and learn who it runs as.

Nothing is ever executed inside the target: its passwd and group files are read through
the archive API, its process through /proc (local engines only, after checking the PID
really is this container's) or the engine's top API.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from debugkit.core import identity as ident
from debugkit.core.errors import IdentityUnresolved, TargetNotFound, TargetNotRunning
from debugkit.core.spec import LABEL_MANAGED
from debugkit.runtimes.base import IdentitySource

MAX_ETC_FILE = 1 << 20  # passwd/group larger than this are not real passwd/group files
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
    # The image's /etc/passwd and /etc/group, read on first need (None: not read yet).
    passwd: dict | None = None
    group: dict | None = None
    notes: list[str] = field(default_factory=list)


class ContainerProbe:
    """Target discovery and identity sources over one engine client."""

    def __init__(self, api, *, engine: str = "Docker", local: bool = True, cli: str = "docker"):
        self.api = api
        self.engine = engine
        self.local = local   # the engine's PIDs are this machine's (a unix socket here)
        self.cli = cli

    # -- the target -------------------------------------------------------------------

    def find_target(self, name: str, *, require_running: bool = True) -> TargetInfo:
        from debugkit.runtimes.docker.engine import EngineNotFound

        try:
            attrs = self.api.inspect_container(name)
        except EngineNotFound as exc:
            raise TargetNotFound(f"no container named {name!r} on {self.engine}",
                                 hint=f"see `{self.cli} ps`") from exc
        state = attrs.get("State", {})
        status = state.get("Status", "unknown")
        if require_running and (status != "running" or state.get("Paused")):
            raise TargetNotRunning(
                f"container {name!r} is {'paused' if state.get('Paused') else status}, not running",
                hint=f"start it first: {self.cli} start {name}",
            )
        config = attrs.get("Config") or {}
        if (config.get("Labels") or {}).get(LABEL_MANAGED) == "true":
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

    def read_file(self, container_id: str, path: str, *, hops: int = 1) -> str | None:
        """A small text file from a container's filesystem via the archive API, or None."""
        from debugkit.runtimes.docker.engine import EngineError

        try:
            data, stat = self.api.get_archive(container_id, path, max_bytes=MAX_ETC_FILE * 2)
        except EngineError:
            return None
        if stat.get("size", 0) > MAX_ETC_FILE or data is None:
            return None
        import io
        import tarfile  # here, not at the top: attach rarely needs it and it is slow to import

        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    fh = tar.extractfile(member)
                    return fh.read(MAX_ETC_FILE).decode("utf-8", "replace") if fh else None
                if member.issym() and hops > 0:
                    # /etc/passwd -> ../usr/share/... ; one hop is plenty for real images.
                    link = member.linkname
                    if not link.startswith("/"):
                        link = os.path.normpath(os.path.join(os.path.dirname(path), link))
                    return None if link == path else self.read_file(container_id, link, hops=hops - 1)
        return None

    def shell(self, target: TargetInfo) -> str | None:
        from debugkit.runtimes.docker.engine import EngineError

        for shell in SHELLS:
            try:
                self.api.stat_path(target.id, shell)
                return shell
            except EngineError:
                continue
        return None

    def load_etc(self, target: TargetInfo) -> None:
        """Read passwd and group once; two archive calls, so only when a name matters."""
        if target.passwd is not None:
            return
        passwd = self.read_file(target.id, "/etc/passwd")
        group = self.read_file(target.id, "/etc/group")
        target.passwd = ident.parse_passwd(passwd) if passwd else {}
        target.group = ident.parse_group(group) if group else {}

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
        extra = []
        for g in target.group_add:
            if ident.is_decimal(g):
                extra.append(int(g))
            elif g in target.group:
                extra.append(target.group[g].gid)
        resolved = ident.resolve_configured_user(
            target.configured_user or "0", passwd=target.passwd, groups=target.group, missing_gid="zero",
            extra_groups=extra,
        )
        if not target.configured_user:
            resolved = resolved.with_note("no USER configured: the runtime starts the process as root")
        return resolved

    def _source(self, name: str, fn, target: TargetInfo) -> IdentitySource:
        try:
            return IdentitySource(name, identity=ident.name_identity(fn(target), target.passwd))
        except IdentityUnresolved as exc:
            return IdentitySource(name, error=str(exc))

    def identity_sources(self, target: TargetInfo, *, stop_at_first: bool = False) -> list[IdentitySource]:
        """Every source in order of trust (inspect), or up to the first that answers (attach)."""
        out = []
        for name, fn in (("process", self.process_identity), (ident.SOURCE_CONFIG, self.configured_identity)):
            out.append(self._source(name, fn, target))
            if stop_at_first and out[-1].identity is not None:
                break
        return out

    def user_identity(self, target: TargetInfo, user) -> ident.Identity:
        """--user, named through the image's passwd (a bare UID takes its primary group from it)."""
        if user.gid is None:
            self.load_etc(target)  # the primary group of a bare UID comes from passwd
        return ident.name_identity(ident.identity_from_flag(user.text, passwd=target.passwd), target.passwd)
