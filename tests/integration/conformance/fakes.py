"""Loopback fakes that record what a client sent: an API server (Kubernetes or Docker
flavour, TLS or not, TCP or a unix socket), an HTTP proxy (CONNECT and absolute-form), a
SOCKS5 proxy and an OIDC issuer. They answer just enough for kubectl, the docker CLI and
debugkit to make the request under test, and record, for every request: the method, the
path, every header (repeated ones too), the TLS server name the client sent (SNI) and the
common name of its client certificate. The proxies record the target they were asked for
and the credentials they were given, then relay to that target.

They run inside the runner's private network namespace (runner.py), where the names in
HOSTS resolve to addresses on the loopback interface.
"""
from __future__ import annotations

import base64
import http.server
import json
import os
import select
import socket
import socketserver
import ssl
import struct
import threading
import time
import urllib.parse

HOSTS = {
    "kube.example": "10.99.0.1",
    "alt.example": "10.99.0.1",
    "proxy.example": "10.99.0.2",
    "issuer.example": "10.99.0.3",
    "docker.example": "10.99.0.4",
    "registry.example": "10.99.0.5",
}
DOCKER_API_VERSION = "1.45"
PROXY_USER, PROXY_PASSWORD = "pxuser", "px:pass@1"


class Records:
    def __init__(self):
        self.lock = threading.Lock()
        self.items: list[dict] = []

    def add(self, item: dict) -> None:
        with self.lock:
            self.items.append(item)

    def take(self) -> list[dict]:
        with self.lock:
            out, self.items = self.items, []
        return out


RECORDS = Records()


def server_context(pki: str, *, client_ca: bool = True) -> ssl.SSLContext:
    """The fakes' TLS: the conformance CA's server certificate; client certificates are
    asked for (not required) so that their common name can be recorded; HTTP/1.1 only."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(pki, "server.crt"), os.path.join(pki, "server.key"))
    if client_ca:
        ctx.load_verify_locations(os.path.join(pki, "ca.crt"))
        ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])

    def remember_sni(sslobj, name, _ctx):
        sslobj.sni_seen = name

    ctx.sni_callback = remember_sni
    return ctx


def _common_name(cert: dict | None) -> str | None:
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def record(self, body: bytes) -> dict:
        conn = self.connection
        cert = None
        if isinstance(conn, ssl.SSLSocket):
            try:
                cert = conn.getpeercert()
            except (ValueError, OSError):
                cert = None
        path = self.path
        if path.startswith(("http://", "https://")):  # absolute form, relayed by the proxy
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        item = {"server": self.server.name, "method": self.command, "path": path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "sni": getattr(conn, "sni_seen", None) if isinstance(conn, ssl.SSLSocket) else None,
                "tls": isinstance(conn, ssl.SSLSocket), "client_cert": _common_name(cert), "body": body[:4096].decode(
                    "utf-8", "replace")}
        RECORDS.add(item)
        return item

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status: int, body: bytes, content_type: str = "application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        body = self._body()
        self.record(body)
        self.server.flavour(self, body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


# -- what each flavour answers ----------------------------------------------------------------------

def kube_answer(h: Handler, _body: bytes) -> None:
    path = urllib.parse.urlsplit(h.path).path
    for prefix in ("/prefix", "/a/b"):
        if path.startswith(prefix + "/"):
            path = path[len(prefix):]
    if path == "/api":
        return h.send(200, json.dumps({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "kube.example"}]}).encode())
    if path == "/apis":
        return h.send(200, json.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}).encode())
    if path == "/api/v1":
        return h.send(200, json.dumps({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": ["get", "list"],
             "shortNames": ["po"]}]}).encode())
    name = path.rsplit("/", 1)[-1]
    h.send(404, json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": f'pods "{name}" not found', "reason": "NotFound",
                            "details": {"name": name, "kind": "pods"}, "code": 404}).encode())


def docker_answer(h: Handler, _body: bytes) -> None:
    path = urllib.parse.urlsplit(h.path).path
    common = [("Api-Version", DOCKER_API_VERSION), ("Docker-Experimental", "false"), ("Ostype", "linux"),
              ("Server", "Docker/28.0.0 (linux)")]
    if path.endswith("/_ping"):
        return h.send(200, b"OK", "text/plain; charset=utf-8", common)
    if path.endswith("/version"):
        return h.send(200, json.dumps({"Version": "28.0.0", "ApiVersion": DOCKER_API_VERSION,
                                       "MinAPIVersion": "1.24", "Os": "linux", "Arch": "amd64"}).encode(),
                      headers=common)
    if "/images/" in path and path.endswith("/json"):
        return h.send(200, json.dumps({"Id": "sha256:" + "ab" * 32, "RepoTags": ["x:1"], "Size": 1000,
                                       "Config": {"Labels": {}}}).encode(), headers=common)
    if "/images/" in path and path.endswith("/tag"):
        return h.send(201, b"", headers=common)
    if "/images/" in path and path.endswith("/push"):
        tag = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query).get("tag", ["latest"])[0]
        lines = [{"status": "The push refers to repository [x]"}, {"id": "abc", "status": "Pushed"},
                 {"status": f"{tag}: digest: sha256:{'cd' * 32} size: 1"},
                 {"progressDetail": {}, "aux": {"Tag": tag, "Digest": "sha256:" + "cd" * 32, "Size": 1}}]
        return h.send(200, b"".join(json.dumps(x).encode() + b"\r\n" for x in lines), headers=common)
    if path.endswith("/build"):
        lines = [{"stream": "Step 1/1 : FROM scratch\n"}, {"error": "conformance fake: no builds here",
                                                            "errorDetail": {"message": "conformance fake: no builds"}}]
        return h.send(200, b"".join(json.dumps(x).encode() + b"\r\n" for x in lines), headers=common)
    h.send(404, json.dumps({"message": f"No such object: {path.rsplit('/', 2)[-2]}"}).encode(), headers=common)


def issuer_answer(h: Handler, body: bytes) -> None:
    """An OIDC issuer: discovery, and a refresh_token grant that needs client credentials
    (basic or in the form) and the refresh token 'refresh-1'."""
    path = urllib.parse.urlsplit(h.path).path
    if path == "/.well-known/openid-configuration":
        return h.send(200, json.dumps({"issuer": "https://issuer.example",
                                       "token_endpoint": "https://issuer.example/token"}).encode())
    if path == "/token" and h.command == "POST":
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        auth = h.headers.get("Authorization", "")
        basic_ok = auth == "Basic " + base64.b64encode(b"kubectl:s3cret").decode()
        form_ok = form.get("client_id") == "kubectl" and form.get("client_secret") == "s3cret"
        if not (basic_ok or form_ok):
            return h.send(401, json.dumps({"error": "invalid_client"}).encode())
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != "refresh-1":
            return h.send(400, json.dumps({"error": "invalid_grant"}).encode())
        return h.send(200, json.dumps({"access_token": "access-2", "token_type": "Bearer", "expires_in": 3600,
                                       "refresh_token": "refresh-2", "id_token": jwt(time.time() + 3600, "2")}).encode())
    h.send(404, b'{"error":"not_found"}')


def jwt(exp: float, serial: str = "1") -> str:
    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'exp': int(exp), 'sub': 'alice', 'n': serial})}.c2ln"


FLAVOURS = {"kube": kube_answer, "docker": docker_answer, "issuer": issuer_answer}


# -- servers ------------------------------------------------------------------------------------------

class _Threaded(socketserver.ThreadingMixIn):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):
        pass

    def process_request_thread(self, request, client_address):
        RECORDS.add({"server": self.name, "connection": True})
        if self.tls is not None:
            try:
                request.settimeout(10)
                request = self.tls.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (OSError, ssl.SSLError) as exc:
                RECORDS.add({"server": self.name, "tls_error": str(exc)[:200]})
                request.close()
                return
        super().process_request_thread(request, client_address)


class TCPServer(_Threaded, http.server.HTTPServer):
    def __init__(self, name: str, address: tuple, flavour: str, tls: ssl.SSLContext | None):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.name, self.flavour, self.tls = name, FLAVOURS[flavour], tls
        super().__init__(address, Handler)


class UnixServer(_Threaded, socketserver.UnixStreamServer):
    def __init__(self, name: str, path: str, flavour: str):
        self.name, self.flavour, self.tls = name, FLAVOURS[flavour], None
        super().__init__(path, Handler)

    def get_request(self):
        sock, _ = self.socket.accept()
        return sock, ("unix", 0)


def serve(server) -> None:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


# -- proxies --------------------------------------------------------------------------------------------

def _pipe(a: socket.socket, b: socket.socket) -> None:
    try:
        while True:
            r, _, _ = select.select([a, b], [], [], 30)
            if not r:
                return
            for s in r:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        pass
    finally:
        a.close()
        b.close()


def _read_head(sock: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(1)
        if not chunk:
            break
        buf += chunk
    return buf


class HTTPProxy(socketserver.ThreadingTCPServer):
    """CONNECT tunnels and absolute-form requests; require_auth: 407 without PROXY_USER."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, require_auth: bool = False):
        self.require_auth = require_auth
        super().__init__(address, self.Handle)

    def handle_error(self, request, client_address):
        pass

    class Handle(socketserver.BaseRequestHandler):
        def handle(self):
            head = _read_head(self.request)
            if not head:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target = lines[0].split(" ")[:2]
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            auth = headers.get("proxy-authorization")
            RECORDS.add({"proxy": "http", "kind": "connect" if method == "CONNECT" else "absolute",
                         "target": target, "proxy_authorization": auth})
            expected = "Basic " + base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
            if self.server.require_auth and auth != expected:
                self.request.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                     b"Proxy-Authenticate: Basic realm=\"conformance\"\r\nContent-Length: 0\r\n\r\n")
                return
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                try:
                    upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
                except OSError:
                    self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                    return
                self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                _pipe(self.request, upstream)
                return
            url = urllib.parse.urlsplit(target)
            try:
                upstream = socket.create_connection((url.hostname, url.port or 80), timeout=5)
            except OSError:
                self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            upstream.sendall(head)
            _pipe(self.request, upstream)


class Socks5Proxy(socketserver.ThreadingTCPServer):
    """RFC 1928 CONNECT, with RFC 1929 user/password when require_auth."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, require_auth: bool = False):
        self.require_auth = require_auth
        super().__init__(address, self.Handle)

    def handle_error(self, request, client_address):
        pass

    class Handle(socketserver.BaseRequestHandler):
        def recv(self, n):
            data = b""
            while len(data) < n:
                chunk = self.request.recv(n - len(data))
                if not chunk:
                    raise ConnectionError("closed")
                data += chunk
            return data

        def handle(self):
            s = self.request
            _ver, count = self.recv(2)
            methods = self.recv(count)
            user = password = None
            if self.server.require_auth:
                if 2 not in methods:
                    s.sendall(b"\x05\xff")
                    RECORDS.add({"proxy": "socks5", "kind": "refused", "methods": list(methods)})
                    return
                s.sendall(b"\x05\x02")
                _v, ulen = self.recv(2)
                user = self.recv(ulen).decode()
                (plen,) = self.recv(1)
                password = self.recv(plen).decode()
                ok = (user, password) == (PROXY_USER, PROXY_PASSWORD)
                s.sendall(b"\x01" + (b"\x00" if ok else b"\x01"))
                if not ok:
                    RECORDS.add({"proxy": "socks5", "kind": "refused", "user": user})
                    return
            else:
                s.sendall(b"\x05\x00")
            _v, cmd, _r, atyp = self.recv(4)
            if atyp == 1:
                host = socket.inet_ntoa(self.recv(4))
            elif atyp == 4:
                host = socket.inet_ntop(socket.AF_INET6, self.recv(16))
            else:
                host = self.recv(self.recv(1)[0]).decode()
            (port,) = struct.unpack(">H", self.recv(2))
            RECORDS.add({"proxy": "socks5", "kind": "connect", "target": f"{host}:{port}",
                         "address_type": {1: "ipv4", 3: "name", 4: "ipv6"}.get(atyp), "user": user})
            try:
                upstream = socket.create_connection((host, port), timeout=5)
            except OSError:
                s.sendall(b"\x05\x05\x00\x01" + b"\x00" * 6)
                return
            s.sendall(b"\x05\x00\x00\x01" + b"\x00" * 6)
            _pipe(s, upstream)


def start_all(pki: str, workdir: str) -> dict:
    """Every fake this suite uses, on its fixed address in the namespace."""
    tls = server_context(pki)
    servers = {}
    for name, address, flavour, secure in (
            ("kube-tls", ("10.99.0.1", 443), "kube", True),
            ("kube-tls-6443", ("10.99.0.1", 6443), "kube", True),
            ("kube-plain", ("10.99.0.1", 80), "kube", False),
            ("kube-local-tls", ("127.0.0.1", 6443), "kube", True),
            ("kube-local-plain", ("127.0.0.1", 8080), "kube", False),
            ("kube-local-tls", ("::1", 6443), "kube", True),
            ("issuer", ("10.99.0.3", 443), "issuer", True),
            ("docker-tls", ("10.99.0.4", 2376), "docker", True),
            ("docker-plain", ("10.99.0.4", 2375), "docker", False),
            ("docker-https", ("10.99.0.4", 443), "docker", True),
            ("docker-local-tls", ("127.0.0.1", 2376), "docker", True),
            ("docker-local-plain", ("127.0.0.1", 2375), "docker", False),
            ("docker-local-plain", ("::1", 2375), "docker", False)):
        try:
            server = TCPServer(name, address, flavour, tls if secure else None)
        except OSError:
            if ":" in address[0]:
                continue  # no IPv6 on this machine: the IPv6 cases fail for both clients alike
            raise
        servers[f"{name} {address}"] = server
        serve(server)
    sock_path = os.path.join(workdir, "docker.sock")
    servers["docker-unix"] = UnixServer("docker-unix", sock_path, "docker")
    serve(servers["docker-unix"])
    for name, cls, address, auth in (("http-proxy", HTTPProxy, ("10.99.0.2", 3128), False),
                                     ("http-proxy-auth", HTTPProxy, ("10.99.0.2", 3129), True),
                                     ("socks-proxy", Socks5Proxy, ("10.99.0.2", 1080), False),
                                     ("socks-proxy-auth", Socks5Proxy, ("10.99.0.2", 1081), True)):
        servers[name] = cls(address, auth)
        serve(servers[name])
    return servers
