"""What the person asked for, validated before any engine or cluster is contacted.

Every flag a sidecar command takes is checked here, as pure functions over strings: a
bad value is one InvalidInput line (exit 64), never an engine error or a traceback.
`SidecarOptions` is what every runtime plans from.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from debugkit.core.errors import InvalidInput
from debugkit.core.identity import parse_user_flag
from debugkit.core.imageref import validate_image_ref
from debugkit.core.profiles import PROFILES
from debugkit.core.spec import Resources
from debugkit.core.targets import TargetRef

# Docker refuses less than 6 MiB; more than a TiB for a debugger is a typo.
MIN_MEMORY = 6 << 20
MAX_MEMORY = 1 << 40
MAX_PIDS = 4_194_304          # the kernel's highest pid_max
MIN_CPUS, MAX_CPUS = 0.01, 1024.0
MAX_TIMEOUT = 86_400.0
NO_LIMIT = "none"
DEFAULT_MEMORY, DEFAULT_PIDS, DEFAULT_CPUS = "256m", "256", "1"
DEFAULT_TIMEOUT = 120.0
DEFAULT_KEEP_ALIVE = "10m"
# A reason is a sentence or a ticket reference; it goes into labels, an environment
# variable and every audit record, so it is bounded.
MAX_REASON = 512

_MEMORY = re.compile(r"([0-9]+)([bkmgt]?)", re.ASCII)
_DURATION = re.compile(r"([0-9]+)([smhd]?)", re.ASCII)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Impersonate:
    """kubectl's --as, --as-group (repeatable) and --as-uid: whom the API server should
    treat the requests as (they override the kubeconfig's as, as-groups and as-uid). A
    plain class: a dataclass costs about 1 ms of import on every command."""

    __slots__ = ("user", "groups", "uid")

    def __init__(self, user: str | None = None, groups: tuple[str, ...] = (), uid: str | None = None):
        self.user, self.groups, self.uid = user, tuple(groups), uid

    def __eq__(self, other) -> bool:
        return isinstance(other, Impersonate) and (other.user, other.groups, other.uid) == (
            self.user, self.groups, self.uid)

    def __hash__(self) -> int:
        return hash((self.user, self.groups, self.uid))

    def __repr__(self) -> str:
        return f"Impersonate(user={self.user!r}, groups={self.groups!r}, uid={self.uid!r})"

    def __bool__(self) -> bool:
        return bool(self.user or self.groups or self.uid)


@dataclass(frozen=True)
class Connection:
    """Where the runtime is: the Docker engine (host or context) or the kube context."""

    docker_host: str | None = None
    docker_context: str | None = None
    kube_context: str | None = None
    kubeconfig: str | None = None
    kube_impersonate: Impersonate | None = None


class Flags(NamedTuple):
    """A sidecar command's flags as the person typed them (None: not given), before the
    defaults are filled in and before validation. The CLI builds one; the session layer
    validates it into SidecarOptions."""

    target: str
    command: tuple[str, ...] = ()
    stdin: bool = False
    tty: bool = False
    namespace: str | None = None
    container: str | None = None
    user: str | None = None
    image: str | None = None
    profile: str | None = None
    memory: str | None = None
    pids_limit: str | None = None
    cpus: str | None = None
    keep_alive: str | None = None
    timeout: str | None = None
    custom: str | None = None
    new: bool = False
    target_env: bool = False
    session_id: str | None = None
    connection: Connection = Connection()   # frozen: one shared default is safe
    reason: str | None = None
    record: bool | None = None          # the session's, not the sidecar's (session/recording.py)
    record_input: bool = False

    def evolve(self, **changes) -> "Flags":
        return self._replace(**changes)


@dataclass(frozen=True)
class UserOverride:
    uid: int
    gid: int | None
    text: str


@dataclass(frozen=True)
class SidecarOptions:
    """Validated options for one sidecar. Runtimes plan from this and nothing else."""

    target: TargetRef
    command: tuple[str, ...] = ()
    stdin: bool = False
    tty: bool = False
    user: UserOverride | None = None
    image: str | None = None            # None: the toolbox
    toolbox: str = ""                   # the toolbox reference in effect (environment, config)
    profile: str = "restricted"
    resources: Resources = Resources()
    custom: dict | None = None          # Kubernetes: a partial container spec, already loaded
    custom_source: str | None = None
    timeout: float = DEFAULT_TIMEOUT    # Kubernetes: seconds for the debug container to start
    keep_alive: float | None = None     # seconds a reusable sidecar stays idle; None: not reused
    new: bool = False                   # never reuse an existing sidecar
    target_env: bool = False            # run with the target process's environment (/proc/1/environ)
    session_id: str | None = None
    connection: Connection = field(default_factory=Connection)
    reason: str | None = None           # why (--reason): in the audit log, the labels, DEBUGKIT_REASON

    def evolve(self, **changes) -> "SidecarOptions":
        return replace(self, **changes)

    @property
    def sidecar_image(self) -> str:
        from debugkit.core.imageref import toolbox_ref

        return self.image or self.toolbox or toolbox_ref()


def parse_memory(value: str, *, flag: str = "--memory") -> int | None:
    """`256m`, `1g`, `512k`, bytes, or `none`. Docker's minimum of 6 MiB is checked here."""
    text = value.strip().lower()
    if text == NO_LIMIT:
        return None
    match = _MEMORY.fullmatch(text)
    if not match:
        raise InvalidInput(f"invalid {flag} {value!r}: use e.g. 256m or 1g, or {NO_LIMIT}")
    size = int(match.group(1)) * _UNITS[match.group(2)]
    if size < MIN_MEMORY:
        raise InvalidInput(f"invalid {flag} {value!r}: at least 6m (the engine refuses less), or {NO_LIMIT}")
    if size > MAX_MEMORY:
        raise InvalidInput(f"invalid {flag} {value!r}: at most 1t")
    return size


def parse_pids(value: str, *, flag: str = "--pids-limit") -> int | None:
    text = value.strip().lower()
    if text == NO_LIMIT:
        return None
    if not re.fullmatch(r"[0-9]+", text, re.ASCII):
        raise InvalidInput(f"invalid {flag} {value!r}: a whole number of processes, or {NO_LIMIT}")
    pids = int(text)
    if not 1 <= pids <= MAX_PIDS:
        raise InvalidInput(f"invalid {flag} {value!r}: from 1 to {MAX_PIDS}, or {NO_LIMIT}")
    return pids


def parse_cpus(value: str, *, flag: str = "--cpus") -> int | None:
    """CPUs as a decimal number -> billionths of a CPU (Docker's NanoCpus)."""
    text = value.strip().lower()
    if text == NO_LIMIT:
        return None
    if not re.fullmatch(r"[0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?", text, re.ASCII):
        raise InvalidInput(f"invalid {flag} {value!r}: a number of CPUs such as 0.5 or 2, or {NO_LIMIT}")
    cpus = float(text)
    # A value that rounds to 0 nanocpus would silently remove the limit.
    if not math.isfinite(cpus) or not MIN_CPUS <= cpus <= MAX_CPUS:
        raise InvalidInput(f"invalid {flag} {value!r}: from {MIN_CPUS} to {MAX_CPUS:g} CPUs, or {NO_LIMIT}")
    return round(cpus * 1e9)


def parse_seconds(value: str | float, *, flag: str, allow_zero: bool = False, maximum: float = MAX_TIMEOUT) -> float:
    """A positive number of seconds (`30`, `2.5`) or a duration (`90s`, `10m`, `2h`, `1d`)."""
    text = str(value).strip().lower()
    match = _DURATION.fullmatch(text)
    if match:
        seconds = float(int(match.group(1)) * _SECONDS[match.group(2)])
    elif re.fullmatch(r"[0-9]*\.[0-9]+", text, re.ASCII):
        seconds = float(text)
    else:
        raise InvalidInput(f"invalid {flag} {value!r}: a number of seconds or a duration such as 90s, 10m or 2h")
    if seconds == 0 and allow_zero:
        return 0.0
    if not 0 < seconds <= maximum:
        raise InvalidInput(f"invalid {flag} {value!r}: more than 0 and at most {maximum:g} seconds")
    return seconds


def parse_reason(value: str | None) -> str | None:
    """--reason: one line of text, at most MAX_REASON characters. Control characters are
    refused rather than kept: the reason goes into container labels, an environment
    variable and terminals."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        raise InvalidInput("--reason must not be empty: say why you are debugging (a sentence or a ticket)")
    if len(text) > MAX_REASON:
        raise InvalidInput(f"--reason is {len(text)} characters long: at most {MAX_REASON}")
    bad = next((ch for ch in text if not ch.isprintable()), None)
    if bad is not None:
        raise InvalidInput(f"--reason must be one line of printable text (it holds {ascii(bad)})")
    return text


def parse_user(value: str | None) -> UserOverride | None:
    if value is None:
        return None
    if not value:
        raise InvalidInput("--user must not be empty: give UID or UID:GID")
    uid, gid = parse_user_flag(value)
    return UserOverride(uid, gid, value)


def check_node_flags(target: TargetRef, flags: "Flags") -> None:
    """Node debugging is privileged by nature: it runs only when --profile node or sysadmin
    is typed (never from a config file or a runbook: `flags.profile` is the flag as typed),
    and the profile `node` means nothing elsewhere. Pure: said before anything is contacted."""
    from debugkit.core.profiles import NODE_ONLY
    from debugkit.core.targets import NODE_PROFILES, NodeRef, NodeSetRef

    if not isinstance(target, (NodeRef, NodeSetRef)):
        if flags.profile in NODE_ONLY:
            raise InvalidInput(f"--profile {flags.profile} applies to node/NAME targets only")
        return
    if flags.profile not in NODE_PROFILES:
        typed = f" (--profile {flags.profile} is not one)" if flags.profile else ""
        raise InvalidInput(f"debugging {target} needs --profile node (host PID and network namespaces, the host's / "
                           f"read-only at /host) or --profile sysadmin (privileged, /host writable) on the command "
                           f"line{typed}")
    refused = [flag for flag, value in (("--user", flags.user), ("--custom", flags.custom),
                                        ("--keep-alive", flags.keep_alive),
                                        ("--target-env", flags.target_env or None)) if value is not None]
    if refused:
        raise InvalidInput(f"{refused[0]} does not apply to {target}: a node debugging pod runs as root and ends "
                           f"with its session")


def sidecar_options(
    *,
    target: TargetRef,
    command: tuple[str, ...] = (),
    stdin: bool = False,
    tty: bool = False,
    user: str | None = None,
    image: str | None = None,
    toolbox: str = "",
    profile: str = "restricted",
    memory: str = DEFAULT_MEMORY,
    pids_limit: str = DEFAULT_PIDS,
    cpus: str = DEFAULT_CPUS,
    custom: dict | None = None,
    custom_source: str | None = None,
    timeout: str | float = DEFAULT_TIMEOUT,
    keep_alive: str | None = None,
    new: bool = False,
    target_env: bool = False,
    session_id: str | None = None,
    connection: Connection | None = None,
    reason: str | None = None,
) -> SidecarOptions:
    """Validate every flag (pure: no engine, no cluster, no file) into SidecarOptions."""
    if profile not in PROFILES:
        raise InvalidInput(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    return SidecarOptions(
        target=target,
        command=tuple(command),
        stdin=stdin,
        tty=tty,
        user=parse_user(user),
        image=None if image is None else validate_image_ref(image),
        toolbox=validate_image_ref(toolbox, flag="the toolbox image") if toolbox else "",
        profile=profile,
        resources=Resources(memory_bytes=parse_memory(memory), pids=parse_pids(str(pids_limit)),
                            nano_cpus=parse_cpus(str(cpus))),
        custom=custom,
        custom_source=custom_source,
        timeout=parse_seconds(timeout, flag="--timeout"),
        keep_alive=None if keep_alive is None else parse_seconds(keep_alive, flag="--keep-alive", allow_zero=True),
        new=new,
        target_env=target_env,
        session_id=session_id,
        connection=connection or Connection(),
        reason=parse_reason(reason),
    )


def format_bytes(size: int) -> str:
    """The shortest exact `docker run --memory` spelling of a byte count."""
    for unit, factor in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}b"
