"""A small Kubernetes API client on the standard library: JSON over http.client, a
thread-safe keep-alive pool, a client-side token-bucket rate limiter, watches, and
websocket channel streams for exec/attach/portforward (see websocket.py).

Credentials (tokens, exec plugins, client certificates) are credentials.py's.

Errors: :class:`ApiError` for any non-2xx answer (with the Status body's message),
:class:`TransportError` when the server cannot be reached (connect, TLS, timeout), and
:class:`credentials.ExecPluginError` (a KubeConfigError) when an exec plugin is missing or fails.
"""
from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import threading
import urllib.parse

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and http.client cost import time that an exec-only command need not pay
    import http.client
    from typing import Callable, Iterable

from debugkit import __version__
from debugkit.runtimes.kubernetes.credentials import Credentials, load_cert_chain
from debugkit.runtimes.kubernetes.kubeconfig import ClusterAuth, KubeConfigError
# The connections and the watch stream are their own modules; callers name them from here.
from debugkit.runtimes.kubernetes.kubeconnection import (  # noqa: F401
    _STALE, ApiError, RateLimiter, TransportError, _connection_class, _http_client, _Pool)
from debugkit.runtimes.kubernetes.kubewatch import WatchStream
from debugkit.runtimes.kubernetes.websocket import (
    EXEC_PROTOCOLS,
    PORTFORWARD_PROTOCOLS,
    ChannelStream,
    HandshakeError,
    ProtocolError,
    handshake,
)

JSON_PATCH = "application/json-patch+json"
# Where Go's ProxyFromEnvironment looks (REQUEST_METHOD only matters with one of these).
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
WORKLOADS = {
    "deployment": ("apps/v1", "deployments"),
    "statefulset": ("apps/v1", "statefulsets"),
    "daemonset": ("apps/v1", "daemonsets"),
    "replicaset": ("apps/v1", "replicasets"),
    "job": ("batch/v1", "jobs"),
}
_WORKLOAD_ALIASES = {"deploy": "deployment", "deployments": "deployment", "sts": "statefulset",
                     "statefulsets": "statefulset", "ds": "daemonset", "daemonsets": "daemonset",
                     "rs": "replicaset", "replicasets": "replicaset", "jobs": "job"}


def _default_warn(message: str) -> None:
    sys.stderr.write(f"debugkit: warning: {message}\n")


# -- the client ---------------------------------------------------------------------------------------

def _quote(segment: str) -> str:
    return urllib.parse.quote(str(segment), safe="")


class _Headers(dict):
    """Headers where a name may repeat (Impersonate-Group): http.client and the websocket
    handshake send ``items()``, one line each."""

    def __init__(self, headers: dict, extra: list[tuple[str, str]]):
        super().__init__(headers)
        self._pairs = list(headers.items()) + list(extra)

    def items(self):
        return self._pairs

    def pop(self, key, *default):
        self._pairs = [(k, v) for k, v in self._pairs if k != key]
        return super().pop(key, *default)


class KubeClient:
    """JSON requests, watches and channel streams against one API server."""

    def __init__(self, auth: ClusterAuth, *, qps: float = 50, burst: int = 100, pool_size: int = 8,
                 user_agent: str | None = None, warn: Callable[[str], None] | None = _default_warn,
                 interactive: bool = True, exec_timeout: float | None = None, plugin_stderr=None):
        """``interactive``: an exec plugin may take the terminal for a login (not for doctor
        or completion); ``exec_timeout``: how long a plugin may run when no login is in
        progress; ``plugin_stderr``: where a plugin's stderr goes (default: our stderr)."""
        self.auth = auth
        parts = urllib.parse.urlsplit(auth.server)  # checked by kubeconfig.server_url
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        default_port = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == default_port else f"{host}:{self.port}"
        self.user_agent = user_agent or f"debugkit/{__version__} (python-stdlib)"
        self.limiter = RateLimiter(qps, burst)
        extra = {"exec_timeout": exec_timeout} if exec_timeout is not None else {}
        self.credentials = Credentials(auth, interactive=interactive, plugin_stderr=plugin_stderr,
                                       user_agent=self.user_agent, **extra)
        self._warn = warn or (lambda message: None)
        self._warned: set[str] = set()
        self._ssl_lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        self._ssl_cert: tuple | None = None
        self.proxy = None
        if auth.proxy_url or any(os.environ.get(name) for name in _PROXY_VARIABLES):
            from debugkit.runtimes.kubernetes import proxy as proxies  # only when there may be one

            where = f"{auth.source}: cluster {auth.cluster!r}" if auth.cluster else str(auth.source)
            try:
                self.proxy = (proxies.parse(auth.proxy_url) if auth.proxy_url
                              else proxies.from_environment(self.scheme, self.host, self.port))
            except proxies.ProxyConfigError as exc:
                raise KubeConfigError(f"{where}: {exc}" if auth.proxy_url else str(exc)) from None
        # Go sends a plain-http request to an http proxy in absolute form; anything else tunnels.
        self._absolute = self.proxy is not None and self.proxy.scheme == "http" and self.scheme == "http"
        self._impersonation = auth.impersonation.headers() if auth.impersonation else []
        if auth.withheld:
            self.warn_once(f"{auth.server} is plain http: the kubeconfig's credentials ({', '.join(auth.withheld)}) "
                           "are not sent to it, as kubectl does not send them")
        self.pool = _Pool(pool_size, self._connect_lazy)
        self._closed = False

    # -- plumbing --------------------------------------------------------------------------------

    def __enter__(self) -> "KubeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self.pool.clear()

    def warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self._warn(message)

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS settings (built once; again when an exec plugin issues a new certificate)."""
        cert = self.credentials.client_cert()
        with self._ssl_lock:
            if self._ssl is not None and cert == self._ssl_cert:
                return self._ssl
            rebuilt = self._ssl is not None
            self._ssl = self._build_ssl(cert)
            self._ssl_cert = cert
        if rebuilt:
            self.pool.clear()  # connections made with the old certificate
        return self._ssl

    def _build_ssl(self, exec_cert) -> ssl.SSLContext:
        auth = self.auth
        where = f"{auth.source}: cluster {auth.cluster!r}" if auth.cluster else str(auth.source)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.set_alpn_protocols(["http/1.1"])
        except NotImplementedError:
            pass
        if auth.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.warn_once(f"TLS certificate verification is off for {auth.server} (insecure-skip-tls-verify)")
        else:
            from debugkit.runtimes.kubernetes.credentials import read_file

            ca = auth.ca_data or (read_file(auth.ca_file, "certificate-authority", where) if auth.ca_file else None)
            try:
                if ca:
                    ctx.load_verify_locations(cadata=ca.decode("ascii", "replace"))
                else:
                    ctx.load_default_certs()
            except (ssl.SSLError, ValueError, OSError) as exc:
                raise KubeConfigError(f"{where}: the certificate authority cannot be loaded: {exc}") from None
        uw = f"{auth.source}: user {auth.user!r}"
        try:
            if exec_cert is not None:
                load_cert_chain(ctx, None, exec_cert[0], None, exec_cert[1])
            elif auth.client_cert_file or auth.client_cert_data:
                load_cert_chain(ctx, auth.client_cert_file, auth.client_cert_data,
                                auth.client_key_file, auth.client_key_data, where=uw)
        except FileNotFoundError as exc:
            raise KubeConfigError(f"{uw}: client certificate or key {exc.filename} does not exist") from None
        except (ssl.SSLError, ValueError, OSError) as exc:
            raise KubeConfigError(f"{uw}: the client certificate and key cannot be loaded: {exc}") from None
        return ctx

    def _dial(self, timeout: float | None):
        """A TCP connection to the API server: direct, or through the proxy (CONNECT or SOCKS5)."""
        if self.proxy is None:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        from debugkit.runtimes.kubernetes import proxy as proxies

        return proxies.dial(self.proxy, self.host, self.port, timeout=timeout, user_agent=self.user_agent)

    def _dial_proxy_itself(self, timeout: float | None):
        from debugkit.runtimes.kubernetes import proxy as proxies

        try:
            return socket.create_connection((self.proxy.host, self.proxy.port), timeout=timeout)
        except OSError as exc:
            raise proxies.ProxyError(f"cannot reach the proxy {self.proxy.shown} ({self.proxy.source}): "
                                     f"{exc.strerror or exc.__class__.__name__}") from None

    def _connect_lazy(self, timeout: float) -> http.client.HTTPConnection:
        """A new (not yet connected) connection to the server, through the proxy if any."""
        if self.scheme == "https":
            return _connection_class(True)(self.host, self.port, dial=self._dial, timeout=timeout,
                                           context=self.ssl_context(),
                                           server_hostname=self.auth.tls_server_name or self.host)
        dial = self._dial_proxy_itself if self._absolute else self._dial
        return _connection_class(False)(self.host, self.port, dial=dial, timeout=timeout)

    def _open_socket(self, timeout: float):
        """A connected (TLS) socket for a websocket, without http.client."""
        sock = self._dial(timeout)
        try:
            if self.scheme == "https":
                sock = self.ssl_context().wrap_socket(sock, server_hostname=self.auth.tls_server_name or self.host)
        except BaseException:
            sock.close()
            raise
        return sock

    def _headers(self, content_type: str | None = None, accept: str = "application/json") -> dict:
        headers = {"Accept": accept, "User-Agent": self.user_agent}
        authorization = self.credentials.authorization()
        if authorization:
            headers["Authorization"] = authorization
        if content_type:
            headers["Content-Type"] = content_type
        if self._absolute and self.proxy.authorization():
            headers["Proxy-Authorization"] = self.proxy.authorization()
        if self._impersonation:
            return _Headers(headers, self._impersonation)
        return headers

    def url(self, path: str, query=None) -> str:
        """The request target: base path + path + query (a dict or (key, value) pairs;
        None values dropped, booleans as true/false, list values repeated)."""
        if not path.startswith("/"):
            path = "/" + path
        pairs: list[tuple[str, str]] = []
        items = query.items() if isinstance(query, dict) else (query or ())
        for key, value in items:
            if value is None:
                continue
            values = value if isinstance(value, (list, tuple)) else (value,)
            for v in values:
                pairs.append((key, ("true" if v else "false") if isinstance(v, bool) else str(v)))
        target = self.base_path + path
        if self._absolute:
            target = f"http://{self.host_header}{target}"
        return target + ("?" + urllib.parse.urlencode(pairs) if pairs else "")

    def _describe(self, exc: BaseException, method: str, path: str, timeout: float) -> TransportError:
        where = f"{self.scheme}://{self.host_header}"
        proxies = sys.modules.get("debugkit.runtimes.kubernetes.proxy")
        if proxies is not None and isinstance(exc, proxies.ProxyError):
            return TransportError(f"{method} {path} on {where}: {exc}")
        if isinstance(exc, socket.timeout):
            return TransportError(f"{method} {path} on {where}: no answer within {timeout:g} s")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return TransportError(f"TLS verification of {where} failed: {exc.verify_message or exc.reason}")
        if isinstance(exc, ssl.SSLError):
            return TransportError(f"TLS with {where} failed: {exc.reason or exc}")
        if isinstance(exc, socket.gaierror):
            return TransportError(f"cannot resolve {self.host}: {exc.strerror or exc}")
        hc = sys.modules.get("http.client")
        if hc is not None and isinstance(exc, hc.HTTPException):
            return TransportError(f"{method} {path} on {where}: bad HTTP answer: {exc.__class__.__name__} {exc}")
        if isinstance(exc, OSError):
            return TransportError(f"cannot talk to {where}: {exc.strerror or exc.__class__.__name__}")
        return TransportError(f"{method} {path} on {where}: {exc}")

    def _check_warnings(self, resp) -> None:
        for value in resp.headers.get_all("Warning") or ():
            text = value
            if '"' in value:  # 299 - "message"
                text = value.split('"', 1)[1].rsplit('"', 1)[0]
            self.warn_once(f"the API server says: {text}")

    # -- requests ------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, query=None, body=None, content_type: str | None = None,
                timeout: float = 30, accept: str = "application/json"):
        """One request; the decoded JSON answer ({} when empty). Non-JSON answers (accept
        text/plain, for logs) come back as str. Raises ApiError or TransportError."""
        method = method.upper()
        payload = None
        if body is not None:
            if isinstance(body, (bytes, bytearray)):
                payload = bytes(body)
            elif isinstance(body, str):
                payload = body.encode()
            else:
                payload = json.dumps(body, separators=(",", ":")).encode()
                if content_type is None and method == "PATCH":
                    content_type = JSON_PATCH if isinstance(body, list) else MERGE_PATCH
            content_type = content_type or "application/json"
        target = self.url(path, query)
        hc = _http_client()
        self.limiter.wait()
        stale_retried = auth_retried = False
        while True:
            headers = self._headers(content_type, accept)
            if self.credentials.uses_exec and self.scheme == "https":
                self.ssl_context()  # a new exec certificate retires the pooled connections
            conn, reused, gen = self.pool.acquire(timeout)
            got_response = False
            try:
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                conn.request(method, target, body=payload, headers=headers)
                resp = conn.getresponse()
                got_response = True
                data = resp.read()
            except _STALE as exc:
                self.pool.release(conn, gen, False)
                if reused and not got_response and not stale_retried:
                    stale_retried = True
                    continue
                raise self._describe(exc, method, path, timeout) from None
            except (OSError, hc.HTTPException) as exc:
                self.pool.release(conn, gen, False)
                raise self._describe(exc, method, path, timeout) from None
            except BaseException:
                self.pool.release(conn, gen, False)
                raise
            self.pool.release(conn, gen, not resp.will_close)
            self._check_warnings(resp)
            if resp.status == 401 and self.credentials.uses_exec and not auth_retried:
                auth_retried = True  # client-go's rule: a 401 refreshes exec credentials once
                self.credentials.invalidate()
                continue
            if not 200 <= resp.status < 300:
                raise ApiError.from_response(resp.status, resp.reason, data)
            if not data:
                return {}
            if accept != "application/json" and not resp.getheader("Content-Type", "").startswith("application/json"):
                return data.decode("utf-8", "replace")
            try:
                return json.loads(data)
            except ValueError:
                raise TransportError(f"{method} {path}: the API server sent invalid JSON") from None

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def watch(self, path: str, *, query=None, timeout: float | None = 60) -> "WatchStream":
        """Watch events ({"type", "object"}) from ``path``; ``timeout`` bounds the wait for
        each event. Iterate it; close it (or use ``with``) to stop early."""
        q = dict(query) if isinstance(query, dict) else dict(query or {})
        q.setdefault("watch", "true")
        return WatchStream(self, path, q, timeout)

    def stream(self, path: str, query, *, protocols: Iterable[str] | None = None,
               timeout: float = 30) -> ChannelStream:
        """Open a websocket to exec, attach or portforward. ``protocols`` defaults to
        v5/v4.channel.k8s.io, and for portforward to websocket.PORTFORWARD_PROTOCOLS."""
        portforward = path.rstrip("/").endswith("/portforward")
        if protocols is None:
            protocols = PORTFORWARD_PROTOCOLS if portforward else EXEC_PROTOCOLS
        protocols = tuple(protocols)
        target = self.url(path, query)
        self.limiter.wait()
        auth_retried = False
        while True:
            headers = self._headers()
            headers.pop("Accept", None)
            try:
                sock = self._open_socket(timeout)
            except OSError as exc:
                raise self._describe(exc, "GET", path, timeout) from None
            try:
                return handshake(sock, host=self.host_header, path=target, headers=headers, protocols=protocols,
                                 timeout=timeout, portforward=portforward)
            except HandshakeError as exc:
                sock.close()
                if exc.status == 401 and self.credentials.uses_exec and not auth_retried:
                    auth_retried = True
                    self.credentials.invalidate()
                    continue
                raise ApiError.from_response(exc.status, exc.reason, exc.body) from None
            except ProtocolError as exc:
                sock.close()
                raise TransportError(f"websocket to {self.host_header}{path}: {exc}") from None
            except OSError as exc:
                sock.close()
                raise self._describe(exc, "GET", path, timeout) from None

    # -- the calls debugkit makes -----------------------------------------------------------------

    def read_pod(self, namespace: str, name: str) -> dict:
        return self.request("GET", f"/api/v1/namespaces/{_quote(namespace)}/pods/{_quote(name)}")

    def read_node(self, name: str) -> dict:
        return self.request("GET", f"/api/v1/nodes/{_quote(name)}")

    def read_namespace(self, name: str) -> dict:
        return self.request("GET", f"/api/v1/namespaces/{_quote(name)}")

    def list_nodes(self, label_selector: str | None = None) -> dict:
        return self.request("GET", "/api/v1/nodes", query={"labelSelector": label_selector})

    def list_namespaces(self, *, limit: int | None = None) -> dict:
        return self.request("GET", "/api/v1/namespaces", query={"limit": limit})

    def create_pod(self, namespace: str, pod: dict) -> dict:
        return self.request("POST", f"/api/v1/namespaces/{_quote(namespace)}/pods", body=pod)

    def delete_pod(self, namespace: str, name: str, *, grace_seconds: int = 0, uid: str | None = None) -> dict:
        """Delete now (no grace: a debugging pod holds nothing worth a clean stop); with `uid`,
        only that very pod (a precondition), never a namesake created since."""
        body: dict = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": int(grace_seconds),
                      "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        return self.request("DELETE", f"/api/v1/namespaces/{_quote(namespace)}/pods/{_quote(name)}", body=body)

    def list_pods(self, namespace: str | None = None, label_selector: str | None = None,
                  field_selector: str | None = None, *, limit: int | None = None) -> dict:
        path = f"/api/v1/namespaces/{_quote(namespace)}/pods" if namespace else "/api/v1/pods"
        return self.request("GET", path, query={"labelSelector": label_selector, "fieldSelector": field_selector,
                                                "limit": limit})

    def patch_ephemeral_containers(self, namespace: str, name: str, patch: list | dict, *,
                                   content_type: str = JSON_PATCH) -> dict:
        return self.request("PATCH", f"/api/v1/namespaces/{_quote(namespace)}/pods/{_quote(name)}/ephemeralcontainers",
                            body=patch, content_type=content_type)

    def add_ephemeral_container(self, namespace: str, name: str, container: dict) -> dict:
        """Add one, whatever others are added meanwhile: a strategic merge patch merges the
        list by name (as kubectl debug sends it), where a JSON patch made from the pod as
        read would replace a list that another client has just added to."""
        return self.patch_ephemeral_containers(namespace, name, {"spec": {"ephemeralContainers": [container]}},
                                               content_type=STRATEGIC_MERGE_PATCH)

    def watch_pod(self, namespace: str, name: str, *, resource_version: str | None = None,
                  timeout_seconds: int = 60) -> "WatchStream":
        return self.watch(f"/api/v1/namespaces/{_quote(namespace)}/pods",
                          query={"fieldSelector": f"metadata.name={name}", "resourceVersion": resource_version,
                                 "timeoutSeconds": int(timeout_seconds), "allowWatchBookmarks": "false"},
                          timeout=timeout_seconds + 15)

    def self_subject_access_review(self, verb: str, resource: str, namespace: str | None,
                                   subresource: str | None = None, group: str = "") -> bool:
        attrs = {"verb": verb, "resource": resource, "group": group}
        if namespace:
            attrs["namespace"] = namespace
        if subresource:
            attrs["subresource"] = subresource
        answer = self.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                              body={"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                                    "spec": {"resourceAttributes": attrs}})
        return bool((answer.get("status") or {}).get("allowed"))

    def read_workload(self, kind: str, namespace: str, name: str) -> dict:
        """deployment, statefulset, daemonset, replicaset (apps/v1) or job (batch/v1)."""
        key = _WORKLOAD_ALIASES.get(kind.lower(), kind.lower())
        if key not in WORKLOADS:
            raise ValueError(f"unknown workload kind {kind!r} (one of {', '.join(WORKLOADS)})")
        group_version, plural = WORKLOADS[key]
        return self.request("GET", f"/apis/{group_version}/namespaces/{_quote(namespace)}/{plural}/{_quote(name)}")

    def read_deployment(self, namespace: str, name: str) -> dict:
        return self.read_workload("deployment", namespace, name)

    def read_statefulset(self, namespace: str, name: str) -> dict:
        return self.read_workload("statefulset", namespace, name)

    def read_daemonset(self, namespace: str, name: str) -> dict:
        return self.read_workload("daemonset", namespace, name)

    def read_replicaset(self, namespace: str, name: str) -> dict:
        return self.read_workload("replicaset", namespace, name)

    def read_job(self, namespace: str, name: str) -> dict:
        return self.read_workload("job", namespace, name)

    def exec_stream(self, namespace: str, pod: str, command, *, container: str | None = None,
                    stdin: bool = False, stdout: bool = True, stderr: bool = True, tty: bool = False,
                    timeout: float = 30) -> ChannelStream:
        query = [("command", c) for c in command]
        query += [("container", container)] if container else []
        query += [("stdin", "true" if stdin else "false"), ("stdout", "true" if stdout else "false"),
                  ("stderr", "true" if stderr and not tty else "false"), ("tty", "true" if tty else "false")]
        return self.stream(f"/api/v1/namespaces/{_quote(namespace)}/pods/{_quote(pod)}/exec", query, timeout=timeout)

    def attach_stream(self, namespace: str, pod: str, *, container: str | None = None, stdin: bool = True,
                      stdout: bool = True, stderr: bool = True, tty: bool = False,
                      timeout: float = 30) -> ChannelStream:
        query = [("container", container)] if container else []
        query += [("stdin", "true" if stdin else "false"), ("stdout", "true" if stdout else "false"),
                  ("stderr", "true" if stderr and not tty else "false"), ("tty", "true" if tty else "false")]
        return self.stream(f"/api/v1/namespaces/{_quote(namespace)}/pods/{_quote(pod)}/attach", query,
                           timeout=timeout)

    def portforward_stream(self, namespace: str, pod: str, ports, *, timeout: float = 30) -> ChannelStream:
        query = [("ports", str(int(p))) for p in ports]
        return self.stream(f"/api/v1/namespaces/{_quote(namespace)}/pods/{_quote(pod)}/portforward", query,
                           timeout=timeout)
