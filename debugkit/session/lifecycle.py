"""Listing and collecting debug sessions on every runtime: `debugkit ps` and `debugkit gc`.

A container sidecar is stale when the CLI that started it is gone (same host, PID no
longer a debugkit process) or when it is older than a limit. A reusable sidecar
(--keep-alive) outlives its CLI on purpose: it is stale only when it has been idle well past
its keep-alive (it should have ended itself) or is older than the limit. Its idle time comes
from the audit log: the end of the last session that used it. A sidecar its runtime
cannot delete (Kubernetes' ephemeral containers: the API has no such verb) is reported
instead (Runtime.kept).

Under `--runtime auto` a runtime that is set up here but fails (an engine that does not
answer, or speaks none of our API versions) does not hide the others' answers, nor pass
for an empty list: the others' rows are shown, then the command fails with its error.
"""
from __future__ import annotations

import datetime as dt
import socket
from typing import Callable

from debugkit import runtimes
from debugkit.core.errors import DebugkitError
from debugkit.core.options import Connection
from debugkit.runtimes.base import SessionRow
from debugkit.session import audit, defaults

Warn = Callable[[str], None]


def cli_alive(host: str | None, pid: int | None) -> bool | None:
    """True/False for a CLI on this host; None when it ran elsewhere (cannot tell)."""
    if not pid or host != socket.gethostname():
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"debugkit" in fh.read()
    except OSError:
        return False


def selected(choice: str) -> list[str]:
    return list(runtimes.names()) if choice == "auto" else [choice]


class RuntimesFailed(DebugkitError):
    """Under `auto`, these runtimes failed (the others' answers were shown): one line naming
    each, and the first one's exit code."""

    def __init__(self, failures: list[tuple[str, DebugkitError]]):
        super().__init__("; ".join(f"{name}: {exc}" for name, exc in failures))
        self.failures = failures
        self.exit_code = failures[0][1].exit_code


def per_runtime(name: str, choice: str, call, failed: list | None):
    """A runtime named with --runtime must work. Under `auto` its failure is kept in
    `failed` (when given), so the other runtimes' answers still show before it is raised."""
    try:
        return call()
    except DebugkitError as exc:
        if choice != "auto" or failed is None:
            raise
        failed.append((name, exc))
        return []


def raise_failed(failed: list) -> None:
    if failed:
        raise RuntimesFailed(failed)


# A reusable sidecar ends itself once idle for its keep-alive; past this much more, it did not.
EXPIRY_GRACE_S = 60


def fill_idle(rows: list[SessionRow], log) -> None:
    """Idle seconds of each reusable sidecar: 0 while a session with a live CLI uses it,
    since the last session's end otherwise (at least 1); None when this audit log never
    used it."""
    use = audit.sidecar_use(log)
    now = dt.datetime.now(dt.timezone.utc)
    for row in rows:
        slot = use.get(row.name)
        if not row.reusable or slot is None:
            continue
        if any(cli_alive(host, pid) for host, pid in slot["open"]):
            row.idle_s = 0
        elif slot["last_end"] is not None:
            # At least 1: 0 means busy.
            row.idle_s = max(1, int((now - slot["last_end"]).total_seconds()))


def sessions(choice: str, *, connection: Connection, namespace: str | None, log=None,
             failed: list | None = None) -> list[SessionRow]:
    """The sessions of every selected runtime. `failed`: see per_runtime; without it the
    first failing runtime's error is raised."""
    rows: list[SessionRow] = []
    for name in selected(choice):
        if choice == "auto" and not runtimes.configured(name, connection):
            continue  # `auto` leaves a runtime that is not set up here quietly alone
        runtime = runtimes.get(name, connection, preferences=defaults.PREFERENCES)
        try:
            found = per_runtime(name, choice, lambda: runtime.sessions(namespace=namespace), failed)
        finally:
            runtime.close()
        for row in found:
            row.cli_alive = cli_alive(row.cli_host, row.cli_pid)
        rows += found
    if any(row.reusable for row in rows):
        fill_idle(rows, audit.read() if log is None else log)
    return rows


def stale_reason(row: SessionRow, *, older_than_s: int) -> str | None:
    if row.reusable:
        if row.idle_s and row.keep_alive_s is not None and row.idle_s > row.keep_alive_s + EXPIRY_GRACE_S:
            return f"idle {row.idle_s}s, past its keep-alive of {row.keep_alive_s}s"
    elif row.cli_alive is False:
        return f"its CLI (pid {row.cli_pid}) is gone"
    if row.age_s >= older_than_s:
        return f"older than {older_than_s}s"
    return None


def collect(choice: str, *, connection: Connection, namespace: str | None, older_than_s: int, dry_run: bool,
            warn: Warn, by_label: bool = False, failed: list | None = None) -> list[dict]:
    """Remove stale sidecars. Only containers this debugkit recorded creating (audit log)
    are collected: a label is easy to forge. `by_label` (gc --all) trusts the label alone.
    `failed`: see per_runtime."""
    log = audit.read()
    if log.skipped:
        warn(f"skipped {log.skipped} malformed line(s) in the audit log {audit.audit_path()}")
    created = audit.created_containers(log)
    actions = []
    collectors: dict[str, object] = {}
    try:
        for row in sessions(choice, connection=connection, namespace=namespace, log=log, failed=failed):
            runtime = collectors.get(row.runtime)
            if runtime is None:
                runtime = collectors[row.runtime] = runtimes.get(row.runtime, connection,
                                                                  preferences=defaults.PREFERENCES)
            actions += _collect(runtime, row, created=created, older_than_s=older_than_s, dry_run=dry_run,
                                by_label=by_label)
    finally:
        for runtime in collectors.values():
            runtime.close()
    return actions + collect_relay_dirs(log, older_than_s=older_than_s, dry_run=dry_run) + \
        close_abandoned_audit_sessions(log, dry_run=dry_run)


def collect_relay_dirs(log, *, older_than_s: int, dry_run: bool) -> list[dict]:
    """Remove port-forward's socket directories (session/relaydir.py) whose session is
    over: its end is in the audit log, or its CLI on this host is gone (a SIGKILL)."""
    from debugkit.session import relaydir

    host = socket.gethostname()
    known = {entry["session"]: entry for entry in audit.sessions(log)}

    def alive(session_id: str) -> bool | None:
        entry = known.get(session_id)
        if entry is None:
            return None
        if "end" in entry:
            return False
        return cli_alive(host, entry.get("cli_pid")) if entry.get("host") == host else None

    actions = []
    for session_id, path, reason in relaydir.leftovers(alive=alive, older_than_s=older_than_s):
        if not dry_run:
            relaydir.remove(path / relaydir.INNER)
        actions.append({"runtime": None, "session": session_id, "name": f"relay directory {path}", "reason": reason,
                        "action": "would remove" if dry_run else "removed"})
    return actions


def _collect(runtime, row: SessionRow, *, created: set, older_than_s: int, dry_run: bool,
             by_label: bool) -> list[dict]:
    """What gc does with one sidecar: keep it (a runtime that cannot remove one, or one
    that is not stale), skip it (no record of debugkit creating it), or remove it."""
    kept = runtime.kept(row)
    if kept is not None:
        return [{"runtime": row.runtime, "session": row.session, "name": row.name,
                 "target": f"{row.namespace}/{row.target}" if row.namespace else row.target, "state": row.state,
                 "reason": kept,
                 "action": "kept (still running)" if row.state == "running" else "kept (terminated)"}]
    reason = stale_reason(row, older_than_s=older_than_s)
    if reason is None:
        return []
    if not by_label and row.id not in created:
        return [{"runtime": row.runtime, "session": row.session, "name": row.name,
                 "reason": f"{reason}, but the audit log has no record of debugkit creating it "
                           f"(gc --all collects by label alone)", "action": "skipped"}]
    if not dry_run:
        runtime.remove(row)
    return [{"runtime": row.runtime, "session": row.session, "name": row.name, "reason": reason,
             "action": "would remove" if dry_run else "removed"}]


def close_abandoned_audit_sessions(log, *, dry_run: bool) -> list[dict]:
    """Give a start record whose CLI died (SIGKILL, power loss) its end record."""
    closed = []
    host = socket.gethostname()
    for entry in audit.sessions(log):
        if "end" in entry or entry.get("host") != host:
            continue
        if cli_alive(host, entry.get("cli_pid")) is False:
            if not dry_run:
                audit.append({"event": "end", "session": entry["session"], "exit_code": None,
                              "outcome": "abandoned", "closed_by": "gc"})
            closed.append({"runtime": entry.get("runtime"), "session": entry["session"],
                           "name": "audit record", "reason": f"its CLI (pid {entry.get('cli_pid')}) is gone",
                           "action": "would close" if dry_run else "closed"})
    return closed
