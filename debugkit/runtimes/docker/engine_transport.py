"""The connections the Engine API client speaks HTTP over: a unix socket, a socket a dialer
provides (ssh), and the raw stream an attach or exec leaves after the HTTP upgrade.
"""
from __future__ import annotations

import http.client
import socket


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _DialedHTTPConnection(http.client.HTTPConnection):
    """HTTP over a socket that a dialer provides (ssh's `docker system dial-stdio`)."""

    def __init__(self, dial, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self._dial = dial

    def connect(self) -> None:
        self.sock = self._dial(self.timeout)


class HijackedSocket:
    """The raw stream of an attach or exec after the HTTP upgrade."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def transport_failure(self) -> str | None:
        """After the stream ended: why its transport failed (an ssh connection that
        dropped), or None when it simply ended."""
        check = getattr(self._sock, "ssh_failure", None)
        return check() if check is not None else None

    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def settimeout(self, value: float | None) -> None:
        self._sock.settimeout(value)

    def close(self) -> None:
        self._sock.close()
