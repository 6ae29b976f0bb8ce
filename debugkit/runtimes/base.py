"""The Runtime protocol: what every capability needs from a runtime, and the types it speaks.

A runtime finds a target, tells who it runs as, translates a sidecar spec into its own
request with a pure function, runs it, and answers for ps, gc, fleets, doctor and
completion. The session layer (debugkit.session) plans (the skeleton is written once, in
session/planning.py, over the hooks below), audits, handles signals and cleans up, for all
of them; runtimes never import it. The session layer and the CLI import this module and
the registry (debugkit.runtimes), never a runtime's own modules; the types are defined in
types.py and re-exported here.
"""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING, BinaryIO, Callable, Sequence

from debugkit.core.errors import DebugkitError, ImageMissing, InvalidInput
from debugkit.core.escape import safe
from debugkit.runtimes.runtime_entry import RuntimeEntry
from debugkit.runtimes.execution import BoundedCapture, ExecResult
# The local terminal and streams, as the CLI and the session layer use them (raw mode for an
# interactive session, its size for a recording, a write that survives a closed reader).
from debugkit.runtimes.terminal import raw_mode, terminal_size, write_output  # noqa: F401
from debugkit.runtimes.types import (  # noqa: F401 - re-exported: the protocol's types
    FAIL,
    MODES,
    NOT_CONFIGURED,
    OK,
    SKIP,
    WARN,
    Admission,
    CheckResult,
    CopyPlan,
    CopyRequest,
    Draft,
    Expansion,
    HeldCopy,
    IdentitySource,
    Located,
    Member,
    Plan,
    ResolvedTarget,
    SessionRow,
    SidecarImage,
    Streams,
    TargetReport,
    Translation,
    checked,
)

__all__ = ["FAIL", "MODES", "NOT_CONFIGURED", "OK", "SKIP", "WARN", "Admission", "CheckResult", "CopyPlan",
           "CopyRequest", "Draft", "Expansion", "HeldCopy", "HOLDER_SOURCE", "LABEL_COPY_OF", "LABEL_COPY_KEEP",
           "IdentitySource", "Located", "Member", "Plan", "ResolvedTarget", "SessionRow", "SidecarImage", "Streams",
           "TargetReport", "Translation", "checked", "BoundedCapture", "ExecResult", "ExecSession", "Preferences",
           "Runtime", "RuntimeEntry", "HELPER_PATH", "HELPER_PROTOCOL", "HELPER_USAGE", "helper_mismatch",
           "GUARD_FIRST_SECONDS", "RELAY_MOUNT", "RelayUnavailable", "reaped", "guard_command", "guard_name",
           "with_target_env", "local_user", "raw_mode", "terminal_size", "write_output"]

if TYPE_CHECKING:  # pragma: no cover
    from debugkit.core.identity import Identity
    from debugkit.core.options import Connection, SidecarOptions, UserOverride
    from debugkit.core.targets import ManyRef, TargetRef

# The toolbox's helper (toolbox-image/helper): reaper, keep-alive, copies, relay. Every
# runtime puts it at this path (the toolbox has it; Docker and Podman mount it into a
# foreign image when they can); plan.helper says whether the sidecar has it.
HELPER_PATH = "/usr/local/bin/debugkit-helper"
# What the helper understands, as a number (the toolbox image's label
# io.debugkit.helper-protocol): 2 added reap --watch-stdin, 3 reap --guard, 4 relay --mux
# (port-forward over one exec), tar-out's exit 6 for a device, FIFO or socket, exit 64
# (HELPER_USAGE) for arguments it does not understand, and a helper that is not dumpable
# (the target cannot open its output); 5 hold, install-holder and target (held copies:
# attach --copy, attach image/REF), with a readable copy at HOLDER_SOURCE; 6 `steps` (a
# runbook's steps in one process, runtimes/steps.py); 7 `as-target` (a Kubernetes
# identity probe's commands drop to the target process's user without a shell or setpriv)
# and relay --listen (port-forward through unix sockets in a bind-mounted host directory,
# session/relaysock.py).
HELPER_PROTOCOL = 7
# Where port-forward's host directory is mounted in a sidecar that relays through unix
# sockets (Runtime.open_relay, session/relaysock.py).
RELAY_MOUNT = "/run/debugkit-relay"
# The toolbox's readable copy of the helper, which a held copy runs as its main process
# (`debugkit-helper hold -- PROGRAM`): it must stay dumpable, so it cannot be the
# execute-only one, and an init container must be able to copy it.
HOLDER_SOURCE = "/usr/local/lib/debugkit/debugkit-helper"
# A held copy's labels (Docker, Podman) or annotations (Kubernetes): the original's ID,
# and "true" when --keep-alive keeps it for a later session of the same person.
LABEL_COPY_OF = "io.debugkit.copy-of"
LABEL_COPY_KEEP = "io.debugkit.copy-keep"
# The helper's exit code for arguments it does not understand (sysexits' EX_USAGE), kept
# apart from every answer it gives (2: no such file, nothing listening): such a helper does
# not match this debugkit.
HELPER_USAGE = 64


class RelayUnavailable(DebugkitError):
    """The engine would not mount the relay's host directory (it does not see this
    machine's files): port-forward falls back to the exec stream."""


def helper_mismatch(code: int | None, stderr: bytes = b"") -> ImageMissing | None:
    """The error for a helper that refused the arguments this debugkit sent, or None."""
    if code != HELPER_USAGE:
        return None
    detail = stderr.decode(errors="replace").strip().splitlines()
    said = f": {safe(detail[0])}" if detail else ""
    return ImageMissing(f"the sidecar's debugkit-helper does not understand what this debugkit asks of it{said}",
                        hint="rebuild the toolbox with: debugkit toolbox build")


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

    def gone_within(self, seconds: float = 2.0) -> bool:
        """Whether the sidecar has ended, given the engine `seconds` to say so: when the
        target dies, a stream in the sidecar (a relay's) ends first, and the engine
        reports the sidecar stopped a little later."""
        import time

        deadline = time.monotonic() + seconds
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    @abc.abstractmethod
    def close(self) -> None:
        """Stop and remove what was started (idempotent)."""

    def __enter__(self) -> "ExecSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Preferences:
    """What the config file and the environment say that a runtime needs to know: the
    namespace a pod is looked up in, the sidecar image. session/defaults.py gives the real
    one; runtimes never read the configuration themselves. This one is the built-in
    defaults."""

    def namespace(self, context: str | None) -> str | None:
        """A namespace that beats the context's own (an environment variable, the file's
        entry for the context), or None."""
        return None

    def namespace_fallback(self) -> str:
        """The namespace when the context names none."""
        return "default"

    def image(self, runtime: str, context: str | None = None) -> tuple[str, str]:
        """(the sidecar image a target of `runtime` gets without --image, where it comes from)."""
        from debugkit.core.imageref import toolbox_ref

        return toolbox_ref(), "built-in"


class Runtime(abc.ABC):
    """What every capability needs from a runtime. The session layer plans, audits, fans
    out, lists, collects, checks and completes through these operations and nothing else;
    a runtime's own clients and types stay inside its package.

    Planning is written once (session/planning.py) and calls the hooks in the order they
    appear below: locate -> identity_sources -> user_identity -> sidecar_image ->
    reuse_key -> translate -> reusable -> admit -> report."""

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
    # How long a reusable sidecar stays once idle when no --keep-alive is given; None: a
    # sidecar ends with its session unless --keep-alive asks otherwise.
    default_keep_alive: float | None = None
    entry: RuntimeEntry | None = None
    preferences: Preferences = Preferences()

    @classmethod
    @abc.abstractmethod
    def for_connection(cls, entry: RuntimeEntry, connection: Connection,
                       preferences: Preferences | None = None) -> "Runtime":
        """The runtime for this connection (the registry calls it); contacts nothing yet."""

    @property
    def context_name(self) -> str | None:
        """The named context in use (a kube context), for messages, the audit log and the
        config file's `contexts:` entries; None for a runtime without contexts."""
        return None

    def close(self) -> None:
        """Release what this runtime holds open (connections)."""

    # -- planning hooks ------------------------------------------------------------------------

    @abc.abstractmethod
    def locate(self, options: SidecarOptions, *, mode: str, thorough: bool) -> Located:
        """The running target `options.target` names (TargetNotFound, TargetNotRunning
        otherwise); `options.user` says whose passwd entry matters too."""

    @abc.abstractmethod
    def identity_sources(self, located: Located, *, thorough: bool) -> list[IdentitySource]:
        """Who the target runs as, from every source in order of trust (`thorough`: all of
        them, for inspect and doctor), or up to the first that answers."""

    @abc.abstractmethod
    def user_identity(self, located: Located, user: UserOverride) -> Identity:
        """--user as an identity: a bare UID's group as the runtime would give it (from the
        target image's own /etc/passwd when it can be read), and the names from it."""

    @abc.abstractmethod
    def sidecar_image(self, ref: str, *, toolbox: bool) -> SidecarImage:
        """The sidecar image `ref` (`toolbox`: no --image was given): whether the sidecar will
        have debugkit-helper, its default command, its ID (ImageMissing when it is absent)."""

    def reuse_key(self, draft: Draft) -> str | None:
        """What a reusable sidecar for this draft carries (two sessions that may share one
        sidecar get the same key); None: this plan's sidecar is not reusable."""
        return None

    @abc.abstractmethod
    def translate(self, draft: Draft) -> Translation:
        """The runtime's own request for the draft, from a pure translation of its spec."""

    def reusable(self, draft: Draft, translation: Translation) -> tuple[str | None, str | None]:
        """(a running sidecar to exec into instead of starting the translated one, or None;
        one line saying why a candidate that carries the key is not trusted, or None). Only
        a sidecar this person's debugkit started for the key, and that is exactly what the
        translation asks for, may be reused. Asked only when the draft has a reuse key and
        --new was not given."""
        return None, None

    def admit(self, draft: Draft, translation: Translation) -> Admission | None:
        """A policy's verdict on the request before it is sent (None: no policy here). A
        runtime raises PolicyRejected for a rejected draft, unless the draft is thorough.
        `draft.reuse` is already decided: a reused sidecar passed it when it was started."""
        return None

    def report(self, draft: Draft, translation: Translation) -> TargetReport:
        """What inspect and doctor show beyond the identity (thorough plans only)."""
        return TargetReport(unseen=f"{self.name} does not show the target's processes here")

    # -- running --------------------------------------------------------------------------------

    @abc.abstractmethod
    def run(self, plan: Plan, streams: Streams) -> int:
        """Run the plan's command (or interactive shell) to its end; its exit code."""

    @abc.abstractmethod
    def open_exec(self, plan: Plan) -> ExecSession:
        """Start one sidecar for many commands; the caller closes it."""

    def open_steps(self, plan: Plan) -> ExecSession:
        """Start one sidecar for a runbook's steps (only `exec` is asked of it); the caller
        closes it. A runtime may make it cheaper than open_exec (Docker, locally: the
        helper's `steps` is the sidecar's main process, so no step costs an exec).
        Default: open_exec."""
        return self.open_exec(plan)

    @abc.abstractmethod
    def inspect(self, plan: Plan) -> dict:
        """What inspect shows: the identity, every source, and the exact request."""

    def open_relay(self, plan: Plan, directory: str) -> ExecSession | None:
        """Like open_exec, with the host `directory` mounted read-write at RELAY_MOUNT, for
        port-forward through unix sockets (session/relaysock.py); None when this runtime
        cannot (a remote engine, Kubernetes, a kept-alive sidecar): port-forward then
        relays over the exec stream. Entering the session raises RelayUnavailable when the
        engine refuses the directory."""
        return None

    def direct_forward(self, plan: Plan):
        """A way to reach the target's localhost ports without a sidecar (Kubernetes'
        portforward subresource, when RBAC allows it), or None: then port-forward relays
        through the sidecar."""
        return None

    # -- held copies (attach --copy, attach image/REF) -----------------------------------------------

    def plan_copy(self, request: CopyRequest) -> CopyPlan:
        """The held copy of `request.ref` as this runtime would create it, from a pure
        translation of the original's runnable spec (its image, entrypoint and command, env,
        user, working directory, mounts read-only unless `writable`, networks without
        published ports), with debugkit-helper hold as its main process; and a kept copy of
        this person's to reuse, when `request.keep`. Creates nothing. The original may be
        running, restarting, exited or crash-looping; it is only read."""
        raise InvalidInput(f"{self.name} cannot make a held copy of {request.ref}")

    def hold_copy(self, plan: CopyPlan) -> HeldCopy:
        """Create (or reuse) the copy and return once its holder runs; whatever a failure
        half-way leaves is removed. Never touches the original."""
        raise InvalidInput(f"{self.name} cannot make a held copy")

    def remove_copy(self, copy: HeldCopy) -> None:
        """Remove the copy and what was made for it (a volume), and nothing else."""

    # -- fleets ---------------------------------------------------------------------------------

    def expand(self, many: ManyRef) -> Expansion:
        """The running targets a reference that names many stands for, and the others with
        why they were skipped."""
        raise InvalidInput(f"{many} names many targets, which {self.name} cannot expand")

    def why_gone(self, ref: TargetRef) -> str | None:
        """Why a target went away while it was debugged ("was deleted while it was
        debugged"), or None while it is still there. Asked only after something failed."""
        return None

    def stop(self, sidecar_id: str, *, grace: float) -> None:
        """End a sidecar this runtime created, now (a fleet's Ctrl-C): gracefully within
        `grace` seconds, then removed, returning once it is gone. A runtime whose sidecars
        end with their streams has nothing to do."""

    # -- ps and gc ------------------------------------------------------------------------------

    @abc.abstractmethod
    def sessions(self, *, namespace: str | None = None) -> list[SessionRow]:
        """debugkit's sidecars on this runtime, running or not (in `namespace` only, for a
        runtime that has namespaces)."""

    @abc.abstractmethod
    def remove(self, row: SessionRow) -> None:
        """Remove a sidecar found by `sessions` (gc)."""

    def kept(self, row: SessionRow) -> str | None:
        """Why gc must leave this sidecar alone whatever its state (a runtime that cannot
        delete one), or None."""
        return None

    # -- doctor ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def doctor(self, *, target: Plan | None = None, namespace: str | None = None) -> list[CheckResult]:
        """This runtime's own checks, each with its fix: is it set up, does it answer, may
        we use it, is the sidecar image there. `target`: a thorough plan of one of its
        targets, whose facts sharpen the checks. Bounded in time whatever happens."""

    # -- completion -------------------------------------------------------------------------------

    def complete_targets(self, word: str, *, namespace: str | None = None, timeout: float) -> list[str]:
        """Target references of this runtime that may complete `word`."""
        return []

    def complete_namespaces(self, word: str, *, timeout: float) -> list[str]:
        return []

    def complete_contexts(self, word: str) -> list[str]:
        return []

    def contexts(self) -> list[str]:
        """Every named context of this runtime's configuration, for --all-contexts (none by default)."""
        return self.complete_contexts("")

    def complete_containers(self, ref: TargetRef, word: str, *, timeout: float) -> list[str]:
        """The containers a target (a pod) holds, for -c."""
        return []


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
