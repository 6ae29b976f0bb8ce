"""port-forward's socket relay, CLI side (session/relaysock.py, relaydir.py), against a
loopback fake of the helper's `relay --listen` that records what reaches it: the secret
that keeps local clients' bytes from an impostor socket, nothing listening (86), a relay
that ends mid-session (88), the private directory and gc's choice. The real helper and
engines: tests/integration/transfer/test_port_forward_socket.py and the Go tests."""
from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from debugkit.core.errors import ExitCode, NothingListening, RelayEnded
from debugkit.runtimes.base import RELAY_MOUNT, ExecSession
from debugkit.runtimes.docker import translate
from debugkit.session import relaydir, relaysock
from debugkit.session.forward import Forwarder, Mapping


class FakeRelay:
    """exec_io of `relay --listen RELAY_MOUNT --to PORTS`, served from `directory`:
    `answer(port)` is the preface each connection gets (None: the real secret, connected);
    connected ones echo. `die()` ends it as a crash would."""

    def __init__(self, directory: Path, answer=None):
        self.directory = directory
        self.answer = answer
        self.received: list[bytes] = []
        self._die = threading.Event()
        self.ended = threading.Event()

    def exec_io(self, argv, *, stdin_fd, stdout, stderr):
        assert argv[1:4] == ["relay", "--listen", RELAY_MOUNT] and argv[4] == "--to"
        secret = bytes.fromhex(os.read(stdin_fd, 33).decode().strip())
        listeners = []
        reach = relaydir.Reachable(self.directory)  # as the helper's short RELAY_MOUNT does
        for port in argv[5].split(","):
            ln = socket.socket(socket.AF_UNIX)
            ln.bind(reach.path(f"{port}.sock"))
            ln.listen(128)
            ln.settimeout(0.05)
            listeners.append((ln, int(port)))
        reach.close()
        os.set_blocking(stdin_fd, False)
        try:
            while not self._die.is_set():
                try:
                    if os.read(stdin_fd, 100) == b"":
                        return 0
                except BlockingIOError:
                    pass
                for ln, port in listeners:
                    try:
                        conn, _ = ln.accept()
                    except (TimeoutError, socket.timeout):
                        continue
                    threading.Thread(target=self._serve, args=(conn, port, secret), daemon=True).start()
            stderr.write(b"debugkit-helper: relay: killed for the test\n")
            return 1
        finally:
            for ln, _port in listeners:
                ln.close()
            self.ended.set()

    def _serve(self, conn: socket.socket, port: int, secret: bytes) -> None:
        with conn:
            preface = self.answer(port) if self.answer else None
            if preface == b"":
                return  # a socket that connects and says nothing
            conn.sendall(preface if preface is not None else secret + b"\0")
            while data := conn.recv(65536):
                self.received.append(data)
                if preface is None:
                    conn.sendall(data)

    def die(self) -> None:
        self._die.set()

    def alive(self) -> bool:
        return True

    gone_within = ExecSession.gone_within  # the real wait, over alive() above


def forward_through(fake_answer, relay_root, *, ports=(9000,)):
    inner = relaydir.make("sess1")
    fake = FakeRelay(inner, fake_answer)
    lines: list[str] = []
    fwd = Forwarder(None, [Mapping(0, p) for p in ports], address="127.0.0.1", log=lines.append)
    bound = fwd.bind()
    relay = relaysock.SocketRelay.start(fake, inner, list(ports), selector=fwd.selector, log=lines.append)
    assert relay is not None
    fwd.relay = relay
    return fwd, relay, fake, {remote: local for _a, local, remote in bound}, lines


def serve_in_thread(fwd) -> tuple[threading.Thread, list]:
    raised: list = []

    def run():
        try:
            fwd.serve_forever(watch_every=0.2)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


def test_connections_are_relayed_with_half_close(relay_root):
    fwd, relay, _fake, ports, lines = forward_through(None, relay_root)
    thread, raised = serve_in_thread(fwd)
    try:
        with socket.create_connection(("127.0.0.1", ports[9000]), timeout=10) as sock:
            sock.sendall(b"x" * 300_000)
            sock.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := sock.recv(65536):
                got += chunk
        assert got == b"x" * 300_000 and not lines and not raised
    finally:
        fwd.stop()
        thread.join(10)
        fwd.close()


def test_a_directory_too_long_for_a_socket_path(tmp_path, monkeypatch):
    """A unix socket's path is at most 107 bytes; a deep home directory must not matter."""
    deep = tmp_path / ("d" * 100) / "run"
    deep.mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    assert len(relaydir.inner_path("sess1") + "/9000.sock") > 108
    test_connections_are_relayed_with_half_close(deep / "debugkit" / "relay")


def test_an_impostor_socket_gets_nothing_from_the_client(relay_root):
    """A socket that does not start with the session's secret (a process of the target's
    user replaced it): the connection is refused, and not one byte of it is sent there."""
    # The relay answers the proof of locality at the start; then the impostor takes over. It
    # knows the protocol, not the secret: a "connected" status after 16 bytes of its own.
    answers = iter([None])
    fwd, _relay, fake, ports, lines = forward_through(lambda port: next(answers, b"A" * 16 + b"\0"), relay_root)
    fake.received.clear()  # the proof connection sent nothing, but be exact about what counts
    thread, _raised = serve_in_thread(fwd)
    try:
        with socket.create_connection(("127.0.0.1", ports[9000]), timeout=10) as sock:
            sock.sendall(b"secret request")
            try:
                assert sock.recv(100) == b""  # closed: unread bytes make it a reset instead
            except ConnectionResetError:
                pass
        time.sleep(0.2)
        assert fake.received == []
        assert any("not the relay's" in line for line in lines), lines
    finally:
        fwd.stop()
        thread.join(10)
        fwd.close()


def test_a_socket_that_does_not_answer_as_the_relay_means_the_exec_mux(relay_root):
    """Sockets that show up but do not answer with the secret (an engine in a VM, where a
    socket file crosses a shared filesystem but connections do not): start gives None."""
    inner = relaydir.make("sess1")
    fake = FakeRelay(inner, lambda port: b"")
    fwd = Forwarder(None, [Mapping(0, 9000)], address="127.0.0.1", log=print)
    fwd.bind()
    assert relaysock.SocketRelay.start(fake, inner, [9000], selector=fwd.selector, log=print) is None
    assert fake.ended.wait(5)  # the relay was told to end (its stdin closed), and did
    fwd.close()


def test_nothing_listening_is_86(relay_root):
    _fwd, relay, _fake, _ports, _lines = forward_through(
        lambda port: None if port == 9000 else relay_secret_of(relay) + b"\x02nothing is listening", relay_root,
        ports=(9000, 9999))
    relay.check(9000)
    with pytest.raises(NothingListening) as info:
        relay.check(9999)
    assert info.value.exit_code == ExitCode.NOTHING_LISTENING == 86
    relay.close()


def relay_secret_of(relay) -> bytes:
    return relay.secret


def test_a_relay_that_ends_mid_session_is_88(relay_root):
    fwd, _relay, fake, _ports, _lines = forward_through(None, relay_root)
    thread, raised = serve_in_thread(fwd)
    fake.die()
    thread.join(15)
    fwd.close()
    assert len(raised) == 1 and isinstance(raised[0], RelayEnded), raised
    assert raised[0].exit_code == ExitCode.RELAY_ENDED == 88
    assert "killed for the test" in str(raised[0])


def test_the_directory_is_private_and_gc_finds_only_what_is_over(relay_root):
    inner = relaydir.make("live")
    relaydir.make("over")
    relaydir.make("unknown")
    assert stat.S_IMODE(relay_root.stat().st_mode) == 0o700
    assert stat.S_IMODE(inner.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(inner.stat().st_mode) == 0o1777
    assert str(inner) == relaydir.inner_path("live")
    states = {"live": True, "over": False}
    found = relaydir.leftovers(alive=states.get, older_than_s=3600)
    assert [(sid, why) for sid, _p, why in found] == [("over", "its session is over")]
    old = relaydir.leftovers(alive=states.get, older_than_s=0)
    assert sorted(sid for sid, _p, _w in old) == ["over", "unknown"]
    relaydir.remove(inner)
    assert not inner.parent.exists()


def test_the_mount_is_added_to_a_copy_of_the_request():
    request = {"name": "s", "body": {"Image": "i", "User": "1:1", "HostConfig": {"PidMode": "container:t",
                                                                                  "NetworkMode": "container:t"}}}
    mounted = translate.with_relay_mount(request, "/home/op/.cache/debugkit/relay/s/sock")
    assert "Mounts" not in request["body"]["HostConfig"]
    assert mounted["body"]["HostConfig"]["Mounts"] == [
        {"Type": "bind", "Source": "/home/op/.cache/debugkit/relay/s/sock", "Target": RELAY_MOUNT, "ReadOnly": False}]
    assert not mounted["body"]["HostConfig"].get("PortBindings")
    argv = translate.run_argv(mounted)
    assert f"type=bind,source=/home/op/.cache/debugkit/relay/s/sock,target={RELAY_MOUNT}" in argv
