"""SidecarSpec: everything about the debug sidecar, as runtime-neutral plain data.

The session flow builds one, profiles edit it, overrides are applied, and only then does
a runtime translate it into its own request with a pure function. Tests assert on the
spec and on those translations without any engine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from debugkit import __version__
from debugkit.core.identity import Identity

LABEL_MANAGED = "io.debugkit.managed"
LABEL_SESSION = "io.debugkit.session"
LABEL_TARGET = "io.debugkit.target"
LABEL_TARGET_ID = "io.debugkit.target-id"
LABEL_RUNTIME = "io.debugkit.runtime"
LABEL_PROFILE = "io.debugkit.profile"
LABEL_CLI_PID = "io.debugkit.cli-pid"
LABEL_CLI_HOST = "io.debugkit.cli-host"
LABEL_LOCAL_USER = "io.debugkit.local-user"
LABEL_VERSION = "io.debugkit.version"
LABEL_USER = "io.debugkit.user"
LABEL_REASON = "io.debugkit.reason"

ENV_SESSION = "DEBUGKIT_SESSION"
ENV_TARGET_ROOT = "DEBUGKIT_TARGET_ROOT"
ENV_TARGET = "DEBUGKIT_TARGET"
# Why the session was started (--reason): an ephemeral container carries no labels, so on
# Kubernetes the pod spec shows it here (and the API server's audit log with it).
ENV_REASON = "DEBUGKIT_REASON"

# The target's main process is PID 1 in the shared PID namespace (Docker) and is
# found by the backend on Kubernetes; its root filesystem is reachable through /proc.
DEFAULT_TARGET_ROOT = "/proc/1/root"


def new_session_id() -> str:
    # What secrets.token_hex(4) returns, without importing secrets (hmac, hashlib, random):
    # a few ms on every command's start.
    return os.urandom(4).hex()


@dataclass(frozen=True)
class Resources:
    """Docker/Podman limits so the debugger cannot starve the patient, already validated
    (core.options): bytes, a process count and billionths of a CPU. None: no limit."""

    memory_bytes: int | None = 256 << 20
    pids: int | None = 256
    nano_cpus: int | None = 1_000_000_000


@dataclass(frozen=True)
class SidecarSpec:
    image: str
    identity: Identity
    session_id: str = field(default_factory=new_session_id)
    command: tuple[str, ...] = ()
    stdin: bool = False
    tty: bool = False
    profile: str = "restricted"
    run_as_root: bool = False
    cap_drop: tuple[str, ...] = ("ALL",)
    cap_add: tuple[str, ...] = ()
    privileged: bool = False
    no_new_privileges: bool = True
    read_only_root: bool = True
    # noexec stated, not assumed: Docker adds it to a tmpfs by default, Podman does not.
    tmpfs: tuple[tuple[str, str], ...] = (("/tmp", "rw,noexec,nosuid,nodev,size=64m,mode=1777"),)
    seccomp_runtime_default: bool = True
    resources: Resources = Resources()
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    target_root: str = DEFAULT_TARGET_ROOT

    @property
    def name(self) -> str:
        return f"debugkit-{self.session_id}"

    @property
    def uid(self) -> int:
        return 0 if self.run_as_root else self.identity.uid

    @property
    def gid(self) -> int:
        return 0 if self.run_as_root else self.identity.gid

    @property
    def supplementary_groups(self) -> tuple[int, ...]:
        if self.run_as_root:
            return ()
        return tuple(g for g in self.identity.groups if g != self.identity.gid)

    @property
    def run_as_non_root(self) -> bool:
        return self.uid != 0

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def labels_dict(self) -> dict[str, str]:
        return dict(self.labels)

    def evolve(self, **changes) -> "SidecarSpec":
        return replace(self, **changes)

    def with_env(self, **values: str) -> "SidecarSpec":
        merged = {**self.env_dict(), **values}
        return replace(self, env=tuple(merged.items()))

    def with_labels(self, **values: str) -> "SidecarSpec":
        merged = {**self.labels_dict(), **values}
        return replace(self, labels=tuple(merged.items()))


def base_spec(
    *,
    image: str,
    identity: Identity,
    target_name: str,
    target_id: str,
    runtime: str,
    command: tuple[str, ...] = (),
    stdin: bool = False,
    tty: bool = False,
    session_id: str | None = None,
    cli_pid: int,
    cli_host: str,
    local_user: str,
    reason: str | None = None,
) -> SidecarSpec:
    spec = SidecarSpec(
        image=image,
        identity=identity,
        session_id=session_id or new_session_id(),
        command=tuple(command),
        stdin=stdin,
        tty=tty,
    )
    spec = spec.with_env(**{
        ENV_SESSION: spec.session_id,
        ENV_TARGET_ROOT: spec.target_root,
        ENV_TARGET: target_name,
        **({ENV_REASON: reason} if reason else {}),
    })
    spec = spec.with_labels(**({LABEL_REASON: reason} if reason else {}))
    return spec.with_labels(**{
        LABEL_MANAGED: "true",
        LABEL_SESSION: spec.session_id,
        LABEL_TARGET: target_name,
        LABEL_TARGET_ID: target_id,
        LABEL_RUNTIME: runtime,
        LABEL_CLI_PID: str(cli_pid),
        LABEL_CLI_HOST: cli_host,
        LABEL_LOCAL_USER: local_user,
        LABEL_VERSION: __version__,
    })
