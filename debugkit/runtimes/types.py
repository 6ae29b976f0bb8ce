"""The types the Runtime protocol speaks (base.py re-exports them: import them from there).

Everything here is plain data that crosses from a runtime to the session layer and back:
what a plan found and decided, what ps and gc list, what a fleet expands to, what doctor
checks return. A runtime keeps its own facts in `details` fields typed by itself; the
session layer never reads them.

The immutable records are NamedTuples, not dataclasses: a dataclass costs about a
millisecond to create when its module is imported (it generates and compiles its
methods), a NamedTuple a fifth of that, and every command imports these. (SessionRow and
Streams are filled in after they are made, and stay dataclasses.)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, BinaryIO, Callable, NamedTuple

from debugkit.core.errors import DebugkitError
from debugkit.core.identity import Identity
from debugkit.core.options import SidecarOptions
from debugkit.core.spec import SidecarSpec
from debugkit.core.targets import TargetRef

# What a plan is for: a scripted command, an interactive terminal, or one sidecar for
# many commands (runbooks, cp, port-forward).
MODES = ("command", "interactive", "exec")


class ResolvedTarget(NamedTuple):
    """The one shape every runtime returns for the container being debugged."""

    runtime: str
    name: str                     # the container's name, or NAMESPACE/POD/CONTAINER
    id: str                       # the container ID, or the pod's UID
    image: str
    namespace: str | None = None  # Kubernetes
    pod: str | None = None
    container: str | None = None


class IdentitySource(NamedTuple):
    """One identity source as inspect shows it: what it said, or why it could not say."""

    source: str
    identity: Identity | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        if self.identity is not None:
            return {**self.identity.as_dict(), "source": self.source}
        return {"source": self.source, "error": self.error}


# -- planning: what the runtime's hooks hand the session's plan skeleton --------------------------

class Located(NamedTuple):
    """A running target as `Runtime.locate` found it."""

    target: ResolvedTarget
    details: Any = None           # the runtime's own view of it (an engine's inspect, a pod)


class SidecarImage(NamedTuple):
    """The image the sidecar runs, as `Runtime.sidecar_image` sees it."""

    ref: str
    helper: bool                  # the sidecar has debugkit-helper (the toolbox, or one mounted into it)
    default_command: tuple[str, ...]   # what an interactive session runs without a COMMAND
    image_id: str | None = None
    image_digest: str | None = None
    warnings: tuple[str, ...] = ()
    details: Any = None           # the runtime's own (mounts that give a foreign image the helper)


class Draft(NamedTuple):
    """Everything the plan skeleton decided, for `Runtime.translate` to turn into a request."""

    located: Located
    spec: SidecarSpec             # after the profile, the limits and --target-env
    image: SidecarImage
    mode: str
    options: SidecarOptions
    keep_alive: float | None      # None: the sidecar ends with its session
    reuse_key: str | None         # what a reusable sidecar for this plan carries
    reuse: str | None             # an existing sidecar to exec into instead of a new one (decided after
                                  # translate, by Runtime.reusable; translate always sees None)
    local_user: str
    thorough: bool = False


class Translation(NamedTuple):
    """What `Runtime.translate` made of a Draft."""

    spec: SidecarSpec             # the spec as planned (a runtime may add its labels)
    request: dict                 # the runtime's own request, from a pure translation
    warnings: tuple[str, ...] = ()
    engine: str | None = None     # where the sidecar runs, for the audit log (an engine's address)
    security_context: dict | None = None  # the privileges exactly as sent, when sent as one object
    details: Any = None           # the runtime's own facts about this plan


class Admission(NamedTuple):
    """A policy's verdict on the sidecar before it is sent (Kubernetes' PodSecurity)."""

    where: str                    # "namespace shop"
    level: str | None             # the policy's level, None when it could not be read
    reasons: tuple[str, ...] = () # why it would be refused; empty: admitted

    @property
    def admitted(self) -> bool:
        return not self.reasons


class TargetReport(NamedTuple):
    """What a thorough plan (inspect, doctor) learns beyond the identity."""

    pid: int | None = None        # the target's main process as this machine sees it
    dumpable: bool | None = None  # None: unknown (see unseen)
    zombies: int | None = None
    shell: str | None = None
    configured_user: str | None = None
    image_id: str | None = None   # the target's own image
    unseen: str = ""              # why this machine cannot look at the target's processes


class Plan(NamedTuple):
    runtime: str
    mode: str
    target: ResolvedTarget
    spec: SidecarSpec
    request: dict                               # the runtime's own request, from a pure translation
    sources: tuple[IdentitySource, ...] = ()
    warnings: tuple[str, ...] = ()
    image_id: str | None = None                 # the sidecar image, when the runtime knows it
    image_digest: str | None = None
    helper: bool = False                        # the sidecar has debugkit-helper (cp, port-forward need it)
    keep_alive: float | None = None             # seconds a reusable sidecar stays once idle; None: not reused
    reuse: str | None = None                    # an existing sidecar to exec into instead of a new one
    engine: str | None = None                   # where the sidecar runs, for the audit log
    security_context: dict | None = None        # the privileges as sent, when sent as one object
    admission: Admission | None = None          # the policy's verdict, where there is a policy
    report: TargetReport | None = None          # thorough plans only
    details: Any = None                         # the runtime's own facts; nothing outside it reads them
    ref: TargetRef | None = None                # the reference it was planned from

    @property
    def interactive(self) -> bool:
        return self.mode == "interactive"


@dataclass
class Streams:
    stdin: BinaryIO | None
    stdout: BinaryIO
    stderr: BinaryIO


# -- held copies (attach --copy, attach image/REF) ------------------------------------------------

class CopyRequest(NamedTuple):
    """What a held copy of a target (or of an image) must be, as the person asked."""

    ref: TargetRef                # the original: a container, a pod, or an image (core.targets.ImageRef)
    session_id: str
    local_user: str
    toolbox: str                  # the image whose readable debugkit-helper holds the copy
    writable: bool = False        # --copy-writable: volumes and bind mounts as writable as the original's
    same_node: bool = False       # Kubernetes: keep the original's node
    keep: bool = False            # --keep-alive: the copy outlives the session, and a later one reuses it
    timeout: float = 120.0        # seconds for the copy to be held


class CopyPlan(NamedTuple):
    """A held copy as `Runtime.plan_copy` translated it (pure: nothing is created yet)."""

    runtime: str
    original: str                 # the original as messages and the audit log name it
    original_id: str              # its container ID, pod UID or image ID
    name: str                     # the copy's name
    request: dict                 # the runtime's own create request, from a pure translation
    program: tuple[str, ...]      # what `target start` runs: the original entrypoint and command
    dropped: tuple[str, ...] = () # what the copy leaves out, one phrase each ("published ports 8080/tcp")
    reuse: str | None = None      # a kept copy of this person's to reuse instead (--keep-alive)
    warnings: tuple[str, ...] = ()
    details: Any = None           # the runtime's own facts


class HeldCopy(NamedTuple):
    """A held copy that exists: attach runs against `target`."""

    runtime: str
    original: str
    original_id: str
    name: str
    id: str
    target: str                   # the copy as a target reference (what attach is given)
    reused: bool = False
    details: Any = None


# -- ps and gc -------------------------------------------------------------------------------------

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
    context: str | None = None         # the named context (cluster) it was listed in, when several were

    def as_dict(self) -> dict:
        return asdict(self)


# -- fleets ------------------------------------------------------------------------------------------

class Member(NamedTuple):
    """One target of a reference that names many."""

    ref: TargetRef
    label: str                      # how the fleet's output names it: pod/NAME, or the container's name
    namespace: str | None = None
    container: str | None = None


class Expansion(NamedTuple):
    """What a reference that names many expands to: the targets that can be debugged,
    and the ones that cannot, each with why."""

    members: tuple[Member, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()


# -- doctor ----------------------------------------------------------------------------------------

OK, FAIL, WARN, SKIP, NOT_CONFIGURED = "ok", "fail", "warn", "skip", "not configured"


class CheckResult(NamedTuple):
    """One line of `debugkit doctor`: a check's name, its status, what it found, and the fix."""

    name: str
    status: str          # ok | fail | warn | skip | not configured
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        """Only a failure fails the run: warnings, skips and missing runtimes do not."""
        return self.status != FAIL

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "ok": self.ok, "detail": self.detail, "fix": self.fix}


def checked(name: str, check: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    """A check that breaks (a bug, an answer nobody expected) is one failed line, not a crash."""
    try:
        return check()
    except DebugkitError as exc:
        return [CheckResult(name, FAIL, exc.message, exc.hint or "")]
    except Exception as exc:  # noqa: BLE001
        return [CheckResult(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                            "rerun with --debug and report it")]


__all__ = ["CopyRequest", "CopyPlan", "HeldCopy", "MODES", "ResolvedTarget", "IdentitySource", "Located", "SidecarImage",
           "Draft", "Translation",
           "Admission", "TargetReport", "Plan", "Streams", "SessionRow", "Member", "Expansion", "OK", "FAIL", "WARN",
           "SKIP", "NOT_CONFIGURED", "CheckResult", "checked"]
