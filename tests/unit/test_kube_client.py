"""KubeClient against a local fake API server (plain HTTP and TLS with a generated CA):
credentials, exec plugins, errors, keep-alive pool, stale-connection retry, rate limit,
watch, and the websocket upgrade's error mapping."""
from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from debugkit.runtimes.kubernetes import credentials
from debugkit.runtimes.kubernetes import kubeclient as kcl
from debugkit.runtimes.kubernetes.credentials import ExecPluginError
from debugkit.runtimes.kubernetes.kubeclient import ApiError, KubeClient, TransportError
from debugkit.runtimes.kubernetes.kubeconfig import ClusterAuth, ExecConfig, KubeConfigError

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- PKI -----------------------------------------------------------------------------------------

def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA; a server certificate for 127.0.0.1/localhost; one only for DNS:kubernetes;
    a client certificate; and an unrelated CA."""
    d = tmp_path_factory.mktemp("pki")
    try:
        for ca in ("ca", "other-ca"):
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={ca}",
                     "-keyout", f"{ca}.key", "-out", f"{ca}.crt", cwd=d)
        for name, subj, ext in (("server", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                                ("kubernetes", "/CN=kubernetes", "subjectAltName=DNS:kubernetes"),
                                ("client", "/CN=debugkit-user/O=devs", "extendedKeyUsage=clientAuth")):
            (d / f"{name}.ext").write_text(ext + "\n")
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout", f"{name}.key",
                     "-out", f"{name}.csr", cwd=d)
            _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                     "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl cannot make test certificates: {exc}")
    return d


# -- the fake API server ---------------------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.connections += 1
        self.served_here = 0

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_one(self, method):
        body = self._body()
        url = urllib.parse.urlsplit(self.path)
        record = {"method": method, "path": url.path, "query": urllib.parse.parse_qs(url.query),
                  "headers": dict(self.headers), "body": body, "conn_seq": self.served_here}
        with self.server.lock:
            self.server.requests.append(record)
        self.served_here += 1
        if self.server.drop_reused and self.served_here > 1:
            self.server.drop_reused -= 1
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # read the request, answer nothing
            return
        route = self.server.routes.get((method, url.path)) or self.server.routes.get(("*", url.path))
        if route is None:
            return self.send_json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "message": f'the server could not find {url.path}', "reason": "NotFound",
                                        "code": 404})
        route(self, record)

    def send_json(self, status, obj, headers=()):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.handle_one("GET")

    def do_POST(self):
        self.handle_one("POST")

    def do_PATCH(self):
        self.handle_one("PATCH")

    def do_DELETE(self):
        self.handle_one("DELETE")


class FakeAPI(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.routes = {}
        self.requests = []
        self.connections = 0
        self.drop_reused = 0
        self.tls = tls
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def handle_error(self, request, client_address):
        pass  # a client that timed out or hung up: expected in these tests

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.server_address[1]}"

    def route(self, method, path, fn=None, *, status=200, body=None, headers=()):
        self.routes[(method, path)] = fn or (lambda h, rec: h.send_json(status, body if body is not None else {},
                                                                         headers))

    def stop(self):
        self.shutdown()
        self.server_close()


@pytest.fixture
def api():
    server = FakeAPI()
    server.route("GET", "/api/v1/namespaces/ns/pods/p", body={"kind": "Pod", "metadata": {"name": "p"}})
    yield server
    server.stop()


def server_tls(pki, name="server", client_ca=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / f"{name}.crt", pki / f"{name}.key")
    if client_ca:
        ctx.load_verify_locations(pki / "ca.crt")
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client(server, **auth_kwargs):
    opts = {k: auth_kwargs.pop(k) for k in ("qps", "burst", "pool_size", "warn") if k in auth_kwargs}
    return KubeClient(ClusterAuth(server=server.url, source="test", cluster="c", user="u", **auth_kwargs), **opts)


# -- requests and errors ----------------------------------------------------------------------------

def test_get_json_with_token_and_user_agent(api):
    c = client(api, token="s3cret")
    assert c.read_pod("ns", "p")["metadata"]["name"] == "p"
    headers = api.requests[-1]["headers"]
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["User-Agent"].startswith("debugkit/")
    assert headers["Accept"] == "application/json"


def test_api_error_carries_the_status(api):
    api.route("GET", "/api/v1/namespaces/ns/pods/forbidden", status=403, body={
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": 'pods "forbidden" is forbidden: User "bob" cannot get resource "pods" in namespace "ns"'})
    c = client(api)
    with pytest.raises(ApiError) as info:
        c.read_pod("ns", "forbidden")
    err = info.value
    assert err.status == 403 and err.reason == "Forbidden"
    assert err.message.startswith('pods "forbidden" is forbidden: User "bob"')
    assert err.body["code"] == 403
    with pytest.raises(ApiError) as info:
        c.read_pod("ns", "missing")
    assert info.value.status == 404 and info.value.reason == "NotFound"


def test_api_error_without_a_status_body(api):
    api.route("GET", "/plain", lambda h, rec: (h.send_response(502), h.send_header("Content-Length", "8"),
                                               h.end_headers(), h.wfile.write(b"bad gate")))
    with pytest.raises(ApiError) as info:
        client(api).request("GET", "/plain")
    assert info.value.status == 502 and info.value.message == "bad gate" and info.value.body is None


def test_query_and_patch_bodies(api):
    api.route("GET", "/api/v1/pods", body={"items": []})
    api.route("PATCH", "/api/v1/namespaces/ns/pods/p/ephemeralcontainers", body={"ok": True})
    api.route("PATCH", "/api/v1/namespaces/ns/pods/p", body={"ok": True})
    c = client(api)
    c.list_pods(label_selector="app=x", field_selector="spec.nodeName=n")
    assert api.requests[-1]["query"] == {"labelSelector": ["app=x"], "fieldSelector": ["spec.nodeName=n"]}
    patch = [{"op": "add", "path": "/spec/ephemeralContainers/-", "value": {"name": "d"}}]
    c.patch_ephemeral_containers("ns", "p", patch)
    rec = api.requests[-1]
    assert rec["headers"]["Content-Type"] == "application/json-patch+json" and json.loads(rec["body"]) == patch
    c.add_ephemeral_container("ns", "p", {"name": "d"})  # merged by name: others added meanwhile stay
    rec = api.requests[-1]
    assert rec["headers"]["Content-Type"] == "application/strategic-merge-patch+json"
    assert json.loads(rec["body"]) == {"spec": {"ephemeralContainers": [{"name": "d"}]}}
    c.request("PATCH", "/api/v1/namespaces/ns/pods/p", body={"metadata": {"labels": {"a": "b"}}})
    assert api.requests[-1]["headers"]["Content-Type"] == "application/merge-patch+json"
    c.request("GET", "/api/v1/pods", query=[("a", "1"), ("a", "2"), ("b", True), ("c", None)])
    assert api.requests[-1]["query"] == {"a": ["1", "2"], "b": ["true"]}


def test_names_are_quoted(api):
    c = client(api)
    with pytest.raises(ApiError):
        c.read_pod("ns", "a/b?c")
    assert api.requests[-1]["path"] == "/api/v1/namespaces/ns/pods/a%2Fb%3Fc"


def test_self_subject_access_review_and_workloads(api):
    def review(h, rec):
        spec = json.loads(rec["body"])["spec"]["resourceAttributes"]
        h.send_json(201, {"status": {"allowed": spec == {"verb": "create", "resource": "pods", "group": "",
                                                         "namespace": "ns", "subresource": "exec"}}})
    api.route("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
    api.route("GET", "/apis/apps/v1/namespaces/ns/deployments/web", body={"kind": "Deployment"})
    api.route("GET", "/apis/batch/v1/namespaces/ns/jobs/j", body={"kind": "Job"})
    c = client(api)
    assert c.self_subject_access_review("create", "pods", "ns", subresource="exec") is True
    assert c.self_subject_access_review("create", "pods", "ns") is False
    assert c.read_deployment("ns", "web")["kind"] == "Deployment"
    assert c.read_workload("deploy", "ns", "web")["kind"] == "Deployment"
    assert c.read_job("ns", "j")["kind"] == "Job"
    with pytest.raises(ValueError):
        c.read_workload("cronjob", "ns", "x")


def test_basic_auth(api):
    client(api, username="alice", password="pw").read_pod("ns", "p")
    assert api.requests[-1]["headers"]["Authorization"] == "Basic " + base64.b64encode(b"alice:pw").decode()


def test_token_file_is_reread_when_it_changes(api, tmp_path):
    tok = tmp_path / "token"
    tok.write_text("one\n")
    c = client(api, token_file=str(tok), token="static")
    c.read_pod("ns", "p")
    assert api.requests[-1]["headers"]["Authorization"] == "Bearer one"
    tok.write_text("two-longer\n")
    c.read_pod("ns", "p")
    assert api.requests[-1]["headers"]["Authorization"] == "Bearer two-longer"
    tok.unlink()  # gone: the static token, as client-go does
    c.read_pod("ns", "p")
    assert api.requests[-1]["headers"]["Authorization"] == "Bearer static"


def test_warning_headers_reach_the_hook(api):
    api.route("GET", "/warn", body={}, headers=[("Warning", '299 - "v1beta1 is deprecated"')])
    seen = []
    c = client(api, warn=seen.append)
    c.request("GET", "/warn")
    c.request("GET", "/warn")
    assert seen == ["the API server says: v1beta1 is deprecated"]


# -- transport failures --------------------------------------------------------------------------------

def test_connection_refused_is_a_transport_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    c = KubeClient(ClusterAuth(server=f"http://127.0.0.1:{port}", source="t"))
    with pytest.raises(TransportError, match=f"cannot talk to http://127.0.0.1:{port}"):
        c.read_pod("ns", "p")


def test_timeout_is_a_transport_error(api):
    api.route("GET", "/slow", lambda h, rec: (time.sleep(2), h.send_json(200, {})))
    start = time.monotonic()
    with pytest.raises(TransportError, match="no answer within 0.3 s"):
        client(api).request("GET", "/slow", timeout=0.3)
    assert time.monotonic() - start < 1.5
    assert len([r for r in api.requests if r["path"] == "/slow"]) == 1  # never retried


def test_stale_keepalive_connection_is_retried_once(api):
    c = client(api)
    c.read_pod("ns", "p")
    api.drop_reused = 1  # the next request on that connection is read and answered by a close
    assert c.read_pod("ns", "p")["metadata"]["name"] == "p"
    assert api.connections == 2
    assert [r["conn_seq"] for r in api.requests] == [0, 1, 0]


def test_a_real_error_is_never_retried(api):
    api.route("POST", "/api/v1/namespaces/ns/pods", status=500, body={"kind": "Status", "message": "boom",
                                                                        "reason": "InternalError", "code": 500})
    c = client(api)
    with pytest.raises(ApiError):
        c.request("POST", "/api/v1/namespaces/ns/pods", body={"metadata": {"name": "x"}})
    assert len(api.requests) == 1


def test_a_fresh_connection_closed_without_answer_is_not_retried(api):
    api.route("GET", "/drop", lambda h, rec: (setattr(h, "close_connection", True),
                                              h.connection.shutdown(socket.SHUT_RDWR)))
    with pytest.raises(TransportError):
        client(api).request("GET", "/drop")
    assert len(api.requests) == 1


# -- pool and rate limiter -----------------------------------------------------------------------------

def test_parallel_requests_respect_rate_limit_and_reuse_connections(api):
    c = client(api, qps=20, burst=5, pool_size=4)
    results, errors = [], []

    def one():
        try:
            results.append(c.read_pod("ns", "p"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    start = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    elapsed = time.monotonic() - start
    assert not errors and len(results) == 20
    assert elapsed >= (20 - 5) / 20 * 0.95  # 5 at once, then 20 per second
    assert elapsed < 3
    assert api.connections <= 4 and c.pool.opened <= 4
    assert c.pool.reused >= 16


def test_rate_limiter_bucket():
    rl = kcl.RateLimiter(qps=10, burst=3)
    waits = [rl.reserve() for _ in range(6)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3] == pytest.approx(0.1, abs=0.02) and waits[5] == pytest.approx(0.3, abs=0.02)
    assert kcl.RateLimiter(qps=0, burst=1).reserve() == 0


# -- watch -------------------------------------------------------------------------------------------------

def test_watch_streams_chunked_events(api):
    def watch(h, rec):
        assert rec["query"]["watch"] == ["true"]
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for i in range(3):
            line = json.dumps({"type": "MODIFIED", "object": {"metadata": {"name": "p", "resourceVersion": str(i)}}})
            half = len(line) // 2
            for piece in (line[:half], line[half:] + "\n"):  # an event split across chunks
                h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece.encode()))
                h.wfile.flush()
                time.sleep(0.02)
        h.wfile.write(b"0\r\n\r\n")

    api.route("GET", "/api/v1/namespaces/ns/pods", watch)
    c = client(api)
    with c.watch_pod("ns", "p", resource_version="5", timeout_seconds=10) as w:
        events = list(w)
    assert [e["object"]["metadata"]["resourceVersion"] for e in events] == ["0", "1", "2"]
    q = api.requests[-1]["query"]
    assert q["fieldSelector"] == ["metadata.name=p"] and q["resourceVersion"] == ["5"] and q["timeoutSeconds"] == ["10"]


def test_watch_closed_early_and_errors(api):
    def endless(h, rec):
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        try:
            for i in range(1000):
                line = json.dumps({"type": "ADDED", "object": {"n": i}}).encode() + b"\n"
                h.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                h.wfile.flush()
                time.sleep(0.01)
        except OSError:
            pass

    api.route("GET", "/w", endless)
    c = client(api)
    w = c.watch("/w", timeout=5)
    first = next(w)
    assert first["object"]["n"] == 0
    w.close()
    assert list(w) == []
    with pytest.raises(ApiError) as info:
        c.watch("/nothing-here", timeout=5)
    assert info.value.status == 404


# -- TLS ---------------------------------------------------------------------------------------------------

def test_tls_with_ca_file_and_ca_data(pki):
    server = FakeAPI(server_tls(pki))
    try:
        server.route("GET", "/version", body={"gitVersion": "v1.32.5"})
        assert client(server, ca_file=str(pki / "ca.crt")).request("GET", "/version")["gitVersion"] == "v1.32.5"
        assert client(server, ca_data=(pki / "ca.crt").read_bytes()).request("GET", "/version")
        with pytest.raises(TransportError, match="TLS verification of https://127.0.0.1:.* failed"):
            client(server, ca_file=str(pki / "other-ca.crt")).request("GET", "/version")
    finally:
        server.stop()


def test_tls_server_name(pki):
    server = FakeAPI(server_tls(pki, "kubernetes"))
    try:
        server.route("GET", "/version", body={})
        with pytest.raises(TransportError, match="TLS verification"):
            client(server, ca_file=str(pki / "ca.crt")).request("GET", "/version")
        assert client(server, ca_file=str(pki / "ca.crt"), tls_server_name="kubernetes").request("GET", "/version") == {}
    finally:
        server.stop()


def test_insecure_skip_verify_warns(pki):
    server = FakeAPI(server_tls(pki, "kubernetes"))
    try:
        server.route("GET", "/version", body={"ok": 1})
        seen = []
        c = client(server, insecure=True, warn=seen.append)
        assert c.request("GET", "/version") == {"ok": 1}
        c.request("GET", "/version")
        assert len(seen) == 1 and "verification is off" in seen[0]
    finally:
        server.stop()


def test_client_certificates_from_files_and_data(pki, tmp_path, monkeypatch):
    server = FakeAPI(server_tls(pki, client_ca=True))
    seen_subjects = []

    def whoami(h, rec):
        seen_subjects.append(dict(x[0] for x in h.connection.getpeercert()["subject"]))
        h.send_json(200, {})

    server.route("GET", "/whoami", whoami)
    try:
        ca = str(pki / "ca.crt")
        with pytest.raises(TransportError):
            client(server, ca_file=ca).request("GET", "/whoami")
        client(server, ca_file=ca, client_cert_file=str(pki / "client.crt"),
               client_key_file=str(pki / "client.key")).request("GET", "/whoami")
        # base64 data goes through a private temporary file that is gone right after loading
        made = []
        real_mkdtemp = __import__("tempfile").mkdtemp

        def spy(*a, **kw):
            made.append(real_mkdtemp(*a, **kw))
            assert os.stat(made[-1]).st_mode & 0o777 == 0o700
            return made[-1]

        monkeypatch.setattr("tempfile.mkdtemp", spy)
        client(server, ca_file=ca, client_cert_data=(pki / "client.crt").read_bytes(),
               client_key_data=(pki / "client.key").read_bytes()).request("GET", "/whoami")
        assert made and not os.path.exists(made[0])
        assert [s["commonName"] for s in seen_subjects] == ["debugkit-user", "debugkit-user"]
    finally:
        server.stop()


def test_bad_ca_and_missing_cert_files_are_config_errors(pki, tmp_path):
    bad = tmp_path / "bad.crt"
    bad.write_text("not a certificate")
    auth = ClusterAuth(server="https://127.0.0.1:1", ca_file=str(bad), source="kc", cluster="c")
    with pytest.raises(KubeConfigError, match="kc: cluster 'c': the certificate authority cannot be loaded"):
        KubeClient(auth).read_pod("ns", "p")
    auth = ClusterAuth(server="https://127.0.0.1:1", ca_file=str(pki / "ca.crt"), source="kc", user="u",
                       client_cert_file=str(tmp_path / "nope.crt"), client_key_file=str(tmp_path / "nope.key"))
    with pytest.raises(KubeConfigError, match="does not exist"):
        KubeClient(auth).read_pod("ns", "p")


# -- exec credential plugins -----------------------------------------------------------------------------

PLUGIN = r'''
import json, os, sys
state = sys.argv[1]
n = int(open(state).read()) if os.path.exists(state) else 0
open(state, "w").write(str(n + 1))
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
open(state + ".info", "w").write(json.dumps({"info": info, "FOO": os.environ.get("FOO")}))
mode = sys.argv[2]
if mode == "fail":
    sys.stderr.write("plugin: credentials expired, run login\n")
    sys.exit(3)
if mode == "garbage":
    print("not json")
    sys.exit(0)
status = {"token": "token-%d" % n}
if mode == "expired":
    status["expirationTimestamp"] = "2001-01-01T00:00:00Z"
elif mode == "long":
    status["expirationTimestamp"] = "2999-01-01T00:00:00.123456+02:00"
elif mode.startswith("cert:"):
    d = mode[5:]
    status = {"clientCertificateData": open(d + "/client.crt").read(),
              "clientKeyData": open(d + "/client.key").read()}
print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}))
'''


def plugin_client(server, tmp_path, mode, api_version="client.authentication.k8s.io/v1", **kwargs):
    script = tmp_path / "plugin.py"
    script.write_text(PLUGIN)
    state = tmp_path / "state"
    ec = ExecConfig(command=sys.executable, args=(str(script), str(state), mode), env=(("FOO", "bar"),),
                    api_version=api_version, install_hint="pip install the-plugin", provide_cluster_info=True,
                    source="kc")
    return client(server, exec_config=ec, **kwargs), state


def runs(state):
    return int(state.read_text()) if state.exists() else 0


def test_exec_plugin_token_cached_until_expiry(api, tmp_path):
    c, state = plugin_client(api, tmp_path, "long", api_version="client.authentication.k8s.io/v1beta1")
    for _ in range(3):
        c.read_pod("ns", "p")
    assert runs(state) == 1
    assert api.requests[-1]["headers"]["Authorization"] == "Bearer token-0"
    info = json.loads((tmp_path / "state.info").read_text())
    assert info["FOO"] == "bar"
    assert info["info"]["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert info["info"]["spec"]["interactive"] is False
    assert info["info"]["spec"]["cluster"]["server"] == api.url


def test_exec_plugin_expired_token_is_renewed(api, tmp_path):
    c, state = plugin_client(api, tmp_path, "expired")
    c.read_pod("ns", "p")
    c.read_pod("ns", "p")
    assert runs(state) == 2
    assert api.requests[-1]["headers"]["Authorization"] == "Bearer token-1"


def test_exec_plugin_refreshed_once_on_401(api, tmp_path):
    def only_second(h, rec):
        if rec["headers"].get("Authorization") == "Bearer token-1":
            h.send_json(200, {"ok": True})
        else:
            h.send_json(401, {"kind": "Status", "reason": "Unauthorized", "message": "Unauthorized", "code": 401})

    api.route("GET", "/secure", only_second)
    c, state = plugin_client(api, tmp_path, "long")
    assert c.request("GET", "/secure") == {"ok": True}
    assert runs(state) == 2
    api.route("GET", "/never", status=401, body={"kind": "Status", "reason": "Unauthorized",
                                                  "message": "Unauthorized", "code": 401})
    with pytest.raises(ApiError) as info:
        c.request("GET", "/never")
    assert info.value.status == 401 and runs(state) == 3  # one refresh, then the error


def test_exec_plugin_failures_are_clear(api, tmp_path):
    c, _ = plugin_client(api, tmp_path, "fail")
    with pytest.raises(ExecPluginError, match="exited with status 3: plugin: credentials expired, run login"):
        c.read_pod("ns", "p")
    c, _ = plugin_client(api, tmp_path, "garbage")
    with pytest.raises(ExecPluginError, match="did not print an ExecCredential"):
        c.read_pod("ns", "p")
    missing = ExecConfig(command="debugkit-no-such-plugin", install_hint="brew install no-such-plugin",
                         source="kc")
    c = client(api, exec_config=missing)
    with pytest.raises(ExecPluginError, match="'debugkit-no-such-plugin' not found \\(brew install no-such-plugin\\)"):
        c.read_pod("ns", "p")
    assert isinstance(ExecPluginError("x"), KubeConfigError)


def test_exec_plugin_client_certificate(pki, tmp_path):
    server = FakeAPI(server_tls(pki, client_ca=True))
    server.route("GET", "/version", body={"ok": True})
    try:
        c, state = plugin_client(server, tmp_path, f"cert:{pki}", ca_file=str(pki / "ca.crt"))
        assert c.request("GET", "/version") == {"ok": True}
        assert "Authorization" not in server.requests[-1]["headers"]
    finally:
        server.stop()


def test_rfc3339():
    assert credentials.parse_rfc3339("1970-01-01T00:00:10Z") == 10
    assert credentials.parse_rfc3339("1970-01-01T01:00:10.5+01:00") == 10.5
    with pytest.raises(ValueError):
        credentials.parse_rfc3339("yesterday")


# -- websocket upgrade through the client ------------------------------------------------------------------

def test_stream_upgrade_and_refusal(api):
    def exec_route(h, rec):
        if rec["query"].get("command") == ["forbidden"]:
            return h.send_json(403, {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
                                     "message": 'pods "p" is forbidden: User "u" cannot create resource "pods/exec" '
                                                'in API group "" in the namespace "ns"'})
        key = rec["headers"]["Sec-WebSocket-Key"]
        h.send_response(101)
        h.send_header("Upgrade", "websocket")
        h.send_header("Connection", "Upgrade")
        h.send_header("Sec-WebSocket-Accept", base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode())
        h.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        h.end_headers()
        from debugkit.runtimes.kubernetes.websocket import encode_frame
        h.wfile.write(encode_frame(2, b"\x01" + " ".join(rec["query"]["command"]).encode(), mask=False))
        h.wfile.write(encode_frame(2, b'\x03{"metadata":{},"status":"Success"}', mask=False))
        h.wfile.write(encode_frame(8, b"\x03\xe8", mask=False))
        h.wfile.flush()
        h.close_connection = True

    api.route("GET", "/api/v1/namespaces/ns/pods/p/exec", exec_route)
    c = client(api, token="t")
    ws = c.exec_stream("ns", "p", ["echo", "hi"], container="app")
    assert ws.protocol == "v4.channel.k8s.io"
    assert ws.recv(5) == (1, b"echo hi")
    with pytest.raises(EOFError):
        ws.recv(5)
    assert ws.exit_code() == 0
    ws.close()
    rec = api.requests[-1]
    assert rec["headers"]["Authorization"] == "Bearer t"
    assert rec["query"]["container"] == ["app"] and rec["query"]["stdin"] == ["false"]
    with pytest.raises(ApiError) as info:
        c.exec_stream("ns", "p", ["forbidden"])
    assert info.value.status == 403 and "pods/exec" in info.value.message
    with pytest.raises(ApiError) as info:
        c.stream("/api/v1/namespaces/ns/pods/gone/exec", [("command", "x")])
    assert info.value.status == 404


# -- proxy-url (HTTP CONNECT) ------------------------------------------------------------------------------

class ConnectProxy:
    """A tiny HTTP CONNECT proxy that counts the tunnels it opens."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.targets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()

    def _tunnel(self, conn):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return conn.close()
            head += chunk
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        assert method == "CONNECT"
        self.targets.append(target)
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host.strip("[]"), int(port)))
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pump(a, b):
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=pump, args=(conn, upstream), daemon=True).start()
        pump(upstream, conn)

    def close(self):
        self.listener.close()


def test_proxy_url_tunnels_requests_and_streams(pki):
    server = FakeAPI(server_tls(pki))
    proxy = ConnectProxy()
    try:
        server.route("GET", "/version", body={"via": "proxy"})
        c = client(server, ca_file=str(pki / "ca.crt"), proxy_url=proxy.url)
        assert c.request("GET", "/version") == {"via": "proxy"}
        with pytest.raises(ApiError) as info:  # the upgrade goes through the tunnel too (and is refused)
            c.stream("/api/v1/namespaces/ns/pods/p/exec", [("command", "true")])
        assert info.value.status == 404
        port = server.server_address[1]
        assert proxy.targets == [f"127.0.0.1:{port}", f"127.0.0.1:{port}"]
    finally:
        proxy.close()
        server.stop()


def test_a_403_names_the_verb_the_api_server_refused():
    from debugkit.core.errors import Forbidden
    from debugkit.runtimes.kubernetes.errors import api_error

    class Refused(Exception):
        status = 403

        def __init__(self, message):
            self.message = message

    said = api_error(Refused('pods "web" is forbidden: User "alice" cannot create resource "pods/exec" in API '
                             'group "" in the namespace "shop"'), verb="get", resource="pods/exec", namespace="shop")
    assert isinstance(said, Forbidden)
    assert str(said).startswith('forbidden: cannot create pods/exec in namespace shop as alice')
    # Kubernetes 1.37 refuses a websocket exec allowed only `get` with an empty reason.
    silent = api_error(Refused('pods "web" is forbidden: '), verb="get", resource="pods/exec", namespace="shop")
    assert str(silent).startswith("forbidden: cannot get and create pods/exec in namespace shop")
