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
from typing import Callable, Iterator

from debugkit import runtimes
from debugkit.core.errors import (
    DebugkitError,
    ExitCode,
    FileInvalid,
    Interrupted,
    OutputClosed,
    Signalled,
)
from debugkit.core.options import Connection, SidecarOptions, sidecar_options
from debugkit.core.spec import ENV_REASON, new_session_id
from debugkit.core.targets import parse_target
from debugkit.runtimes.base import ExecSession, Plan, Streams
from debugkit.session import audit, defaults, recording

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


def validate(*, target: str, namespace: str | None = None, container: str | None = None,
             custom: str | None = None, connection: Connection | None = None, record: bool | None = None,
             record_input: bool = False, **flags) -> SidecarOptions:
    """Everything the person typed, checked with no engine or cluster contacted; what they
    did not type comes from the environment, the config file or the built-in defaults.
    (--record and --record-input are the session's, not the sidecar's: see recording_for.)"""
    connection = connection or Connection()
    ref = parse_target(target, namespace=namespace, container=container)
    filled = defaults.fill(flags, runtime=ref.runtime, kube_context=connection.kube_context)
    data = load_custom(custom) if custom is not None else None
    return sidecar_options(target=ref, custom=data, custom_source=custom, connection=connection, **filled)


def check_reason(raw: dict) -> None:
    """--reason as typed, and the config's require_reason, checked before anything is
    contacted (a fleet checks it once, before it looks for its members)."""
    from debugkit.core.options import parse_reason

    defaults.require_reason(parse_reason(raw.get("reason")))


@contextlib.contextmanager
def refusals_audited(raw: dict) -> Iterator[None]:
    """A session refused before launch still leaves one complete record of the attempt."""
    try:
        yield
    except DebugkitError as exc:
        # A log that cannot take the record must not hide why the session was refused.
        with contextlib.suppress(audit.AuditUnwritable):
            audit.append({
                "event": "refused", "session": raw.get("session_id") or new_session_id(),
                "runtime": _runtime_of(raw.get("target")), "target": str(raw.get("target")),
                "command": list(raw.get("command") or ()), "profile": raw.get("profile"),
                **audit.who(), "exit_code": int(exc.exit_code), "outcome": "refused",
                "error": str(exc), **({"reason": raw["reason"]} if raw.get("reason") else {}),
            })
        raise


def _runtime_of(target) -> str | None:
    try:
        return parse_target(str(target)).runtime
    except DebugkitError:
        return None


def privileges(plan: Plan) -> dict:
    """What the sidecar may do, as sent: the audit record says it plainly."""
    spec = plan.spec
    out = {"user": f"{spec.uid}:{spec.gid}", "cap_add": list(spec.cap_add), "cap_drop": list(spec.cap_drop),
           "privileged": spec.privileged, "no_new_privileges": spec.no_new_privileges,
           "read_only_root": spec.read_only_root}
    if "securityContext" in plan.request:  # Kubernetes: after --custom was merged
        out["security_context"] = plan.request["securityContext"]
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
        **plan.image,
        "profile": spec.profile,
        "privileges": privileges(plan),
        "sidecar": plan.reuse or spec.name,
        "reused": plan.reuse is not None,
        "mode": mode,
        "command": list(spec.command),
        **audit.who(),
        "cli_pid": os.getpid(),
        "host": socket.gethostname(),
        **({"engine": plan.facts["engine"]} if plan.facts.get("engine") else {}),
        **({"reason": spec.env_dict()[ENV_REASON]} if ENV_REASON in spec.env_dict() else {}),
        **(record or {}),
    })
    return time.monotonic()


def recording_for(raw: dict) -> recording.SessionRecording:
    """Whether this session is recorded: --record, --record-input (which implies it), or
    the config file's `record: always`."""
    record_input = bool(raw.get("record_input"))
    return recording.SessionRecording(enabled=bool(raw.get("record")) or record_input or defaults.record_sessions(),
                                      record_input=record_input)


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


def plan(raw: dict, *, mode: str, thorough: bool = False,
         runtime: runtimes.base.Runtime | None = None) -> tuple[runtimes.base.Runtime, Plan]:
    """Validate, pick the runtime (or use the one given: a fleet shares one, and so one API
    connection pool), plan. Nothing is started; refusals are audited."""
    with refusals_audited(raw):
        options = validate(**raw)
        if runtime is None:
            runtime = runtimes.for_target(options.target, options.connection,
                                          namespace_fallback=defaults.namespace_fallback())
        if options.target.runtime == "kubernetes":
            options = defaults.apply_context(raw, options, kube_context=runtime.context_name)
        if runtime.on_created is None:
            runtime.on_created = record_created
        return runtime, runtime.plan(options, mode=mode, thorough=thorough)


def attach(raw: dict, streams: Streams, *, announce: Callable[[Plan], None] | None = None,
           runtime: runtimes.base.Runtime | None = None) -> int:
    """Run one command (or an interactive shell) in a sidecar; its exit code."""
    mode = "interactive" if raw.get("tty") else "command"
    runtime, the_plan = plan(raw, mode=mode, runtime=runtime)
    if announce:
        announce(the_plan)
    recorded = recording_for(raw)
    started = audit_start(the_plan, mode=mode, record=recorded.start_fields(the_plan))
    with audited(the_plan, started=started, sealed=recorded.seal) as result:
        with recorded.streams(the_plan, streams, mode=mode) as session_streams:
            result["exit_code"] = runtime.run(the_plan, session_streams)
            result["outcome"] = "exited"
    return result["exit_code"]


def inspect(raw: dict) -> dict:
    runtime, the_plan = plan(raw, mode="command", thorough=True)
    return runtime.inspect(the_plan)


class LazySession:
    """A planned sidecar that starts only when asked (port-forward may not need one)."""

    def __init__(self, runtime, plan: Plan):
        self.runtime = runtime
        self.plan = plan
        self._live: ExecSession | None = None

    def direct_forward(self):
        return self.runtime.direct_forward(self.plan)

    def start(self) -> ExecSession:
        if self._live is None:
            live = self.runtime.open_exec(self.plan)
            self._live = live.__enter__()
        return self._live

    def close(self) -> None:
        if self._live is not None:
            self._live.close()
            self._live = None


@contextlib.contextmanager
def exec_session(raw: dict, *, mode: str = "runbook", record: dict | None = None, lazy: bool = False,
                 runtime: runtimes.base.Runtime | None = None) -> Iterator[ExecSession]:
    """One started sidecar whose `.exec(argv, timeout=...)` runs a command and returns an
    ExecResult: runbooks, cp and port-forward use it for one start, many commands.
    `record` adds fields to the audit start record (the runbook file and its SHA-256).
    `lazy`: yield a LazySession that starts the sidecar only when asked. A runbook's
    session is recorded when asked (--record, or the config's `record: always`); cp and
    port-forward move bytes, not a terminal's output, and are never recorded."""
    runtime, the_plan = plan(raw, mode="exec", runtime=runtime)
    recorded = recording_for(raw) if mode == "runbook" else recording.SessionRecording(enabled=False)
    started = audit_start(the_plan, mode=mode, record={**(record or {}), **recorded.start_fields(the_plan)})
    with audited(the_plan, started=started, sealed=recorded.seal) as result:
        if lazy:
            holder = LazySession(runtime, the_plan)
            try:
                yield holder
            finally:
                holder.close()
        else:
            with runtime.open_exec(the_plan) as live:
                yield recorded.exec_session(the_plan, live, mode=mode)
        result.update(exit_code=0, outcome="closed")
