"""The registry client's auth flows against a small local registry double.

The real registry (Debian's docker-registry, no auth) is exercised by the Kubernetes
tests; this double adds what it lacks: a bearer-token challenge and a token endpoint
that checks the docker config's credentials, and Basic auth.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from debugkit.core.identity import runtime_user
from debugkit.runtimes.kubernetes.registry import RegistryError, image_user_and_etc


def _layer(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry(ThreadingHTTPServer):
    """One image, `team/app:1`, behind the chosen auth: 'bearer', 'basic' or 'none'."""

    def __init__(self, auth: str, user: str = "alice", password: str = "s3cret"):
        super().__init__(("127.0.0.1", 0), Handler)
        self.auth, self.user, self.password = auth, user, password
        self.token = "tok-123"
        base = _layer({"etc/passwd": b"root:x:0:0::/root:/bin/sh\napp:x:10001:10002::/app:/sbin/nologin\n",
                       "etc/group": b"root:x:0:\napp:x:10002:\n"})
        # A newer layer deletes /etc/group and writes another: the newest version must win.
        top = _layer({"etc/.wh.group": b"", "etc/group": b"root:x:0:\napp:x:10003:\n"})
        config = json.dumps({"config": {"User": "app:app"}}).encode()
        self.blobs = {_digest(b): b for b in (base, top, config)}
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"digest": _digest(config), "size": len(config)},
            "layers": [{"digest": _digest(base), "size": len(base)}, {"digest": _digest(top), "size": len(top)}],
        }).encode()
        self.token_requests: list[dict] = []

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Registry

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        srv = self.server
        if self.path.startswith("/token"):
            basic = self.headers.get("Authorization", "")
            srv.token_requests.append({"path": self.path, "auth": basic})
            expected = "Basic " + base64.b64encode(f"{srv.user}:{srv.password}".encode()).decode()
            if basic != expected:
                return self._send(401)
            return self._send(200, json.dumps({"token": srv.token}).encode())
        authz = self.headers.get("Authorization", "")
        if srv.auth == "bearer" and authz != f"Bearer {srv.token}":
            realm = f'Bearer realm="http://{srv.host}/token",service="test",scope="repository:team/app:pull"'
            return self._send(401, b"{}", {"WWW-Authenticate": realm})
        if srv.auth == "basic":
            expected = "Basic " + base64.b64encode(f"{srv.user}:{srv.password}".encode()).decode()
            if authz != expected:
                return self._send(401, b"{}", {"WWW-Authenticate": 'Basic realm="test"'})
        if self.path == "/v2/team/app/manifests/1":
            return self._send(200, srv.manifest, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        if self.path.startswith("/v2/team/app/blobs/"):
            blob = srv.blobs.get(self.path.rsplit("/", 1)[1])
            return self._send(200, blob) if blob else self._send(404)
        return self._send(404)


@pytest.fixture
def registry(request):
    srv = Registry(request.param)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    def write(host: str, user: str, password: str):
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        (tmp_path / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no config at all unless written
    return write


@pytest.mark.parametrize("registry", ["bearer"], indirect=True)
def test_bearer_token_flow_with_docker_config_credentials(registry, docker_config):
    docker_config(registry.host, "alice", "s3cret")
    user, etc, problem = image_user_and_etc(f"{registry.host}/team/app:1")
    assert user == "app:app" and problem is None
    got = runtime_user(user, etc)
    assert (got.uid, got.gid) == (10001, 10003)  # the group from the newest layer's /etc/group
    (request,) = registry.token_requests[:1]
    assert "scope=repository%3Ateam%2Fapp%3Apull" in request["path"] and request["auth"].startswith("Basic ")


@pytest.mark.parametrize("registry", ["bearer"], indirect=True)
def test_anonymous_token_refused_is_a_clear_error(registry, docker_config):
    with pytest.raises(RegistryError, match="answered 401"):
        image_user_and_etc(f"{registry.host}/team/app:1")
    assert registry.token_requests and registry.token_requests[0]["auth"] == ""  # it did ask, anonymously


@pytest.mark.parametrize("registry", ["basic"], indirect=True)
def test_basic_auth_from_docker_config(registry, docker_config):
    docker_config(registry.host, "alice", "s3cret")
    user, _etc, _problem = image_user_and_etc(f"{registry.host}/team/app:1")
    assert user == "app:app"


@pytest.mark.parametrize("registry", ["none"], indirect=True)
def test_missing_tag_is_a_clear_error(registry, docker_config):
    with pytest.raises(RegistryError, match="answered 404"):
        image_user_and_etc(f"{registry.host}/team/app:2")


# -- a registry that answers with what no registry sends (issue 27, item 10) ----------------------------------

class Hostile(ThreadingHTTPServer):
    """Answers every manifest request the way `mode` says, and records how much it sent."""

    daemon_threads = True

    def __init__(self, mode: str):
        super().__init__(("127.0.0.1", 0), HostileHandler)
        self.mode = mode
        self.sent = 0


class HostileHandler(BaseHTTPRequestHandler):
    server: Hostile

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        mode = self.server.mode
        bodies = {"html": b"<!DOCTYPE html><html><body>login</body></html>", "deep": b"[" * 100000 + b"]" * 100000,
                  "list": b'[{"schemaVersion": 2}]',
                  "types": json.dumps({"schemaVersion": 2, "config": {"digest": 7}, "layers": []}).encode()}
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        if mode == "declared-3GB":
            self.send_header("Content-Length", str(3 << 30))
            self.end_headers()
            return
        if mode == "endless":  # no length: it would go on until the client hangs up
            self.end_headers()
            try:
                while self.server.sent < 64 << 20:
                    self.wfile.write(b" " * 65536)
                    self.server.sent += 65536
            except OSError:
                pass
            return
        body = bodies[mode]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("mode,said", [
    ("html", "HTML, not JSON"), ("deep", "nested deeper than 64 levels"), ("list", "as a list, not an object"),
    ("types", "without a valid digest"), ("declared-3GB", "more than 4194304"), ("endless", "larger than 4194304"),
])
def test_a_hostile_registry_is_one_line_naming_it_and_what_it_sent(mode, said, docker_config):
    server = Hostile(mode)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        with pytest.raises(RegistryError) as raised:
            image_user_and_etc(f"{host}/team/app:1")
    finally:
        server.shutdown()
        server.server_close()
    message = str(raised.value)
    assert f"registry {host}" in message and said in message and "\n" not in message, message
    assert server.sent <= 16 << 20  # it stopped reading past the bound, not at the end of the stream
