"""An append-only JSONL record of every debug session: who, what, as whom, with what result.

Each record is one line written with a single O_APPEND write under an exclusive
flock and then fsynced, so concurrent sessions never interleave and a killed CLI can
leave a start without an end, but never half a line. Each record is linked into a hash
chain (its position and the previous line's SHA-256: session/auditchain.py) under the
same lock, so an edit, a deletion or a reorder inside the log shows in `audit verify`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import re
import stat
from pathlib import Path
from typing import Iterable, Iterator

from debugkit.core import digest, jsonsafe
from debugkit.core.errors import CannotWrite, InvalidInput
from debugkit.core.files import state_dir, state_home
from debugkit.runtimes.base import local_user
from debugkit.session import auditchain

SCHEMA = 2  # 2: records carry seq and prev (the hash chain)


class AuditUnreadable(CannotWrite):
    """The audit log exists but cannot be read (permissions, a directory or a device in its place)."""


class AuditUnwritable(CannotWrite):
    """No record can be written: nothing is launched without its start record."""


# A record is a few hundred bytes; a line longer than this is not one of ours.
MAX_LINE = 1 << 20
_FIX = "set DEBUGKIT_AUDIT_LOG or XDG_STATE_HOME to a writable place"


def audit_path() -> Path:
    override = os.environ.get("DEBUGKIT_AUDIT_LOG")
    if override:
        return Path(override)
    return state_home() / "debugkit" / "audit.jsonl"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def who() -> dict:
    """Who runs this CLI, as the kernel knows it: the real UID and its name in the passwd
    database ($USER and $LOGNAME are anyone's to set), and SUDO_USER when sudo set it."""
    record: dict = {"local_user": local_user(), "local_uid": os.getuid()}
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user:
        record["sudo_user"] = sudo_user[:256]
    return record


def open_regular(path: Path, flags: int, *, mode: int = 0o600) -> int:
    """A descriptor on `path`, which must be a regular file: never through a symbolic link,
    and never a FIFO (which would block), a device (/dev/zero floods, /dev/null rejects
    fsync) or a directory. O_NONBLOCK makes opening a FIFO return at once so it can be
    refused; it changes nothing for a regular file."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link, which debugkit does not follow"
    if exc.errno == errno.ENXIO:
        return "not a regular file"
    return exc.strerror or str(exc)


def append(record: dict, *, path: Path | None = None) -> None:
    if path is None:
        path = audit_path()
        default = not os.environ.get("DEBUGKIT_AUDIT_LOG")
    else:
        default = False
    try:
        if default:
            state_dir()  # 0700, whichever command comes first
        else:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = open_regular(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    except OSError as exc:
        raise AuditUnwritable(f"cannot write the audit log {path}: {_problem(exc)}", hint=_FIX) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        link = auditchain.next_link(fd)
        body = json.dumps({"schema": SCHEMA, "ts": now(), **record, "seq": link.seq, "prev": link.prev},
                          sort_keys=False, separators=(",", ":")).encode()
        view = memoryview((b"\n" if link.newline_first else b"") + body + b"\n")
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        # The record is in: a head file that cannot be replaced only lags (verify allows that).
        with contextlib.suppress(OSError):
            auditchain.write_head(path, link.seq, digest.hex_digest(body))
    except OSError as exc:  # ENOSPC, EDQUOT, EIO: the record did not reach the disk
        raise AuditUnwritable(f"cannot write the audit log {path}: {exc.strerror or exc}", hint=_FIX) from None
    finally:
        os.close(fd)  # closing releases the lock


class Log:
    """The records of an audit log, and how many lines had to be skipped as malformed
    (a JSON array, a missing field, a bad timestamp): a damaged line never stops
    `audit` or `gc`, it is counted and reported once."""

    def __init__(self, records: list[dict], skipped: int):
        self.records = records
        self.skipped = skipped

    def __iter__(self):
        return iter(self.records)


def _valid(record) -> bool:
    if not isinstance(record, dict):
        return False
    if not isinstance(record.get("session"), str) or not isinstance(record.get("event"), str):
        return False
    ts = record.get("ts")
    if not isinstance(ts, str):
        return False
    try:
        when = dt.datetime.fromisoformat(ts)
    except ValueError:
        return False
    return when.tzinfo is not None


def read(*, path: Path | None = None) -> Log:
    path = path or audit_path()
    records, skipped = [], 0
    try:
        fd = open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return Log([], 0)
    except OSError as exc:
        raise AuditUnreadable(f"cannot read the audit log {path}: {_problem(exc)}") from None
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as fh:
        for raw in bounded_lines(fh):
            record = None
            if raw is not None:
                try:
                    record = jsonsafe.loads(raw, max_bytes=MAX_LINE)
                except jsonsafe.Rejected:
                    pass
            if _valid(record):
                records.append(record)
            elif raw is None or raw.strip():
                skipped += 1
    return Log(records, skipped)


def bounded_lines(fh) -> Iterator[bytes | None]:
    """The lines of a file, each read with a bound: a line longer than MAX_LINE is consumed
    in pieces and yielded as None (malformed), so no line is ever held whole."""
    while True:
        raw = fh.readline(MAX_LINE + 1)
        if not raw:
            return
        if len(raw) <= MAX_LINE or raw.endswith(b"\n"):
            yield raw
            continue
        while raw and not raw.endswith(b"\n"):
            raw = fh.readline(MAX_LINE)
        yield None


_DURATION = re.compile(r"([0-9]+)([smhd])", re.ASCII)
MAX_DURATION_S = 100 * 365 * 86400


def parse_duration(value: str, *, flag: str) -> int:
    """`90s`, `30m`, `12h`, `7d` in seconds (at most a hundred years)."""
    match = _DURATION.fullmatch(value.strip())
    if not match:
        raise InvalidInput(f"invalid {flag} {value!r}: use e.g. 90s, 30m, 12h or 7d")
    seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if seconds > MAX_DURATION_S:
        raise InvalidInput(f"invalid {flag} {value!r}: at most 36500d")
    return seconds


def parse_since(value: str, *, reference: dt.datetime | None = None) -> dt.datetime:
    """`30m`, `12h`, `7d`, or an ISO-8601 time (UTC when no zone is given)."""
    reference = reference or dt.datetime.now(dt.timezone.utc)
    if _DURATION.fullmatch(value.strip()):
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
        sid = rec["session"]
        if sid not in by_id:
            by_id[sid] = {"session": sid}
            order.append(sid)
        entry = by_id[sid]
        event = rec["event"]
        if event == "start":
            entry.update({k: v for k, v in rec.items() if k not in ("event", "schema", "ts", "seq", "prev")})
            entry["start"] = rec["ts"]
        elif event == "created":
            entry.setdefault("containers", []).append(rec.get("container_id"))
        elif event in ("end", "refused"):
            for key in ("runtime", "target", "command", "local_user", "local_uid", "sudo_user", "profile"):
                if key in rec:
                    entry.setdefault(key, rec[key])
            for key in ("exit_code", "outcome", "error", "closed_by", "duration_s", "recording_sha256",
                        "recording_bytes", "recording_error", "report", "report_sha256"):
                if key in rec:
                    entry[key] = rec[key]
            entry["end"] = rec["ts"]
            if event == "refused":
                entry.setdefault("start", rec["ts"])
    out = [by_id[s] for s in order]
    if since is not None:
        out = [s for s in out if s.get("start") and dt.datetime.fromisoformat(s["start"]) >= since]
    return out


def find_session(records: Iterable[dict], wanted: str) -> dict:
    """One session of the log by its ID, or by a prefix only it has."""
    entries = sessions(records)
    exact = [e for e in entries if e["session"] == wanted]
    if exact:
        return exact[-1]
    matches = [e for e in entries if wanted and e["session"].startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InvalidInput(f"session {wanted!r} is ambiguous: {', '.join(e['session'] for e in matches[:5])} ...")
    raise InvalidInput(f"no session {wanted!r} in the audit log {audit_path()} (debugkit audit lists them)")


def sidecar_use(records: Iterable[dict]) -> dict[str, dict]:
    """Per sidecar name, when a session last used it: {"last_end": datetime or None,
    "open": [cli pids of sessions with no end record]}. What `ps` shows as a reusable
    sidecar's idle time, and what `gc` judges it by."""
    use: dict[str, dict] = {}
    for entry in sessions(records):
        name = entry.get("sidecar")
        if not isinstance(name, str):
            continue
        slot = use.setdefault(name, {"last_end": None, "open": []})
        if "end" in entry:
            end = dt.datetime.fromisoformat(entry["end"])
            if slot["last_end"] is None or end > slot["last_end"]:
                slot["last_end"] = end
        else:
            slot["open"].append((entry.get("host"), entry.get("cli_pid")))
    return use


def created_containers(records: Iterable[dict]) -> set[str]:
    """IDs of every container debugkit recorded creating: what `gc` may collect."""
    return {rec["container_id"] for rec in records
            if rec["event"] == "created" and isinstance(rec.get("container_id"), str)}
