"""How the Kubernetes client reaches the API server: connections whose socket comes from the
client's dialer (direct, a CONNECT tunnel or SOCKS5), a thread-safe keep-alive pool, and a
client-side token-bucket rate limiter shared by every thread.
"""
from __future__ import annotations

import json
import ssl
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and http.client cost import time that an exec-only command need not pay
    import http.client
    from typing import Callable

from debugkit.runtimes.kubernetes.websocket import wait_io

# Errors that on a reused keep-alive connection mean "the server had closed it": nothing
# was answered, so the request is sent once more on a fresh connection.
# (http.client.RemoteDisconnected is a ConnectionResetError.)
_STALE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, ssl.SSLEOFError, ssl.SSLZeroReturnError)

class ApiError(Exception):
    """The API server answered with a non-2xx status."""

    def __init__(self, status: int, reason: str, message: str, body: dict | None = None):
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body

    @classmethod
    def from_response(cls, status: int, http_reason: str, data: bytes) -> "ApiError":
        body = None
        try:
            parsed = json.loads(data) if data else None
            if isinstance(parsed, dict):
                body = parsed
        except ValueError:
            pass
        if body is not None and body.get("kind") == "Status":
            return cls(status, body.get("reason") or http_reason, body.get("message") or "", body)
        text = data.decode("utf-8", "replace").strip() if data else ""
        return cls(status, http_reason, " ".join(text.split())[:500], body)


class TransportError(Exception):
    """The API server could not be reached or spoken to: connect, TLS, timeout, protocol."""


# -- rate limiting --------------------------------------------------------------------------------

class RateLimiter:
    """A token bucket shared by every thread: ``burst`` requests at once, ``qps`` sustained.
    Callers reserve a token in order and sleep until it is theirs (like Go's rate.Limiter)."""

    def __init__(self, qps: float, burst: int):
        self.qps = float(qps)
        self.burst = max(1, int(burst))
        self._tokens = float(self.burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token; returns how long to wait before using it."""
        if self.qps <= 0:
            return 0.0
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def wait(self) -> float:
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)
        return delay


# -- connections ----------------------------------------------------------------------------------

_CONNECTION_CLASSES: dict = {}


def _http_client():
    """http.client, imported on first use (about 12 ms, mostly its email parser)."""
    import http.client

    return http.client


def _connection_class(tls: bool):
    """An HTTP(S)Connection whose socket comes from the client's dialer (direct, a CONNECT
    tunnel or SOCKS5) and whose TLS server name can differ from the address (tls-server-name)."""
    if tls not in _CONNECTION_CLASSES:
        hc = _http_client()
        base = hc.HTTPSConnection if tls else hc.HTTPConnection

        class _Connection(base):
            def __init__(self, host, port, *, dial, timeout, context=None, server_hostname=None):
                if tls:
                    super().__init__(host, port, timeout=timeout, context=context)
                else:
                    super().__init__(host, port, timeout=timeout)
                self._dial = dial
                self._sni = server_hostname

            def connect(self):
                self.sock = self._dial(self.timeout)
                if tls:
                    self.sock = self._context.wrap_socket(self.sock, server_hostname=self._sni)

        _CONNECTION_CLASSES[tls] = _Connection
    return _CONNECTION_CLASSES[tls]


class _Pool:
    """Idle keep-alive connections (LIFO), and at most ``size`` in use at once."""

    def __init__(self, size: int, factory: Callable[[float], http.client.HTTPConnection]):
        self.size = max(1, int(size))
        self._factory = factory
        self._idle: list = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.size)
        self._generation = 0
        self.opened = 0  # connections made, for tests and diagnostics
        self.reused = 0

    def acquire(self, timeout: float):
        if not self._slots.acquire(timeout=timeout):
            raise TransportError(f"no free connection in the pool of {self.size} within {timeout:g} s")
        try:
            while True:
                with self._lock:
                    if not self._idle:
                        break
                    conn, gen = self._idle.pop()
                if gen == self._generation and _still_open(conn):
                    with self._lock:
                        self.reused += 1
                    return conn, True, gen
                conn.close()
            with self._lock:
                self.opened += 1
                gen = self._generation
            return self._factory(timeout), False, gen
        except BaseException:
            self._slots.release()
            raise

    def release(self, conn, gen: int, reusable: bool) -> None:
        try:
            if reusable and gen == self._generation and conn.sock is not None:
                with self._lock:
                    if len(self._idle) < self.size:
                        self._idle.append((conn, gen))
                        return
            conn.close()
        finally:
            self._slots.release()

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for conn, _gen in idle:
            conn.close()


def _still_open(conn) -> bool:
    """An idle keep-alive connection is usable when nothing is readable on it: readable
    means the server closed it (EOF) or sent something we did not ask for."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        return not wait_io(sock, read=True, timeout=0)[0]
    except (OSError, ValueError):
        return False
