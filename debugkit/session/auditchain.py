"""The audit log's hash chain, and its check (`debugkit audit verify`).

Every record carries its position in the log (`seq`, the line number) and `prev`, the
SHA-256 of the line before it (64 zeros for the first line). An edited line no longer
hashes to what the next record carries; a deleted line leaves a gap in the positions; two
swapped lines are out of order. A head file beside the log (`LOG.head`) holds the last
record's position and hash, so a record cut from the end, or an edit of the last one,
shows too.

This is evidence, not proof: whoever can write the log can also rewrite it from scratch,
hashes and head file included (docs/security.md says what the chain does and does not
show). Records written before the chain existed (schema 1) are counted, not checked.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from debugkit.core import digest

GENESIS = "0" * 64
_TAIL_CHUNK = 64 * 1024
# A record of ours is a few hundred bytes; a longer last line is not parsed for its position.
_MAX_PARSED_LINE = 1 << 20


@dataclass(frozen=True)
class Link:
    """Where the next record goes: its position, the hash of the line before it, and
    whether the file first needs a newline (a line cut short by a crash stays its own)."""

    seq: int
    prev: str
    newline_first: bool = False


def head_path(log: Path) -> Path:
    return log.with_name(log.name + ".head")


def next_link(fd: int) -> Link:
    """The link for a record appended to the open log `fd`; the caller holds its lock."""
    size = os.fstat(fd).st_size
    if size == 0:
        return Link(1, GENESIS)
    newline_first = os.pread(fd, 1, size - 1) != b"\n"
    end = size if newline_first else size - 1
    start = _line_start(fd, end)
    prev, last = _hash_range(fd, start, end)
    seq = _position(last)
    if seq is None:
        seq = _count_lines(fd, size)
        if newline_first:
            seq += 1
    return Link(seq + 1, prev, newline_first)


def _line_start(fd: int, end: int) -> int:
    """The offset where the line that ends at `end` begins (reading backwards)."""
    pos = end
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        chunk = os.pread(fd, step, pos - step)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return pos - step + cut + 1
        pos -= step
    return 0


def _hash_range(fd: int, start: int, end: int) -> tuple[str, bytes | None]:
    """(SHA-256 of the bytes start..end, those bytes when short enough to parse)."""
    hasher = digest.sha256()
    kept = bytearray() if end - start <= _MAX_PARSED_LINE else None
    pos = start
    while pos < end:
        chunk = os.pread(fd, min(digest.CHUNK, end - pos), pos)
        if not chunk:
            break
        hasher.update(chunk)
        if kept is not None:
            kept += chunk
        pos += len(chunk)
    return hasher.hexdigest(), None if kept is None else bytes(kept)


def _position(line: bytes | None) -> int | None:
    if not line:
        return None
    try:
        seq = json.loads(line).get("seq")
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else None


def _count_lines(fd: int, size: int) -> int:
    """Lines in a log that predates the chain (read once, when its first chained record goes in)."""
    count, pos = 0, 0
    while pos < size:
        chunk = os.pread(fd, digest.CHUNK, pos)
        if not chunk:
            break
        count += chunk.count(b"\n")
        pos += len(chunk)
    return count


def write_head(log: Path, seq: int, line_hash: str) -> None:
    """Replace the head file (under the log's lock). Not fsynced: after a crash it can only
    lag behind the log, and a head that lags is still consistent (see verify)."""
    head = head_path(log)
    tmp = head.with_name(f"{head.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (json.dumps({"seq": seq, "sha256": line_hash}) + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, head)


# ---------------------------------------------------------------------------- verify


@dataclass
class Problem:
    line: int                    # 1-based line in the log
    what: str                    # the sentence that says what is wrong
    record: dict | None = None   # the record it names, when the line is one

    def describe(self) -> str:
        rec = self.record or {}
        about = ", ".join(f"{k} {rec[k]}" if k == "session" else str(rec[k])
                          for k in ("session", "event", "ts") if isinstance(rec.get(k), (str, int)))
        return f"line {self.line}" + (f" ({about})" if about else "") + f": {self.what}"


@dataclass
class Verdict:
    path: Path
    records: int = 0
    unchained: int = 0           # lines before the first chained record (schema 1)
    recordings: int = 0          # recordings whose SHA-256 matched
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Line:
    number: int
    hash: str
    record: dict | None


def _lines(fh) -> list[_Line]:
    """Each line's hash and, when it is short enough to be one of ours, its record. A line
    longer than that is hashed in pieces and never held whole."""
    out = []
    number = 0
    while True:
        piece = fh.readline(_MAX_PARSED_LINE + 1)
        if not piece:
            return out
        number += 1
        hasher = digest.sha256()
        kept: bytes | None = piece
        while not piece.endswith(b"\n"):
            more = fh.readline(_MAX_PARSED_LINE + 1)
            if not more:
                break
            hasher.update(piece)
            piece, kept = more, None
        hasher.update(piece[:-1] if piece.endswith(b"\n") else piece)
        record = None
        if kept is not None:
            try:
                record = json.loads(kept)
            except (ValueError, UnicodeDecodeError, RecursionError):
                record = None
        out.append(_Line(number, hasher.hexdigest(), record if isinstance(record, dict) else None))


def _seq(line: _Line) -> int | None:
    seq = (line.record or {}).get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def verify(log: Path, *, check_recordings: bool = True) -> Verdict:
    """Check the chain from the first line to the head file, then each recording's hash.
    The first problem found is the one reported: what follows a break cannot be trusted."""
    verdict = Verdict(log)
    with open(log, "rb") as fh:
        lines = _lines(fh)
    verdict.records = len(lines)
    problem = _check_chain(lines, verdict) or _check_head(log, lines, verdict)
    if problem is None and check_recordings:
        problem = _check_recordings(lines, verdict)
    if problem is not None:
        verdict.problems.append(problem)
    return verdict


def _check_chain(lines: list[_Line], verdict: Verdict) -> Problem | None:
    positions = {s: ln.number for ln in lines if (s := _seq(ln)) is not None}
    chained = False
    for index, line in enumerate(lines):
        before = lines[index - 1] if index else None
        if line.record is None:
            return Problem(line.number, "not a JSON record (the line was damaged or edited)")
        has_link = isinstance(line.record.get("prev"), str) and _seq(line) is not None
        if not has_link:
            if chained:
                return Problem(line.number, "carries no chain hash (seq, prev), though the lines before it do: "
                                            "edited", line.record)
            verdict.unchained += 1
            continue
        expected_prev = before.hash if before is not None else GENESIS
        seq, prev_seq = _seq(line), (_seq(before) if before is not None else 0)
        if not chained and before is not None and prev_seq is None:
            prev_seq = index  # the first chained record after the unchained ones
        chained = True
        if line.record["prev"] == expected_prev:
            if prev_seq is not None and seq != prev_seq + 1:
                return Problem(line.number, f"says it is record {seq}, but it follows record {prev_seq}: edited",
                               line.record)
            continue
        if before is None:
            return Problem(line.number, "the first line does not start the chain: lines before it were removed",
                           line.record)
        if prev_seq is not None and seq > prev_seq + 1:
            moved = [positions[s] for s in range(prev_seq + 1, seq) if s in positions]
            if moved:
                return Problem(line.number, f"out of order: record {seq} comes before record {prev_seq + 1} "
                                            f"(line {moved[0]}): records were reordered", line.record)
            first, last = prev_seq + 1, seq - 1
            gap = f"record {first} was" if first == last else f"records {first} to {last} were"
            return Problem(line.number, f"{gap} deleted just before it (it carries the hash of a line that is gone)",
                           line.record)
        if prev_seq is not None and seq <= prev_seq:
            return Problem(line.number, f"out of order: record {seq} after record {prev_seq}: records were "
                                        "reordered", line.record)
        return Problem(before.number, f"changed: its SHA-256 is not the one line {line.number} carries",
                       before.record)
    return None


def _check_head(log: Path, lines: list[_Line], verdict: Verdict) -> Problem | None:
    try:
        head = json.loads(head_path(log).read_bytes())
        seq, want = head["seq"], head["sha256"]
        if not isinstance(seq, int) or not isinstance(want, str):
            raise ValueError
    except FileNotFoundError:
        if any(_seq(ln) is not None for ln in lines):
            verdict.notes.append(f"no head file {head_path(log)}: a record cut from the end would not show")
        return None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return Problem(len(lines), f"the head file {head_path(log)} is damaged or was edited")
    at = {s: ln for ln in lines if (s := _seq(ln)) is not None}
    last = max(at, default=0)
    if seq > last:
        gap = f"record {seq} was" if seq == last + 1 else f"records {last + 1} to {seq} were"
        return Problem(len(lines), f"{gap} deleted from the end of the log (the head file says the log reaches "
                                   f"record {seq})", lines[-1].record if lines else None)
    line = at.get(seq)
    if line is not None and line.hash != want:
        return Problem(line.number, "changed: its SHA-256 is not the one the head file holds", line.record)
    return None


def _check_recordings(lines: list[_Line], verdict: Verdict) -> Problem | None:
    """Each sealed recording (and a runbook's report kept beside it) still has the SHA-256
    its session's end record carries."""
    starts = {}
    for line in lines:
        rec = line.record or {}
        if rec.get("event") == "start" and isinstance(rec.get("recording"), str):
            starts[rec.get("session")] = rec["recording"]
        if rec.get("event") != "end":
            continue
        files = []
        if isinstance(rec.get("recording_sha256"), str):
            path = starts.get(rec.get("session"))
            if path is None:
                return Problem(line.number, "names a recording hash, but its session's start record names no "
                                            "file", rec)
            files.append(("recording", path, rec["recording_sha256"]))
        if isinstance(rec.get("report_sha256"), str) and isinstance(rec.get("report"), str):
            files.append(("report", rec["report"], rec["report_sha256"]))
        for what, path, want in files:
            try:
                have = digest.file_sha256(path)
            except FileNotFoundError:
                return Problem(line.number, f"its {what} {path} is missing", rec)
            except OSError as exc:
                return Problem(line.number, f"its {what} {path} cannot be read: {exc.strerror or exc}", rec)
            if have != want:
                return Problem(line.number, f"its {what} {path} was changed (SHA-256 {have[:16]}..., the record "
                                            f"says {want[:16]}...)", rec)
            verdict.recordings += 1
    return None
