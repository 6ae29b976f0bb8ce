"""An RFC 6455 websocket client for the Kubernetes channel protocols, standard library only.

exec and attach (``v5.channel.k8s.io``, ``v4.channel.k8s.io``): every binary message is
one channel byte followed by the payload. Channel 0 is stdin (client to server), 1 stdout,
2 stderr, 3 the error channel (one JSON ``metav1.Status`` when the command ends), 4 resize
(client to server, JSON ``{"Width": cols, "Height": rows}``). v5 adds the close signal: the
client sends the two bytes ``[255, channel]`` to half-close a channel (stdin EOF).

portforward (``v4.channel.k8s.io`` or the unnamed base protocol, see
:data:`PORTFORWARD_PROTOCOLS`): the ports come in the query (``ports=8080&ports=9000``).
Port number i (0-based) has data channel ``2*i`` and error channel ``2*i + 1``. The server's
first message on each of those channels is the port number as 2 bytes little-endian; a
ChannelStream opened with ``portforward=True`` strips that prefix and keeps the port in
:meth:`ChannelStream.port_of`. The client writes raw bytes on the data channel with no
prefix. An error channel carries text (for example ``an error occurred forwarding 9000 ->
9000: ... connection refused``), after which the stream is of no further use.

Non-blocking use: a :class:`ChannelStream` has a ``fileno()`` for ``select()``. Data can sit
in our buffer or inside the TLS layer where ``select()`` does not see it, so drain first:
``while (item := ws.recv(0)) is not None: ...`` and only then ``select([ws, ...])``; or test
``ws.pending()``. ``send()`` never deadlocks against a peer that is itself blocked writing to
us: while the socket is not writable it reads incoming frames into the buffer.

One thread at a time: a TLS socket must not be read and written from two threads at once.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import struct
import threading
import time

# The frames, the upgrade's reading and the Status parsing are their own modules; callers
# name them from here.
from debugkit.runtimes.kubernetes.channelstatus import (  # noqa: F401
    container_not_found, exec_failure_code, exit_code_from_status)
from debugkit.runtimes.kubernetes.wsupgrade import (  # noqa: F401
    GUID, MAX_HEADER, HandshakeError, ProtocolError, _mask, _read_body, _read_headers, accept_key, encode_frame,
    shut_down, wait_io)

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
EXEC_PROTOCOLS = (V5, V4)
# What the kubelet's streaming server (containerd's CRI copy of it) answers for a websocket
# on pods/portforward, through the API server's upgrade proxy: the base protocol (no
# Sec-WebSocket-Protocol echoed) and v4.channel.k8s.io, both binary with the layout above.
# "portforward.k8s.io" is the SPDY subprotocol and is not accepted on a websocket.
PORTFORWARD_PROTOCOLS = (V4,)
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_SIGNAL = 255

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 64 << 20  # one message from the server; the kubelet sends 32 KiB at most
SEND_CHUNK = 256 << 10  # one websocket message of stdin at most
WRITE_PIECE = 16 << 10  # one TLS record: the unit between readability checks in send()
# One recv() at most. Not more: CPython allocates the whole size for every recv() and
# shrinks it to what came (a TLS record is 16 KiB at most), and a fresh process pays a
# mmap and page faults for each such megabyte: a 256 MiB `cp` out of a pod cost 1.4 s of
# CPU more, and 2-3 s of wall time, with 1 MiB than with 64 KiB.
READ_SIZE = 64 << 10


def handshake(sock, *, host: str, path: str, headers: dict, protocols, timeout: float,
              portforward: bool = False) -> "ChannelStream":
    """Upgrade an open (TLS) connection; raises HandshakeError when the server refuses."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if protocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    for name, value in headers.items():
        if name.lower() not in ("host", "upgrade", "connection", "content-length") and value is not None:
            lines.append(f"{name}: {value}")
    sock.settimeout(timeout)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    status, reason, resp_headers, rest = _read_headers(sock, timeout)
    if status != 101:
        body = _read_body(sock, resp_headers, rest, min(timeout, 10))
        raise HandshakeError(status, reason, body, resp_headers)
    if resp_headers.get("upgrade", "").lower() != "websocket" or \
            "upgrade" not in resp_headers.get("connection", "").lower():
        raise ProtocolError("websocket upgrade: the server answered 101 without Upgrade: websocket")
    if resp_headers.get("sec-websocket-accept") != accept_key(key):
        raise ProtocolError("websocket upgrade: wrong Sec-WebSocket-Accept")
    protocol = resp_headers.get("sec-websocket-protocol", "")
    if protocol and protocols and protocol not in protocols:
        raise ProtocolError(f"websocket upgrade: the server chose subprotocol {protocol!r}, which we did not offer")
    return ChannelStream(sock, protocol, rest, portforward=portforward)


class ChannelStream:
    """A websocket speaking the Kubernetes channel protocol (exec, attach, portforward)."""

    def __init__(self, sock, protocol: str, initial: bytes = b"", *, portforward: bool = False,
                 write_timeout: float = 60.0):
        self.sock = sock
        self.protocol = protocol
        self.portforward = portforward
        self.write_timeout = write_timeout
        self._buf = bytearray(initial)
        self._frag: bytearray | None = None  # a fragmented message being assembled
        self._frag_op = 0
        self._closed = False  # the socket is closed by us
        self._eof = False  # the server closed the websocket (close frame) or the TCP stream
        self._close_sent = False
        self.close_code: int | None = None
        self.close_reason = ""
        self._status_raw = bytearray()
        self._status: dict | None = None
        self._ports: dict[int, int] = {}
        self._port_prefix: dict[int, bytearray] = {}
        self._send_lock = threading.Lock()
        self.bytes_in = 0
        self.bytes_out = 0
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        sock.settimeout(write_timeout)

    # -- select() support -----------------------------------------------------------------

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self) -> bool:
        """True when recv(0) may return data without the socket becoming readable."""
        if self._buf:
            return True
        return isinstance(self.sock, ssl.SSLSocket) and not self._closed and self.sock.pending() > 0

    @property
    def closed(self) -> bool:
        return self._closed or (self._eof and not self._buf)

    # -- reading -----------------------------------------------------------------------------

    def _fill(self, timeout: float | None) -> bool:
        """Read what the socket has; wait up to ``timeout`` for it. False on timeout."""
        if self._eof or self._closed:
            return False
        sock = self.sock
        if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            if not wait_io(sock, read=True, timeout=timeout)[0]:
                return False
        got = False
        while True:
            try:
                chunk = sock.recv(READ_SIZE)
            except ssl.SSLWantReadError:
                return got
            except (ConnectionResetError, ssl.SSLEOFError, BrokenPipeError):
                chunk = b""
            except socket.timeout:
                return got
            if not chunk:
                self._eof = True
                return True
            self._buf += chunk
            self.bytes_in += len(chunk)
            got = True
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return True

    def _frame(self):
        """Parse one frame from the buffer: (fin, opcode, payload) or None if incomplete."""
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        if b0 & 0x70:
            raise ProtocolError("websocket: reserved bits set (no extension was negotiated)")
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n = struct.unpack_from("!H", buf, 2)[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n = struct.unpack_from("!Q", buf, 2)[0]
            pos = 10
        if n > MAX_MESSAGE:
            raise ProtocolError(f"websocket: frame of {n} bytes is too large")
        key = None
        if b1 & 0x80:  # servers must not mask, but tolerate it
            if len(buf) < pos + 4:
                return None
            key = bytes(buf[pos:pos + 4])
            pos += 4
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos:pos + n])
        del buf[:pos + n]
        if key is not None:
            payload = _mask(payload, key)
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def _next_message(self) -> bytes | None:
        """The next complete data message from the buffer, handling control frames."""
        while True:
            frame = self._frame()
            if frame is None:
                return None
            fin, op, payload = frame
            if op == OP_PING:
                self._send_frame(OP_PONG, payload)
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.close_reason = payload[2:].decode("utf-8", "replace")
                if not self._close_sent:
                    try:
                        self._send_frame(OP_CLOSE, payload[:2])
                    except OSError:
                        pass
                    self._close_sent = True
                self._eof = True
                self._buf.clear()  # nothing may follow a close frame
                return None
            if op in (OP_TEXT, OP_BINARY):
                if self._frag is not None:
                    raise ProtocolError("websocket: a new message started inside a fragmented one")
                if fin:
                    return payload
                self._frag, self._frag_op = bytearray(payload), op
                continue
            if op == OP_CONT:
                if self._frag is None:
                    raise ProtocolError("websocket: continuation frame without a message")
                self._frag += payload
                if len(self._frag) > MAX_MESSAGE:
                    raise ProtocolError("websocket: message too large")
                if fin:
                    message, self._frag = bytes(self._frag), None
                    return message
                continue
            raise ProtocolError(f"websocket: unknown opcode {op}")

    def _deliver(self, message: bytes):
        """(channel, payload) to hand to the caller, or None when we keep it (status, prefixes)."""
        if not message:
            return None
        channel, payload = message[0], message[1:]
        if self.portforward:
            if channel not in self._ports:
                prefix = self._port_prefix.setdefault(channel, bytearray())
                prefix += payload
                if len(prefix) < 2:
                    return None
                self._ports[channel] = prefix[0] | (prefix[1] << 8)
                payload = bytes(prefix[2:])
                del self._port_prefix[channel]
                if not payload:
                    return None
            return channel, payload
        if channel == ERROR:
            self._status_raw += payload
            try:
                self._status = json.loads(bytes(self._status_raw))
            except ValueError:
                pass
            return None
        if channel == CLOSE_SIGNAL or not payload:
            return None  # the server opens each channel with an empty message: not data, not EOF
        return channel, payload

    def recv(self, timeout: float | None = None):
        """The next data message as (channel, payload); None when nothing arrives within
        ``timeout`` seconds (0: do not wait; None: wait for ever). Raises EOFError once
        the stream has ended and everything received has been returned. Error-channel
        messages (exec/attach) are kept for :meth:`status`, not returned."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            message = self._next_message()
            if message is not None:
                item = self._deliver(message)
                if item is not None:
                    return item
                continue
            if self._eof or self._closed:
                raise EOFError("the stream is closed")
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._fill(wait) and (deadline is not None and time.monotonic() >= deadline):
                return None

    # -- writing -----------------------------------------------------------------------------

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        self._write(encode_frame(opcode, payload))

    def _write(self, data: bytes) -> None:
        if self._closed:
            raise BrokenPipeError("the stream is closed")
        view = memoryview(data)
        sock = self.sock
        deadline = time.monotonic() + self.write_timeout
        with self._send_lock:
            while view:
                # Read whatever arrives while the peer is not taking our data, so that a
                # peer blocked writing to us never blocks us in turn.
                readable, writable = wait_io(sock, read=not self._eof, write=True,
                                             timeout=max(0.0, deadline - time.monotonic()))
                if not writable:
                    if readable:
                        self._fill(0)
                        continue
                    raise socket.timeout(f"websocket: could not send for {self.write_timeout:g} s")
                if readable and not self._eof:
                    self._fill(0)
                sent = sock.send(view[:WRITE_PIECE])
                self.bytes_out += sent
                view = view[sent:]
                deadline = time.monotonic() + self.write_timeout

    def send(self, channel: int, data: bytes) -> None:
        """Send ``data`` on ``channel`` (split into messages of at most 256 KiB)."""
        if isinstance(data, str):
            data = data.encode()
        prefix = bytes([channel])
        if not data:
            return
        for start in range(0, len(data), SEND_CHUNK):
            self._send_frame(OP_BINARY, prefix + data[start:start + SEND_CHUNK])

    def close_channel(self, channel: int) -> bool:
        """Half-close ``channel`` (stdin EOF). Only v5 can; returns False on older protocols."""
        if self.protocol != V5:
            return False
        self._send_frame(OP_BINARY, bytes([CLOSE_SIGNAL, channel]))
        return True

    def resize(self, rows: int, cols: int) -> None:
        self.send(RESIZE, json.dumps({"Width": int(cols), "Height": int(rows)}).encode())

    def ping(self, payload: bytes = b"") -> None:
        self._send_frame(OP_PING, payload)

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict | None:
        """The metav1.Status from the error channel, once it has arrived."""
        return self._status

    def exit_code(self) -> int | None:
        return exit_code_from_status(self._status)

    def exec_failure_code(self) -> int | None:
        return exec_failure_code(self._status)

    def port_of(self, channel: int) -> int | None:
        """portforward: the port the server named in the channel's first message."""
        return self._ports.get(channel)

    # -- closing ---------------------------------------------------------------------------------

    def close(self, *, wait: float = 1.0) -> None:
        """Close handshake (code 1000), waiting up to ``wait`` s for the server's answer."""
        if self._closed:
            return
        try:
            if not self._close_sent and not self._eof:
                self._close_sent = True
                self._send_frame(OP_CLOSE, struct.pack("!H", 1000))
            deadline = time.monotonic() + wait
            while not self._eof and time.monotonic() < deadline:
                self._fill(max(0.0, deadline - time.monotonic()))
                while (message := self._next_message()) is not None:
                    self._deliver(message)  # data is dropped, but a status still counts
        except (OSError, ProtocolError, ValueError):
            pass
        finally:
            self._closed = True
            shut_down(self.sock)

    def __enter__(self) -> "ChannelStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
