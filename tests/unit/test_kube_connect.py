"""Connecting as kubectl does, the pure parts and the one-line failures (the end-to-end
comparison with kubectl is tests/integration/conformance): Go's proxy rules, SOCKS5 and
CONNECT through loopback fakes, impersonation headers, server URLs that cannot be used,
credentials that never reach a message, the audit log or an http:// server, and files
that are not regular files."""
from __future__ import annotations

import base64
import os
import socket
import socketserver
import struct
import threading

import pytest

from debugkit.runtimes.kubernetes import kubeconfig as kc
from debugkit.runtimes.kubernetes import proxy as proxies
from debugkit.runtimes.kubernetes.credentials import Credentials
from debugkit.runtimes.kubernetes.kubeconfig import ClusterAuth, KubeConfigError
from debugkit.runtimes.kubernetes.kubeuser import Impersonation
from tests.helpers import run_cli, text


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "POD_NAMESPACE", "HTTPS_PROXY",
                "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def write(tmp_path, server="https://127.0.0.1:6443", user="token: tok-1", cluster="", name="kubeconfig") -> str:
    """A kubeconfig; `user`'s later lines are written indented by 4 spaces already."""
    path = tmp_path / name
    path.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                    f"clusters:\n- name: k\n  cluster:\n    server: {server}\n{cluster}"
                    f"users:\n- name: u\n  user:\n    {user}\n"
                    "contexts:\n- name: c\n  context: {cluster: k, user: u}\n")
    return str(path)


# -- Go's ProxyFromEnvironment ------------------------------------------------------------------------

@pytest.mark.parametrize("host, port, no_proxy, proxied", [
    ("kube.example", 443, "", True),
    ("localhost", 443, "", False),
    ("127.0.0.1", 443, "", False),
    ("::1", 443, "", False),
    ("kube.example", 443, "*", False),
    ("kube.example", 443, "kube.example", False),
    ("api.kube.example", 443, "kube.example", False),        # a name covers its subdomains
    ("kube.example", 443, ".kube.example", True),            # a leading dot: subdomains only
    ("api.kube.example", 443, "*.kube.example", False),
    ("kube.example", 443, "kube.example:6443", True),        # another port
    ("kube.example", 6443, "kube.example:6443", False),
    ("10.1.2.3", 443, "10.0.0.0/8", False),
    ("10.1.2.3", 443, "10.1.2.3", False),
    ("10.1.2.3", 443, "example", True),                      # a name never matches an address
    ("kube.example", 443, " other.example , KUBE.EXAMPLE ", False),
])
def test_no_proxy_follows_gos_rules(host, port, no_proxy, proxied):
    assert proxies.use_proxy(host, port, no_proxy) is proxied


def test_the_environment_picks_the_variable_by_the_servers_scheme():
    env = {"HTTPS_PROXY": "proxy.example:3128", "http_proxy": "socks5://s.example:1080"}
    chosen = proxies.from_environment("https", "kube.example", 443, env)
    assert (chosen.scheme, chosen.host, chosen.port, chosen.source) == ("http", "proxy.example", 3128, "HTTPS_PROXY")
    assert proxies.from_environment("http", "kube.example", 80, env).scheme == "socks5"
    assert proxies.from_environment("https", "kube.example", 443, {"HTTP_PROXY": "p:1"}) is None
    with pytest.raises(proxies.ProxyConfigError, match="CGI"):
        proxies.from_environment("http", "kube.example", 80, {"HTTP_PROXY": "p:1", "REQUEST_METHOD": "GET"})


@pytest.mark.parametrize("url, problem", [
    ("https://u:secret@p.example:3128", "https:// proxies"),
    ("ftp://p.example", "unsupported scheme"),
    ("http://", "has no host"),
    ("http://p.example:99999", "not a valid URL"),
    ("http://u:secret@p.ex ample", "whitespace or control"),
])
def test_a_proxy_url_that_cannot_be_used_is_one_line_without_its_password(url, problem):
    with pytest.raises(proxies.ProxyConfigError, match=problem) as err:
        proxies.parse(url)
    assert "secret" not in str(err.value)


class _Socks5(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def __init__(self, target):
        self.target, self.seen = target, {}
        super().__init__(("127.0.0.1", 0), self.Handle)

    class Handle(socketserver.BaseRequestHandler):
        def handle(self):
            s = self.request
            _v, n = s.recv(2)
            s.recv(n)
            s.sendall(b"\x05\x02")
            _v, ulen = s.recv(2)
            user = s.recv(ulen)
            plen = s.recv(1)[0]
            password = s.recv(plen)
            s.sendall(b"\x01\x00")
            _v, _c, _r, atyp = s.recv(4)
            host = s.recv(s.recv(1)[0]).decode() if atyp == 3 else socket.inet_ntoa(s.recv(4))
            (port,) = struct.unpack(">H", s.recv(2))
            self.server.seen.update(user=user.decode(), password=password.decode(), target=(host, port), atyp=atyp)
            upstream = socket.create_connection(self.server.target)
            s.sendall(b"\x05\x00\x00\x01" + bytes(6))
            upstream.sendall(s.recv(100))
            s.sendall(upstream.recv(100))


def test_socks5_sends_the_name_and_the_credentials_and_tunnels():
    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen(1)

    def serve():
        conn, _ = echo.accept()
        conn.sendall(conn.recv(100).upper())
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    server = _Socks5(echo.getsockname())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proxy = proxies.parse(f"socks5://al%3Aice:p%40ss@127.0.0.1:{server.server_address[1]}")
        sock = proxies.dial(proxy, "kube.example", 6443, timeout=5, user_agent="t")
        sock.sendall(b"ping")
        assert sock.recv(100) == b"PING"
        sock.close()
        assert server.seen == {"user": "al:ice", "password": "p@ss", "target": ("kube.example", 6443), "atyp": 3}
    finally:
        server.shutdown()
        server.server_close()
        echo.close()


def test_a_proxy_that_wants_credentials_says_so_in_one_line():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def refuse():
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    threading.Thread(target=refuse, daemon=True).start()
    proxy = proxies.parse(f"http://127.0.0.1:{listener.getsockname()[1]}")
    with pytest.raises(proxies.ProxyError, match="refused CONNECT kube.example:443 without credentials .* 407"):
        proxies.dial(proxy, "kube.example", 443, timeout=5, user_agent="t")
    listener.close()


# -- impersonation ------------------------------------------------------------------------------------------

def test_impersonation_headers_and_flags_over_the_kubeconfig(tmp_path):
    path = write(tmp_path, user="""token: tok-1
    as: bob
    as-uid: "42"
    as-groups: [devs, ops]
    as-user-extra: {scopes: [read, write], "example.com/team name": [blue]}""")
    auth = kc.load(path)
    assert auth.impersonation.headers() == [
        ("Impersonate-User", "bob"), ("Impersonate-Uid", "42"), ("Impersonate-Group", "devs"),
        ("Impersonate-Group", "ops"), ("Impersonate-Extra-example.com%2Fteam%20name", "blue"),
        ("Impersonate-Extra-scopes", "read"), ("Impersonate-Extra-scopes", "write")]
    flagged = kc.load(path, impersonate=Impersonation(user="carol", groups=("g3",))).impersonation
    assert (flagged.user, flagged.uid, flagged.groups) == ("carol", "42", ("g3",))


def test_groups_without_a_user_are_refused(tmp_path):
    with pytest.raises(KubeConfigError, match="needs a user to impersonate"):
        kc.load(write(tmp_path, user="token: t\n    as-groups: [devs]"))
    with pytest.raises(KubeConfigError, match="needs a user to impersonate"):
        kc.load(write(tmp_path, name="k2"), impersonate=Impersonation(groups=("g",)))


# -- the server URL and what never shows ------------------------------------------------------------------

@pytest.mark.parametrize("server, problem", [
    ('"http://[::1"', "is not a valid URL"),
    ("https://127.0.0.1:99999", "is not a valid URL"),
    ('"https://kube\\u0007example"', "whitespace or control characters"),
    ("ftp://kube.example", "must be an http:// or https:// URL"),
])
def test_a_server_url_that_cannot_be_used_is_one_line_and_exit_65(tmp_path, server, problem):
    # It was a traceback and exit 70 (issue 27, 3.10): KubeClient split the URL unchecked.
    config = write(tmp_path, server=server)
    result = run_cli("attach", "pod/web", "-n", "default", "--kubeconfig", config, "--", "true",
                     env={"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")})
    out, err = text(result)
    assert result.returncode == 65, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0] and "Traceback" not in err, err


def test_the_server_urls_password_never_shows_not_even_in_doctor(tmp_path):
    config = write(tmp_path, server="https://alice:hunter2@127.0.0.1:1")
    auth = kc.load(config)
    assert auth.server == "https://127.0.0.1:1" and auth.server_userinfo == ("alice", "hunter2")
    result = run_cli("doctor", "--kubeconfig", config, timeout=120,
                     env={"HOME": str(tmp_path), "DOCKER_HOST": "unix:///nonexistent.sock",
                          "CONTAINER_HOST": "unix:///nonexistent.sock"})
    out, err = text(result)
    assert "127.0.0.1:1" in out and "hunter2" not in out + err and "alice" not in out + err


@pytest.mark.parametrize("block", ["token: |\n      tok-1", 'token: "tok-1\\n"', 'token: "  tok-1  "'])
def test_the_whitespace_around_a_token_is_stripped(tmp_path, block):
    assert kc.load(write(tmp_path, user=block)).token == "tok-1"


def test_a_token_with_a_line_break_inside_is_refused_and_never_written_anywhere(tmp_path):
    # It was 'Invalid header value b"Bearer <the whole token>\n"' on stderr and in the audit log.
    config = write(tmp_path, user='token: "s3cret-part-one\\ns3cret-part-two"')
    with pytest.raises(KubeConfigError) as err:
        kc.load(config)
    assert "s3cret" not in str(err.value) and "line break" in str(err.value)
    state = tmp_path / "state"
    result = run_cli("attach", "pod/web", "-n", "default", "--kubeconfig", config, "--", "true",
                     env={"HOME": str(tmp_path), "XDG_STATE_HOME": str(state)})
    out, errout = text(result)
    assert result.returncode == 65 and "s3cret" not in out + errout, errout
    for root, _dirs, files in os.walk(tmp_path):
        for name in files:
            path = os.path.join(root, name)
            if path != config:
                with open(path, "rb") as fh:
                    assert b"s3cret" not in fh.read(), f"the token was written to {path}"


def test_an_http_server_gets_no_credentials_but_impersonation(tmp_path):
    auth = kc.load(write(tmp_path, server="http://127.0.0.1:8080", user="token: tok-1\n    as: bob"))
    assert auth.token is None and auth.withheld == ("token",)
    assert auth.impersonation.user == "bob"
    assert Credentials(auth).authorization() is None


def test_in_cluster_takes_pod_namespace(tmp_path, monkeypatch):
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token\n")
    (sa / "namespace").write_text("from-file")
    monkeypatch.setattr(kc, "SERVICE_ACCOUNT_DIR", str(sa))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert kc.load().namespace == "from-file"
    monkeypatch.setenv("POD_NAMESPACE", "from-env")
    assert kc.load().namespace == "from-env"


# -- files that are not regular files ------------------------------------------------------------------------

def test_a_token_file_that_is_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    auth = ClusterAuth(server="https://127.0.0.1:1", source="kc", token_file=str(fifo))
    with pytest.raises(KubeConfigError, match="is a FIFO, not a regular file"):
        Credentials(auth).authorization()


def test_a_certificate_authority_that_is_a_fifo_is_refused_not_waited_on(tmp_path):
    from debugkit.runtimes.kubernetes.kubeclient import KubeClient

    fifo = tmp_path / "ca.crt"
    os.mkfifo(fifo)
    client = KubeClient(ClusterAuth(server="https://127.0.0.1:1", source="kc", cluster="k", ca_file=str(fifo)))
    with pytest.raises(KubeConfigError, match="certificate-authority .* is a FIFO, not a regular file"):
        client.ssl_context()


def test_the_basic_credentials_of_the_server_url_win_as_in_go(tmp_path):
    auth = kc.load(write(tmp_path, server="https://alice:pw@127.0.0.1:6443"))
    assert Credentials(auth).authorization() == "Basic " + base64.b64encode(b"alice:pw").decode()
