"""A watch on the Kubernetes API: one JSON event a line, read with a bound on each line."""
from __future__ import annotations

import json
import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

from debugkit.runtimes.kubernetes.kubeconnection import ApiError, TransportError, _http_client
from debugkit.runtimes.kubernetes.websocket import shut_down

MAX_WATCH_LINE = 16 << 20


class WatchStream:
    """An open watch: iterate for events; the server ends it at timeoutSeconds. `client` is
    the KubeClient that opens it (its limiter, connections, headers and error wording)."""

    def __init__(self, client, path: str, query: dict, timeout: float | None):
        self.client = client
        self.path = path
        self.timeout = timeout
        hc = _http_client()
        self._hc = hc
        client.limiter.wait()
        self._conn = client._connect_lazy(timeout if timeout is not None else 60)
        try:
            self._conn.request("GET", client.url(path, query), headers=client._headers())
            self._resp = self._conn.getresponse()
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
        except (OSError, hc.HTTPException) as exc:
            self._conn.close()
            raise client._describe(exc, "GET", path, timeout or 0) from None
        if not 200 <= self._resp.status < 300:
            try:
                data = self._resp.read(1 << 20)
            except (OSError, hc.HTTPException):
                data = b""
            self._conn.close()
            raise ApiError.from_response(self._resp.status, self._resp.reason, data)
        self._done = False

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        while not self._done:
            try:
                line = self._resp.readline(MAX_WATCH_LINE)
            except socket.timeout:
                self.close()
                raise TransportError(f"watch {self.path}: no event within {self.timeout:g} s") from None
            except (OSError, self._hc.HTTPException, ValueError) as exc:
                if self._done:
                    break
                self.close()
                raise self.client._describe(exc, "GET", self.path, self.timeout or 0) from None
            if not line:
                self.close()
                break
            if line.strip():
                try:
                    return json.loads(line)
                except ValueError:
                    self.close()
                    raise TransportError(f"watch {self.path}: invalid event from the API server") from None
        raise StopIteration

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        if self._conn.sock is not None:
            shut_down(self._conn.sock)  # a watch cut short is never reused
        self._conn.close()

    def __enter__(self) -> "WatchStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
