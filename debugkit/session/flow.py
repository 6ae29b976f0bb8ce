"""The one session flow for every runtime: validate -> plan -> audit -> run -> clean up.

Validation is pure and runs before any client exists; a refusal at any point before
launch leaves one `refused` audit record. The start record is written (and fsynced)
before anything is launched, and the end record carries the exit code whatever happens.
Signals become exceptions (session.signals), so every runtime's cleanup runs.
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

from debugkit import runtimes
from debugkit.core.errors import (
    DebugkitError,
    ExitCode,
    FileInvalid,
    Interrupted,
    InvalidInput,
    OutputClosed,
    Signalled,
    TargetNotRunning,
)
from debugkit.core.options import Flags, SidecarOptions, check_node_flags, sidecar_options
from debugkit.core.spec import ENV_REASON, new_session_id
from debugkit.core.targets import parse_target
from debugkit.runtimes.base import ExecSession, Plan, RelayUnavailable, Runtime, Streams
from debugkit.session import audit, defaults, planning, recording

MAX_CUSTOM_BYTES = 1 << 20


def load_custom(path: str) -> dict:
    """A --custom file: one mapping of container fields, with the runbooks' YAML limits."""
    from debugkit.core import yamlsafe

    if not path:
        raise FileInvalid("--custom must not be empty: give a YAML or JSON file")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CUSTOM_BYTES + 1)
    except OSError as exc:
        raise FileInvalid(f"cannot read --custom {path}: {exc.strerror or exc}") from None
    return yamlsafe.load_mapping(data, path, max_bytes=MAX_CUSTOM_BYTES, fail=FileInvalid,
                                 what="a --custom file (a partial container spec)")


def validate(flags: Flags) -> SidecarOptions:
    """Everything the person typed, checked with no engine or cluster contacted; what they
    did not type comes from the environment, the config file or the built-in defaults. A
    flag that does not apply to the target's runtime is refused here too. (--record and
    --record-input are the session's, not the sidecar's: see recording_for.)"""
    ref = parse_target(flags.target, runtimes.syntax(), namespace=flags.namespace, container=flags.container)
    check_node_flags(ref, flags)
    filled = defaults.fill(flags, runtime=ref.runtime, kube_context=flags.connection.kube_context)
    data = load_custom(flags.custom) if flags.custom is not None else None
    check_flags(ref.runtime, flags)
    return sidecar_options(target=ref, custom=data, custom_source=flags.custom, connection=flags.connection,
                           **filled)


def check_flags(runtime: str, flags: Flags) -> None:
    """Refuse a runtime-specific flag the runtime does not take (--custom on a container,
    --memory on a pod), before anything is contacted."""
    refused = runtimes.refusals(runtime, {name: getattr(flags, name) for name in runtimes.RUNTIME_FLAGS})
    if refused:
        raise InvalidInput(refused[0])


def check_reason(flags: Flags) -> None:
    """--reason as typed, and the config's require_reason, checked before anything is
    contacted (a fleet checks it once, before it looks for its members)."""
    from debugkit.core.options import parse_reason

    defaults.require_reason(parse_reason(flags.reason))


@contextlib.contextmanager
def refusals_audited(flags: Flags) -> Iterator[None]:
    """A session refused before launch still leaves one complete record of the attempt."""
    try:
        yield
    except DebugkitError as exc:
        # A log that cannot take the record must not hide why the session was refused.
        with contextlib.suppress(audit.AuditUnwritable):
            audit.append({
                "event": "refused", "session": flags.session_id or new_session_id(),
                "runtime": _runtime_of(flags.target), "target": str(flags.target),
                "command": list(flags.command or ()), "profile": flags.profile,
                **audit.who(), "exit_code": int(exc.exit_code), "outcome": "refused",
                "error": str(exc), **({"reason": flags.reason} if flags.reason else {}),
            })
        raise


def _runtime_of(target: str) -> str | None:
    try:
        return parse_target(str(target), runtimes.syntax()).runtime
    except DebugkitError:
        return None


def privileges(plan: Plan) -> dict:
    """What the sidecar may do, as sent: the audit record says it plainly."""
    spec = plan.spec
    out = {"user": f"{spec.uid}:{spec.gid}", "cap_add": list(spec.cap_add), "cap_drop": list(spec.cap_drop),
           "privileged": spec.privileged, "no_new_privileges": spec.no_new_privileges,
           "read_only_root": spec.read_only_root}
    if plan.security_context is not None:  # sent as one object (after --custom was merged)
        out["security_context"] = plan.security_context
    return out


def audit_start(plan: Plan, *, mode: str, record: dict | None = None) -> float:
    """Write (and fsync) the start record before anything is launched."""
    spec = plan.spec
    audit.append({
        "event": "start",
        "session": spec.session_id,
        "runtime": plan.runtime,
        "target": plan.target.name,
        "target_id": plan.target.id,
        "identity": spec.identity.as_dict(),
        "sidecar_user": f"{spec.uid}:{spec.gid}",
        "image": spec.image,
        "image_id": plan.image_id,
        "image_digest": plan.image_digest,
        "profile": spec.profile,
        "privileges": privileges(plan),
        "sidecar": plan.reuse or spec.name,
        "reused": plan.reuse is not None,
        "mode": mode,
        "command": list(spec.command),
        **audit.who(),
        "cli_pid": os.getpid(),
        "host": socket.gethostname(),
        **({"engine": plan.engine} if plan.engine else {}),
        **({"reason": spec.env_dict()[ENV_REASON]} if ENV_REASON in spec.env_dict() else {}),
        **(record or {}),
    })
    return time.monotonic()


def recording_for(flags: Flags) -> recording.SessionRecording:
    """Whether this session is recorded: --record, --record-input (which implies it), or
    the config file's `record: always`."""
    return recording.SessionRecording(enabled=bool(flags.record) or flags.record_input or defaults.record_sessions(),
                                      record_input=flags.record_input)


@contextlib.contextmanager
def audited(plan: Plan, *, started: float, sealed: Callable[[dict], None] | None = None) -> Iterator[dict]:
    """The end record, whatever happens: the caller puts the exit code in the yielded dict.
    `sealed(result)` runs just before it is written (a recording adds its hash)."""
    result: dict = {"exit_code": None, "outcome": "error"}
    try:
        yield result
    except (Interrupted, Signalled) as exc:
        result.update(exit_code=int(exc.exit_code), outcome="interrupted", error=str(exc))
        raise
    except KeyboardInterrupt:
        result.update(exit_code=int(ExitCode.INTERRUPTED), outcome="interrupted")
        raise
    except OutputClosed as exc:
        result.update(exit_code=int(exc.exit_code), outcome="output closed")
        raise
    except DebugkitError as exc:
        result.update(exit_code=int(exc.exit_code), outcome="error", error=str(exc))
        raise
    finally:
        if sealed is not None:
            sealed(result)
        audit.append({"event": "end", "session": plan.spec.session_id,
                      "duration_s": round(time.monotonic() - started, 3), **result})


def record_created(plan: Plan, container_id: str) -> None:
    audit.append({"event": "created", "session": plan.spec.session_id, "runtime": plan.runtime,
                  "container_id": container_id, "name": plan.spec.name})


def plan(flags: Flags, *, mode: str, thorough: bool = False,
         runtime: Runtime | None = None) -> tuple[Runtime, Plan]:
    """Validate, pick the runtime (or use the one given: a fleet shares one, and so one API
    connection pool), plan. Nothing is started; refusals are audited."""
    with refusals_audited(flags):
        options = validate(flags)
        if runtime is None:
            runtime = runtimes.for_target(options.target, options.connection, preferences=defaults.PREFERENCES)
        # The toolbox for the runtime's own context (a kube context's entry in the file).
        options = options.evolve(toolbox=defaults.toolbox_for(runtime.name, runtime.context_name))
        if runtime.on_created is None:
            runtime.on_created = record_created
        return runtime, planning.plan(runtime, options, mode=mode, thorough=thorough)


def attach(flags: Flags, streams: Streams, *, announce: Callable[[Plan], None] | None = None,
           runtime: Runtime | None = None, explain_gone: bool = True,
           interruption: Callable[[], Interrupted | None] | None = None) -> int:
    """Run one command (or an interactive shell) in a sidecar; its exit code. A session
    that fails because its target went away says so (exit 67), not what broke first
    (`explain_gone=False`: the caller does, as a fleet does with its own names).
    `interruption()`: the fleet's Interrupted once it was interrupted; a command that ended
    because the fleet stopped it is audited as interrupted, not with the signal's code."""
    mode = "interactive" if flags.tty else "command"
    runtime, the_plan = plan(flags, mode=mode, runtime=runtime)
    if announce:
        announce(the_plan)
    recorded = recording_for(flags)
    started = audit_start(the_plan, mode=mode, record=recorded.start_fields(the_plan))
    with audited(the_plan, started=started, sealed=recorded.seal) as result, \
            recorded.streams(the_plan, streams, mode=mode) as session_streams:
        with explained(runtime, the_plan) if explain_gone else contextlib.nullcontext():
            code = runtime.run(the_plan, session_streams)
            cut_short = interruption() if interruption is not None else None
            if cut_short is not None:
                raise cut_short
            if code >= KILLED and explain_gone:
                # Killed by a signal: the kubelet's SIGTERM when the pod is deleted, say.
                gone = vanished(runtime, the_plan)
                if gone is not None:
                    raise TargetNotRunning(f"{gone} (the command ended with exit {code})")
        result["exit_code"] = code
        result["outcome"] = "exited"
    return result["exit_code"]


# A command's exit code from here on is a death by signal (128 + N).
KILLED = 128


@contextlib.contextmanager
def explained(runtime: Runtime, the_plan: Plan) -> Iterator[None]:
    """debugkit's own error while the target was going away is the target's going away:
    one line that says so (67), not the first thing that broke on the way."""
    try:
        yield
    except (Interrupted, OutputClosed, TargetNotRunning):
        raise
    except DebugkitError as exc:
        gone = vanished(runtime, the_plan)
        if gone is None:
            raise
        raise TargetNotRunning(gone) from exc


def vanished(runtime: Runtime, the_plan: Plan) -> str | None:
    """`REF went away ...`, when the runtime says the target is gone; None otherwise."""
    try:
        why = runtime.why_gone(the_plan.ref)
    except DebugkitError:
        return None
    return None if why is None else f"{the_plan.ref} {why}"


def inspect(flags: Flags) -> dict:
    runtime, the_plan = plan(flags, mode="command", thorough=True)
    return runtime.inspect(the_plan)


class LazySession:
    """A planned sidecar that starts only when asked (port-forward may not need one)."""

    def __init__(self, runtime, plan: Plan):
        self.runtime = runtime
        self.plan = plan
        self._live: ExecSession | None = None
        self.relay_dir: Path | None = None  # see start_relay

    def direct_forward(self):
        return self.runtime.direct_forward(self.plan)

    def start_relay(self) -> ExecSession | None:
        """The sidecar with a host directory of ours mounted for the socket relay
        (port-forward's and cp's, session/relaydir.py), or None when the runtime cannot
        mount one, the directory cannot be made, or the engine refuses it: then start().
        The directory is `relay_dir` until close() removes it, after the sidecar."""
        from debugkit.session import relaydir

        if self._live is not None:
            return None
        session_id = self.plan.spec.session_id
        opened = self.runtime.open_relay(self.plan, relaydir.inner_path(session_id))
        if opened is None:
            return None
        try:
            self.relay_dir = relaydir.make(session_id)
            self._live = opened.__enter__()
        except (RelayUnavailable, OSError):
            self._remove_relay_dir()
            return None
        return self._live

    def start(self) -> ExecSession:
        if self._live is None:
            live = self.runtime.open_exec(self.plan)
            self._live = live.__enter__()
        return self._live

    def close(self) -> None:
        try:
            if self._live is not None:
                self._live.close()
                self._live = None
        finally:
            self._remove_relay_dir()  # after the sidecar that mounted it

    def _remove_relay_dir(self) -> None:
        if self.relay_dir is not None:
            from debugkit.session import relaydir

            relaydir.remove(self.relay_dir)
            self.relay_dir = None


@contextlib.contextmanager
def exec_session(flags: Flags, *, mode: str = "runbook", record: dict | None = None, lazy: bool = False,
                 runtime: Runtime | None = None) -> Iterator[ExecSession]:
    """One started sidecar whose `.exec(argv, timeout=...)` runs a command and returns an
    ExecResult: runbooks, cp and port-forward use it for one start, many commands.
    `record` adds fields to the audit start record (the runbook file and its SHA-256).
    `lazy`: yield a LazySession that starts the sidecar only when asked. A runbook's
    session is recorded when asked (--record, or the config's `record: always`); cp and
    port-forward move bytes, not a terminal's output, and are never recorded."""
    runtime, the_plan = plan(flags, mode="exec", runtime=runtime)
    recorded = recording_for(flags) if mode == "runbook" else recording.SessionRecording(enabled=False)
    started = audit_start(the_plan, mode=mode, record={**(record or {}), **recorded.start_fields(the_plan)})
    with audited(the_plan, started=started, sealed=recorded.seal) as result:
        if lazy:
            holder = LazySession(runtime, the_plan)
            try:
                yield holder
            finally:
                holder.close()
        else:
            opened = runtime.open_steps(the_plan) if mode == "runbook" else runtime.open_exec(the_plan)
            with opened as live:
                yield recorded.exec_session(the_plan, live, mode=mode)
        result.update(exit_code=0, outcome="closed")
