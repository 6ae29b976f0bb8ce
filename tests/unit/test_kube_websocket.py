"""The websocket channel client against local fake servers (socketpairs and a TLS socket):
handshake, masking, fragmentation, ping/pong, close, status, half-close, throughput."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from debugkit.runtimes.kubernetes import websocket as wsmod
from debugkit.runtimes.kubernetes.websocket import ChannelStream, exit_code_from_status

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- a minimal server side ------------------------------------------------------------------

class Peer:
    """The server end of a websocket: unmasked frames out, masked frames in."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def send_frame(self, opcode, payload, fin=True):
        self.sock.sendall(wsmod.encode_frame(opcode, payload, fin=fin, mask=False))

    def send(self, channel, data):
        self.send_frame(wsmod.OP_BINARY, bytes([channel]) + data)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def read_frame(self):
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert b1 & 0x80, "client frames must be masked"
        n, pos = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, pos = struct.unpack_from("!H", self.buf, 2)[0], 4
        elif n == 127:
            self._need(10)
            n, pos = struct.unpack_from("!Q", self.buf, 2)[0], 10
        self._need(pos + 4 + n)
        key = bytes(self.buf[pos:pos + 4])
        payload = wsmod._mask(bytes(self.buf[pos + 4:pos + 4 + n]), key)
        del self.buf[:pos + 4 + n]
        return b0 & 0x80, b0 & 0x0F, payload


def pair(protocol="v5.channel.k8s.io", **kwargs):
    a, b = socket.socketpair()
    return ChannelStream(a, protocol, **kwargs), Peer(b)


def drain(ws, timeout=5.0):
    out: dict[int, bytes] = {}
    try:
        while True:
            item = ws.recv(timeout)
            if item is None:
                break
            out[item[0]] = out.get(item[0], b"") + item[1]
    except EOFError:
        pass
    return out


# -- frames --------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 300000])
def test_mask_and_frame_lengths_round_trip(size):
    ws, peer = pair()
    data = os.urandom(size)
    if size == 0:
        ws.send(1, data)
        assert select.select([peer.sock], [], [], 0.1)[0] == []  # nothing is sent for empty data
        return
    result = []
    reader = threading.Thread(target=lambda: result.append(peer.read_frame()))
    reader.start()
    ws.send(1, data)
    reader.join(10)
    fin, op, payload = result[0]
    assert fin and op == wsmod.OP_BINARY
    assert payload == b"\x01" + data[:wsmod.SEND_CHUNK]


def test_mask_matches_the_rfc_definition():
    key = b"\x01\x02\x03\x04"
    data = bytes(range(256)) * 3 + b"xyz"
    assert wsmod._mask(data, key) == bytes(b ^ key[i % 4] for i, b in enumerate(data))


def test_recv_channels_status_and_eof():
    ws, peer = pair()
    peer.send(1, b"out")
    peer.send(2, b"err")
    peer.send(3, json.dumps({"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                             "details": {"causes": [{"reason": "ExitCode", "message": "42"}]}}).encode())
    peer.send_frame(wsmod.OP_CLOSE, struct.pack("!H", 1000))
    assert ws.recv(1) == (1, b"out")
    assert ws.recv(1) == (2, b"err")
    with pytest.raises(EOFError):
        ws.recv(1)
    assert ws.exit_code() == 42 and ws.status()["reason"] == "NonZeroExitCode"
    assert ws.close_code == 1000
    # our close answer went back
    assert peer.read_frame()[1] == wsmod.OP_CLOSE
    with pytest.raises(EOFError):
        ws.recv(0)
    ws.close()


def test_recv_timeout_returns_none():
    ws, _peer = pair()
    start = time.monotonic()
    assert ws.recv(0.2) is None
    assert 0.15 < time.monotonic() - start < 1.5
    assert ws.recv(0) is None


def test_fragmented_message_with_interleaved_ping():
    ws, peer = pair()
    peer.send_frame(wsmod.OP_BINARY, b"\x01hel", fin=False)
    peer.send_frame(wsmod.OP_PING, b"are you there")
    peer.send_frame(wsmod.OP_CONT, b"lo ", fin=False)
    peer.send_frame(wsmod.OP_CONT, b"world", fin=True)
    assert ws.recv(2) == (1, b"hello world")
    fin, op, payload = peer.read_frame()
    assert op == wsmod.OP_PONG and payload == b"are you there"


def test_text_frames_and_empty_messages_and_pong():
    ws, peer = pair()
    peer.send_frame(wsmod.OP_BINARY, b"")
    peer.send_frame(wsmod.OP_BINARY, b"\x01")  # a channel's empty opening message is no data
    peer.send_frame(wsmod.OP_PONG, b"")
    peer.send_frame(wsmod.OP_TEXT, b"\x01text")
    assert ws.recv(2) == (1, b"text")


def test_tcp_eof_without_close_frame():
    ws, peer = pair()
    peer.send(1, b"last words")
    peer.sock.shutdown(socket.SHUT_WR)
    assert ws.recv(2) == (1, b"last words")
    with pytest.raises(EOFError):
        ws.recv(2)


def test_partial_frame_across_reads():
    ws, peer = pair()
    frame = wsmod.encode_frame(wsmod.OP_BINARY, b"\x01" + b"x" * 1000, mask=False)
    peer.sock.sendall(frame[:3])
    assert ws.recv(0.1) is None
    peer.sock.sendall(frame[3:])
    assert ws.recv(1) == (1, b"x" * 1000)


def test_protocol_errors():
    ws, peer = pair()
    peer.send_frame(wsmod.OP_CONT, b"orphan")
    with pytest.raises(wsmod.ProtocolError):
        ws.recv(1)
    ws, peer = pair()
    peer.sock.sendall(b"\xC2\x00")  # RSV1 set
    with pytest.raises(wsmod.ProtocolError):
        ws.recv(1)


# -- channels --------------------------------------------------------------------------------------

def test_close_channel_v5_and_v4():
    ws, peer = pair("v5.channel.k8s.io")
    assert ws.close_channel(0) is True
    assert peer.read_frame()[2] == b"\xff\x00"
    ws4, _ = pair("v4.channel.k8s.io")
    assert ws4.close_channel(0) is False


def test_resize():
    ws, peer = pair()
    ws.resize(40, 120)
    payload = peer.read_frame()[2]
    assert payload[0] == 4 and json.loads(payload[1:]) == {"Width": 120, "Height": 40}


def test_close_handshake_waits_for_answer():
    ws, peer = pair()

    def server():
        fin, op, payload = peer.read_frame()
        assert op == wsmod.OP_CLOSE and payload == struct.pack("!H", 1000)
        peer.send_frame(wsmod.OP_CLOSE, payload)

    t = threading.Thread(target=server)
    t.start()
    start = time.monotonic()
    ws.close()
    t.join(5)
    assert time.monotonic() - start < 0.9  # returned on the answer, not on the 1 s bound
    assert ws.closed
    with pytest.raises(EOFError):
        ws.recv(0)


def test_close_gives_up_after_wait():
    ws, _peer = pair()
    start = time.monotonic()
    ws.close(wait=0.3)
    assert 0.25 < time.monotonic() - start < 2


def test_portforward_port_prefix_is_stripped():
    ws, peer = pair("v4.channel.k8s.io", portforward=True)
    peer.send(0, struct.pack("<H", 8080))
    peer.send(1, struct.pack("<H", 8080))
    peer.send(2, b"\x90")  # a prefix split over two messages
    peer.send(2, b"\x1fdata right after")
    peer.send(0, b"HTTP/1.1 200 OK")
    peer.send(1, b"error text")
    assert ws.recv(1) == (2, b"data right after")
    assert ws.recv(1) == (0, b"HTTP/1.1 200 OK")
    assert ws.recv(1) == (1, b"error text")
    assert ws.port_of(0) == 8080 and ws.port_of(2) == 8080 + 0x1f90 - 8080


def test_select_pattern_with_pending():
    ws, peer = pair()
    for i in range(3):
        peer.send(1, b"%d" % i)
    time.sleep(0.05)
    r, _, _ = select.select([ws], [], [], 1)
    assert r == [ws]
    got = []
    while (item := ws.recv(0)) is not None:
        got.append(item)
    assert got == [(1, b"0"), (1, b"1"), (1, b"2")]
    assert not ws.pending()


@pytest.mark.parametrize("status, code", [
    ({"metadata": {}, "status": "Success"}, 0),
    ({"status": "Failure", "reason": "NonZeroExitCode",
      "details": {"causes": [{"reason": "ExitCode", "message": "137"}]}}, 137),
    ({"status": "Failure", "reason": "InternalError", "message": "executable file not found"}, None),
    ({"status": "Failure", "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode",
                                                                                  "message": "x"}]}}, None),
    (None, None),
])
def test_exit_code_from_status(status, code):
    assert exit_code_from_status(status) == code


def test_exec_failure_and_container_not_found_helpers():
    nf = {"status": "Failure", "reason": "InternalError", "code": 500, "message":
          'Internal error occurred: error executing command in container: failed to exec in container: failed to '
          'start exec "1": OCI runtime exec failed: exec failed: unable to start container process: exec: "nope": '
          'executable file not found in $PATH: unknown'}
    assert wsmod.exec_failure_code(nf) == 127
    assert wsmod.exec_failure_code({**nf, "message": nf["message"].replace(
        "executable file not found in $PATH", "permission denied")}) == 126
    assert wsmod.exec_failure_code({"status": "Success"}) is None
    missing = {"status": "Failure", "message": 'Internal error occurred: unable to upgrade connection: '
                                              'container not found ("dbg")'}
    assert wsmod.container_not_found(missing) and wsmod.exec_failure_code(missing) is None
    assert wsmod.container_not_found({"message": "unable to upgrade connection: container dbg not found in pod p_ns"})
    assert not wsmod.container_not_found(nf)


# -- send never deadlocks; throughput -------------------------------------------------------------

def test_send_reads_while_peer_is_blocked_writing():
    """The peer echoes everything and only reads when it can write: with small socket
    buffers a sender that did not read would deadlock."""
    a, b = socket.socketpair()
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    ws = ChannelStream(a, "v5.channel.k8s.io", write_timeout=10)
    peer = Peer(b)
    total = 8 << 20

    def echo():
        got = 0
        while got < total:
            _fin, _op, payload = peer.read_frame()
            got += len(payload) - 1
            peer.send(1, payload[1:])
        peer.send_frame(wsmod.OP_CLOSE, struct.pack("!H", 1000))

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    ws.send(0, b"z" * total)  # one call: all of it, with no reader on our side
    received = sum(len(v) for v in drain(ws, 10).values())
    t.join(5)
    assert received == total


def test_100_mib_through_a_stream_takes_seconds():
    a, b = socket.socketpair()
    ws = ChannelStream(a, "v5.channel.k8s.io")
    peer = Peer(b)
    total = 100 << 20
    chunk = os.urandom(1 << 20)
    digest = hashlib.sha256()

    def sink_and_source():
        got = 0
        sent = 0
        while got < total:
            _fin, _op, payload = peer.read_frame()
            got += len(payload) - 1
        while sent < total:  # 100 MiB back in 32 KiB messages, as the kubelet sends them
            piece = chunk[:32768]
            peer.send(1, piece)
            sent += len(piece)
        peer.send_frame(wsmod.OP_CLOSE, struct.pack("!H", 1000))

    start = time.monotonic()
    t = threading.Thread(target=sink_and_source, daemon=True)
    t.start()
    for _ in range(100):
        ws.send(0, chunk)
        digest.update(chunk)
    received = 0
    try:
        while True:
            item = ws.recv(10)
            assert item is not None
            received += len(item[1])
    except EOFError:
        pass
    elapsed = time.monotonic() - start
    t.join(5)
    assert received == total
    assert elapsed < 30, f"200 MiB through the stream took {elapsed:.1f} s"


# -- handshake ---------------------------------------------------------------------------------------

def serve_handshake(sock, *, status=101, protocol="v5.channel.k8s.io", accept=None, body=b"", extra=b""):
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head = data.split(b"\r\n\r\n")[0].decode()
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head.split("\r\n")[1:])}
    key = headers["sec-websocket-key"]
    if status == 101:
        acc = accept or base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        resp = (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {acc}\r\n" + (f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol else "")
                + "\r\n").encode()
        sock.sendall(resp + extra)
    else:
        sock.sendall(f"HTTP/1.1 {status} Nope\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     .encode() + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    return head, headers


def test_handshake_negotiates_and_keeps_early_frames():
    a, b = socket.socketpair()
    early = wsmod.encode_frame(wsmod.OP_BINARY, b"\x01early", mask=False)
    result = {}
    t = threading.Thread(target=lambda: result.update(zip(("head", "headers"), serve_handshake(b, extra=early))))
    t.start()
    ws = wsmod.handshake(a, host="example:6443", path="/api/v1/x/exec?command=ls", headers={
        "Authorization": "Bearer tok", "User-Agent": "ua"}, protocols=wsmod.EXEC_PROTOCOLS, timeout=5)
    t.join()
    assert ws.protocol == "v5.channel.k8s.io"
    assert result["head"].startswith("GET /api/v1/x/exec?command=ls HTTP/1.1")
    assert result["headers"]["sec-websocket-protocol"] == "v5.channel.k8s.io, v4.channel.k8s.io"
    assert result["headers"]["authorization"] == "Bearer tok"
    assert result["headers"]["host"] == "example:6443"
    assert ws.recv(1) == (1, b"early")


def test_handshake_refused_with_status_body():
    a, b = socket.socketpair()
    body = json.dumps({"kind": "Status", "status": "Failure", "code": 403, "reason": "Forbidden",
                       "message": 'pods "p" is forbidden: User "u" cannot create resource "pods/exec"'}).encode()
    t = threading.Thread(target=serve_handshake, args=(b,), kwargs={"status": 403, "body": body})
    t.start()
    with pytest.raises(wsmod.HandshakeError) as info:
        wsmod.handshake(a, host="h", path="/", headers={}, protocols=wsmod.EXEC_PROTOCOLS, timeout=5)
    t.join()
    assert info.value.status == 403 and json.loads(info.value.body)["reason"] == "Forbidden"


def test_handshake_wrong_accept_or_protocol():
    for kwargs in ({"accept": "bogus"}, {"protocol": "v9.channel.k8s.io"}):
        a, b = socket.socketpair()
        t = threading.Thread(target=serve_handshake, args=(b,), kwargs=kwargs)
        t.start()
        with pytest.raises(wsmod.ProtocolError):
            wsmod.handshake(a, host="h", path="/", headers={}, protocols=wsmod.EXEC_PROTOCOLS, timeout=5)
        t.join()


def test_handshake_without_protocol_header_is_the_base_protocol():
    a, b = socket.socketpair()
    t = threading.Thread(target=serve_handshake, args=(b,), kwargs={"protocol": ""})
    t.start()
    ws = wsmod.handshake(a, host="h", path="/", headers={}, protocols=wsmod.PORTFORWARD_PROTOCOLS, timeout=5,
                         portforward=True)
    t.join()
    assert ws.protocol == "" and ws.close_channel(0) is False


# -- TLS: data buffered inside the SSL object -------------------------------------------------------

@pytest.fixture(scope="module")
def server_cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl cannot make a test certificate: {exc}")
    return d / "cert.pem", d / "key.pem"


def test_tls_pending_data_is_seen_without_select(server_cert):
    cert, key = server_cert
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    ready = threading.Event()

    def server():
        conn, _ = listener.accept()
        tls = sctx.wrap_socket(conn, server_side=True)
        peer = Peer(tls)
        # many frames in one write: one TLS record, all of it in the SSL buffer after one read
        tls.sendall(b"".join(wsmod.encode_frame(wsmod.OP_BINARY, b"\x01%d" % i, mask=False) for i in range(50)))
        ready.set()
        big = os.urandom(5 << 20)
        tls.sendall(wsmod.encode_frame(wsmod.OP_BINARY, b"\x02" + big, mask=False))
        assert peer.read_frame()[1] == wsmod.OP_CLOSE
        peer.send_frame(wsmod.OP_CLOSE, struct.pack("!H", 1000))
        tls.close()

    t = threading.Thread(target=server, daemon=True)
    t.start()
    cctx = ssl.create_default_context(cafile=str(cert))
    sock = cctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    ws = ChannelStream(sock, "v5.channel.k8s.io")
    ready.wait(5)
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 51 and time.monotonic() < deadline:
        if not ws.pending():
            select.select([ws], [], [], 1)
        while (item := ws.recv(0)) is not None:
            got.append(item)
    assert [g[1] for g in got[:50]] == [b"%d" % i for i in range(50)]
    assert got[50][0] == 2 and len(got[50][1]) == 5 << 20
    ws.close()
    t.join(5)
    listener.close()
