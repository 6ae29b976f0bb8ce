"""Which Docker engine to talk to, resolved the way the docker CLI resolves it.

Pure: it reads the docker CLI's config file and context store, and nothing else (no
socket, no process). The order is the docker CLI's own (docker/cli,
cli/command/cli.go: resolveContextName, resolveDefaultDockerEndpoint, getServerHost):

1. `--docker-context NAME` (the docker CLI's `--context`); with `-H` as well it is an error
2. `-H/--host`                                  -> the default context, with that host
3. `DOCKER_HOST`                                -> the default context, with that host
4. `DOCKER_CONTEXT`
5. `currentContext` in `$DOCKER_CONFIG/config.json` (default `~/.docker`)
6. the default context

The context named `default` is not stored anywhere: it means `-H`, else `DOCKER_HOST`,
else the default socket, with TLS from `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH`. An empty
environment variable counts as unset. A stored context lives in
`contexts/meta/<sha256 of its name>/meta.json` (`Endpoints.docker.Host`, `SkipTLSVerify`)
with its TLS material in `contexts/tls/<sha256>/docker/{ca,cert,key}.pem`.

`resolve` returns the engine's address and one line saying why it was chosen.
"""
from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Mapping

from debugkit.core import jsonsafe
from debugkit.core.files import read_regular
from debugkit.runtimes.docker.engine import (DEFAULT_SOCKET, EngineAddress, EngineConfigError, TLSConfig,
                                             parse_host, tls_from_env)

DEFAULT_CONTEXT = "default"
DEFAULT_TLS_PORT = 2376
# The docker CLI's config.json and a context's meta.json are a few hundred bytes.
MAX_CONFIG_BYTES = 4 << 20
MAX_META_BYTES = 1 << 20
# How long ssh may take to connect and authenticate before it gives up (the docker CLI
# uses 30 s); then how it notices a server that went silent: 3 unanswered probes 5 s apart.
SSH_CONNECT_TIMEOUT = 10
SSH_ALIVE_INTERVAL = 5
SSH_ALIVE_COUNT = 3
# A host name ssh will take as a host name: letters, digits, dots, dashes, underscores,
# colons and % (IPv6 and its zone). Never an option (a leading dash), never whitespace.
_SSH_HOST = re.compile(r"[A-Za-z0-9_.:%][A-Za-z0-9_.:%-]*", re.ASCII)
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f]")


@dataclass(frozen=True)
class Resolution:
    """The engine to use and why: `why` is one line for `inspect` and error messages."""

    address: EngineAddress
    why: str
    context: str | None = None          # the stored context used, if any
    warnings: tuple[str, ...] = ()


def config_dir(environ: Mapping[str, str], home: str | None = None) -> str:
    """$DOCKER_CONFIG, else ~/.docker (docker/cli cli/config: Dir)."""
    configured = environ.get("DOCKER_CONFIG")
    if configured:
        return configured
    return os.path.join(home if home is not None else _home(environ), ".docker")


def context_dir_name(name: str) -> str:
    """The directory a context is stored under: the SHA-256 of its name (hex)."""
    import hashlib  # only when a context is named: the default path stays light

    return hashlib.sha256(name.encode()).hexdigest()


def resolve(*, host: str | None = None, context: str | None = None, environ: Mapping[str, str] | None = None,
            home: str | None = None) -> Resolution:
    """The engine for these flags and this environment. Raises EngineConfigError for a
    combination or a context that cannot be used (a typo or a missing context)."""
    env = os.environ if environ is None else environ
    home = home if home is not None else _home(env)
    cfg_dir = config_dir(env, home)
    shown_cfg = _shorten(os.path.join(cfg_dir, "config.json"), home)
    if context and host:
        raise EngineConfigError("conflicting options: -H/--host and --docker-context cannot be used together "
                                "(as in the docker CLI)")
    if context:
        return _context(context, "--docker-context", env=env, cfg_dir=cfg_dir, home=home)
    if host:
        return _default(host, "-H/--host", env=env, cfg_dir=cfg_dir)
    env_host = env.get("DOCKER_HOST")
    if env_host:
        ignored = []
        if env.get("DOCKER_CONTEXT"):
            ignored.append(f'DOCKER_CONTEXT "{env["DOCKER_CONTEXT"]}"')
        current, warnings = _current_context(cfg_dir, shown_cfg)
        if current:
            ignored.append(f'current context "{current}"')
        note = f" ({' and '.join(ignored)} ignored while DOCKER_HOST is set, as by the docker CLI)" if ignored else ""
        found = _default(env_host, "DOCKER_HOST" + note, env=env, cfg_dir=cfg_dir)
        return Resolution(found.address, found.why, warnings=warnings)
    if env.get("DOCKER_CONTEXT"):
        return _context(env["DOCKER_CONTEXT"], "DOCKER_CONTEXT", env=env, cfg_dir=cfg_dir, home=home)
    current, warnings = _current_context(cfg_dir, shown_cfg)
    if current:
        found = _context(current, f"current context in {shown_cfg}", env=env, cfg_dir=cfg_dir, home=home)
        return Resolution(found.address, found.why, found.context, warnings)
    found = _no_host(env, cfg_dir, "the default socket (no -H, DOCKER_HOST or Docker context set)")
    return Resolution(found.address, found.why, warnings=warnings)


def _no_host(env: Mapping[str, str], cfg_dir: str, why: str) -> Resolution:
    """The default context without a host: the default socket, or under DOCKER_TLS or
    DOCKER_TLS_VERIFY tcp://localhost:2376 (the docker CLI's ParseHost(defaultToTLS, ""))."""
    tls = tls_from_env(env, default_cert_path=cfg_dir)
    if tls is not None:
        return Resolution(address_for(f"tcp://localhost:{DEFAULT_TLS_PORT}", tls=tls),
                          f"tcp://localhost:{DEFAULT_TLS_PORT} (TLS is set and no -H, DOCKER_HOST or Docker context, "
                          "as in the docker CLI)")
    return Resolution(address_for(f"unix://{DEFAULT_SOCKET}"), why)


def _default(host: str, source: str, *, env: Mapping[str, str], cfg_dir: str) -> Resolution:
    """The default context with this host: TLS, if any, from the environment."""
    address = address_for(host, tls=tls_from_env(env, default_cert_path=cfg_dir))
    return Resolution(address, source)


def _context(name: str, source: str, *, env: Mapping[str, str], cfg_dir: str, home: str) -> Resolution:
    if name == DEFAULT_CONTEXT:
        env_host = env.get("DOCKER_HOST")
        if env_host:
            found = _default(env_host, f'context "default" ({source}): DOCKER_HOST', env=env, cfg_dir=cfg_dir)
        else:
            found = _no_host(env, cfg_dir, f'context "default" ({source}): the default socket')
        return found
    meta_dir = os.path.join(cfg_dir, "contexts", "meta", context_dir_name(name))
    meta_path = os.path.join(meta_dir, "meta.json")
    try:
        meta = jsonsafe.loads(read_regular(meta_path, MAX_META_BYTES), max_bytes=MAX_META_BYTES)
    except FileNotFoundError:
        raise EngineConfigError(f'Docker context "{name}" ({source}) does not exist: see `docker context ls`') from None
    except (OSError, ValueError) as exc:
        raise EngineConfigError(f'cannot read Docker context "{name}" ({_shorten(meta_path, home)}): '
                                f"{getattr(exc, 'strerror', None) or exc}") from None
    endpoint = (meta.get("Endpoints") or {}).get("docker") if isinstance(meta, dict) else None
    if not isinstance(endpoint, dict):
        raise EngineConfigError(f'Docker context "{name}" ({source}) has no docker endpoint')
    text = endpoint.get("Host") or f"unix://{DEFAULT_SOCKET}"
    if not isinstance(text, str):
        raise EngineConfigError(f'Docker context "{name}" ({source}) has an invalid docker endpoint host')
    tls = _context_tls(os.path.join(cfg_dir, "contexts", "tls", context_dir_name(name), "docker"),
                       skip_verify=bool(endpoint.get("SkipTLSVerify")))
    return Resolution(address_for(text, tls=tls), f'context "{name}" ({source})', context=name)


def _context_tls(directory: str, *, skip_verify: bool) -> TLSConfig | None:
    """A context's TLS material, as the docker CLI loads it: TLS when any file is there
    or SkipTLSVerify is set; no CA means the system's roots."""
    files = {name: os.path.join(directory, f"{name}.pem") for name in ("ca", "cert", "key")}
    present = {name: path if os.path.isfile(path) else None for name, path in files.items()}
    if not any(present.values()) and not skip_verify:
        return None
    if (present["cert"] is None) != (present["key"] is None):
        raise EngineConfigError(f"the context's TLS material in {directory} has a certificate without its key "
                                f"or a key without its certificate")
    return TLSConfig(ca=present["ca"], cert=present["cert"], key=present["key"], verify=not skip_verify)


def _current_context(cfg_dir: str, shown: str) -> tuple[str | None, tuple[str, ...]]:
    """currentContext from config.json; a missing file means none. A file that is not
    JSON is ignored with a warning, as the docker CLI does."""
    path = os.path.join(cfg_dir, "config.json")
    try:
        data = jsonsafe.loads(read_regular(path, MAX_CONFIG_BYTES) or b"{}", max_bytes=MAX_CONFIG_BYTES)
    except FileNotFoundError:
        return None, ()
    except (OSError, ValueError) as exc:
        return None, (f"ignoring {shown}: {getattr(exc, 'strerror', None) or exc}",)
    current = data.get("currentContext") if isinstance(data, dict) else None
    return (current if isinstance(current, str) and current else None), ()


def address_for(text: str, *, tls: TLSConfig | None = None) -> EngineAddress:
    """An engine address from a host string: unix://, tcp:// (host:port alone means tcp,
    as in the docker CLI), https:// (TLS), or ssh://[user@]host[:port][/socket-path]."""
    text = text.strip()
    if "://" not in text:
        text = f"tcp://{text}"
    if text.startswith("ssh://"):
        return parse_ssh(text)
    if not text.startswith(("tcp://", "https://")):
        tls = None  # TLS is for TCP only; the docker CLI ignores it for sockets
    return parse_host(text, tls=tls)


def parse_ssh(text: str) -> EngineAddress:
    """`ssh://[user@]host[:port][/path]` -> the argv of `ssh ... docker system dial-stdio`.

    The argv is passed to the system's ssh as a list, never through a local shell; the
    host, user and port are checked so none of them can be read as an option."""
    if _CONTROL_OR_SPACE.search(text):
        # urlsplit would quietly drop tabs and newlines: refuse them instead.
        raise EngineConfigError(f"invalid ssh engine address {text!r}: whitespace or control characters")
    try:
        parsed = urllib.parse.urlsplit(text)
        port = parsed.port
    except ValueError as exc:
        raise EngineConfigError(f"invalid ssh engine address {text!r}: {str(exc).lower()}") from None
    if parsed.password is not None:
        raise EngineConfigError(f"invalid ssh engine address {text!r}: a password in the URL is not supported "
                                f"(use a key or an agent)")
    if parsed.query or parsed.fragment:
        raise EngineConfigError(f"invalid ssh engine address {text!r}: no query or fragment allowed")
    netloc = parsed.netloc.rpartition("@")[2]
    raw_host = netloc[1:netloc.index("]")] if netloc.startswith("[") and "]" in netloc else netloc.rsplit(":", 1)[0]
    raw_host = urllib.parse.unquote(raw_host)
    if not raw_host:
        raise EngineConfigError(f"invalid ssh engine address {text!r}: no host name")
    if raw_host.startswith("-") or _CONTROL_OR_SPACE.search(raw_host) or not _SSH_HOST.fullmatch(raw_host):
        raise EngineConfigError(f"invalid ssh host name {raw_host!r} in {text!r}: a host name must not start "
                                f"with '-' or contain whitespace, control or shell characters")
    user = urllib.parse.unquote(parsed.username) if parsed.username is not None else None
    if user is not None and (not user or user.startswith("-") or _CONTROL_OR_SPACE.search(user)
                             or any(c in user for c in "@:/")):
        raise EngineConfigError(f"invalid ssh user {user!r} in {text!r}: a user name must not be empty, start "
                                f"with '-' or contain whitespace or control characters")
    if port is not None and not 0 < port < 65536:
        raise EngineConfigError(f"invalid ssh port in {text!r}")
    path = urllib.parse.unquote(parsed.path)
    if _CONTROL_OR_SPACE.search(path):
        raise EngineConfigError(f"invalid socket path {path!r} in {text!r}")
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={SSH_CONNECT_TIMEOUT}",
            "-o", f"ServerAliveInterval={SSH_ALIVE_INTERVAL}", "-o", f"ServerAliveCountMax={SSH_ALIVE_COUNT}", "-T"]
    if user is not None:
        argv += ["-l", user]
    if port is not None:
        argv += ["-p", str(port)]
    # The remote side runs the command through the login shell: quote what is not ours.
    # The words are the docker CLI's (connhelper: docker [--host unix://PATH] system dial-stdio).
    remote = ["docker", "system", "dial-stdio"]
    if path.strip("/"):
        import shlex

        remote = ["docker", "--host", shlex.quote(f"unix://{path}"), "system", "dial-stdio"]
    argv += ["--", raw_host, *remote]
    shown_host = f"[{raw_host}]" if ":" in raw_host else raw_host
    netloc_out = f"{shown_host}:{port}" if port else shown_host
    return EngineAddress("ssh", path=path if path.strip("/") else "", netloc=netloc_out, ssh=tuple(argv), text=text)


def _home(environ: Mapping[str, str]) -> str:
    return environ.get("HOME") or os.path.expanduser("~")


def _shorten(path: str, home: str) -> str:
    """~/... for paths under the home directory: shorter lines, same meaning."""
    if home and (path == home or path.startswith(home.rstrip("/") + "/")):
        return "~" + path[len(home.rstrip("/")):]
    return path
