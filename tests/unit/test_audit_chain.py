"""The audit log's hash chain: records written by audit.append, then edited, deleted,
reordered or cut the way a person with a text editor would, and what verify says."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from debugkit.session import audit, auditchain


@pytest.fixture
def log(tmp_path) -> Path:
    path = tmp_path / "audit.jsonl"
    for n in range(6):
        audit.append({"event": "start" if n % 2 == 0 else "end", "session": f"sess{n // 2}", "n": n}, path=path)
    return path


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def only_problem(path: Path) -> str:
    verdict = auditchain.verify(path)
    assert not verdict.ok
    return verdict.problems[0].describe()


def test_records_carry_their_position_and_the_hash_of_the_line_before(log):
    records = [json.loads(line) for line in lines_of(log)]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[0]["prev"] == auditchain.GENESIS
    for before, after in zip(lines_of(log), records[1:]):
        assert after["prev"] == auditchain.digest.hex_digest(before.rstrip(b"\n"))
    head = json.loads(auditchain.head_path(log).read_text())
    assert head == {"seq": 6, "sha256": auditchain.digest.hex_digest(lines_of(log)[-1].rstrip(b"\n"))}


def test_an_untouched_log_verifies(log):
    verdict = auditchain.verify(log)
    assert verdict.ok, verdict.problems
    assert verdict.records == 6 and verdict.unchained == 0


def test_an_edited_record_is_named(log):
    lines = lines_of(log)
    lines[2] = lines[2].replace(b'"n":2', b'"n":7')
    rewrite(log, lines)
    assert only_problem(log).startswith("line 3 (session sess1, start,")
    assert "changed" in only_problem(log)


def test_a_deleted_record_is_named(log):
    lines = lines_of(log)
    del lines[3]
    rewrite(log, lines)
    problem = only_problem(log)
    assert problem.startswith("line 4 (session sess2, start,"), problem
    assert "record 4 was deleted" in problem


def test_a_reordered_pair_is_named(log):
    lines = lines_of(log)
    lines[1], lines[2] = lines[2], lines[1]
    rewrite(log, lines)
    problem = only_problem(log)
    assert problem.startswith("line 2 (session sess1, start,"), problem
    assert "reordered" in problem


def test_the_last_record_deleted_or_edited_shows_through_the_head_file(log, tmp_path):
    cut = tmp_path / "cut.jsonl"
    shutil.copy(log, cut)
    shutil.copy(auditchain.head_path(log), auditchain.head_path(cut))
    rewrite(cut, lines_of(log)[:-1])
    assert "record 6 was deleted from the end" in only_problem(cut)

    lines = lines_of(log)
    lines[-1] = lines[-1].replace(b'"n":5', b'"n":0')
    rewrite(log, lines)
    problem = only_problem(log)
    assert problem.startswith("line 6 (session sess2, end,") and "head file" in problem


def test_a_damaged_line_is_named(log):
    lines = lines_of(log)
    lines[4] = b'{"half a record\n'
    rewrite(log, lines)
    assert only_problem(log).startswith("line 5: not a JSON record")


def test_records_written_before_the_chain_are_counted_and_the_chain_continues_from_them(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text('{"schema":1,"ts":"2026-01-01T00:00:00+00:00","event":"start","session":"old"}\n'
                    '{"schema":1,"ts":"2026-01-01T00:00:01+00:00","event":"end","session":"old"}\n')
    audit.append({"event": "start", "session": "new"}, path=path)
    first = json.loads(lines_of(path)[-1])
    assert first["seq"] == 3
    assert first["prev"] == auditchain.digest.hex_digest(lines_of(path)[1].rstrip(b"\n"))
    verdict = auditchain.verify(path)
    assert verdict.ok and verdict.unchained == 2


def test_a_line_cut_short_by_a_crash_stays_its_own_line_and_is_reported(tmp_path):
    path = tmp_path / "audit.jsonl"
    audit.append({"event": "start", "session": "a"}, path=path)
    with open(path, "ab") as fh:
        fh.write(b'{"event":"end","sess')  # a write cut short: no newline
    audit.append({"event": "start", "session": "b"}, path=path)
    lines = lines_of(path)
    assert len(lines) == 3 and json.loads(lines[2])["session"] == "b"
    assert only_problem(path).startswith("line 2: not a JSON record")


def test_stripping_the_chain_from_a_record_is_named(log):
    lines = lines_of(log)
    record = json.loads(lines[3])
    del record["prev"], record["seq"]
    lines[3] = (json.dumps(record) + "\n").encode()
    rewrite(log, lines)
    assert "carries no chain hash" in only_problem(log)


def test_an_edited_recording_is_named(tmp_path):
    path = tmp_path / "audit.jsonl"
    cast = tmp_path / "s1.cast"
    cast.write_text('{"version": 3, "term": {"cols": 80, "rows": 24}}\n[0.1, "o", "secret\\r\\n"]\n')
    audit.append({"event": "start", "session": "s1", "recording": str(cast)}, path=path)
    audit.append({"event": "end", "session": "s1", "recording_sha256": auditchain.digest.file_sha256(cast)},
                 path=path)
    verdict = auditchain.verify(path)
    assert verdict.ok and verdict.recordings == 1
    cast.write_text(cast.read_text().replace("secret", "nothing"))
    problem = only_problem(path)
    assert problem.startswith("line 2 (session s1, end,") and "was changed" in problem
    cast.unlink()
    assert "is missing" in only_problem(path)
