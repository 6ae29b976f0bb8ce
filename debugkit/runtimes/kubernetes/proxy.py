"""Reaching the API server through a proxy, as client-go does, on the standard library.

Which proxy (client-go: the kubeconfig's ``proxy-url``, else Go's ``ProxyFromEnvironment``
wrapped in ``NewProxierWithNoProxyCIDR``):

- a cluster's ``proxy-url`` (``http://``, ``socks5://``; with ``user:password@`` for the
  proxy's own authentication) is used for every request to that cluster;
- otherwise ``HTTPS_PROXY``/``https_proxy`` for an ``https://`` server and
  ``HTTP_PROXY``/``http_proxy`` for an ``http://`` one (an error when ``REQUEST_METHOD`` is
  set: Go refuses HTTP_PROXY in a CGI environment), unless ``NO_PROXY``/``no_proxy`` exempts
  the server: ``*``, an IP, a CIDR, ``name`` (the name and its subdomains), ``.name`` or
  ``*.name`` (subdomains only), each optionally with ``:port``. ``localhost`` and loopback
  addresses are never proxied. A proxy value without a scheme means ``http://``.

How (Go's net/http): through an http proxy, ``CONNECT host:port`` opens a tunnel (with
``Proxy-Authorization: Basic`` when the proxy URL has credentials); a plain-http request
goes to the proxy in absolute form instead. Through a SOCKS5 proxy (RFC 1928, RFC 1929
username/password), the server's name is sent to the proxy, which resolves it.

Not supported, and refused with a message: an ``https://`` proxy (TLS to the proxy, then
TLS inside that tunnel, which the standard library's ssl module cannot nest over a socket).
"""
from __future__ import annotations

import base64
import os
import socket
import urllib.parse
from dataclasses import dataclass

# ipaddress and struct are imported where they are used: a connection without a proxy
# (the common case) never pays for them.

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

MAX_CONNECT_HEAD = 16 << 10
SCHEMES = ("http", "socks5")
_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080}


class ProxyConfigError(ValueError):
    """A proxy URL that cannot be used (one line, no credentials in it)."""


class ProxyError(OSError):
    """The proxy refused or broke the tunnel (one line, no credentials in it)."""


@dataclass(frozen=True)
class Proxy:
    scheme: str                  # http | socks5
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    source: str = "proxy-url"    # proxy-url | HTTPS_PROXY | ...: for messages

    @property
    def shown(self) -> str:
        """scheme://host:port, never the credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"Proxy({self.shown!r}, source={self.source!r}, credentials={self.username is not None})"

    def authorization(self) -> str | None:
        """The Proxy-Authorization value for an http proxy with credentials."""
        if self.username is None:
            return None
        raw = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def redact_url(text: str) -> str:
    """A URL with its user:password replaced by ``***@`` (for every message and log)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    authority, slash, tail = rest.partition("/")
    if "@" not in authority:
        return text
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{tail}"


def parse(text: str, *, source: str = "proxy-url", default_scheme: bool = False) -> Proxy:
    """A proxy URL; ``default_scheme``: a value without ``scheme://`` means http (Go's rule
    for the environment variables). Raises ProxyConfigError."""
    shown = redact_url(text)
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise ProxyConfigError(f"{source} {shown!r} contains whitespace or control characters")
    if default_scheme and "://" not in text:
        text = "http://" + text
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ProxyConfigError(f"{source} {shown!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme == "https":
        raise ProxyConfigError(f"{source} {shown!r}: https:// proxies (TLS to the proxy) are not supported; "
                               f"use an http:// or socks5:// proxy")
    if scheme not in SCHEMES:
        raise ProxyConfigError(f"{source} {shown!r}: unsupported scheme {parts.scheme!r} "
                               f"(use http:// or socks5://)")
    if not parts.hostname:
        raise ProxyConfigError(f"{source} {shown!r} has no host")
    username = urllib.parse.unquote(parts.username) if parts.username is not None else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    if scheme == "socks5" and username is not None and (len(username.encode()) > 255
                                                        or len((password or "").encode()) > 255):
        raise ProxyConfigError(f"{source} {shown!r}: a SOCKS5 user name or password is at most 255 bytes")
    return Proxy(scheme, parts.hostname, port or _DEFAULT_PORTS[scheme], username, password, source)


def from_environment(server_scheme: str, host: str, port: int,
                     environ: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy Go's ProxyFromEnvironment picks for this server, or None."""
    env = os.environ if environ is None else environ
    if server_scheme == "https":
        name = next((n for n in ("HTTPS_PROXY", "https_proxy") if env.get(n)), None)
    else:
        name = next((n for n in ("HTTP_PROXY", "http_proxy") if env.get(n)), None)
        if name and env.get("REQUEST_METHOD") and use_proxy(host, port, env.get("NO_PROXY") or env.get("no_proxy") or ""):
            # Go refuses the request (golang.org/s/cgihttpproxy: a CGI client controls Proxy:)
            raise ProxyConfigError(f"refusing to use {name} in a CGI environment (REQUEST_METHOD is set), "
                                   "as Go does; see golang.org/s/cgihttpproxy")
    if name is None:
        return None
    if not use_proxy(host, port, env.get("NO_PROXY") or env.get("no_proxy") or ""):
        return None
    return parse(env[name], source=name, default_scheme=True)


def use_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Go's httpproxy useProxy: False for localhost, loopback and NO_PROXY matches."""
    import ipaddress

    host = host.strip().lower().strip("[]")
    if host == "localhost":
        return False
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        ip = None
    if ip is not None and ip.is_loopback:
        return False
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return False
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(entry, strict=False) and "/" in entry:
                    return False
            except ValueError:
                pass
        name, entry_port = _split_host_port(entry)
        if not name:
            continue
        try:
            entry_ip = ipaddress.ip_address(name)
        except ValueError:
            entry_ip = None
        if entry_ip is not None:
            if ip is not None and ip == entry_ip and (not entry_port or entry_port == str(port)):
                return False
            continue
        if ip is not None:
            continue  # a name never matches an address
        if name.startswith("*."):
            name = name[1:]
        exact = not name.startswith(".")
        suffix = name if not exact else "." + name
        if (host.endswith(suffix) or (exact and host == name)) and (not entry_port or entry_port == str(port)):
            return False
    return True


def _split_host_port(entry: str) -> tuple[str, str]:
    """Go's net.SplitHostPort, leniently: ("host", "port") or (entry, "")."""
    if entry.startswith("["):
        end = entry.find("]")
        if end > 0:
            rest = entry[end + 1:]
            return entry[1:end], rest[1:] if rest.startswith(":") else ""
        return entry, ""
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name, port
    return entry, ""


def _target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def dial(proxy: Proxy, host: str, port: int, *, timeout: float | None, user_agent: str) -> socket.socket:
    """A TCP connection to host:port through the proxy (a CONNECT tunnel or SOCKS5)."""
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    except OSError as exc:
        raise ProxyError(f"cannot reach the proxy {proxy.shown} ({proxy.source}): "
                         f"{exc.strerror or exc.__class__.__name__}") from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if proxy.scheme == "socks5":
            _socks5(sock, proxy, host, port)
        else:
            _connect_tunnel(sock, proxy, host, port, user_agent)
    except BaseException:
        sock.close()
        raise
    return sock


def _connect_tunnel(sock: socket.socket, proxy: Proxy, host: str, port: int, user_agent: str) -> None:
    target = _target(host, port)
    head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: {user_agent}\r\n"
    authorization = proxy.authorization()
    if authorization:
        head += f"Proxy-Authorization: {authorization}\r\n"
    sock.sendall((head + "\r\n").encode("latin-1"))
    # Read exactly the answer's head: the bytes after it (TLS) are the server's, not ours.
    buf = b""
    while True:
        peeked = sock.recv(4096, socket.MSG_PEEK)
        if not peeked:
            raise ProxyError(f"the proxy {proxy.shown} closed the connection instead of answering CONNECT {target}")
        end = (buf + peeked).find(b"\r\n\r\n")
        if end >= 0:
            buf += sock.recv(end + 4 - len(buf))
            break
        buf += sock.recv(len(peeked))
        if len(buf) > MAX_CONNECT_HEAD:
            raise ProxyError(f"the proxy {proxy.shown} sent an oversized answer to CONNECT {target}")
    status_line = buf.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProxyError(f"the proxy {proxy.shown} did not answer CONNECT {target} in HTTP")
    status = int(parts[1])
    if status == 407:
        why = "with these credentials" if authorization else "without credentials (add user:password@ to the proxy URL)"
        raise ProxyError(f"the proxy {proxy.shown} refused CONNECT {target} {why}: 407 Proxy Authentication Required")
    if not 200 <= status < 300:
        reason = " ".join("".join(c if c.isprintable() else "?" for c in (parts[2] if len(parts) > 2 else "")).split())
        raise ProxyError(f"the proxy {proxy.shown} refused CONNECT {target}: {status} {reason[:100]}".rstrip())


def _recv_exact(sock: socket.socket, size: int, proxy: Proxy) -> bytes:
    buf = b""
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ProxyError(f"the SOCKS5 proxy {proxy.shown} closed the connection during the handshake")
        buf += chunk
    return buf


_SOCKS_REPLIES = {1: "general failure", 2: "connection not allowed by ruleset", 3: "network unreachable",
                  4: "host unreachable", 5: "connection refused", 6: "TTL expired", 7: "command not supported",
                  8: "address type not supported"}


def _socks5(sock: socket.socket, proxy: Proxy, host: str, port: int) -> None:
    import ipaddress
    import struct

    methods = b"\x00\x02" if proxy.username is not None else b"\x00"
    sock.sendall(b"\x05" + bytes([len(methods)]) + methods)
    version, method = _recv_exact(sock, 2, proxy)
    if version != 5:
        raise ProxyError(f"{proxy.shown} is not a SOCKS5 proxy")
    if method == 0x02:
        user = (proxy.username or "").encode()
        password = (proxy.password or "").encode()
        sock.sendall(b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
        _version, status = _recv_exact(sock, 2, proxy)
        if status != 0:
            raise ProxyError(f"the SOCKS5 proxy {proxy.shown} refused the user name and password")
    elif method == 0xFF:
        why = "these credentials" if proxy.username is not None else "no credentials (add user:password@)"
        raise ProxyError(f"the SOCKS5 proxy {proxy.shown} accepts none of the offered methods with {why}")
    elif method != 0x00:
        raise ProxyError(f"the SOCKS5 proxy {proxy.shown} chose an authentication method we did not offer")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is None:
        name = host.encode("idna") if not host.isascii() else host.encode()
        if len(name) > 255:
            raise ProxyError(f"the host name {host[:60]!r}... is too long for SOCKS5")
        address = b"\x03" + bytes([len(name)]) + name
    else:
        address = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
    sock.sendall(b"\x05\x01\x00" + address + struct.pack(">H", port))
    version, reply, _rsv, atyp = _recv_exact(sock, 4, proxy)
    if reply != 0:
        raise ProxyError(f"the SOCKS5 proxy {proxy.shown} could not connect to {_target(host, port)}: "
                         f"{_SOCKS_REPLIES.get(reply, f'error {reply}')}")
    if atyp == 1:
        _recv_exact(sock, 4 + 2, proxy)
    elif atyp == 4:
        _recv_exact(sock, 16 + 2, proxy)
    elif atyp == 3:
        _recv_exact(sock, _recv_exact(sock, 1, proxy)[0] + 2, proxy)
    else:
        raise ProxyError(f"the SOCKS5 proxy {proxy.shown} answered with an unknown address type")
