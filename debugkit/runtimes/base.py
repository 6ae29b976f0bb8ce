"""The Runtime protocol: the few operations every runtime offers, and the types they return.

A runtime turns validated options into a `Plan` without starting anything: it resolves
the target, the identity it runs as and the image, builds the sidecar spec as plain data,
applies the profile, and translates the spec into its own request with a pure function.
Only `run` and `open_exec` start a sidecar. The session flow (debugkit.session) owns
validation, auditing, signals and cleanup for all of them; runtimes never import it.
"""
from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import BinaryIO, Callable, Sequence

from debugkit.core.identity import Identity
from debugkit.core.options import SidecarOptions
from debugkit.core.spec import SidecarSpec
from debugkit.runtimes.execution import ExecResult

# What a plan is for: a scripted command, an interactive terminal, or one sidecar for
# many commands (runbooks, cp, port-forward).
MODES = ("command", "interactive", "exec")
# The toolbox's helper (toolbox-image/helper): reaper, keep-alive, copies, relay. Every
# runtime puts it at this path (the toolbox has it; Docker and Podman mount it into a
# foreign image when they can); plan.facts["helper"] says whether the sidecar has it.
HELPER_PATH = "/usr/local/bin/debugkit-helper"
# What the helper understands, as a number (the toolbox image's label
# io.debugkit.helper-protocol): 2 added reap --watch-stdin, 3 reap --guard, 4 relay --mux
# (port-forward over one exec), tar-out's exit 6 for a device, FIFO or socket, and a
# helper that is not dumpable (the target cannot open its output).
HELPER_PROTOCOL = 4


# How long a session's guard waits for its command to hold it (started right after it).
GUARD_FIRST_SECONDS = 30


def reaped(hold: str, argv, *, watch_stdin: bool = False, guard: str | None = None,
           mark: str | None = None) -> list[str]:
    """argv as an exec in a sidecar: under the reaper (orphans come to it, not to the
    target's PID 1; the tree is ended and reaped when argv ends), holding the keep-alive
    @hold while it runs. And what ends it when this CLI goes away: `watch_stdin` (the
    exec's stdin is ours, held open and never written; the engine or kubelet closes it
    when our connection drops), or, for a command whose stdin and TTY are the person's,
    `guard` (see guard_command). `mark` (an exec's DEBUGKIT_EXEC=TAG) goes on the
    reaper's command line: it is not dumpable, so its environment cannot be read, and
    that is how the exec's processes are found to be stopped (STOP_EXECS)."""
    watch = ["--watch-stdin"] if watch_stdin else ["--guard", guard] if guard else []
    marked = [f"--mark={mark}"] if mark else []
    return [HELPER_PATH, "reap", "--hold", hold, *watch, *marked, "--", *argv]


def guard_command(guard: str) -> list[str]:
    """A keep-alive on an exec's stdin that this CLI holds: the command of a session whose
    stdin and TTY are the person's holds it (reap --guard) and is wound down when it ends
    (a TTY never tells its shell that the client went away); it exits by itself once the
    command has let go of it."""
    return [HELPER_PATH, "keepalive", "--socket", guard, "--stdin", "--idle", "0", "--first",
            str(GUARD_FIRST_SECONDS)]


def guard_name(container: str, session_id: str) -> str:
    return f"{container}-guard-{session_id}"


def with_target_env(argv) -> tuple[str, ...]:
    """argv run with the target process's environment (attach --target-env): the helper
    reads /proc/1/environ, keeps the sidecar's PATH after the target's, says where the
    environment came from, and carries on with a warning when it cannot read it."""
    return (HELPER_PATH, "env", "--or-continue", "--", *argv)


@dataclass(frozen=True)
class ResolvedTarget:
    """The one shape every runtime returns for the container being debugged."""

    runtime: str
    name: str                     # the container's name, or NAMESPACE/POD/CONTAINER
    id: str                       # the container ID, or the pod's UID
    image: str
    namespace: str | None = None  # Kubernetes
    pod: str | None = None
    container: str | None = None


@dataclass(frozen=True)
class IdentitySource:
    """One identity source as inspect shows it: what it said, or why it could not say."""

    source: str
    identity: Identity | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        if self.identity is not None:
            return {**self.identity.as_dict(), "source": self.source}
        return {"source": self.source, "error": self.error}


@dataclass(frozen=True)
class Plan:
    runtime: str
    mode: str
    target: ResolvedTarget
    spec: SidecarSpec
    request: dict                               # the runtime's own request, from a pure translation
    sources: tuple[IdentitySource, ...] = ()
    warnings: tuple[str, ...] = ()
    image: dict = field(default_factory=dict)   # image_id / image_digest, when the runtime knows them
    facts: dict = field(default_factory=dict)   # runtime-specific facts for inspect
    reuse: str | None = None                    # an existing sidecar to exec into instead of a new one

    @property
    def interactive(self) -> bool:
        return self.mode == "interactive"


@dataclass
class Streams:
    stdin: BinaryIO | None
    stdout: BinaryIO
    stderr: BinaryIO


@dataclass
class SessionRow:
    """A debug sidecar as `ps` and `gc` see it."""

    runtime: str
    session: str
    name: str
    target: str
    user: str
    state: str
    age_s: int
    profile: str = ""
    cli_pid: int | None = None
    cli_host: str | None = None
    cli_alive: bool | None = None
    id: str = ""
    namespace: str | None = None
    idle_s: int | None = None          # reusable sidecars: seconds since a session last used it; 0 busy
    reusable: bool = False             # started with a keep-alive; later sessions exec into it
    keep_alive_s: int | None = None    # how long it stays once idle before it ends itself
    reason: str | None = None          # --reason of the session that started it (label or DEBUGKIT_REASON)

    def as_dict(self) -> dict:
        return asdict(self)


class ExecSession(abc.ABC):
    """A started sidecar that runs one command after another in the target's namespaces."""

    plan: Plan

    @abc.abstractmethod
    def exec(self, argv: Sequence[str], *, timeout: float, max_output: int = 1 << 20) -> ExecResult:
        """Run argv; kill it after `timeout` seconds (then timed_out, no exit code)."""

    @abc.abstractmethod
    def exec_io(self, argv: Sequence[str], *, stdin_fd: int | None, stdout: BinaryIO, stderr: BinaryIO) -> int:
        """Run argv with no time limit, streaming: stdin from a file descriptor (half-closed
        at its EOF), stdout and stderr to file objects; the exit code. cp and port-forward
        move their bytes this way, in constant memory."""

    @abc.abstractmethod
    def alive(self) -> bool:
        """Whether the sidecar still runs (it ends with its target)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop and remove what was started (idempotent)."""

    def __enter__(self) -> "ExecSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Runtime(abc.ABC):
    name: str
    # Called with (plan, container ID) as soon as a container exists, so the session flow
    # can record what debugkit itself created (gc collects nothing else by default).
    on_created: Callable[[Plan, str], None] | None = None
    # Called with every stream opened to a sidecar (an object with close()), so that a
    # fleet interrupted by Ctrl-C can end them from the main thread.
    on_stream: Callable[[object], None] | None = None
    # How many sessions share this runtime at once (a fleet's --parallel): a runtime that
    # polls for a sidecar to start polls less eagerly when many start together.
    concurrency: int = 1

    @abc.abstractmethod
    def plan(self, options: SidecarOptions, *, mode: str, thorough: bool = False) -> Plan:
        """Resolve and translate; start and change nothing. `thorough` (inspect, doctor)
        also gathers what only a report needs: every identity source, the target's shell
        and zombies, the namespace's PodSecurity verdict even for a reused container."""

    @abc.abstractmethod
    def run(self, plan: Plan, streams: Streams) -> int:
        """Run the plan's command (or interactive shell) to its end; its exit code."""

    @abc.abstractmethod
    def open_exec(self, plan: Plan) -> ExecSession:
        """Start one sidecar for many commands; the caller closes it."""

    @abc.abstractmethod
    def inspect(self, plan: Plan) -> dict:
        """What inspect shows: the identity, every source, and the exact request."""

    @abc.abstractmethod
    def sessions(self) -> list[SessionRow]:
        """debugkit's sidecars on this runtime, running or not."""

    @abc.abstractmethod
    def remove(self, row: SessionRow) -> None:
        """Remove a sidecar found by `sessions` (gc); a runtime that cannot says why."""

    def direct_forward(self, plan: Plan):
        """A way to reach the target's localhost ports without a sidecar (Kubernetes'
        portforward subresource, when RBAC allows it), or None: then port-forward relays
        through the sidecar."""
        return None


def local_user() -> str:
    """Who runs debugkit on this machine, for labels, reuse keys and the audit log: the
    name of the real UID in the passwd database, never $USER or $LOGNAME (anyone can set
    those), or the UID itself when it has no entry (containers, CI)."""
    import os
    import pwd

    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
