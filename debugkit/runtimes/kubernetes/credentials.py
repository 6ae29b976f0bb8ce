"""Credentials for the Kubernetes API, in kubectl's order of precedence: a token file
(re-read when it changes), a static token, an exec credential plugin (cached until its
expirationTimestamp, refreshed once on a 401), basic auth; and TLS client certificates from
files, base64 data or the exec plugin (loaded through a private temporary file)."""
from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import time

from debugkit.runtimes.kubernetes.kubeconfig import ClusterAuth, KubeConfigError

EXEC_PLUGIN_TIMEOUT = 120.0


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


class _ExecCredential:
    __slots__ = ("token", "cert", "key", "expires")

    def __init__(self, token, cert, key, expires):
        self.token, self.cert, self.key, self.expires = token, cert, key, expires

    def valid(self) -> bool:
        return self.expires is None or time.time() < self.expires


class Credentials:
    """Authorization header and client certificate, refreshed as the source demands."""

    def __init__(self, auth: ClusterAuth):
        self.auth = auth
        self._lock = threading.Lock()
        self._file_stamp = None
        self._file_token: str | None = None
        self._exec: _ExecCredential | None = None
        self.exec_runs = 0

    def _token_from_file(self) -> str | None:
        path = self.auth.token_file
        try:
            st = os.stat(path)
        except OSError as exc:
            if self.auth.token:
                return None  # client-go falls back to the static token
            raise KubeConfigError(f"{self.auth.source}: cannot read tokenFile {path}: {exc.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if stamp != self._file_stamp:
                try:
                    with open(path, encoding="utf-8") as fh:
                        self._file_token = fh.read(1 << 16).strip() or None
                except (OSError, UnicodeDecodeError) as exc:
                    raise KubeConfigError(f"{self.auth.source}: cannot read tokenFile {path}: {exc}") from None
                self._file_stamp = stamp
            return self._file_token

    def authorization(self) -> str | None:
        auth = self.auth
        if auth.token_file:
            token = self._token_from_file()
            if token:
                return "Bearer " + token
        if auth.token:
            return "Bearer " + auth.token
        if auth.exec_config is not None:
            cred = self.exec_credential()
            if cred.token:
                return "Bearer " + cred.token
            return None
        if auth.username or auth.password:
            raw = f"{auth.username or ''}:{auth.password or ''}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return None

    @property
    def uses_exec(self) -> bool:
        return self.auth.exec_config is not None and not (self.auth.token or self.auth.token_file)

    def client_cert(self) -> tuple[bytes, bytes] | None:
        """A (cert PEM, key PEM) from the exec plugin, when it issues certificates."""
        if self.auth.exec_config is None:
            return None
        cred = self.exec_credential()
        return (cred.cert, cred.key) if cred.cert else None

    def invalidate(self) -> None:
        with self._lock:
            self._exec = None

    def exec_credential(self) -> _ExecCredential:
        with self._lock:
            if self._exec is None or not self._exec.valid():
                self._exec = self._run_exec()
            return self._exec

    def _run_exec(self) -> _ExecCredential:
        import subprocess

        ec = self.auth.exec_config
        where = f"{ec.source}: user {self.auth.user!r}: exec plugin {ec.command!r}"
        if ec.interactive_mode == "Always":
            raise ExecPluginError(f"{where} needs an interactive terminal (interactiveMode: Always), "
                                  "which debugkit does not provide")
        spec: dict = {"interactive": False}
        if ec.provide_cluster_info:
            cluster: dict = {"server": self.auth.server}
            ca = self.auth.ca_data
            if ca is None and self.auth.ca_file:
                try:
                    with open(self.auth.ca_file, "rb") as fh:
                        ca = fh.read()
                except OSError:
                    ca = None
            if ca:
                cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
            if self.auth.insecure:
                cluster["insecure-skip-tls-verify"] = True
            if self.auth.tls_server_name:
                cluster["tls-server-name"] = self.auth.tls_server_name
            spec["cluster"] = cluster
        env = dict(os.environ)
        env.update(dict(ec.env))
        env["KUBERNETES_EXEC_INFO"] = json.dumps({"apiVersion": ec.api_version, "kind": "ExecCredential",
                                                  "spec": spec})
        self.exec_runs += 1
        try:
            proc = subprocess.run([ec.command, *ec.args], env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=EXEC_PLUGIN_TIMEOUT)
        except FileNotFoundError:
            hint = f" ({' '.join(ec.install_hint.split())})" if ec.install_hint else ""
            raise ExecPluginError(f"{where} not found{hint}") from None
        except PermissionError:
            raise ExecPluginError(f"{where} is not executable") from None
        except subprocess.TimeoutExpired:
            raise ExecPluginError(f"{where} did not finish within {EXEC_PLUGIN_TIMEOUT:g} s") from None
        except OSError as exc:
            raise ExecPluginError(f"{where} cannot run: {exc.strerror or exc}") from None
        if proc.returncode != 0:
            lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            tail = f": {lines[-1].strip()[:300]}" if lines else ""
            raise ExecPluginError(f"{where} exited with status {proc.returncode}{tail}")
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            raise ExecPluginError(f"{where} did not print an ExecCredential (no JSON on stdout)") from None
        if not isinstance(data, dict) or data.get("kind") != "ExecCredential":
            raise ExecPluginError(f"{where} printed something other than an ExecCredential")
        if data.get("apiVersion") != ec.api_version:
            raise ExecPluginError(f"{where} answered apiVersion {data.get('apiVersion')!r}, "
                                  f"but the kubeconfig asks for {ec.api_version!r}")
        status = data.get("status")
        if not isinstance(status, dict):
            raise ExecPluginError(f"{where} printed an ExecCredential without a status")
        token = status.get("token") or None
        cert = status.get("clientCertificateData") or None
        key = status.get("clientKeyData") or None
        if bool(cert) != bool(key):
            raise ExecPluginError(f"{where} printed a client certificate without a key, or a key without one")
        if not token and not cert:
            raise ExecPluginError(f"{where} printed neither a token nor a client certificate")
        expires = None
        if status.get("expirationTimestamp"):
            try:
                expires = parse_rfc3339(str(status["expirationTimestamp"]))
            except ValueError:
                raise ExecPluginError(f"{where} printed an invalid expirationTimestamp "
                                      f"{status['expirationTimestamp']!r}") from None
        return _ExecCredential(token, cert.encode() if cert else None, key.encode() if key else None, expires)


def load_cert_chain(ctx: ssl.SSLContext, cert_file, cert_data, key_file, key_data) -> None:
    """load_cert_chain needs paths: base64 data goes through a private temporary file
    (0600 in a 0700 directory) that is deleted as soon as OpenSSL has read it."""
    if cert_data is None and key_data is None:
        ctx.load_cert_chain(cert_file, key_file)
        return
    import tempfile

    if cert_data is None:
        with open(cert_file, "rb") as fh:
            cert_data = fh.read()
    if key_data is None:
        with open(key_file, "rb") as fh:
            key_data = fh.read()
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
