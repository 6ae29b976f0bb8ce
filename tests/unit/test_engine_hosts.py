"""Engine resolution as the docker CLI does it, over context stores laid out exactly as
`docker context create` and `docker context use` write them (docker CLI 28.2: compact
meta.json under contexts/meta/<sha256 of name>/, TLS files under
contexts/tls/<sha256>/docker/, config.json indented with tabs)."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from debugkit.runtimes.docker.engine import EngineConfigError
from debugkit.runtimes.docker.hosts import (SSH_CONNECT_TIMEOUT, address_for, context_dir_name, parse_ssh,
                                            resolve)

DEFAULT = "unix:///var/run/docker.sock"


class Store:
    """A docker config directory, written as the docker CLI writes it."""

    def __init__(self, root):
        self.root = root
        os.makedirs(root, exist_ok=True)

    def create(self, name: str, host: str, *, skip_tls_verify: bool = False, description: str | None = None,
               tls: dict[str, bytes] | None = None) -> None:
        meta_dir = os.path.join(self.root, "contexts", "meta", hashlib.sha256(name.encode()).hexdigest())
        os.makedirs(meta_dir, mode=0o755, exist_ok=True)
        metadata = {} if description is None else {"Description": description}
        meta = {"Name": name, "Metadata": metadata,
                "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip_tls_verify}}}
        with open(os.path.join(meta_dir, "meta.json"), "w") as fh:
            fh.write(json.dumps(meta, separators=(",", ":")))
        if tls:
            tls_dir = os.path.join(self.root, "contexts", "tls", hashlib.sha256(name.encode()).hexdigest(), "docker")
            os.makedirs(tls_dir, mode=0o700, exist_ok=True)
            for fname, data in tls.items():
                path = os.path.join(tls_dir, fname)
                with open(path, "wb") as fh:
                    fh.write(data)
                os.chmod(path, 0o600)

    def use(self, name: str) -> None:
        """`docker context use NAME`: "default" is stored as an empty currentContext."""
        path = os.path.join(self.root, "config.json")
        config = {"auths": {}}
        if os.path.exists(path):
            with open(path) as fh:
                config = json.load(fh)
        config["currentContext"] = "" if name == "default" else name
        with open(path, "w") as fh:
            fh.write(json.dumps(config, indent="\t"))


@pytest.fixture
def home(tmp_path):
    return str(tmp_path / "home")


@pytest.fixture
def store(home):
    return Store(os.path.join(home, ".docker"))


def env(home, **values):
    return {"HOME": home, **values}


def test_context_directory_is_the_sha256_of_the_name():
    # As `docker context create staging` names it (checked against the real CLI).
    assert context_dir_name("staging") == "e919a75364398a449f860aeadddc57fa0502145a4e63959ddb33c417a48dc0da"


def test_nothing_configured_is_the_default_socket(home):
    found = resolve(environ=env(home))
    assert found.address.text == DEFAULT and found.address.local
    assert found.why.startswith("the default socket")


def test_current_context_in_config_is_followed(store, home):
    store.create("staging", "ssh://deploy@staging.example:2200")
    store.use("staging")
    found = resolve(environ=env(home))
    assert found.address.scheme == "ssh" and not found.address.local
    assert found.why == 'context "staging" (current context in ~/.docker/config.json)'
    assert found.context == "staging"


def test_docker_context_env_overrides_the_current_context(store, home):
    store.create("staging", "ssh://staging")
    store.create("local", "unix:///tmp/other.sock")
    store.use("staging")
    found = resolve(environ=env(home, DOCKER_CONTEXT="local"))
    assert found.address.text == "unix:///tmp/other.sock"
    assert found.why == 'context "local" (DOCKER_CONTEXT)'


def test_docker_host_beats_docker_context_and_the_current_context(store, home):
    store.create("staging", "ssh://staging")
    store.use("staging")
    found = resolve(environ=env(home, DOCKER_HOST="unix:///tmp/x.sock", DOCKER_CONTEXT="staging"))
    assert found.address.text == "unix:///tmp/x.sock"
    assert found.why.startswith("DOCKER_HOST (")
    assert 'DOCKER_CONTEXT "staging"' in found.why and 'current context "staging"' in found.why


def test_host_flag_beats_everything_from_the_environment(store, home):
    store.create("staging", "ssh://staging")
    store.use("staging")
    found = resolve(host="unix:///tmp/flag.sock", environ=env(home, DOCKER_HOST="unix:///tmp/env.sock",
                                                              DOCKER_CONTEXT="staging"))
    assert (found.address.text, found.why) == ("unix:///tmp/flag.sock", "-H/--host")


def test_context_flag_beats_docker_host_as_in_the_docker_cli(store, home):
    # docker/cli resolveContextName: an explicit --context is checked before DOCKER_HOST.
    store.create("staging", "ssh://staging")
    found = resolve(context="staging", environ=env(home, DOCKER_HOST="unix:///tmp/env.sock"))
    assert found.address.scheme == "ssh" and found.why == 'context "staging" (--docker-context)'


def test_host_and_context_flags_together_are_refused(home):
    with pytest.raises(EngineConfigError, match="conflicting options"):
        resolve(host="unix:///x", context="staging", environ=env(home))


@pytest.mark.parametrize("where", ["flag", "env", "config"])
def test_the_context_named_default_means_docker_host_or_the_default_socket(store, home, where):
    store.create("staging", "ssh://staging")
    store.use("default" if where == "config" else "staging")
    kwargs = {"context": "default"} if where == "flag" else {}
    extra = {"DOCKER_CONTEXT": "default"} if where == "env" else {}
    found = resolve(environ=env(home, **extra), **kwargs)
    assert found.address.text == DEFAULT
    if where == "flag":
        # --context default with DOCKER_HOST set: the default context is DOCKER_HOST.
        found = resolve(context="default", environ=env(home, DOCKER_HOST="unix:///tmp/env.sock"))
        assert found.address.text == "unix:///tmp/env.sock" and "DOCKER_HOST" in found.why


def test_empty_variables_count_as_unset(store, home):
    store.create("staging", "ssh://staging")
    store.use("staging")
    found = resolve(environ=env(home, DOCKER_HOST="", DOCKER_CONTEXT=""))
    assert found.context == "staging"


def test_docker_config_moves_the_config_and_the_store(tmp_path, home):
    other = Store(str(tmp_path / "elsewhere"))
    other.create("far", "tcp://far.example:2375")
    other.use("far")
    found = resolve(environ=env(home, DOCKER_CONFIG=other.root))
    assert found.address.netloc == "far.example:2375" and found.address.tls is None
    assert found.why == f'context "far" (current context in {other.root}/config.json)'


def test_a_missing_context_is_a_clear_error(store, home):
    store.use("gone")
    with pytest.raises(EngineConfigError, match=r'context "gone" \(current context in ~/.docker/config.json\) '
                                                r'does not exist'):
        resolve(environ=env(home))
    with pytest.raises(EngineConfigError, match=r'"nope" \(DOCKER_CONTEXT\) does not exist'):
        resolve(environ=env(home, DOCKER_CONTEXT="nope"))


def test_a_config_file_that_is_not_json_is_ignored_with_a_warning(store, home):
    with open(os.path.join(store.root, "config.json"), "w") as fh:
        fh.write("{not json")
    found = resolve(environ=env(home))
    assert found.address.text == DEFAULT and "ignoring ~/.docker/config.json" in found.warnings[0]


def test_context_tls_material_is_used_for_tcp(store, home):
    store.create("secure", "tcp://secure.example:2376", tls={"ca.pem": b"CA", "cert.pem": b"C", "key.pem": b"K"})
    found = resolve(context="secure", environ=env(home))
    tls = found.address.tls
    tls_dir = os.path.join(store.root, "contexts", "tls", context_dir_name("secure"), "docker")
    assert (tls.ca, tls.cert, tls.key, tls.verify) == (f"{tls_dir}/ca.pem", f"{tls_dir}/cert.pem",
                                                       f"{tls_dir}/key.pem", True)


def test_skip_tls_verify_without_material_is_tls_without_verification(store, home):
    store.create("insecure", "tcp://10.0.0.1:2376", skip_tls_verify=True)
    tls = resolve(context="insecure", environ=env(home)).address.tls
    assert tls is not None and (tls.ca, tls.cert, tls.verify) == (None, None, False)


def test_a_tcp_context_without_tls_is_plain_tcp(store, home):
    store.create("plain", "tcp://10.0.0.1:2375")
    assert resolve(context="plain", environ=env(home)).address.tls is None


def test_a_context_without_a_docker_endpoint_is_refused(store, home):
    store.create("k8s-only", "unix:///x")
    meta = os.path.join(store.root, "contexts", "meta", context_dir_name("k8s-only"), "meta.json")
    with open(meta, "w") as fh:
        fh.write('{"Name":"k8s-only","Metadata":{},"Endpoints":{}}')
    with pytest.raises(EngineConfigError, match="no docker endpoint"):
        resolve(context="k8s-only", environ=env(home))


def test_default_context_tls_comes_from_the_environment(tmp_path, home):
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("ca", "cert", "key"):
        (certs / f"{name}.pem").write_text(name)
    found = resolve(environ=env(home, DOCKER_HOST="tcp://h:2376", DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(certs)))
    assert found.address.tls.ca == str(certs / "ca.pem") and found.address.tls.verify


def test_host_without_a_scheme_is_tcp_as_in_the_docker_cli():
    assert address_for("example.com:2375").netloc == "example.com:2375"


# -- ssh:// -----------------------------------------------------------------------------

def test_ssh_argv_runs_dial_stdio_with_batch_mode_and_no_shell():
    address = parse_ssh("ssh://deploy@build-1.example:2222")
    argv = list(address.ssh)
    assert argv[0] == "ssh"
    assert argv[argv.index("-l") + 1] == "deploy" and argv[argv.index("-p") + 1] == "2222"
    assert "BatchMode=yes" in argv and f"ConnectTimeout={SSH_CONNECT_TIMEOUT}" in argv
    assert argv[argv.index("--") + 1:] == ["build-1.example", "docker", "system", "dial-stdio"]
    assert not any("StrictHostKeyChecking" in a for a in argv)
    assert not address.local


def test_ssh_without_user_or_port_leaves_them_to_ssh_config():
    argv = list(parse_ssh("ssh://staging").ssh)
    assert "-l" not in argv and "-p" not in argv
    assert argv[argv.index("--") + 1:] == ["staging", "docker", "system", "dial-stdio"]


def test_ssh_with_a_socket_path_quotes_it_for_the_remote_shell():
    argv = list(parse_ssh("ssh://me@host/run/user/1000/docker.sock").ssh)
    assert argv[argv.index("--") + 1:] == ["host", "docker", "--host", "unix:///run/user/1000/docker.sock", "system",
                                           "dial-stdio"]
    odd = list(parse_ssh("ssh://host/tmp/a%27b.sock").ssh)
    assert odd[-3] == "'unix:///tmp/a'\"'\"'b.sock'"


def test_ssh_ipv6_host():
    argv = list(parse_ssh("ssh://root@[::1]:2222").ssh)
    assert argv[argv.index("--") + 1] == "::1"


@pytest.mark.parametrize("text,message", [
    ("ssh://-oProxyCommand=touch%20x", "must not start with '-'"),
    ("ssh://-oProxyCommand=x@host", "invalid ssh user"),
    ("ssh://ho%20st", "invalid ssh host name"),
    ("ssh://host\tname", "invalid ssh"),
    ("ssh://ho;st", "invalid ssh host name"),
    ("ssh://user:secret@host", "password"),
    ("ssh://", "no host name"),
    ("ssh://host:99999", "port"),
    ("ssh://host:abc", "invalid ssh engine address"),
    ("ssh://host?x=1", "no query"),
])
def test_bad_ssh_addresses_are_refused(text, message):
    with pytest.raises(EngineConfigError, match=message):
        address_for(text)


def test_ssh_from_a_context(store, home):
    store.create("staging", "ssh://root@127.0.0.1:2222", tls={"ca.pem": b"ignored for ssh"})
    store.use("staging")
    found = resolve(environ=env(home))
    assert found.address.scheme == "ssh" and found.address.tls is None
    assert found.address.netloc == "127.0.0.1:2222"


# -- every TLS form of the docker CLI (checked against it in tests/integration/conformance) ----------

def _certs(directory, *names) -> str:
    os.makedirs(directory, exist_ok=True)
    for name in names:
        with open(os.path.join(directory, f"{name}.pem"), "w") as fh:
            fh.write("-----BEGIN CERTIFICATE-----\n")
    return str(directory)


def test_docker_tls_alone_is_tls_without_verification(tmp_path, home):
    certs = _certs(tmp_path / "certs", "ca")
    found = resolve(environ={"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS": "1", "DOCKER_CERT_PATH": certs}, home=home)
    assert found.address.tls.verify is False and found.address.tls.ca.endswith("ca.pem")


def test_tls_verify_with_only_a_ca_is_server_only_tls(tmp_path, home):
    certs = _certs(tmp_path / "certs", "ca")
    tls = resolve(environ={"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": certs},
                  home=home).address.tls
    assert (tls.verify, tls.cert, tls.key) == (True, None, None)


def test_tls_needs_a_ca_pem_as_in_the_docker_cli(tmp_path, home):
    certs = _certs(tmp_path / "certs", "cert", "key")
    with pytest.raises(EngineConfigError, match="ca.pem does not exist"):
        resolve(environ={"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS": "1", "DOCKER_CERT_PATH": certs}, home=home)


def test_tls_without_a_host_is_localhost_2376(tmp_path, home):
    certs = _certs(tmp_path / "certs", "ca", "cert", "key")
    found = resolve(environ={"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": certs}, home=home)
    assert (found.address.netloc, found.address.tls.cert is not None) == ("localhost:2376", True)


@pytest.mark.parametrize("text, netloc, prefix, tls", [
    ("tcp://h", "h:2375", "", False),                 # 2375 even under TLS: the CLI's ParseTCPAddr
    ("tcp://h:2376/proxied/engine/", "h:2376", "/proxied/engine", False),
    ("https://h", "h:443", "", True),                 # the CLI refuses https://; the SDKs take it
    ("http://h", "h:80", "", False),
    ("tcp://", "localhost:2375", "", False),
])
def test_address_forms(text, netloc, prefix, tls):
    address = address_for(text)
    assert (address.netloc, address.base_path, address.tls is not None) == (netloc, prefix, tls)


def test_a_password_in_a_tcp_address_is_never_shown():
    address = address_for("tcp://ops:hunter2@h:2375")
    assert (address.netloc, address.text) == ("h:2375", "tcp://***@h:2375")


def test_a_path_prefix_goes_in_front_of_every_request():
    import http.server
    import threading

    from debugkit.runtimes.docker.engine import EngineClient

    seen = []

    class Engine(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the base class's name
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Api-Version", "1.45")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        EngineClient(address_for(f"tcp://127.0.0.1:{server.server_address[1]}/proxied/engine")).ping()
    finally:
        server.shutdown()
        server.server_close()
    assert seen and all(path.startswith("/proxied/engine/") for path in seen), seen
