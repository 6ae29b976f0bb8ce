"""A small Docker Engine API client on the standard library, for the hot path.

Why not docker-py here: importing it (requests, urllib3, charset detection) costs
about 120 ms, more than half of a whole `docker run`, and `debugkit attach` pays it
on every call. This client speaks the same Engine API over the unix socket (or
tcp://, with TLS when DOCKER_TLS_VERIFY is set) with only http.client, and offers the
handful of calls the Docker backend makes, named as in docker-py's APIClient.
docker-py stays for building the toolbox image and in the tests.

The API version is negotiated (apiversion.py) from the unversioned `GET /_ping` a
connection starts with, once per engine and process, as the docker CLI does: no extra
round trip.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import threading
import urllib.parse

from debugkit.core import jsonsafe
from debugkit.runtimes.docker import apiversion
from debugkit.runtimes.docker.apiversion import Negotiated
# The address, error and transport types live in their own modules; callers import them from
# here, the client's one name.
from debugkit.runtimes.docker.engine_address import (  # noqa: F401
    DEFAULT_SOCKET, EngineAddress, TLSConfig, parse_host, tls_from_env)
from debugkit.runtimes.docker.engine_errors import (  # noqa: F401
    MAX_ANSWER_BYTES, MAX_ERROR_BYTES, EngineAnswerInvalid, EngineConfigError, EngineConnectionError, EngineError,
    EngineNotFound, SSHConnectionError, checked, error_message)
from debugkit.runtimes.docker.engine_transport import HijackedSocket, _DialedHTTPConnection, _UnixHTTPConnection

# The version negotiated with each engine (by address), once per process: every client of
# the same engine (a fleet's threads, gc's removals, doctor's short-timeout one) shares it.
_NEGOTIATED: dict[str, "Negotiated"] = {}
_NEGOTIATING = threading.Lock()


class EngineClient:
    """The subset of the Engine API that debugkit's Docker and Podman runtimes use."""

    def __init__(self, address: EngineAddress | str | None = None, *, timeout: float = 60, dial=None,
                 engine: str = "Docker"):
        """`engine` names the product in messages ("Docker", "Podman")."""
        if address is None or isinstance(address, str):
            address = parse_host(address or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}",
                                 tls=tls_from_env())
        self.address = address
        self.host = address.text
        self.timeout = timeout
        self.engine = engine
        self._dial = dial
        if address.scheme == "ssh" and dial is None:
            raise EngineConfigError("an ssh:// engine needs a dialer (see runtimes/docker/hosts.py)")
        # One keep-alive connection per thread: cp, port-forward and fleets call from several.
        self._local = threading.local()
        self._ssl = None

    @property
    def local(self) -> bool:
        return self.address.local

    # -- transport --------------------------------------------------------------------

    def _ssl_context(self):
        if self._ssl is None:
            import ssl

            from debugkit.core.files import read_regular

            tls = self.address.tls
            try:
                ca = read_regular(tls.ca, 1 << 20).decode("ascii", "replace") if tls.ca else None
                ctx = ssl.create_default_context(cadata=ca)
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # the docker CLI's tlsconfig.ClientDefault
                if not tls.verify:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                if tls.cert and tls.key:
                    for path in (tls.cert, tls.key):
                        read_regular(path, 1 << 20)  # a FIFO or a device is refused, not waited on
                    ctx.load_cert_chain(tls.cert, tls.key)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise EngineConnectionError(f"cannot use the TLS material for {self.host}",
                                            detail=f"{getattr(exc, 'strerror', None) or exc}") from None
            self._ssl = ctx
        return self._ssl

    def _new_connection(self, timeout: float | None) -> http.client.HTTPConnection:
        addr = self.address
        if addr.scheme == "unix":
            return _UnixHTTPConnection(addr.path, timeout)
        if addr.scheme == "ssh":
            return _DialedHTTPConnection(self._dial, timeout)
        if addr.tls is not None:
            return http.client.HTTPSConnection(addr.netloc, timeout=timeout, context=self._ssl_context())
        return http.client.HTTPConnection(addr.netloc, timeout=timeout)

    def _path(self, path: str, params: dict | None = None, *, version: str | None) -> str:
        query = ""
        if params:
            clean = {k: (json.dumps(v) if isinstance(v, (dict, list)) else
                         str(int(v)) if isinstance(v, bool) else str(v))
                     for k, v in params.items() if v is not None}
            query = "?" + urllib.parse.urlencode(clean)
        prefix = f"{self.address.base_path}/v{version}" if version else self.address.base_path
        return f"{prefix}{path}{query}"

    # -- the API version ----------------------------------------------------------------

    def negotiate(self) -> Negotiated:
        """The API version to speak to this engine, settled once per process from the
        unversioned `GET /_ping` (its Api-Version header: the engine's newest version), as
        the docker CLI does. Not `GET /version`, which docker-py asks: Docker 29 runs
        `runc --version` and `docker-init --version` for it (+3.5 ms), Podman 4.3 takes
        0.6 to 1 s. The engine's minimum is learned when a call is refused (_renegotiate).
        Raises VersionMismatch (an EngineIncompatible error) when the engine speaks none
        of ours, and the transport's errors when it cannot be reached."""
        known = _NEGOTIATED.get(self.host)
        if known is not None:
            return known
        with _NEGOTIATING:
            known = _NEGOTIATED.get(self.host)
            if known is None:
                answer = self.ping_facts()
                if not answer["ApiVersion"]:  # a proxy that drops the header: ask the long way
                    answer = self.version()
                known = apiversion.negotiate(answer, engine=self.engine, host=self.host)
                _NEGOTIATED[self.host] = known
                _debug_note(f"{self.engine} engine at {self.host}: Engine API {known.describe()}")
        return known

    @property
    def api_version(self) -> str:
        return self.negotiate().version

    def _renegotiate(self, refused: apiversion.Refusal) -> None:
        """A call was refused as too old or too new: ask again (the engine was upgraded, or
        restarted with another minimum), with `GET /version` this time, whose MinAPIVersion
        a mismatch message names, and keep what the refusal said about its limit."""
        with _NEGOTIATING:
            known = _NEGOTIATED.get(self.host)
            if known is not None and known.version != refused.spoke:
                return  # another thread has asked again already
            _NEGOTIATED.pop(self.host, None)
            found = apiversion.negotiate(self.version(), engine=self.engine, host=self.host, refused=refused)
            _NEGOTIATED[self.host] = found
            _debug_note(f"{self.engine} engine at {self.host} refused API {refused.spoke} (too {refused.too}); "
                        f"now Engine API {found.describe()}")

    def _request(self, method: str, path: str, *, versioned: bool = True, **kwargs):
        """One call: on the negotiated version, or on the unversioned path."""
        if not versioned:
            return self._send(method, path, version=None, **kwargs)
        return self._versioned(lambda version: self._send(method, path, version=version, **kwargs))

    def _versioned(self, call):
        """call(version) on the negotiated version; when the engine refuses that version (the
        refusal comes before the call does anything), renegotiated and retried once."""
        try:
            return call(self.api_version)
        except EngineError as exc:
            refused = apiversion.refusal(exc.status_code, exc.explanation)
            if refused is None:
                raise
        self._renegotiate(refused)
        try:
            return call(self.api_version)
        except EngineError as exc:
            again = apiversion.refusal(exc.status_code, exc.explanation)
            if again is None:
                raise
            raise self._refused_twice(again) from exc

    def _refused_twice(self, refused: apiversion.Refusal) -> apiversion.VersionMismatch:
        """Refused again after asking anew: the ranges do not meet, as far as the engine says."""
        known = _NEGOTIATED.pop(self.host, None) or Negotiated(refused.spoke, None, None, None)
        return apiversion.VersionMismatch(
            engine=self.engine, host=self.host, engine_version=known.engine_version,
            engine_min=refused.limit if refused.too == "old" else known.engine_min,
            engine_max=refused.limit if refused.too == "new" else known.engine_max)

    def _send(self, method: str, path: str, *, version: str | None, params=None, body=None, stream: bool = False,
              timeout: float | None = -1, headers: dict | None = None, data: bytes | None = None):
        """stream=True: a connection of its own, left open for the caller to read and close.
        Otherwise the shared keep-alive connection. `body` is sent as JSON, `data` as is."""
        hdrs = {"Host": "docker", **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        use_timeout = self.timeout if timeout == -1 else timeout
        conn = self._new_connection(use_timeout) if stream else self._shared(use_timeout)
        try:
            conn.request(method, self._path(path, params, version=version), body=data, headers=hdrs)
            resp = conn.getresponse()
        except (ConnectionError, FileNotFoundError, socket.timeout, http.client.HTTPException, OSError) as exc:
            conn.close()
            if not stream:
                self._conn = None
            self._raise_dial_failure(exc)
            if isinstance(exc, (PermissionError, EngineConnectionError)):
                raise
            raise EngineConnectionError(f"cannot reach the engine at {self.host}: {exc}",
                                        detail=getattr(exc, "strerror", None) or str(exc) or None) from exc
        if resp.status >= 400:
            payload = resp.read(MAX_ERROR_BYTES)
            if stream or not resp.isclosed():
                conn.close()  # an error body past the bound is not read: the connection cannot be reused
                if not stream:
                    self._conn = None
            message = error_message(payload)
            if message is None:  # the Engine API's errors are JSON: this is some other server
                raise EngineAnswerInvalid(f"{method} {path}", f"{resp.status} and {jsonsafe.describe(payload)}")
            cls = EngineNotFound if resp.status == 404 else EngineError
            raise cls(resp.status, message or resp.reason)
        return resp, conn

    @property
    def _conn(self) -> http.client.HTTPConnection | None:
        return getattr(self._local, "conn", None)

    @_conn.setter
    def _conn(self, value) -> None:
        self._local.conn = value

    def _raise_dial_failure(self, exc: BaseException) -> None:
        """A connection through a dialer (ssh) failed: raise with the dialer's own reason
        ("Permission denied (publickey)", "Host key verification failed", ...) if it has one.
        Called after the connection was closed, so its process has been reaped."""
        if isinstance(exc, SSHConnectionError):
            raise exc
        failure = getattr(self._dial, "failure", None)
        reason = failure() if failure is not None else None
        if reason:
            raise SSHConnectionError(f"cannot reach the engine at {self.host}: {reason}", detail=reason) from exc

    def transport_failure(self) -> str | None:
        """Why the most recent connection through the dialer failed, if it did."""
        failure = getattr(self._dial, "failure", None)
        return failure() if failure is not None else None

    def _shared(self, timeout):
        if self._conn is None:
            self._conn = self._new_connection(timeout)
        return self._conn

    def _json(self, method: str, path: str, *, kind: type | None = None, **kwargs):
        """The answer's JSON (None for an empty body), at most MAX_ANSWER_BYTES; with `kind`
        it must be that (an object, a list). EngineAnswerInvalid otherwise."""
        try:
            resp, _ = self._request(method, path, **kwargs)
            payload = resp.read(MAX_ANSWER_BYTES + 1)
            if len(payload) > MAX_ANSWER_BYTES:
                raise EngineAnswerInvalid(f"{method} {path}", f"a body larger than {MAX_ANSWER_BYTES >> 20} MiB")
        except BaseException:
            # A signal (or any failure) mid-response leaves the shared connection unusable.
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            raise
        if not payload:
            if kind is not None:
                raise EngineAnswerInvalid(f"{method} {path}", "an empty body")
            return None
        try:
            value = jsonsafe.loads(payload, max_bytes=MAX_ANSWER_BYTES)
            return value if kind is None else jsonsafe.expect(value, kind, "the answer")
        except jsonsafe.Rejected as exc:
            raise EngineAnswerInvalid(f"{method} {path}", str(exc)) from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def prefetch(self, count: int, *, spare: bool = False) -> None:
        """A dialer (ssh) may start the next `count` connections now, so their setup
        overlaps; `spare`: keep one started ahead for a run of many execs."""
        if self._dial is not None and hasattr(self._dial, "prefetch"):
            self._dial.spare = spare
            self._dial.prefetch(count)

    def release(self) -> None:
        """Drop connections started ahead and not used (the session is over)."""
        close = getattr(self._dial, "close", None)
        if close is not None:
            close()

    # -- calls (named as in docker-py) ------------------------------------------------

    def ping(self) -> bool:
        resp, _ = self._request("GET", "/_ping", versioned=False)
        body = resp.read(MAX_ERROR_BYTES)
        if body != b"OK":
            self.close()
            raise EngineAnswerInvalid("GET /_ping", jsonsafe.describe(body) if body else "an empty body")
        return True

    def ping_facts(self) -> dict:
        """What the unversioned `GET /_ping` says in its headers, in /version's words:
        `ApiVersion` (Api-Version, the engine's newest version) and `Version` (from Server:
        `Docker/29.1.0 (linux)`, `Libpod/4.3.1 (linux)`); None where a header is missing."""
        try:
            resp, _ = self._request("GET", "/_ping", versioned=False)
            resp.read(MAX_ERROR_BYTES)
            if not resp.isclosed():
                self.close()  # a body past any ping's: the rest is not read, nor the connection reused
        except BaseException:
            self.close()  # as _json: a failure mid-response leaves the connection unusable
            raise
        server = resp.getheader("Server") or ""
        release = server.partition("/")[2].partition(" ")[0] or None
        return {"ApiVersion": resp.getheader("Api-Version"), "Version": release}

    def version(self) -> dict:
        """The engine's /version, on the unversioned path: answered whatever the engine's range."""
        return self._json("GET", "/version", versioned=False, kind=dict)

    def inspect_container(self, container: str) -> dict:
        request = f"GET /containers/{container}/json"
        found = checked(self._json("GET", f"/containers/{urllib.parse.quote(container)}/json", kind=dict), request,
                        required=("Id",), Id=str, Name=str, Image=str, State=dict, Config=dict, HostConfig=dict)
        checked(found.get("State") or {}, request, Pid=int, ExitCode=int, Running=bool, Paused=bool, Status=str)
        checked(found.get("Config") or {}, request, User=str, Image=str, Labels=dict, Entrypoint=list, Cmd=list)
        return found

    def inspect_image(self, image: str) -> dict:
        return checked(self._json("GET", f"/images/{image}/json", kind=dict), f"GET /images/{image}/json",
                       required=("Id",), Id=str, Config=dict, RepoDigests=list)

    def containers(self, *, all: bool = False, filters: dict | None = None) -> list:  # noqa: A002
        found = self._json("GET", "/containers/json", params={"all": all, "filters": filters}, kind=list)
        for item in found:
            if not isinstance(item, dict):
                raise EngineAnswerInvalid("GET /containers/json", "a list of something else than containers")
            checked(item, "GET /containers/json", Id=str, Names=list, Labels=dict, Created=int, State=str)
        return found

    def top(self, container: str, ps_args: str | None = None) -> dict:
        return checked(self._json("GET", f"/containers/{container}/top", params={"ps_args": ps_args}, kind=dict),
                       f"GET /containers/{container}/top", Titles=list, Processes=list)

    def get_archive(self, container: str, path: str, *, max_bytes: int | None = None):
        """(tar bytes, stat) of a path; the bytes are None when larger than max_bytes."""
        try:
            resp, _ = self._request("GET", f"/containers/{container}/archive", params={"path": path})
            stat = _path_stat(resp)
            if max_bytes is not None and stat.get("size", 0) > max_bytes:
                self.close()  # the body is not read: the connection cannot be reused
                return None, stat
            return resp.read(), stat
        except BaseException:
            self.close()
            raise

    def export_stream(self, image: str):
        """(response, connection) of `docker save IMAGE`'s tar, on a connection of its own:
        the caller reads as much as it needs and closes the connection."""
        return self._request("GET", f"/images/{urllib.parse.quote(image, safe='')}/get", stream=True)

    def get_archive_stream(self, container: str, path: str):
        """(response, connection) of a path's tar archive, on a connection of its own: the
        caller reads the body as a stream and closes the connection."""
        return self._request("GET", f"/containers/{container}/archive", params={"path": path}, stream=True)

    def stat_path(self, container: str, path: str) -> dict:
        """The engine's stat of a path in a container (HEAD: nothing is transferred)."""
        resp, _ = self._request("HEAD", f"/containers/{container}/archive", params={"path": path})
        resp.read()
        return _path_stat(resp)

    def create_container(self, body: dict, *, name: str | None = None) -> dict:
        return checked(self._json("POST", "/containers/create", params={"name": name}, body=body, kind=dict),
                       "POST /containers/create", required=("Id",), Id=str)

    def start(self, container: str) -> None:
        self._json("POST", f"/containers/{container}/start")

    def events(self, *, since: float, filters: dict, until: float | None = None) -> list[dict]:
        """Past events (no streaming): one JSON object per line of the answer."""
        params = {"since": f"{since:.3f}", "filters": filters, "stream": False}
        if until is not None:
            params["until"] = f"{until:.3f}"
        resp, conn = self._request("GET", "/events", params=params, stream=True, timeout=10)
        try:
            raw = resp.read(MAX_ANSWER_BYTES)
        finally:
            conn.close()
        out = []
        for line in raw.splitlines():
            line = line.strip()
            if line:
                try:
                    event = jsonsafe.loads(line, max_bytes=MAX_ERROR_BYTES)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    out.append(event)
        return out

    def create_volume(self, name: str, *, labels: dict) -> dict:
        return checked(self._json("POST", "/volumes/create", body={"Name": name, "Labels": labels}, kind=dict),
                       "POST /volumes/create", required=("Name",), Name=str)

    def remove_volume(self, name: str) -> None:
        self._json("DELETE", f"/volumes/{urllib.parse.quote(name, safe='')}")

    def kill(self, container: str, *, signal: str = "TERM") -> None:
        self._json("POST", f"/containers/{container}/kill", params={"signal": signal})

    def remove_container(self, container: str, *, force: bool = False) -> None:
        # Cleanup runs in `finally` blocks, possibly right after a signal interrupted a
        # request on the shared connection; such a request closes that connection (see
        # _json), so the shared one is clean or absent here. A new connection is one more
        # ssh handshake on an ssh:// engine: use it only if the shared one was dropped.
        fresh = self._conn is None
        try:
            self._json("DELETE", f"/containers/{container}", params={"force": force})
            return
        except EngineConnectionError:
            if fresh:
                raise  # a new connection failed: another one would wait as long again
        resp, conn = self._request("DELETE", f"/containers/{container}", params={"force": force}, stream=True)
        try:
            resp.read()
        finally:
            conn.close()

    def exec_create(self, container: str, cmd: list[str], *, stdout=True, stderr=True, stdin=False,
                    tty=False, environment: dict | None = None, user: str | None = None) -> dict:
        body = {"Cmd": list(cmd), "AttachStdout": stdout, "AttachStderr": stderr, "AttachStdin": stdin,
                "Tty": tty, "Env": [f"{k}={v}" for k, v in (environment or {}).items()]}
        if user:
            body["User"] = user
        return checked(self._json("POST", f"/containers/{container}/exec", body=body, kind=dict),
                       f"POST /containers/{container}/exec", required=("Id",), Id=str)

    def exec_start_detached(self, exec_id: str) -> None:
        """Start an exec and return at once (no stream: the shared connection serves)."""
        self._json("POST", f"/exec/{exec_id}/start", body={"Detach": True, "Tty": False})

    def exec_inspect(self, exec_id: str) -> dict:
        return checked(self._json("GET", f"/exec/{exec_id}/json", kind=dict), f"GET /exec/{exec_id}/json",
                       ExitCode=int, Running=bool, Pid=int)

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
        return self._versioned(lambda version: self._upgrade(method, path, params=params, body=body,
                                                              version=version))

    def _upgrade(self, method: str, path: str, *, params, body, version: str) -> HijackedSocket:
        conn = self._new_connection(None)
        try:
            conn.connect()
            sock = conn.sock
            data = json.dumps(body).encode() if body is not None else b""
            head = (f"{method} {self._path(path, params, version=version)} HTTP/1.1\r\nHost: docker\r\n"
                    f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n").encode()
            sock.sendall(head + data)
            # Read the response head one byte at a time: not a byte of the stream that
            # follows may be swallowed into a buffer.
            raw = b""
            while not raw.endswith(b"\r\n\r\n"):
                if len(raw) > MAX_ERROR_BYTES:
                    raise EngineConnectionError("the engine sent a response head without end")
                chunk = sock.recv(1)
                if not chunk:
                    raise EngineConnectionError("the engine closed the connection during the upgrade")
                raw += chunk
        except OSError as exc:
            conn.close()
            self._raise_dial_failure(exc)
            if isinstance(exc, (PermissionError, EngineConnectionError)):
                raise
            raise EngineConnectionError(f"cannot reach the engine at {self.host}: {exc}") from exc
        status_line = raw.split(b"\r\n", 1)[0].decode(errors="replace")
        parts = status_line.split()
        if len(parts) < 2 or not parts[1].isdigit() or not status_line.startswith("HTTP/"):
            conn.close()
            raise EngineAnswerInvalid(f"{method} {path}", f"a reply that is not HTTP ({status_line[:40]!r})")
        status = int(parts[1])
        if status >= 400:
            # The error body follows the head; read what is there.
            sock.settimeout(5)
            rest = b""
            try:
                while len(rest) < MAX_ERROR_BYTES:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    rest += chunk
                    if rest.rstrip().endswith(b"}"):
                        break
            except OSError:
                pass
            conn.close()
            start = rest.find(b"{")
            message = error_message(rest[start:] if start >= 0 else rest)
            if message is None:
                raise EngineAnswerInvalid(f"{method} {path}", f"{status} and {jsonsafe.describe(rest)}")
            cls = EngineNotFound if status == 404 else EngineError
            raise cls(status, message or status_line)
        sock.settimeout(None)
        return HijackedSocket(sock)


def _debug_note(line: str) -> None:
    from debugkit.core import debuglog

    debuglog.note(line)


def _path_stat(resp) -> dict:
    header = resp.getheader("X-Docker-Container-Path-Stat")
    try:
        found = jsonsafe.loads(base64.b64decode(header[:65536]), max_bytes=65536) if header else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
