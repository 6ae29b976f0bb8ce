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
from dataclasses import dataclass

from debugkit.core import jsonsafe
from debugkit.runtimes.docker import apiversion
from debugkit.runtimes.docker.apiversion import Negotiated

DEFAULT_SOCKET = "/var/run/docker.sock"

# The version negotiated with each engine (by address), once per process: every client of
# the same engine (a fleet's threads, gc's removals, doctor's short-timeout one) shares it.
_NEGOTIATED: dict[str, "Negotiated"] = {}
_NEGOTIATING = threading.Lock()


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

    def __init__(self, message: str, *, detail: str | None = None):
        super().__init__(message)
        self.detail = detail


class SSHConnectionError(EngineConnectionError):
    """ssh could not connect, authenticate or keep the connection to an ssh:// engine;
    `detail` is ssh's own reason as one line (see sshdial.explain)."""


class EngineAnswerInvalid(Exception):
    """The engine answered, but not with what the Engine API sends: HTML from a web server
    at that address, JSON nested without end, a list for an object, a body past any real
    answer's size. `request` is the call ("GET /containers/x/json"), `what` what came back."""

    def __init__(self, request: str, what: str):
        super().__init__(f"{request}: {what}")
        self.request = request
        self.what = what


# No answer debugkit reads is near this: `containers?all=1` on an engine with thousands
# of containers is a few MB. Bigger is not an engine speaking the API.
MAX_ANSWER_BYTES = 64 << 20
MAX_ERROR_BYTES = 1 << 20


class EngineConfigError(ValueError):
    """The engine's address or TLS settings cannot be used as given (a typo, not an outage)."""


@dataclass(frozen=True)
class TLSConfig:
    """Client TLS for tcp:// engines: DOCKER_CERT_PATH's ca.pem, cert.pem and key.pem, or
    a Docker context's TLS material. No ca: the system's roots; no cert: no client
    certificate (server-only TLS); verify False: DOCKER_TLS without DOCKER_TLS_VERIFY, or a
    context's SkipTLSVerify."""

    ca: str | None
    cert: str | None
    key: str | None
    verify: bool = True


@dataclass(frozen=True)
class EngineAddress:
    """Where an engine listens, parsed and checked: unix, tcp (optionally TLS) or ssh."""

    scheme: str                 # unix | tcp | ssh
    path: str = ""              # unix socket path
    netloc: str = ""            # host:port for tcp
    tls: TLSConfig | None = None
    ssh: tuple[str, ...] = ()   # argv of the ssh dialer (see hosts.py)
    text: str = ""              # as the user gave it, for messages
    base_path: str = ""         # tcp://host:port/PREFIX: every request goes under /PREFIX

    @property
    def local(self) -> bool:
        """The engine's PIDs and paths are this machine's."""
        return self.scheme == "unix"


def parse_host(host: str, *, tls: TLSConfig | None = None) -> EngineAddress:
    """`unix:///path`, `tcp://host[:port][/prefix]`, `http(s)://host[:port][/prefix]`.
    Raises EngineConfigError.

    The docker CLI's ParseTCPAddr: a missing port is 2375, with TLS too (only a missing
    host means localhost:2376 under TLS: see hosts.py); a path is a prefix for every request.
    `https://` (which the docker CLI refuses, and the Engine SDKs take) is TLS; without TLS
    settings it verifies the server with the system's roots."""
    try:
        parsed = urllib.parse.urlsplit(host)
        port = parsed.port
    except ValueError as exc:
        raise EngineConfigError(f"invalid engine address {host!r}: {exc}") from None
    scheme = parsed.scheme
    if scheme == "unix":
        path = parsed.path or (DEFAULT_SOCKET if parsed.netloc == "" and host.rstrip("/") == "unix:" else "")
        if not path:
            raise EngineConfigError(f"invalid engine address {host!r}: no socket path")
        return EngineAddress("unix", path=path, text=host)
    if scheme in ("tcp", "http", "https"):
        if parsed.query or parsed.fragment:
            raise EngineConfigError(f"invalid engine address {host!r}: no query or fragment allowed")
        hostname = parsed.hostname or ("localhost" if scheme == "tcp" and host.rstrip("/") == "tcp:" else None)
        if not hostname:
            raise EngineConfigError(f"invalid engine address {host!r}: no host name")
        if scheme == "https" and tls is None:
            tls = TLSConfig(ca=None, cert=None, key=None, verify=True)
        elif scheme == "http":
            tls = None
        if port == 0:
            raise EngineConfigError(f"invalid engine address {host!r}: port 0")
        port = port or (443 if scheme == "https" else 80 if scheme == "http" else 2375)
        netloc = f"[{hostname}]:{port}" if ":" in hostname else f"{hostname}:{port}"
        # A user:password@ is not used (the docker CLI drops it too) and never shown.
        shown = host if "@" not in parsed.netloc else host.replace(parsed.netloc.rpartition("@")[0] + "@", "***@", 1)
        return EngineAddress("tcp", netloc=netloc, tls=tls, text=shown, base_path=parsed.path.rstrip("/"))
    raise EngineConfigError(f"unsupported engine address {host!r}: use unix://, tcp:// or ssh://")


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


def error_message(payload: bytes) -> str | None:
    """The `message` of an engine's error body ("" for an empty body, as HEAD's); None when
    the body is not the Engine API's JSON at all (HTML from a proxy, text, a bomb)."""
    if not payload.strip():
        return ""
    try:
        found = jsonsafe.loads(payload, max_bytes=MAX_ERROR_BYTES)
    except jsonsafe.Rejected:
        return None
    if isinstance(found, dict):
        message = found.get("message")
        return message.strip() if isinstance(message, str) else " ".join(str(found)[:300].split())
    return None


def checked(doc: dict, request: str, *, required: tuple[str, ...] = (), **fields: type) -> dict:
    """doc, when each named field is absent, null, or of its type (and each `required` one
    is there); EngineAnswerInvalid naming the first one that is not (a string for an
    object, a number for a list)."""
    for name in required:
        if doc.get(name) is None:
            raise EngineAnswerInvalid(request, f"an answer without {name}")
    for name, kind in fields.items():
        value = doc.get(name)
        if value is not None:
            try:
                jsonsafe.expect(value, kind, name)
            except jsonsafe.Rejected as exc:
                raise EngineAnswerInvalid(request, str(exc)) from None
    return doc


def tls_from_env(environ=None, *, default_cert_path: str | None = None) -> TLSConfig | None:
    """The docker CLI's TLS options from the environment (cli/flags/options.go): TLS when
    DOCKER_TLS or DOCKER_TLS_VERIFY is set (verification only with the latter), with
    DOCKER_CERT_PATH's ca.pem (required, as the CLI reads it), and cert.pem and key.pem when
    they exist (otherwise no client certificate: server-only TLS). The certificates default
    to the docker CLI's config directory (~/.docker, or $DOCKER_CONFIG)."""
    env = os.environ if environ is None else environ
    verify = bool(env.get("DOCKER_TLS_VERIFY"))
    if not (verify or env.get("DOCKER_TLS")):
        return None
    cert_path = env.get("DOCKER_CERT_PATH") or default_cert_path or \
        os.path.join(env.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"))
    files = {name: os.path.join(cert_path, f"{name}.pem") for name in ("ca", "cert", "key")}
    if not os.path.exists(files["ca"]):
        raise EngineConfigError(f"TLS is requested for the engine ({'DOCKER_TLS_VERIFY' if verify else 'DOCKER_TLS'}) "
                                f"but {files['ca']} does not exist (set DOCKER_CERT_PATH)")
    cert = files["cert"] if os.path.exists(files["cert"]) else None
    key = files["key"] if os.path.exists(files["key"]) else None
    if (cert is None) != (key is None):
        raise EngineConfigError(f"TLS for the engine: {files['cert'] if cert else files['key']} has no "
                                f"{'key.pem' if cert else 'cert.pem'} next to it")
    return TLSConfig(ca=files["ca"], cert=cert, key=key, verify=verify)
