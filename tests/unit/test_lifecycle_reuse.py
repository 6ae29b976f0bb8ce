"""ps and gc on reusable sidecars: idle time from the audit log, stale only past the keep-alive."""
from __future__ import annotations

import datetime as dt
import os
import socket

from debugkit.runtimes.base import SessionRow
from debugkit.session import lifecycle

HOST = socket.gethostname()


def row(name="dk-a", *, reusable=True, keep_alive_s=600, cli_alive=False, age_s=30) -> SessionRow:
    return SessionRow(runtime="docker", session="s", name=name, target="t", user="1:1", state="running",
                      age_s=age_s, reusable=reusable, keep_alive_s=keep_alive_s, cli_alive=cli_alive, cli_pid=1)


def records(*events):
    return [{"schema": 1, "session": sid, "event": event, "ts": ts.isoformat(), **extra}
            for sid, event, ts, extra in events]


def ago(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds)


def test_idle_is_the_time_since_the_last_session_that_used_the_sidecar_ended():
    log = records(("a", "start", ago(100), {"sidecar": "dk-a"}), ("a", "end", ago(90), {}),
                  ("b", "start", ago(50), {"sidecar": "dk-a"}), ("b", "end", ago(40), {}),
                  ("c", "start", ago(20), {"sidecar": "dk-other"}), ("c", "end", ago(1), {}))
    rows = [row("dk-a")]
    lifecycle.fill_idle(rows, log)
    assert 39 <= rows[0].idle_s <= 42


def test_a_sidecar_in_use_by_a_live_cli_is_busy_and_one_unknown_to_the_log_has_no_idle_time():
    log = records(("a", "start", ago(100), {"sidecar": "dk-a"}), ("a", "end", ago(90), {}),
                  ("b", "start", ago(5), {"sidecar": "dk-a", "host": HOST, "cli_pid": os.getpid()}))
    busy, unknown, one_shot = row("dk-a"), row("dk-b"), row("dk-a", reusable=False)
    lifecycle.fill_idle([busy, unknown, one_shot], log)
    # This test process is not a debugkit CLI, so its pid counts as gone: idle since the last end.
    assert busy.idle_s is not None and busy.idle_s >= 89
    assert unknown.idle_s is None and one_shot.idle_s is None


def test_a_reusable_sidecar_outlives_its_cli_and_is_stale_only_past_its_keep_alive():
    idle = row(keep_alive_s=600, cli_alive=False)
    idle.idle_s = 300
    assert lifecycle.stale_reason(idle, older_than_s=3600) is None
    idle.idle_s = 600 + lifecycle.EXPIRY_GRACE_S + 1
    assert "past its keep-alive of 600s" in lifecycle.stale_reason(idle, older_than_s=3600)
    assert "older than" in lifecycle.stale_reason(row(age_s=4000), older_than_s=3600)


def test_a_one_shot_sidecar_whose_cli_is_gone_is_stale():
    assert "is gone" in lifecycle.stale_reason(row(reusable=False, cli_alive=False), older_than_s=3600)
    assert lifecycle.stale_reason(row(reusable=False, cli_alive=True), older_than_s=3600) is None


def test_a_sidecar_whose_session_cli_still_runs_is_busy(monkeypatch):
    log = records(("a", "start", ago(100), {"sidecar": "dk-a"}), ("a", "end", ago(90), {}),
                  ("b", "start", ago(5), {"sidecar": "dk-a", "host": HOST, "cli_pid": 4242}))
    monkeypatch.setattr(lifecycle, "cli_alive", lambda host, pid: host == HOST and pid == 4242)
    busy = row("dk-a")
    lifecycle.fill_idle([busy], log)
    assert busy.idle_s == 0
