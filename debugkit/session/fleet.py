"""Fleets: one command or runbook across every target a reference names, in parallel.

`deploy/checkout`, `-l app=web`, `--filter label=team=pay` or `compose/shop` expand to the
running targets (Runtime.expand: the skipped ones are reported, with why); each target then goes through
the ordinary session flow on its own (identity, PodSecurity pre-check, audit record) in a
pool of threads that share one runtime and so one API connection pool and rate limit.
Partial failure is normal: a target's error is its own line and the others carry on.
Ctrl-C stops them all, cleans up every sidecar, and the results so far are still reported.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from debugkit import runtimes
from debugkit.core.errors import (
    DebugkitError,
    ExitCode,
    Interrupted,
    Signalled,
    TargetNotFound,
    TargetNotRunning,
)
from debugkit.core.escape import safe
from debugkit.core.options import Connection
from debugkit.core.targets import ManyRef
from debugkit.runtimes.base import Member, Runtime
from debugkit.session import defaults

# Each stream of each target is kept up to this, as a runbook step's output is.
MAX_CAPTURE = 64 * 1024
# After Ctrl-C: how long the running targets get, all together, to wind down once their
# sidecars were stopped and their streams closed.
INTERRUPT_GRACE_S = 15.0


@dataclass
class Outcome:
    target: str
    namespace: str | None
    container: str | None
    status: str = "pending"         # pending, running, passed, failed, error, interrupted
    exit_code: int | None = None
    duration_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    error: dict | None = None       # {"message": ..., "exit_code": ...}: debugkit's own failure
    report: object = None           # a runbook's Report, when a runbook ran
    started: float | None = None    # time.monotonic() when it started (a live display's clock)
    context: str | None = None      # the named context (cluster) it is in, when several are

    def elapsed(self) -> float:
        if self.status == "running" and self.started is not None:
            return time.monotonic() - self.started
        return self.duration_s

    @property
    def label(self) -> str:
        """How output names it: its target, behind its context when there are several."""
        return f"[{self.context}] {self.target}" if self.context else self.target

    def as_dict(self) -> dict:
        return {**({"context": self.context} if self.context else {}),
                "target": self.target, "namespace": self.namespace, "container": self.container,
                "status": self.status, "exit_code": self.exit_code, "duration_s": round(self.duration_s, 3),
                "stdout": self.stdout, "stderr": self.stderr, "output_truncated": self.truncated,
                "error": self.error}


class Capture:
    """A stream that keeps the first MAX_CAPTURE bytes, and says whether it dropped any."""

    def __init__(self):
        self.data = bytearray()
        self.truncated = False

    def write(self, data: bytes) -> int:
        room = MAX_CAPTURE - len(self.data)
        if len(data) > room:
            self.truncated = True
        self.data += data[:max(room, 0)]
        return len(data)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


# -- expansion ---------------------------------------------------------------------------------------

def runtime_for(many: ManyRef, connection: Connection) -> Runtime:
    return runtimes.get(many.runtime, connection, preferences=defaults.PREFERENCES)


def expand(many: ManyRef, runtime: Runtime) -> tuple[list[Member], list[tuple[str, str]]]:
    """(running targets, [(name, why skipped)]) of a reference that names many."""
    found = runtime.expand(many)
    return list(found.members), list(found.skipped)


def require_members(many: ManyRef, members: list[Member], skipped: list[tuple[str, str]]) -> None:
    """Nothing to run on is debugkit's own error, with its exit code: 66 when the reference
    matches nothing, 67 when what it matches does not run."""
    if members:
        return
    if not skipped:
        raise TargetNotFound(f"{many} matches no {many.noun}")
    shown = "; ".join(f"{name}: {why}" for name, why in skipped[:5]) + ("; ..." if len(skipped) > 5 else "")
    raise TargetNotRunning(f"{many}: none of the {len(skipped)} it matches can be debugged ({safe(shown)})")


# -- running --------------------------------------------------------------------------------------------

class Cleanup:
    """What the targets running right now have started, so that Ctrl-C can end it all
    from the main thread: the sidecars they created (Runtime.stop) and the streams they
    opened (closed). Hooked into the shared runtime. Once cancelled, whatever a target
    still starts is ended as soon as it exists. Each target's own entries are forgotten
    when it is done, so the bookkeeping stays as small as --parallel."""

    def __init__(self, runtime, *, record_created: Callable | None = None):
        self.runtime = runtime
        self._record = record_created
        self._lock = threading.Lock()
        self._containers: dict[int, list[str]] = {}
        self._streams: dict[int, list[object]] = {}
        self.cancelled = False
        runtime.on_created = self.on_created
        runtime.on_stream = self.on_stream

    def on_created(self, plan, container_id: str) -> None:
        if self._record is not None:
            self._record(plan, container_id)
        with self._lock:
            if not self.cancelled:
                self._containers.setdefault(threading.get_ident(), []).append(container_id)
                return
        # Interrupted meanwhile: the runtime removes a container whose hook raised.
        raise Interrupted("interrupted before the sidecar started")

    def on_stream(self, stream) -> None:
        with self._lock:
            if not self.cancelled:
                self._streams.setdefault(threading.get_ident(), []).append(stream)
                return
        _close(stream)  # its reader sees the end at once

    def forget(self) -> None:
        """The calling thread's target is done: what it started is its own runtime's to end."""
        with self._lock:
            self._containers.pop(threading.get_ident(), None)
            self._streams.pop(threading.get_ident(), None)

    def cancel(self, *, grace: float = 3.0) -> None:
        with self._lock:
            self.cancelled = True
            streams = [s for group in self._streams.values() for s in group]
            containers = [c for group in self._containers.values() for c in group]
        for stream in streams:
            _close(stream)
        if not containers:
            return
        # In parallel, each within `grace` seconds and then until it is gone.
        threads = [threading.Thread(target=_quietly, args=(self.runtime.stop, cid), kwargs={"grace": grace},
                                    daemon=True, name="debugkit-fleet-stop") for cid in containers]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + grace + 10
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _close(stream) -> None:
    try:
        stream.close()
    except Exception:  # noqa: BLE001 - closed already, or its connection is gone
        pass


def _quietly(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - best effort: the engine may be gone
        pass


@dataclass
class Fleet:
    members: list[Member]
    parallel: int = 8
    fail_fast: bool = False
    on_change: Callable[[Outcome], None] = lambda outcome: None
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _interrupted: threading.Event = field(default_factory=threading.Event)
    _interrupt_code: int = int(ExitCode.INTERRUPTED)

    def interruption(self) -> Interrupted | None:
        """Once the fleet was interrupted (Ctrl-C, SIGTERM, SIGHUP): the error a member's session
        ends with, so its audit record says so too; None before. A member's command ends
        normally when the fleet stops its sidecar, with the code of the signal that stopped it,
        which is not the reason it ended."""
        if not self._interrupted.is_set():
            return None
        signum = {int(ExitCode.HANGUP): 1, int(ExitCode.TERMINATED): 15}.get(self._interrupt_code, 2)
        return Interrupted("interrupted before it finished", signum=signum)

    def _cut_short(self, outcome: Outcome) -> None:
        outcome.status = "interrupted"
        outcome.error = {"message": "interrupted before it finished", "exit_code": self._interrupt_code}

    def prepare(self) -> list[Outcome]:
        """One pending outcome per member, before anything runs (a display can show them)."""
        if not self.outcomes:
            self.outcomes = [Outcome(m.label, m.namespace, m.container) for m in self.members]
        return self.outcomes

    def run(self, work: Callable[[Member, Outcome], None], *, cancel: Callable[[], None],
            done: Callable[[], None] = lambda: None,
            review: Callable[[Member, Outcome], None] = lambda member, outcome: None) -> list[Outcome]:
        """Run work(member, outcome) for every member, at most `parallel` at a time; then, in
        the same thread, done() and review(member, outcome) (which may explain a failure).
        On Ctrl-C or SIGTERM: no new target starts, `cancel()` stops the running ones, and
        the interruption is raised once they have returned (or INTERRUPT_GRACE_S has passed)."""
        self.prepare()
        queue = list(zip(self.members, self.outcomes))
        queue.reverse()  # pop() from the end: the members' order
        lock = threading.Lock()

        # The main thread waits on these, not on Thread.join: a Ctrl-C that interrupts a
        # join marks that thread as stopped while it still runs (CPython 3.11, bpo-45274's
        # handling), and its target would go unreported.
        finished: dict[int, threading.Event] = {}

        def worker(index: int) -> None:
            try:
                work_through()
            finally:
                finished[index].set()

        def work_through() -> None:
            while not self._stop.is_set():
                with lock:
                    if not queue:
                        return
                    member, outcome = queue.pop()
                outcome.started = time.monotonic()
                outcome.status = "running"
                self.on_change(outcome)
                try:
                    work(member, outcome)
                except Interrupted as exc:
                    outcome.status = "interrupted"
                    outcome.error = {"message": str(exc), "exit_code": int(exc.exit_code)}
                except DebugkitError as exc:
                    outcome.status = "error"
                    outcome.error = {"message": str(exc), "exit_code": int(exc.exit_code)}
                except Exception as exc:  # noqa: BLE001 - one target's bug must not stop the others
                    outcome.status = "error"
                    outcome.error = {"message": f"internal error: {type(exc).__name__}: {exc}",
                                     "exit_code": int(ExitCode.INTERNAL)}
                finally:
                    outcome.duration_s = time.monotonic() - outcome.started
                    done()
                if self._interrupted.is_set():
                    if outcome.status != "passed":
                        self._cut_short(outcome)  # whatever it says, we cut it short
                else:
                    try:
                        review(member, outcome)
                    except Exception:  # noqa: BLE001 - an explanation is a nicety
                        pass
                if outcome.status in ("failed", "error") and self.fail_fast:
                    self._stop.set()
                self.on_change(outcome)

        threads = [threading.Thread(target=worker, args=(i,), daemon=True, name=f"debugkit-fleet-{i}")
                   for i in range(max(1, min(self.parallel, len(self.members))))]
        finished.update((i, threading.Event()) for i in range(len(threads)))
        try:
            for thread in threads:  # a Ctrl-C already while they start is handled below
                thread.start()
            for i in range(len(threads)):
                while not finished[i].wait(0.2):
                    pass
        except (KeyboardInterrupt, Signalled, Interrupted) as exc:
            if not isinstance(exc, KeyboardInterrupt):  # Ctrl-C keeps the default, 130
                self._interrupt_code = int(exc.exit_code)
            self._interrupted.set()
            self._stop.set()
            cancel()
            deadline = time.monotonic() + INTERRUPT_GRACE_S
            for i, thread in enumerate(threads):
                if thread.ident is not None:  # started
                    finished[i].wait(max(0.0, deadline - time.monotonic()))
            for outcome in self.outcomes:
                if outcome.status == "running":
                    outcome.duration_s = outcome.elapsed()
                    self._cut_short(outcome)
                elif outcome.status == "pending":
                    outcome.status = "not started"
            raise
        for outcome in self.outcomes:
            if outcome.status == "pending":
                outcome.status = "not started"  # --fail-fast
        return self.outcomes


def explain_failure(runtime: Runtime, member: Member, outcome: Outcome) -> None:
    """A command killed by a signal (143 when the kubelet stops the pod), a runbook cut
    short, or a debugkit error: when the target is gone, say so, as debugkit's own error
    (67) beside the command's exit code. One question to the runtime, only then."""
    aborted = getattr(outcome.report, "aborted", "") if outcome.report is not None else ""
    if outcome.status == "failed":
        if (outcome.exit_code or 0) < 128 and not aborted:
            return  # the command's own verdict
    elif outcome.status != "error":
        return
    why = runtime.why_gone(member.ref)
    if why is None:
        return
    why = f"{member.label} {why}"
    if outcome.status == "error":
        detail = (outcome.error or {}).get("message", "")
    elif aborted:
        detail = f"runbook aborted at {aborted}"
    else:
        detail = f"the command ended with exit {outcome.exit_code}"
    outcome.status = "error"
    outcome.error = {"message": f"{why} ({detail})" if detail else why, "exit_code": int(ExitCode.TARGET_NOT_RUNNING)}


def exit_status(outcomes: list[Outcome]) -> int:
    """0: every target passed; 1: a command or runbook failed somewhere (or some targets
    could not be reached while others were); debugkit's own error code when no target
    could be reached at all (the most common one, when they differ)."""
    if not outcomes:
        return int(ExitCode.TARGET_NOT_FOUND)
    if all(o.status == "passed" for o in outcomes):
        return 0
    reached = [o for o in outcomes if o.status in ("passed", "failed")]
    if not reached:
        errors = [o.error["exit_code"] for o in outcomes if o.error]
        if not errors:
            return 1
        return max(errors, key=lambda code: (errors.count(code), -errors.index(code)))
    return 1
