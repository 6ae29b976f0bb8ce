"""Credentials for the Kubernetes API, in kubectl's order of precedence: the server URL's
own ``user:password@`` (Go's HTTP client sets it before any other credential is looked
at), a token file (re-read when it changes) or a static token, basic auth, an exec
credential plugin (only when none of those nor a client certificate is configured; cached
until its expirationTimestamp, refreshed once on a 401), the oidc auth-provider. TLS client certificates come from files, base64 data or the exec
plugin (loaded through a private temporary file).

Files named by the kubeconfig (tokenFile, CA, client certificate and key) must be regular
files and are read with a size bound: a FIFO or a device is refused, never waited on.
No message here ever holds a credential.
"""
from __future__ import annotations

import base64
import json
import os
import ssl
import sys
import threading
import time

from debugkit.runtimes.kubernetes.kubeconfig import ClusterAuth, KubeConfigError

EXEC_PLUGIN_TIMEOUT = 120.0
MAX_TOKEN_FILE = 64 << 10
MAX_PEM_FILE = 1 << 20


class ExecPluginError(KubeConfigError):
    """An exec credential plugin is missing, failed, or printed something unusable."""


def parse_rfc3339(value: str) -> float:
    import datetime as dt
    import re

    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:?\d\d)", value.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac = float(m.group(7)) if m.group(7) else 0.0
    tz = m.group(8)
    offset = 0
    if tz not in ("Z", "z"):
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=dt.timezone.utc).timestamp() + frac - offset


def read_file(path: str, what: str, where: str, limit: int = MAX_PEM_FILE) -> bytes:
    """A file the kubeconfig names: regular, bounded; a KubeConfigError otherwise."""
    from debugkit.core.files import read_regular

    try:
        return read_regular(path, limit)
    except FileNotFoundError:
        raise KubeConfigError(f"{where}: {what} {path} does not exist") from None
    except OSError as exc:
        raise KubeConfigError(f"{where}: cannot read {what} {path}: {exc.strerror or exc.__class__.__name__}") from None


class _ExecCredential:
    __slots__ = ("token", "cert", "key", "expires")

    def __init__(self, token, cert, key, expires):
        self.token, self.cert, self.key, self.expires = token, cert, key, expires

    def valid(self) -> bool:
        return self.expires is None or time.time() < self.expires


class Credentials:
    """Authorization header and client certificate, refreshed as the source demands.

    ``interactive``: an exec plugin may be given the terminal (attach and friends; not
    doctor or completion). ``exec_timeout``: how long a plugin may run when no login is
    in progress. ``plugin_stderr``: a binary file for the plugin's stderr (default: ours;
    False: nowhere, for shell completion)."""

    def __init__(self, auth: ClusterAuth, *, interactive: bool = True, exec_timeout: float = EXEC_PLUGIN_TIMEOUT,
                 plugin_stderr=None, user_agent: str = "debugkit"):
        self.auth = auth
        self.interactive = interactive
        self.exec_timeout = exec_timeout
        self.plugin_stderr = None if plugin_stderr is False else plugin_stderr or _stderr_buffer()
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._file_stamp = None
        self._file_token: str | None = None
        self._exec: _ExecCredential | None = None
        self._oidc_token: str | None = auth.oidc.id_token if auth.oidc else None
        self._oidc_refresh: str | None = auth.oidc.refresh_token if auth.oidc else None
        self.exec_runs = 0

    def _token_from_file(self) -> str | None:
        path = self.auth.token_file
        where = str(self.auth.source)
        try:
            st = os.stat(path)
        except OSError as exc:
            if self.auth.token:
                return None  # client-go falls back to the static token
            raise KubeConfigError(f"{where}: cannot read tokenFile {path}: {exc.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if stamp != self._file_stamp:
                raw = read_file(path, "tokenFile", where, MAX_TOKEN_FILE)
                try:
                    token = raw.decode("utf-8").strip()  # client-go trims the file's whitespace
                except UnicodeDecodeError:
                    raise KubeConfigError(f"{where}: tokenFile {path} is not UTF-8 text") from None
                if any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
                    raise KubeConfigError(f"{where}: tokenFile {path} holds a line break or a control character "
                                          "inside the token")
                self._file_token = token or None
                self._file_stamp = stamp
            return self._file_token

    def authorization(self) -> str | None:
        auth = self.auth
        if auth.server_userinfo is not None:
            # Go's http.Client sets basic auth from the URL's user:password before any
            # round tripper runs, so in kubectl it beats every other credential.
            return _basic(*auth.server_userinfo)
        if auth.token_file:
            token = self._token_from_file()
            if token:
                return "Bearer " + token
        if auth.token:
            return "Bearer " + auth.token
        if auth.username or auth.password:
            return _basic(auth.username or "", auth.password or "")
        if self.uses_exec:
            cred = self.exec_credential()
            if cred.token:
                return "Bearer " + cred.token
            return None
        if auth.oidc is not None:
            return "Bearer " + self.oidc_token()
        return None

    @property
    def uses_exec(self) -> bool:
        """client-go runs the exec plugin only when no token, basic auth or client
        certificate is configured (exec.go UpdateTransportConfig)."""
        auth = self.auth
        return auth.exec_config is not None and not (
            auth.token or auth.token_file or auth.username or auth.password or auth.client_cert_file
            or auth.client_cert_data)

    def client_cert(self) -> tuple[bytes, bytes] | None:
        """A (cert PEM, key PEM) from the exec plugin, when it issues certificates."""
        if not self.uses_exec:
            return None
        cred = self.exec_credential()
        return (cred.cert, cred.key) if cred.cert else None

    def invalidate(self) -> None:
        with self._lock:
            self._exec = None

    # -- oidc --------------------------------------------------------------------------------

    def oidc_token(self) -> str:
        from debugkit.runtimes.kubernetes import oidc

        with self._lock:
            if self._oidc_token and oidc.token_valid(self._oidc_token):
                return self._oidc_token
            cfg = self.auth.oidc
            if self._oidc_refresh != cfg.refresh_token:
                cfg = cfg.replace(refresh_token=self._oidc_refresh)
            id_token, new_refresh = oidc.refresh(cfg, user_agent=self.user_agent)
            oidc.persist(cfg, id_token, new_refresh)
            self._oidc_token = id_token
            self._oidc_refresh = new_refresh or self._oidc_refresh
            return id_token

    # -- exec --------------------------------------------------------------------------------

    def exec_credential(self) -> _ExecCredential:
        with self._lock:
            if self._exec is None or not self._exec.valid():
                self._exec = self._run_exec()
            return self._exec

    def _exec_info(self, interactive: bool) -> str:
        ec = self.auth.exec_config
        spec: dict = {"interactive": interactive}
        if ec.provide_cluster_info:
            where = f"{self.auth.source}: cluster {self.auth.cluster!r}"
            cluster: dict = {"server": self.auth.server}
            if self.auth.tls_server_name:
                cluster["tls-server-name"] = self.auth.tls_server_name
            if self.auth.insecure:
                cluster["insecure-skip-tls-verify"] = True
            ca = self.auth.ca_data
            if ca is None and self.auth.ca_file:
                ca = read_file(self.auth.ca_file, "certificate-authority", where)
            if ca:
                cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
            if self.auth.proxy_url:
                cluster["proxy-url"] = self.auth.proxy_url
            if ec.cluster_config is not None:
                cluster["config"] = ec.cluster_config
            spec["cluster"] = cluster
        return json.dumps({"apiVersion": ec.api_version, "kind": "ExecCredential", "spec": spec})

    def _run_exec(self) -> _ExecCredential:
        from debugkit.runtimes.kubernetes import execplugin

        ec = self.auth.exec_config
        where = f"{ec.source}: user {self.auth.user!r}: exec plugin {ec.command!r}"
        try:
            interactive = execplugin.interactive(ec.interactive_mode, allowed=self.interactive, where=where)
        except execplugin.PluginFailed as exc:
            raise ExecPluginError(str(exc)) from None
        env = dict(os.environ)
        env.update(dict(ec.env))
        env["KUBERNETES_EXEC_INFO"] = self._exec_info(interactive)
        self.exec_runs += 1
        try:
            outcome = execplugin.run([ec.command, *ec.args], env, interactive_session=interactive,
                                     timeout=self.exec_timeout, stderr=self.plugin_stderr)
        except FileNotFoundError:
            hint = f" ({' '.join(ec.install_hint.split())})" if ec.install_hint else ""
            raise ExecPluginError(f"{where} not found{hint}") from None
        except PermissionError:
            raise ExecPluginError(f"{where} is not executable") from None
        except execplugin.PluginFailed as exc:
            raise ExecPluginError(f"{where} {exc}; it was ended") from None
        except OSError as exc:
            raise ExecPluginError(f"{where} cannot run: {exc.strerror or exc}") from None
        if outcome.returncode != 0:
            line = outcome.last_stderr_line()
            status = (f"was killed by signal {-outcome.returncode}" if outcome.returncode < 0
                      else f"exited with status {outcome.returncode}")
            raise ExecPluginError(f"{where} {status}" + (f": {line}" if line else ""))
        return _parse_credential(outcome.stdout, ec.api_version, where)


def _parse_credential(stdout: bytes, api_version: str, where: str) -> _ExecCredential:
    try:
        data = json.loads(stdout)
    except (ValueError, RecursionError):
        raise ExecPluginError(f"{where} did not print an ExecCredential (no JSON on stdout)") from None
    if not isinstance(data, dict) or data.get("kind") != "ExecCredential":
        raise ExecPluginError(f"{where} printed something other than an ExecCredential")
    if data.get("apiVersion") != api_version:
        raise ExecPluginError(f"{where} answered apiVersion {str(data.get('apiVersion'))[:80]!r}, "
                              f"but the kubeconfig asks for {api_version!r}")
    status = data.get("status")
    if not isinstance(status, dict):
        raise ExecPluginError(f"{where} printed an ExecCredential without a status")
    token, cert, key = (status.get(k) or None for k in ("token", "clientCertificateData", "clientKeyData"))
    if any(v is not None and not isinstance(v, str) for v in (token, cert, key)):
        raise ExecPluginError(f"{where} printed an ExecCredential whose token or certificate is not a string")
    if bool(cert) != bool(key):
        raise ExecPluginError(f"{where} printed a client certificate without a key, or a key without one")
    if not token and not cert:
        raise ExecPluginError(f"{where} printed neither a token nor a client certificate")
    if token:
        token = token.strip()
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
            raise ExecPluginError(f"{where} printed a token with a line break or a control character inside")
    expires = None
    if status.get("expirationTimestamp"):
        try:
            expires = parse_rfc3339(str(status["expirationTimestamp"]))
        except ValueError:
            raise ExecPluginError(f"{where} printed an invalid expirationTimestamp") from None
    return _ExecCredential(token, cert.encode() if cert else None, key.encode() if key else None, expires)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _stderr_buffer():
    return getattr(sys.stderr, "buffer", None)


def load_cert_chain(ctx: ssl.SSLContext, cert_file, cert_data, key_file, key_data, *, where: str = "") -> None:
    """load_cert_chain needs a path: the certificate and key (read from their files, which
    must be regular, or given as data) go through a private temporary file (0600 in a 0700
    directory) that is deleted as soon as OpenSSL has read it."""
    import tempfile

    if cert_data is None:
        cert_data = read_file(cert_file, "client-certificate", where)
    if key_data is None:
        key_data = read_file(key_file, "client-key", where)
    tmpdir = tempfile.mkdtemp(prefix="debugkit-tls-")  # mode 0700
    path = os.path.join(tmpdir, "client.pem")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(cert_data.rstrip(b"\n") + b"\n" + key_data)
        ctx.load_cert_chain(path)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.rmdir(tmpdir)
