"""Where a Docker engine listens, as the docker CLI reads it: DOCKER_HOST-style addresses
(unix://, tcp://, http(s)://) and the TLS settings of the environment. Pure parsing, no I/O
but checking that the certificate files exist; ssh:// addresses are hosts.py's.
"""
from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass

from debugkit.runtimes.docker.engine_errors import EngineConfigError

DEFAULT_SOCKET = "/var/run/docker.sock"


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
