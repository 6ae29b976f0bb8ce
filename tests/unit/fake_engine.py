"""A loopback Engine API server on a unix socket, for the version negotiation tests.

It checks a call's API version the way Docker's version middleware does (moby,
daemon/server/middleware/version.go): `/vX.Y/...` below the minimum or above the maximum
is a 400 with Docker's own words, and every answer carries the `Api-Version` and `Server`
headers; the unversioned `/_ping` and `/version` answer whatever the range. It
records every request it was sent. Its range can change between two calls, as an engine
upgraded under a long session does. Its answers are JSON fixtures set by the test
(`routes`), shaped like a real engine's; it decides nothing else.
"""
from __future__ import annotations

import json
import re
import socketserver
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

_VERSIONED = re.compile(r"^/v(\d+\.\d+)(/.*)$")


def _key(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


@dataclass
class FakeEngine:
    socket_path: str
    min_version: str | None = "1.44"   # None: no minimum, and /version does not state one
    max_version: str = "1.55"
    release: str = "29.1.0"
    # (method, unversioned path) -> JSON answer; or a callable (version) -> answer.
    routes: dict = field(default_factory=dict)
    requests: list = field(default_factory=list)   # (method, path and query as sent)

    def upgrade(self, *, min_version: str | None, max_version: str, release: str) -> None:
        self.min_version, self.max_version, self.release = min_version, max_version, release

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def paths(self) -> list[str]:
        """The paths requested, in order, without their queries."""
        return [path.split("?", 1)[0] for _, path in self.requests]

    def start(self) -> "FakeEngine":
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as dockerd

            def log_message(self, *args):  # quiet
                pass

            def version_string(self):  # the Server header of every answer, as dockerd's
                return f"Docker/{engine.release} (linux)"

            def _answer(self, status: int, payload, *, headers=()):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Api-Version", engine.max_version)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                engine.requests.append((self.command, self.path))
                path = self.path.split("?", 1)[0]
                version = None
                match = _VERSIONED.match(path)
                if match:
                    version, path = match.groups()
                    if engine.min_version and _key(version) < _key(engine.min_version):
                        return self._answer(400, {"message": (
                            f"client version {version} is too old. Minimum supported API version is "
                            f"{engine.min_version}, please upgrade your client to a newer version")})
                    if _key(version) > _key(engine.max_version):
                        return self._answer(400, {"message": (
                            f"client version {version} is too new. Maximum supported API version is "
                            f"{engine.max_version}")})
                if path == "/version":
                    answer = {"Version": engine.release, "ApiVersion": engine.max_version, "Os": "linux"}
                    if engine.min_version:
                        answer["MinAPIVersion"] = engine.min_version
                    return self._answer(200, answer)
                if path == "/_ping":
                    body = b"OK"
                    self.send_response(200)
                    self.send_header("Api-Version", engine.max_version)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(body)
                    return None
                if self.headers.get("Upgrade") == "tcp":
                    # attach or exec start: the raw stream follows the 101.
                    self.wfile.write(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                                     b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\nstream of " + path.encode())
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                answer = engine.routes.get((self.command, path))
                if answer is None:
                    return self._answer(404, {"message": f"no such route in the fake engine: {self.command} {path}"})
                return self._answer(200, answer(version) if callable(answer) else answer)

            do_GET = do_POST = do_DELETE = do_HEAD = _handle

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self._server = Server(self.socket_path, Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
