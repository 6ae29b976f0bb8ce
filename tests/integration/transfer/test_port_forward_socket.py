"""port-forward through unix sockets in a bind-mounted host directory (session/relaysock.py)
on the local Docker and Podman engines: 100 concurrent connections with payloads of their
own, half-close both ways, the private directory and its removal (by the CLI, and by gc
after a SIGKILL), a relay that dies mid-session (88), and the exec mux when forced."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import threading
from pathlib import Path

import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import audit_records, wait_for
from tests.integration.transfer.helpers import ECHO, HASH, SOURCE, start_forward
from tests.integration.transfer.test_port_forward import (MIB, SIDECAR, concurrent_echo, connect, download,
                                                          ended_cleanly, half_close, read_all, stopped_with, upload)

pytestmark = pytest.mark.transfer
LOCAL_SOCKET = "through a local socket"


def sessions_in(root: Path) -> list[str]:
    return sorted(os.listdir(root)) if root.exists() else []


def hundred_payloads(port: int) -> None:
    """100 connections at once, each sends a payload of its own (up to 1 MiB), half-closes,
    and must get its SHA-256 back."""
    barrier = threading.Barrier(100)
    wrong: list = []

    def one(i: int) -> None:
        try:
            payload = os.urandom(1 + i * 10_000)
            with connect(port) as sock:
                barrier.wait(timeout=120)
                sock.sendall(payload)
                sock.shutdown(2 - 1)  # SHUT_WR: the hash service answers after our EOF
                answer = read_all(sock).decode().strip()
            if answer != hashlib.sha256(payload).hexdigest():
                wrong.append((i, answer))
        except BaseException as exc:  # noqa: BLE001 - reported below
            wrong.append((i, repr(exc)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not wrong, wrong[:5]


def test_through_a_local_socket(fresh_engine, relay_root):
    target = fresh_engine
    fwd = start_forward(target, f":{HASH}", f":{SOURCE}", f":{ECHO}")
    with stopped_with(fwd) as stopped:
        assert fwd.via.startswith(SIDECAR) and LOCAL_SOCKET in fwd.via, fwd.lines
        # The private directory: the operator's 0700 root and session, the mounted one inside.
        (session,) = sessions_in(relay_root)
        assert stat.S_IMODE(relay_root.stat().st_mode) == 0o700
        assert stat.S_IMODE((relay_root / session).stat().st_mode) == 0o700
        sockets = sorted(os.listdir(relay_root / session / "sock"))
        assert sockets == sorted(f"{p}.sock" for p in (HASH, SOURCE, ECHO)), sockets
        # Nothing published, nothing listening on the sidecar's network but what the target has.
        (sidecar,) = [target.owner.client.containers.get(name) for name in target.sidecars()]
        assert not (sidecar.attrs["HostConfig"].get("PortBindings") or {}), sidecar.attrs["HostConfig"]
        hundred_payloads(fwd.ports[HASH])
        half_close(fwd.ports[HASH])              # the client's half-close, the answer still comes
        download(fwd.ports[SOURCE], 64 * MIB)    # the server's end of stream comes through as EOF
        upload(fwd.ports[HASH], 64 * MIB)
        concurrent_echo(fwd.ports[ECHO], 20)
    ended_cleanly(target, stopped["code"], stopped["err"], ExitCode.INTERRUPTED)
    assert "failed" not in stopped["err"], stopped["err"]
    assert sessions_in(relay_root) == [], "the session's relay directory outlived it"


def test_the_exec_mux_when_forced(fresh_engine, relay_root, monkeypatch):
    monkeypatch.setenv("DEBUGKIT_RELAY", "exec")
    fwd = start_forward(fresh_engine, f":{HASH}", f":{ECHO}")
    with stopped_with(fwd) as stopped:
        assert fwd.via.startswith(SIDECAR) and LOCAL_SOCKET not in fwd.via, fwd.lines
        assert sessions_in(relay_root) == []
        concurrent_echo(fwd.ports[ECHO], 20)
        half_close(fwd.ports[HASH])
    ended_cleanly(fresh_engine, stopped["code"], stopped["err"], ExitCode.INTERRUPTED)


def test_a_relay_that_dies_mid_session(fresh_engine, relay_root):
    fwd = start_forward(fresh_engine, f":{ECHO}")
    try:
        assert LOCAL_SOCKET in fwd.via, fwd.lines
        concurrent_echo(fwd.ports[ECHO], 2)
        (sidecar,) = [fresh_engine.owner.client.containers.get(name) for name in fresh_engine.sidecars()]
        # As the sidecar's own user: SIGKILL the relay (nothing else in the sidecar).
        killed = sidecar.exec_run(["sh", "-c", "pkill -KILL -f 'relay --[l]isten' && echo killed"])
        assert b"killed" in killed.output, killed.output
        code = fwd.proc.wait(timeout=60)
    finally:
        if fwd.proc.poll() is None:
            fwd.proc.kill()
            fwd.proc.wait()
    err = fwd.proc.stderr.read().decode(errors="replace")
    assert code == ExitCode.RELAY_ENDED, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "the relay in the sidecar ended" in lines[0] and "Traceback" not in err, err
    wait_for(lambda: not fresh_engine.sidecars(), timeout=60, what="the sidecar to be removed")
    assert sessions_in(relay_root) == []


def test_gc_removes_the_directory_of_a_killed_cli(fresh_engine, relay_root, audit_log):
    fwd = start_forward(fresh_engine, f":{ECHO}")
    assert LOCAL_SOCKET in fwd.via, fwd.lines
    fwd.proc.send_signal(signal.SIGKILL)
    fwd.proc.wait()
    (session,) = sessions_in(relay_root)
    assert session == audit_records(audit_log)[0]["session"]
    wait_for(lambda: not fresh_engine.sidecars(), timeout=60, what="the sidecar to end with its CLI")
    gc = fresh_engine.cli("gc", "--runtime", fresh_engine.runtime, "-o", "json")
    assert gc.returncode == 0, gc.stderr
    actions = json.loads(gc.stdout)
    assert any(a["session"] == session and a["name"].startswith("relay directory") and a["action"] == "removed"
               for a in actions), actions
    assert sessions_in(relay_root) == []


@pytest.fixture
def fresh_engine(engine):
    return engine.target()
