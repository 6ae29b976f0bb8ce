"""The asciicast v3 writer and the stream hooks, on local files and pipes (no engine): what
the format needs (header, intervals, whole lines, UTF-8 split across chunks), and what the
session flow relies on (0600, the seal's hash, input only when asked)."""
from __future__ import annotations

import io
import json
import os
import stat

import pytest

from debugkit.core import digest
from debugkit.core.options import MAX_REASON, parse_reason
from debugkit.core.errors import InvalidInput
from debugkit.runtimes.base import Streams
from debugkit.session import recording, replay


def events(path) -> list[list]:
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines[1:]]


@pytest.fixture
def recorder(tmp_path):
    return recording.Recorder(tmp_path / "recordings" / "s.cast", cols=100, rows=30, command="sh -c 'x'",
                              title="t", term_type="xterm")


def test_the_file_is_asciicast_v3_with_intervals_and_an_exit_event(recorder):
    recorder.output(b"hello\n", crlf=True)
    recorder.resize(120, 40)
    recorder.output(b"world")
    sealed = recorder.close(3)
    header = json.loads(recorder.path.read_text().splitlines()[0])
    assert header["version"] == 3 and header["term"] == {"cols": 100, "rows": 30, "type": "xterm"}
    assert header["command"] == "sh -c 'x'" and isinstance(header["timestamp"], int)
    got = events(recorder.path)
    assert [(code, data) for _t, code, data in got] == [("o", "hello\r\n"), ("r", "120x40"), ("o", "world"),
                                                       ("x", "3")]
    assert all(isinstance(t, float) and 0 <= t < 5 for t, _c, _d in got)
    assert sealed == {"recording_sha256": digest.file_sha256(recorder.path),
                      "recording_bytes": recorder.path.stat().st_size}


def test_the_file_and_its_directory_are_private(recorder):
    recorder.close(0)
    assert stat.S_IMODE(recorder.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(recorder.path.parent.stat().st_mode) == 0o700


def test_a_recordings_directory_others_can_read_is_closed(tmp_path):
    where = tmp_path / "recordings"
    where.mkdir(mode=0o755)
    os.chmod(where, 0o755)
    recording.Recorder(where / "s.cast", cols=80, rows=24, command=None, title="t").close(0)
    assert stat.S_IMODE(where.stat().st_mode) == 0o700


def test_an_existing_file_is_never_overwritten(recorder):
    recorder.close(0)
    with pytest.raises(recording.RecordingUnwritable):
        recording.Recorder(recorder.path, cols=80, rows=24, command=None, title="t")


def test_a_character_split_across_chunks_is_kept_whole(recorder):
    snowman = "☃".encode()
    recorder.output(snowman[:1])
    recorder.output(snowman[1:] + b"!")
    recorder.output(b"\xff")  # not UTF-8 at all: replaced, the file stays valid JSON
    recorder.close(None)
    assert "".join(d for _t, c, d in events(recorder.path) if c == "o") == "☃!\ufffd"


def test_every_line_is_whole_at_every_moment(recorder):
    for n in range(50):
        recorder.output(f"line {n}\n".encode())
        raw = recorder.path.read_bytes()
        assert raw.endswith(b"\n")
        for line in raw.splitlines():
            json.loads(line)
    recorder.close(0)


def test_closing_twice_writes_one_exit_event(recorder):
    recorder.close(0)
    assert recorder.close(1) == {}
    recorder.output(b"late")  # after the seal: dropped, the hash holds
    assert [c for _t, c, _d in events(recorder.path)] == ["x"]


def test_recorded_streams_record_output_and_pass_it_on(recorder):
    out, err = io.BytesIO(), io.BytesIO()
    with recording.recorded_streams(Streams(stdin=None, stdout=out, stderr=err), recorder, tty=False,
                                    record_input=False) as streams:
        streams.stdout.write(b"to stdout\n")
        streams.stderr.write(b"to stderr\n")
        streams.stdout.flush()
    recorder.close(0)
    assert out.getvalue() == b"to stdout\n" and err.getvalue() == b"to stderr\n"
    assert [d for _t, c, d in events(recorder.path) if c == "o"] == ["to stdout\r\n", "to stderr\r\n"]


def test_input_is_recorded_only_when_asked(recorder, tmp_path):
    read_end, write_end = os.pipe()
    stdin = os.fdopen(read_end, "rb", buffering=0)
    with recording.recorded_streams(Streams(stdin=stdin, stdout=io.BytesIO(), stderr=io.BytesIO()), recorder,
                                    tty=False, record_input=False) as streams:
        assert streams.stdin is stdin  # untouched: nothing reads it but the session
    with recording.recorded_streams(Streams(stdin=stdin, stdout=io.BytesIO(), stderr=io.BytesIO()), recorder,
                                    tty=False, record_input=True) as streams:
        os.write(write_end, b"typed secret\n")
        os.close(write_end)
        relayed = b""
        while True:
            chunk = os.read(streams.stdin.fileno(), 1024)
            if not chunk:
                break
            relayed += chunk
    recorder.close(0)
    stdin.close()
    assert relayed == b"typed secret\n"
    assert [(c, d) for _t, c, d in events(recorder.path)] == [("i", "typed secret\n"), ("x", "0")]


def test_a_runbook_step_is_recorded_as_its_command_then_stdout_then_stderr(recorder):
    from debugkit.runtimes.execution import ExecResult

    class Live:
        plan = "the plan"

        def exec(self, argv, *, timeout, **kwargs):
            return ExecResult(tuple(argv), 0, b"out\n", b"err\n", 0.01)

    session = recording.RecordedExec(Live(), recorder)
    assert session.exec(["ss", "-ltn"], timeout=5).stdout == b"out\n"
    assert session.plan == "the plan"
    recording.keep_report(session, {"passed": True})
    assert session.report == {"passed": True}
    recorder.close(0)
    assert [(c, d) for _t, c, d in events(recorder.path)] == [("m", "ss -ltn"), ("o", "$ ss -ltn\r\n"),
                                                              ("o", "out\r\n"), ("o", "err\r\n"), ("x", "0")]


def test_replay_plays_output_with_capped_pauses_and_refuses_an_edited_file(recorder):
    recorder.output(b"one\n", crlf=True)
    recorder.output(b"two\n", crlf=True)
    sealed = recorder.close(4)
    path = recorder.path
    text = path.read_text().splitlines()
    text[2] = json.dumps([30.0, "o", "two\r\n"])  # a long pause, as a person leaves a terminal idle
    path.write_text("\n".join(text) + "\n")
    entry = {"session": "s", "recording": str(path), "recording_sha256": digest.file_sha256(path)}
    pauses, out = [], io.BytesIO()
    status = replay.play(replay.open_recording(entry), out, speed=2, idle_limit=1, sleep=pauses.append)
    assert out.getvalue() == b"one\r\ntwo\r\n" and status == 4
    assert max(pauses) == 0.5  # 30 s cut to 1 s, played twice as fast
    entry["recording_sha256"] = sealed["recording_sha256"]  # what the session's end record said
    with pytest.raises(replay.FileInvalid, match="was changed"):
        replay.open_recording(entry)


def test_a_reason_is_one_bounded_line_of_text():
    assert parse_reason("  INC-42: checking the pool  ") == "INC-42: checking the pool"
    assert parse_reason(None) is None
    for bad in ("", "   ", "two\nlines", "bell\x07", "esc\x1b[31m", "x" * (MAX_REASON + 1)):
        with pytest.raises(InvalidInput):
            parse_reason(bad)


def test_require_reason_and_record_come_from_the_config_file(tmp_path, monkeypatch):
    from debugkit.core.errors import ConfigInvalid
    from debugkit.session import config, defaults

    path = tmp_path / "config.yaml"
    monkeypatch.setenv("DEBUGKIT_CONFIG", str(path))
    config.use(None)
    try:
        path.write_text("require_reason: true\nrecord: always\n")
        config.use(None)
        with pytest.raises(InvalidInput, match="require_reason"):
            defaults.require_reason(None)
        defaults.require_reason("INC-1")
        assert defaults.record_sessions() is True
        for bad, message in (("require_reason: yes-please\n", "true or false"), ("record: sometimes\n", "record")):
            path.write_text(bad)
            config.use(None)
            with pytest.raises(ConfigInvalid, match=message):
                config.current()
        path.write_text("profile: restricted\n")
        config.use(None)
        defaults.require_reason(None)
        assert defaults.record_sessions() is False
    finally:
        config.use(None)
