"""port-forward's frames from the sidecar are hostile input too, and the ways its one relay
exec can end (fault injection: the exec is a stand-in that writes given bytes; the real
helper is tested in Go and, through the engines, in tests/integration/transfer)."""
from __future__ import annotations

import selectors
import threading

import pytest

from debugkit.core.errors import DebugkitError, NothingListening, TargetNotRunning
from debugkit.runtimes.base import ExecSession
from debugkit.session import relaymux
from debugkit.session.relaymux import DATA, FAILED, OPENED, WINDOW, FrameReader, MuxBroken, MuxRelay


def frame(kind: int, stream: int, payload: bytes = b"") -> bytes:
    return relaymux.HEADER.pack(kind, stream, len(payload)) + payload


@pytest.mark.parametrize("piece", [1, 5, 9, 10, 64, 1 << 16])
def test_frames_are_found_however_the_stream_is_cut(piece):
    stream = frame(OPENED, 1) + frame(DATA, 1, b"hello") + frame(WINDOW, 1, b"\0\0\1\0")
    got = []
    reader = FrameReader(got.extend)
    for pos in range(0, len(stream), piece):
        reader.write(stream[pos:pos + piece])
    assert got == [(OPENED, 1, b""), (DATA, 1, b"hello"), (WINDOW, 1, b"\0\0\1\0")]


@pytest.mark.parametrize("data, words", [
    (relaymux.HEADER.pack(99, 1, 5) + b"hello", "type 99"),
    (relaymux.HEADER.pack(relaymux.OPEN, 1, 2) + b"\0\1", "type 1"),          # the client's own frame
    (relaymux.HEADER.pack(DATA, 1, relaymux.MAX_DATA + 1), "65537 bytes"),
    (relaymux.HEADER.pack(WINDOW, 1, 1 << 30), "bytes"),
    (b"cannot exec in a stopped container", "never writes"),             # an engine's message, not a frame
])
def test_what_the_helper_never_writes_is_refused_at_once(data, words):
    reader = FrameReader(lambda frames: None)
    with pytest.raises(MuxBroken, match=words):
        reader.write(data)


class StandIn:
    """The relay exec: writes `output` as the helper's stdout, then ends with `code`."""

    def __init__(self, output: bytes, *, code: int = 0, alive: bool = True, hold: threading.Event | None = None):
        self.output, self.code, self.is_alive, self.hold = output, code, alive, hold
        self.calls = 0

    def exec_io(self, argv, *, stdin_fd, stdout, stderr):
        self.calls += 1
        stdout.write(self.output)
        if self.hold is not None:
            self.hold.wait(10)
        return self.code

    def alive(self) -> bool:
        return self.is_alive

    gone_within = ExecSession.gone_within  # the real wait, over alive() above


def relay_with(session) -> tuple[MuxRelay, list]:
    logs: list = []
    return MuxRelay(session, selector=selectors.DefaultSelector(), log=logs.append), logs


def test_a_port_nothing_listens_on_is_86_before_anything_is_forwarded():
    hold = threading.Event()
    relay, _ = relay_with(StandIn(frame(FAILED, 1, bytes([2]) + b"nothing is listening on 127.0.0.1:9"), hold=hold))
    try:
        with pytest.raises(NothingListening, match="127.0.0.1:9"):
            relay.check(9)
    finally:
        hold.set()
        relay.close()


def test_a_malformed_frame_ends_the_forward_with_one_line_and_no_restart():
    relay, logs = relay_with(StandIn(b"\x63" + b"\0" * 20))
    try:
        with pytest.raises(MuxBroken, match="a frame it never writes"):
            relay.check(9)
    finally:
        relay.close()
    assert logs == [] and relay.session.calls == 1


def test_a_relay_that_ends_with_its_sidecar_is_the_targets_end():
    """The engine's own message about a stopped container comes through the stream: not
    a broken relay, the target's end (67)."""
    relay, logs = relay_with(StandIn(b"\x63annot exec: container is not running", code=137, alive=False))
    try:
        with pytest.raises(TargetNotRunning):
            relay.check(9)
    finally:
        relay.close()
    assert logs == []


def test_a_relay_that_ends_at_once_is_not_started_again():
    relay, logs = relay_with(StandIn(b"", code=1, alive=True))
    try:
        with pytest.raises(DebugkitError, match="the relay in the sidecar"):
            relay.check(9)
    finally:
        relay.close()
    assert logs == [] and relay.session.calls == 1


def test_data_beyond_the_window_ends_that_connection():
    """A helper that sends more than it was granted is not the helper debugkit knows: that
    connection ends (and the helper is told), the forward goes on."""
    import socket

    hold = threading.Event()
    too_much = b"".join(frame(DATA, 1, b"y" * relaymux.MAX_DATA) for _ in range(relaymux.WINDOW_SIZE // relaymux.MAX_DATA + 1))
    relay, _ = relay_with(StandIn(frame(OPENED, 1) + too_much, hold=hold))
    ours, theirs = socket.socketpair()
    for sock in (ours, theirs):  # a local client that reads nothing: what we write stays with us
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        relay.adopt(theirs, 9)
        for _ in range(50):
            for key, mask in relay.sel.select(0.1):
                key.data(mask)
            if relay.connections == 0:
                break
        assert relay.connections == 0
        ours.settimeout(5)
        received = b""
        while chunk := ours.recv(1 << 20):
            received += chunk
        assert len(received) <= relaymux.WINDOW_SIZE
    finally:
        hold.set()
        relay.close()
        ours.close()


def test_close_ends_every_connection_even_after_a_signal_cut_a_registration_short():
    """Ctrl-C can land between a selector call and the bookkeeping after it; the cleanup
    that follows must still close every connection (it ended with a KeyError, exit 70)."""
    import socket

    hold = threading.Event()
    relay, _ = relay_with(StandIn(frame(OPENED, 1), hold=hold))
    ours, theirs = socket.socketpair()
    try:
        relay.adopt(theirs, 9)
        while relay._streams[1].events == 0:
            for key, mask in relay.sel.select(1):
                key.data(mask)
        relay.sel.unregister(theirs)   # as if interrupted right after this call
        hold.set()
        relay.close()
        assert relay.connections == 0 and theirs.fileno() == -1
    finally:
        hold.set()
        ours.close()


@pytest.mark.parametrize("source", ["a regular file", "/dev/null"])
def test_the_exec_pump_takes_a_file_as_stdin(tmp_path, source):
    """epoll refuses regular files and /dev/null (EPERM): the pump polls instead, which
    has no 1024 limit either (`attach -i T -- cmd < file`, and a closed stdin)."""
    import io
    import socket

    from debugkit.runtimes.terminal import FdReader, pump

    path = tmp_path / "in.txt"
    path.write_bytes(b"file contents\n")
    engine, ours = socket.socketpair()
    received = []
    try:
        with open(path if source == "a regular file" else "/dev/null", "rb") as stdin:
            engine.sendall(b"\x01\0\0\0\0\0\0\x03out")   # one frame of stdout, then the end
            thread = threading.Thread(target=lambda: received.append(engine.makefile("rb").read()), daemon=True)
            thread.start()
            engine.shutdown(socket.SHUT_WR)
            out = io.BytesIO()
            assert pump(ours, tty_mode=False, stdin=FdReader(stdin.fileno()), stdout=out, stderr=io.BytesIO())
    finally:
        ours.close()
        thread.join(10)
        engine.close()
    assert out.getvalue() == b"out"
    assert received == [b"file contents\n" if source == "a regular file" else b""]
