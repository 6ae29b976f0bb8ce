"""`debugkit toolbox push` on the real engine: both variants to the real local registry
(scripts/registry-testenv) with their digests checked through the v2 API, and each
refusal with its exit code: a registry that is not there (69), one that wants
credentials (78), a toolbox that is not built (71), a bad reference (64)."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.request
import uuid
from pathlib import Path

import pytest

from debugkit import __version__
from debugkit.core.errors import ExitCode
from tests.helpers import IN_CI, REPO, run_cli, text

pytestmark = pytest.mark.docker

REGISTRY = "127.0.0.1:5000"
ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
SLIM = f"debugkit/toolbox:{__version__}-slim"


@pytest.fixture(scope="module")
def local_registry():
    done = subprocess.run([str(REPO / "scripts" / "registry-testenv"), "up"], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        if IN_CI:
            pytest.fail(f"scripts/registry-testenv up failed:\n{done.stderr}")
        pytest.skip(f"no local registry: {done.stderr.strip()}")
    return REGISTRY


@pytest.fixture
def untag(docker_client):
    """References the test makes the engine tag; removed (the tags only) afterwards."""
    refs: list[str] = []
    yield refs.append
    for ref in refs:
        try:
            docker_client.images.remove(ref)
        except Exception:  # noqa: BLE001 - not tagged after all (the push was refused early)
            pass


def manifest(repository: str, reference: str) -> tuple[str, bytes]:
    request = urllib.request.Request(f"http://{REGISTRY}/v2/{repository}/manifests/{reference}",
                                     headers={"Accept": ACCEPT})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return resp.headers["Docker-Content-Digest"], resp.read()


def test_both_variants_go_to_the_registry_with_the_digests_printed(local_registry, toolbox_image, docker_client,
                                                                   untag):
    variants = ["full", "slim"] if docker_client.images.list(name=SLIM) else ["full"]
    tag = f"t-{uuid.uuid4().hex[:8]}"
    repository = f"{REGISTRY}/debugkit-test/push"
    for variant in variants:
        untag(f"{repository}:{tag}" + ("-slim" if variant == "slim" else ""))
    result = run_cli("toolbox", "push", f"{repository}:{tag}", timeout=600)
    out, err = text(result)
    assert result.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == len(variants)
    for line, variant, source in zip(lines, variants, [toolbox_image, SLIM]):
        pinned_repo, _, digest = line.partition("@")
        assert pinned_repo == repository
        served, body = manifest("debugkit-test/push", tag + ("-slim" if variant == "slim" else ""))
        assert served == digest == "sha256:" + hashlib.sha256(body).hexdigest()
        # The local image: its ID is the config's digest with a graph driver, the manifest's
        # with the containerd image store (Docker 29's default).
        assert docker_client.images.get(source).id in (json.loads(body)["config"]["digest"], digest)
        assert f"pushed {source} as {repository}:{tag}" in err
    assert "log:" not in err and len(err.strip().splitlines()) == len(variants)  # one line per image


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_registry_that_is_not_there_is_exit_69(toolbox_image, untag):
    port = free_port()
    untag(f"127.0.0.1:{port}/debugkit-test/push:t")
    result = run_cli("toolbox", "push", "--variant", "full", f"127.0.0.1:{port}/debugkit-test/push:t", timeout=120)
    out, err = text(result)
    assert result.returncode == ExitCode.ENGINE_UNREACHABLE == 69, err
    assert f"cannot reach the registry 127.0.0.1:{port}" in err and "connection refused" in err
    assert out == ""


class _WantsCredentials(http.server.BaseHTTPRequestHandler):
    """A registry that answers every request 401 with a Basic challenge."""

    protocol_version = "HTTP/1.1"

    def _refuse(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}).encode()
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="debugkit-test"')
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        # One request per connection: an upload's chunked body is never read here, and must
        # not be taken for the next request.
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has no body: bytes here would read as the next status line
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _refuse

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def registry_wanting_credentials(tmp_path):
    """Over TLS, with its CA given to the engine in /etc/docker/certs.d/HOST:PORT/ (read at
    each push): a plain-HTTP registry that answers 401 reaches no 401 through an engine with
    the containerd image store (Docker 29 tries HTTPS first for a host it has TLS settings for, and
    reports the TLS failure of the authenticated retry)."""
    if os.geteuid() != 0:
        pytest.skip("giving the engine a registry CA in /etc/docker/certs.d needs root")
    for args in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=debugkit-test-ca",
                  "-keyout", "ca.key", "-out", "ca.crt"],
                 ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
                  "-out", "server.csr"]):
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                    "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.crt"],
                   cwd=tmp_path, check=True, capture_output=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WantsCredentials)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    address = f"127.0.0.1:{server.server_address[1]}"
    certs = Path("/etc/docker/certs.d") / address
    certs.mkdir(parents=True)
    shutil.copy(tmp_path / "ca.crt", certs / "ca.crt")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield address
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(certs)


def test_a_registry_that_wants_credentials_is_exit_78(toolbox_image, registry_wanting_credentials, untag):
    ref = f"{registry_wanting_credentials}/debugkit-test/push:t"
    untag(ref)
    result = run_cli("toolbox", "push", "--variant", "full", ref, timeout=120)
    out, err = text(result)
    assert result.returncode == ExitCode.FORBIDDEN == 78, err
    assert f"the registry {registry_wanting_credentials} refused it" in err
    assert f"docker login {registry_wanting_credentials}" in err and out == ""


def test_a_toolbox_that_is_not_built_is_exit_71_and_says_how_to_build(docker_client):
    missing = f"debugkit-test/not-built:{uuid.uuid4().hex[:8]}"
    result = run_cli("toolbox", "push", "--variant", "full", f"{REGISTRY}/debugkit-test/push:t",
                     env={"DEBUGKIT_IMAGE": missing})
    out, err = text(result)
    assert result.returncode == ExitCode.IMAGE_MISSING == 71, err
    assert missing in err and "debugkit toolbox build" in err and out == ""


@pytest.mark.parametrize("ref", ["Registry.Example/UPPER", f"{REGISTRY}/a@sha256:{'0' * 64}", "a/b:bad tag"])
def test_a_bad_reference_is_exit_64_without_touching_the_engine(ref):
    result = run_cli("toolbox", "push", ref, env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    out, err = text(result)
    assert result.returncode == ExitCode.INVALID_INPUT == 64, err
    assert len(err.strip().splitlines()) == 1 and out == ""
