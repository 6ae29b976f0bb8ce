"""Underneath a ChannelStream: the frame encoding (RFC 6455), the HTTP answer to the
upgrade request read with bounds, waiting on a socket, and the errors of the handshake.
"""
from __future__ import annotations

import base64
import hashlib
import os
import select
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEADER = 64 << 10


class HandshakeError(Exception):
    """The server did not upgrade. ``status`` is the HTTP status, ``body`` the raw body."""

    def __init__(self, status: int, reason: str, body: bytes, headers: dict):
        super().__init__(f"websocket upgrade refused: {status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body
        self.headers = headers


class ProtocolError(Exception):
    """The server broke the websocket protocol."""


def wait_io(sock, *, read: bool, write: bool = False, timeout: float | None) -> tuple[bool, bool]:
    """(readable, writable) within ``timeout`` seconds. poll() where there is one, so that a
    process with more than 1024 open files (a fleet fan-out) still works; select() elsewhere."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, (select.POLLIN if read else 0) | (select.POLLOUT if write else 0))
        events = poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999)))
        mask = events[0][1] if events else 0
        hangup = mask & (select.POLLHUP | select.POLLERR)
        return bool(read and mask & (select.POLLIN | hangup)), bool(write and mask & (select.POLLOUT | hangup))
    r, w, _ = select.select([sock] if read else [], [sock] if write else [], [], timeout)
    return bool(r), bool(w)


def _mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated: big-integer XOR runs at C speed."""
    n = len(data)
    if not n:
        return b""
    stream = (key * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 1 << 16:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + _mask(payload, key)


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()  # noqa: S324 - RFC 6455


def _read_headers(sock, timeout: float) -> tuple[int, str, dict, bytes]:
    """Read an HTTP response head; returns status, reason, headers (lower-case), leftover bytes."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEADER:
            raise ProtocolError("websocket upgrade: response headers too large")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for the websocket upgrade response")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("connection closed during the websocket upgrade")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProtocolError(f"websocket upgrade: not an HTTP response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            headers[key] = (headers[key] + ", " + value.strip()) if key in headers else value.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers, rest


def _read_body(sock, headers: dict, rest: bytes, timeout: float, limit: int = 1 << 20) -> bytes:
    """The body of a refused upgrade: Content-Length, chunked, or until the server closes."""
    buf = bytearray(rest)
    deadline = time.monotonic() + timeout

    def more() -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or len(buf) > limit:
            return False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except (OSError, socket.timeout):
            return False
        buf.extend(chunk)
        return bool(chunk)

    if "content-length" in headers:
        try:
            want = min(int(headers["content-length"]), limit)
        except ValueError:
            want = limit
        while len(buf) < want and more():
            pass
        return bytes(buf[:want])
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        pos = 0
        while True:
            while b"\r\n" not in buf[pos:] and more():
                pass
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return bytes(out)
            try:
                size = int(bytes(buf[pos:end]).split(b";")[0], 16)
            except ValueError:
                return bytes(out)
            if size == 0:
                return bytes(out)
            while len(buf) < end + 2 + size and more():
                pass
            out += buf[end + 2:end + 2 + size]
            pos = end + 2 + size + 2
            if len(out) > limit or len(buf) < pos:
                return bytes(out)
    while more():
        pass
    return bytes(buf)


def shut_down(sock) -> None:
    """Shut a socket down both ways and close it: a stream cut short is never reused, and
    a thread blocked reading it wakes up."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
