"""Listing and collecting debug sessions: `debugkit ps` and `debugkit gc`.

A Docker sidecar is stale when the CLI that started it is gone (same host, PID no
longer a debugkit process) or when it is older than a limit. Kubernetes ephemeral
containers cannot be deleted (the API has no such verb); gc reports them instead.
"""
from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass

from debugkit import audit
from debugkit.spec import (LABEL_CLI_HOST, LABEL_CLI_PID, LABEL_PROFILE, LABEL_SESSION, LABEL_TARGET,
                           LABEL_USER)


@dataclass
class SessionRow:
    runtime: str
    session: str
    name: str
    target: str
    user: str
    state: str
    age_s: int
    profile: str = ""
    cli_pid: int | None = None
    cli_alive: bool | None = None
    id: str = ""
    namespace: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def cli_alive(host: str | None, pid: int | None) -> bool | None:
    """True/False for a CLI on this host; None when it ran elsewhere (cannot tell)."""
    if not pid or host != socket.gethostname():
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"debugkit" in fh.read()
    except OSError:
        return False


def docker_sessions(backend) -> list[SessionRow]:
    rows = []
    now = time.time()
    for ctr in backend.list_sidecars():
        labels = ctr.get("Labels") or {}
        pid = int(labels.get(LABEL_CLI_PID, "0") or 0) or None
        rows.append(SessionRow(
            runtime="docker",
            session=labels.get(LABEL_SESSION, "?"),
            name=(ctr.get("Names") or ["?"])[0].lstrip("/"),
            target=labels.get(LABEL_TARGET, "?"),
            user=labels.get(LABEL_USER, "?"),
            state=ctr.get("State", "?"),
            age_s=int(now - ctr.get("Created", now)),
            profile=labels.get(LABEL_PROFILE, ""),
            cli_pid=pid,
            cli_alive=cli_alive(labels.get(LABEL_CLI_HOST), pid),
            id=ctr.get("Id", ""),
        ))
    return rows


def stale_reason(row: SessionRow, *, older_than_s: int) -> str | None:
    if row.cli_alive is False:
        return f"its CLI (pid {row.cli_pid}) is gone"
    if row.age_s >= older_than_s:
        return f"older than {older_than_s}s"
    return None


def collect_docker(backend, *, older_than_s: int, dry_run: bool) -> list[dict]:
    actions = []
    for row in docker_sessions(backend):
        reason = stale_reason(row, older_than_s=older_than_s)
        if reason is None:
            continue
        if not dry_run:
            backend.remove_sidecar(row.id)
        actions.append({"runtime": "docker", "session": row.session, "name": row.name, "reason": reason,
                        "action": "would remove" if dry_run else "removed"})
    return actions


def close_abandoned_audit_sessions(*, dry_run: bool) -> list[dict]:
    """Give a start record whose CLI died (SIGKILL, power loss) its end record."""
    closed = []
    host = socket.gethostname()
    for entry in audit.sessions(audit.read()):
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
