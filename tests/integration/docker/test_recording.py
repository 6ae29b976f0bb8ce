"""--record on real Docker sessions, read back by the real asciinema 3 CLI; how a recording
ends (Ctrl-C, SIGTERM, a broken pipe, a dead target); --record-input; replay; and
`audit verify` on a real log after an edit, a deletion, a reorder and an edited recording."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import Pty, audit_records, run_cli, text
from tests.integration.recording_helpers import (asciinema_binary, asciinema_cat, asciinema_play, asciinema_text,
                                                 cast_events, recording_of)

CLI = [sys.executable, "-m", "debugkit"]
SCRIPT = "echo out-1; sleep 0.3; echo err-2 >&2; sleep 0.3; echo out-3; exit 3"


@pytest.fixture(scope="session")
def asciinema():
    return asciinema_binary()


def test_a_scripted_command_plays_in_asciinema_in_order_with_both_streams(start_target, toolbox_image, audit_log,
                                                                          asciinema):
    target = start_target("named-user")
    result = run_cli("attach", "--record", target.name, "--", "sh", "-c", SCRIPT)
    out, err = text(result)
    assert result.returncode == 3, err
    assert out == "out-1\nout-3\n" and "err-2\n" in err  # the terminal still gets both, apart
    cast, records = recording_of(audit_log)
    header, events = cast_events(cast)
    assert header["command"] == f"sh -c '{SCRIPT}'"
    assert events[-1][1:] == ["x", "3"]
    assert "i" not in {code for _t, code, _d in events}
    shown = asciinema_text(asciinema, cast)
    assert shown.index("out-1") < shown.index("err-2") < shown.index("out-3"), shown
    assert [e[1:] for e in asciinema_cat(asciinema, cast)].count(["o", "err-2\r\n"]) == 2
    played = asciinema_play(asciinema, cast)
    assert played.index(b"out-1") < played.index(b"err-2") < played.index(b"out-3"), played


def test_an_interactive_session_with_a_resize_plays_in_asciinema(start_target, toolbox_image, audit_log, asciinema):
    target = start_target("named-user")
    term = Pty(["attach", "--record", target.name], rows=40, cols=120)
    try:
        term.expect(b"/proc/1/root")
        term.send("echo mark-$((6*7)); stty size\n")
        term.expect(b"40 120")
        term.resize(50, 132)
        term.proc.send_signal(signal.SIGWINCH)
        time.sleep(0.3)  # the resize's round trip to the engine
        term.send("stty size\n")
        term.expect(b"50 132")
        term.send("exit 4\n")
        assert term.proc.wait(timeout=30) == 4
    finally:
        term.close()
    cast, _records = recording_of(audit_log)
    header, events = cast_events(cast)
    assert (header["term"]["cols"], header["term"]["rows"]) == (120, 40)
    assert ["r", "132x50"] in [e[1:] for e in events]
    assert "i" not in {code for _t, code, _d in events}, "input is recorded only with --record-input"
    assert events[-1][1:] == ["x", "4"]
    resize_at = next(i for i, e in enumerate(events) if e[1] == "r")
    assert "50 132" in "".join(e[2] for e in events[resize_at:] if e[1] == "o")
    shown = asciinema_text(asciinema, cast)
    assert "mark-42" in shown and shown.index("40 120") < shown.index("50 132"), shown
    played = asciinema_play(asciinema, cast)
    assert played.index(b"mark-42") < played.index(b"50 132")


def test_input_is_recorded_with_record_input(start_target, toolbox_image, audit_log, asciinema):
    target = start_target("named-user")
    term = Pty(["attach", "--record-input", target.name])
    try:
        term.expect(b"/proc/1/root")
        term.send("echo typed-$((6*7))\n")
        term.expect(b"typed-42")
        term.send("exit\n")
        assert term.proc.wait(timeout=30) == 0
    finally:
        term.close()
    cast, records = recording_of(audit_log)
    assert records["start"]["recording_input"] is True
    _header, events = cast_events(cast)
    typed = "".join(data for _t, code, data in events if code == "i")
    assert "echo typed-$((6*7))" in typed
    assert "typed-42" in asciinema_text(asciinema, cast)


def _valid_and_sealed(audit_log, asciinema, code):
    cast, records = recording_of(audit_log)
    _header, events = cast_events(cast)
    assert events[-1][1:] == ["x", str(code)]
    assert records["end"]["exit_code"] == code
    asciinema_text(asciinema, cast)  # asciinema reads it to its end
    return events


@pytest.mark.parametrize("how, code", [("ctrl-c", 130), ("sigterm", 143)])
def test_a_recording_ends_whole_on_a_signal(start_target, toolbox_image, audit_log, asciinema, how, code):
    target = start_target("named-user")
    proc = subprocess.Popen(CLI + ["attach", "--record", target.name, "--", "sh", "-c", "echo started; sleep 60"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"started\n"
        proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGTERM)
        assert proc.wait(timeout=30) == code, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = _valid_and_sealed(audit_log, asciinema, code)
    assert ["o", "started\r\n"] in [e[1:] for e in events]


def test_a_recording_ends_whole_when_the_reader_of_stdout_goes(start_target, toolbox_image, audit_log, asciinema):
    target = start_target("named-user")
    proc = subprocess.Popen(CLI + ["attach", "--record", target.name, "--", "sh", "-c",
                                   "echo first; sleep 0.5; while :; do echo more; done"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"first\n"
        proc.stdout.close()  # as `| head -1` does
        assert proc.wait(timeout=30) == 141, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _valid_and_sealed(audit_log, asciinema, 141)


def test_a_recording_ends_whole_when_the_target_dies(docker_client, start_target, toolbox_image, audit_log,
                                                     asciinema):
    target = start_target("named-user")
    proc = subprocess.Popen(CLI + ["attach", "--record", target.name, "--", "sh", "-c", "echo started; sleep 60"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"started\n"
        target.kill()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code != 0
    _valid_and_sealed(audit_log, asciinema, code)


def test_replay_plays_the_recording_and_refuses_an_edited_one(start_target, toolbox_image, audit_log):
    target = start_target("named-user")
    assert run_cli("attach", "--record", target.name, "--", "sh", "-c", SCRIPT).returncode == 3
    cast, records = recording_of(audit_log)
    session = records["start"]["session"]
    played = run_cli("replay", session[:6], "--speed", "50", "--idle-limit", "0.1")
    out, err = text(played)
    assert played.returncode == 0, err
    assert out.index("out-1") < out.index("err-2") < out.index("out-3")
    assert f"end of session {session} (exit status 3)" in err
    cast.write_text(cast.read_text().replace("out-3", "out-X"))
    refused = run_cli("replay", session)
    assert refused.returncode == 65 and b"was changed" in refused.stderr and refused.stdout == b""


def _log_copy(audit_log, tmp_path, name, edit):
    """A copy of the log (and its head file) changed by `edit(lines)`, verified by the CLI."""
    copy = tmp_path / f"{name}.jsonl"
    lines = audit_log.read_bytes().splitlines(keepends=True)
    copy.write_bytes(b"".join(edit(lines)))
    shutil.copy(f"{audit_log}.head", f"{copy}.head")
    return run_cli("audit", "verify", env={"DEBUGKIT_AUDIT_LOG": str(copy)})


def test_audit_verify_names_the_first_bad_record(start_target, toolbox_image, audit_log, tmp_path):
    target = start_target("named-user")
    for n in range(2):
        assert run_cli("attach", "--record", "--reason", f"check {n}", target.name, "--", "echo",
                       f"run-{n}").returncode == 0
    records = audit_records(audit_log)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    good = run_cli("audit", "verify")
    assert good.returncode == 0, good.stderr
    assert f"{len(records)} record(s), chain intact; 2 recording(s)" in good.stdout.decode()

    def edited(lines):
        lines[1] = lines[1].replace(b'"created"', b'"created","note":"x"')
        return lines

    def deleted(lines):
        return lines[:2] + lines[3:]

    def reordered(lines):
        return lines[:1] + [lines[2], lines[1]] + lines[3:]

    # (what was done, the line named, the record on it, what is said of it)
    for name, edit, line, named, words in (("edited", edited, 2, records[1], "changed"),
                                           ("deleted", deleted, 3, records[3], "record 3 was deleted"),
                                           ("reordered", reordered, 2, records[2], "reordered")):
        bad = _log_copy(audit_log, tmp_path, name, edit)
        err = bad.stderr.decode()
        assert bad.returncode == 1, (name, err)
        assert f"fails verification at line {line} (session {named['session']}, {named['event']}" in err, (name, err)
        assert words in err, (name, err)
        assert err.count("\n") == 1, err  # one line

    cast = audit_log.parent / "recordings" / f"{records[-1]['session']}.cast"
    cast.write_text(cast.read_text().replace("run-1", "run-X"))
    bad = run_cli("audit", "verify")
    err = bad.stderr.decode()
    assert bad.returncode == 1
    assert f"line {len(records)} (session {records[-1]['session']}, end" in err and "was changed" in err, err


def test_require_reason_refuses_before_anything_starts(docker_client, start_target, toolbox_image, audit_log,
                                                        tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("require_reason: true\n")
    env = {"DEBUGKIT_CONFIG": str(config)}
    target = start_target("named-user")
    refused = run_cli("attach", "--record", target.name, "--", "echo", "hi", env=env)
    assert refused.returncode == 64 and refused.stdout == b""
    assert b"--reason" in refused.stderr and refused.stderr.count(b"\n") == 1
    assert not docker_client.containers.list(all=True, filters={"label": f"io.debugkit.target-id={target.id}"})
    assert not (audit_log.parent / "recordings").exists()
    assert [r["event"] for r in audit_records(audit_log)] == ["refused"]
    fleet = run_cli("attach", "--filter", f"label=io.debugkit.test-run={target.labels['io.debugkit.test-run']}",
                    "--", "true", env=env)
    assert fleet.returncode == 64 and b"--reason" in fleet.stderr


def test_the_reason_shows_in_audit_ps_and_the_sidecars_labels(docker_client, start_target, toolbox_image,
                                                               audit_log):
    target = start_target("named-user")
    reason = "INC-1234: pool exhausted, checking sockets"
    kept = run_cli("attach", "--reason", reason, "--keep-alive", "2m", target.name, "--", "true")
    assert kept.returncode == 0, kept.stderr
    try:
        sidecar = docker_client.containers.list(filters={"label": f"io.debugkit.target-id={target.id}"})[0]
        assert sidecar.labels["io.debugkit.reason"] == reason
        assert f"DEBUGKIT_REASON={reason}" in sidecar.attrs["Config"]["Env"]
        ps = run_cli("ps", "--runtime", "docker", "-o", "json")
        rows = [r for r in json.loads(ps.stdout) if r["id"] == sidecar.id]
        assert rows and rows[0]["reason"] == reason
        assert reason in run_cli("ps", "--runtime", "docker").stdout.decode()
        assert reason in run_cli("audit").stdout.decode()
        session = audit_records(audit_log)[0]["session"]
        shown = run_cli("audit", "show", session).stdout.decode()
        assert f"reason:          {reason}" in shown
        assert audit_records(audit_log)[0]["reason"] == reason
    finally:
        for ctr in docker_client.containers.list(all=True, filters={"label": f"io.debugkit.target-id={target.id}"}):
            ctr.remove(force=True)
    bad = run_cli("attach", "--reason", "line one\nline two", target.name, "--", "true")
    assert bad.returncode == 64 and b"one line" in bad.stderr


def test_record_always_in_the_config_records_a_runbook_with_its_report(start_target, toolbox_image, audit_log,
                                                                        tmp_path, asciinema):
    config = tmp_path / "config.yaml"
    config.write_text("record: always\n")
    target = start_target("named-user")
    result = run_cli("runbook", "run", "processes", target.name, "--reason", "runbook check",
                     env={"DEBUGKIT_CONFIG": str(config)})
    assert result.returncode in (0, 1), result.stderr
    cast, records = recording_of(audit_log)
    assert records["start"]["reason"] == "runbook check"
    report = json.loads(open(records["end"]["report"]).read())
    assert report["steps"] and os.stat(records["end"]["report"]).st_mode & 0o777 == 0o600
    _header, events = cast_events(cast)
    markers = [data for _t, code, data in events if code == "m"]
    assert len(markers) == len(report["steps"])
    shown = asciinema_text(asciinema, cast)
    assert shown.count("$ ") >= len(report["steps"])
    verify = run_cli("audit", "verify")
    assert verify.returncode == 0 and b"2 recording(s) and report(s)" in verify.stdout
