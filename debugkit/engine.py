"""A small Docker Engine API client on the standard library, for the hot path.

Why not docker-py here: importing it (requests, urllib3, charset detection) costs
about 120 ms, more than half of a whole `docker run`, and `debugkit attach` pays it
on every call. This client speaks the same Engine API over the unix socket (or
tcp://, with TLS when DOCKER_TLS_VERIFY is set) with only http.client, and offers the
handful of calls the Docker backend makes, named as in docker-py's APIClient.
docker-py stays for building the toolbox image and in the tests.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import urllib.parse

DEFAULT_SOCKET = "/var/run/docker.sock"
API_VERSION = "1.41"  # Engine 20.10; every call used here exists since 1.30


class EngineError(Exception):
    """An answer from the engine that is not a success."""

    def __init__(self, status: int, explanation: str):
        super().__init__(f"{status}: {explanation}")
        self.status_code = status
        self.explanation = explanation


class EngineNotFound(EngineError):
    pass


class EngineConnectionError(OSError):
    """The engine could not be reached at all."""


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


class HijackedSocket:
    """The raw stream of an attach or exec after the HTTP upgrade."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def close(self) -> None:
        self._sock.close()


class EngineClient:
    """The subset of the Engine API that debugkit's Docker backend uses."""

    def __init__(self, *, host: str | None = None, timeout: float = 60):
        host = host or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
        self.host = host
        self.timeout = timeout
        parsed = urllib.parse.urlparse(host)
        self._unix_path = parsed.path if parsed.scheme == "unix" else None
        if self._unix_path is None and parsed.scheme not in ("tcp", "http", "https"):
            raise EngineConnectionError(f"unsupported DOCKER_HOST scheme {parsed.scheme!r}")
        self._netloc = parsed.netloc
        self._tls = parsed.scheme == "https" or bool(os.environ.get("DOCKER_TLS_VERIFY"))
        # docker-py's marker for a local engine; the backend checks it before trusting /proc.
        self.base_url = "http+docker://localhost" if self._unix_path else f"{'https' if self._tls else 'http'}://{self._netloc}"
        self._conn: http.client.HTTPConnection | None = None

    # -- transport --------------------------------------------------------------------

    def _new_connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._unix_path:
            return _UnixHTTPConnection(self._unix_path, timeout)
        if self._tls:
            import ssl

            cert_path = os.environ.get("DOCKER_CERT_PATH", os.path.expanduser("~/.docker"))
            ctx = ssl.create_default_context(cafile=os.path.join(cert_path, "ca.pem"))
            ctx.load_cert_chain(os.path.join(cert_path, "cert.pem"), os.path.join(cert_path, "key.pem"))
            return http.client.HTTPSConnection(self._netloc, timeout=timeout, context=ctx)
        return http.client.HTTPConnection(self._netloc, timeout=timeout)

    def _path(self, path: str, params: dict | None = None) -> str:
        query = ""
        if params:
            clean = {k: (json.dumps(v) if isinstance(v, (dict, list)) else
                         str(int(v)) if isinstance(v, bool) else str(v))
                     for k, v in params.items() if v is not None}
            query = "?" + urllib.parse.urlencode(clean)
        return f"/v{API_VERSION}{path}{query}"

    def _request(self, method: str, path: str, *, params=None, body=None, stream: bool = False,
                 timeout: float | None = -1, headers: dict | None = None):
        """stream=True: a connection of its own, left open for the caller to read and close.
        Otherwise the shared keep-alive connection."""
        data = None
        hdrs = {"Host": "docker", **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        use_timeout = self.timeout if timeout == -1 else timeout
        conn = self._new_connection(use_timeout) if stream else self._shared(use_timeout)
        try:
            conn.request(method, self._path(path, params), body=data, headers=hdrs)
            resp = conn.getresponse()
        except (ConnectionError, FileNotFoundError, socket.timeout, http.client.HTTPException, OSError) as exc:
            conn.close()
            if not stream:
                self._conn = None
            if isinstance(exc, PermissionError):
                raise
            raise EngineConnectionError(f"cannot reach the engine at {self.host}: {exc}") from exc
        if resp.status >= 400:
            payload = resp.read()
            try:
                message = json.loads(payload).get("message", payload.decode(errors="replace"))
            except ValueError:
                message = payload.decode(errors="replace")
            if stream:
                conn.close()
            cls = EngineNotFound if resp.status == 404 else EngineError
            raise cls(resp.status, message.strip())
        return resp, conn

    def _shared(self, timeout):
        if self._conn is None:
            self._conn = self._new_connection(timeout)
        return self._conn

    def _json(self, method: str, path: str, **kwargs):
        try:
            resp, _ = self._request(method, path, **kwargs)
            payload = resp.read()
        except BaseException:
            # A signal (or any failure) mid-response leaves the shared connection unusable.
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            raise
        return json.loads(payload) if payload else None

    # -- calls (named as in docker-py) ------------------------------------------------

    def ping(self) -> bool:
        resp, _ = self._request("GET", "/_ping")
        return resp.read() == b"OK"

    def version(self) -> dict:
        return self._json("GET", "/version")

    def inspect_container(self, container: str) -> dict:
        return self._json("GET", f"/containers/{urllib.parse.quote(container)}/json")

    def inspect_image(self, image: str) -> dict:
        return self._json("GET", f"/images/{image}/json")

    def containers(self, *, all: bool = False, filters: dict | None = None) -> list:  # noqa: A002
        return self._json("GET", "/containers/json", params={"all": all, "filters": filters})

    def top(self, container: str, ps_args: str | None = None) -> dict:
        return self._json("GET", f"/containers/{container}/top", params={"ps_args": ps_args})

    def get_archive(self, container: str, path: str):
        resp, _ = self._request("GET", f"/containers/{container}/archive", params={"path": path})
        header = resp.getheader("X-Docker-Container-Path-Stat")
        stat = json.loads(base64.b64decode(header)) if header else {}
        data = resp.read()
        return iter([data]), stat

    def create_container_raw(self, body: dict, *, name: str | None = None) -> dict:
        return self._json("POST", "/containers/create", params={"name": name}, body=body)

    def start(self, container: str) -> None:
        self._json("POST", f"/containers/{container}/start")

    def remove_container(self, container: str, *, force: bool = False) -> None:
        # Cleanup runs in `finally` blocks, possibly right after a signal interrupted a
        # request on the shared connection: use a connection of its own.
        resp, conn = self._request("DELETE", f"/containers/{container}", params={"force": force}, stream=True)
        try:
            resp.read()
        finally:
            conn.close()

    def resize(self, container: str, *, height: int, width: int) -> None:
        self._json("POST", f"/containers/{container}/resize", params={"h": height, "w": width})

    def exec_create(self, container: str, cmd: list[str], *, stdout=True, stderr=True, stdin=False,
                    tty=False, environment: dict | None = None, user: str | None = None) -> dict:
        body = {"Cmd": list(cmd), "AttachStdout": stdout, "AttachStderr": stderr, "AttachStdin": stdin,
                "Tty": tty, "Env": [f"{k}={v}" for k, v in (environment or {}).items()]}
        if user:
            body["User"] = user
        return self._json("POST", f"/containers/{container}/exec", body=body)

    def exec_inspect(self, exec_id: str) -> dict:
        return self._json("GET", f"/exec/{exec_id}/json")

    def exec_resize(self, exec_id: str, *, height: int, width: int) -> None:
        self._json("POST", f"/exec/{exec_id}/resize", params={"h": height, "w": width})

    def attach_socket(self, container: str, params: dict) -> HijackedSocket:
        return self._hijack("POST", f"/containers/{container}/attach", params=params)

    def exec_start(self, exec_id: str, *, tty: bool = False, socket: bool = True) -> HijackedSocket:
        return self._hijack("POST", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": tty})

    def wait_request(self, container: str, *, condition: str):
        """Send a wait and return once dockerd has registered it (it flushes the headers
        then); the caller reads the body (the exit status) whenever it likes."""
        resp, conn = self._request("POST", f"/containers/{container}/wait", params={"condition": condition},
                                   stream=True, timeout=None)
        return resp, conn

    # -- the HTTP upgrade for attach and exec ---------------------------------------------

    def _hijack(self, method: str, path: str, *, params=None, body=None) -> HijackedSocket:
        conn = self._new_connection(None)
        try:
            conn.connect()
            sock = conn.sock
            data = json.dumps(body).encode() if body is not None else b""
            head = (f"{method} {self._path(path, params)} HTTP/1.1\r\nHost: docker\r\n"
                    f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n").encode()
            sock.sendall(head + data)
            # Read the response head one byte at a time: not a byte of the stream that
            # follows may be swallowed into a buffer.
            raw = b""
            while not raw.endswith(b"\r\n\r\n"):
                chunk = sock.recv(1)
                if not chunk:
                    raise EngineConnectionError("the engine closed the connection during the upgrade")
                raw += chunk
        except OSError as exc:
            conn.close()
            if isinstance(exc, (PermissionError, EngineConnectionError)):
                raise
            raise EngineConnectionError(f"cannot reach the engine at {self.host}: {exc}") from exc
        status_line = raw.split(b"\r\n", 1)[0].decode(errors="replace")
        status = int(status_line.split()[1])
        if status >= 400:
            # The error body follows the head; read what is there.
            sock.settimeout(5)
            rest = b""
            try:
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    rest += chunk
                    if rest.rstrip().endswith(b"}"):
                        break
            except OSError:
                pass
            conn.close()
            text = rest.decode(errors="replace")
            start = text.find("{")
            try:
                message = json.loads(text[start:]).get("message", text) if start >= 0 else text
            except ValueError:
                message = text
            cls = EngineNotFound if status == 404 else EngineError
            raise cls(status, message.strip())
        sock.settimeout(None)
        return HijackedSocket(sock)
