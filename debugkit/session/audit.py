"""An append-only JSONL record of every debug session: who, what, as whom, with what result.

Each record is one line written with a single O_APPEND write under an exclusive
flock and then fsynced, so concurrent sessions never interleave and a killed CLI can
leave a start without an end, but never half a line.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
from pathlib import Path
from typing import Iterable, Iterator

from debugkit.core.errors import InvalidInput

SCHEMA = 1


def audit_path() -> Path:
    override = os.environ.get("DEBUGKIT_AUDIT_LOG")
    if override:
        return Path(override)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "debugkit" / "audit.jsonl"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def append(record: dict, *, path: Path | None = None) -> None:
    path = path or audit_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = (json.dumps({"schema": SCHEMA, "ts": now(), **record}, sort_keys=False,
                       separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock


def read(*, path: Path | None = None) -> Iterator[dict]:
    path = path or audit_path()
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                record = json.loads(raw)
            except ValueError:
                yield {"event": "corrupt", "line": number}
                continue
            yield record


_DURATION = re.compile(r"^(\d+)([smhd])$")


def parse_duration(value: str, *, flag: str) -> int:
    """`90s`, `30m`, `12h`, `7d` in seconds."""
    match = _DURATION.match(value.strip())
    if not match:
        raise InvalidInput(f"invalid {flag} {value!r}: use e.g. 90s, 30m, 12h or 7d")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def parse_since(value: str, *, reference: dt.datetime | None = None) -> dt.datetime:
    """`30m`, `12h`, `7d`, or an ISO-8601 time (UTC when no zone is given)."""
    reference = reference or dt.datetime.now(dt.timezone.utc)
    if _DURATION.match(value.strip()):
        return reference - dt.timedelta(seconds=parse_duration(value, flag="--since"))
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise InvalidInput(f"invalid --since {value!r}: use e.g. 30m, 12h, 7d or 2026-11-23T10:00") from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def sessions(records: Iterable[dict], *, since: dt.datetime | None = None) -> list[dict]:
    """Start and end records joined by session, oldest first; refused attempts included."""
    by_id: dict[str, dict] = {}
    order: list[str] = []
    for rec in records:
        sid = rec.get("session")
        if not sid:
            continue
        if sid not in by_id:
            by_id[sid] = {"session": sid}
            order.append(sid)
        entry = by_id[sid]
        event = rec.get("event")
        if event == "start":
            entry.update({k: v for k, v in rec.items() if k not in ("event", "schema")})
            entry["start"] = rec["ts"]
        elif event in ("end", "refused"):
            for key in ("runtime", "target", "command", "local_user", "profile"):
                if key in rec:
                    entry.setdefault(key, rec[key])
            for key in ("exit_code", "outcome", "error", "closed_by", "duration_s"):
                if key in rec:
                    entry[key] = rec[key]
            entry["end"] = rec["ts"]
            if event == "refused":
                entry.setdefault("start", rec["ts"])
    out = [by_id[s] for s in order]
    if since is not None:
        out = [s for s in out if s.get("start") and dt.datetime.fromisoformat(s["start"]) >= since]
    return out
