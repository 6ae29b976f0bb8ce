"""Kubeconfig loading with kubectl's rules, standard library plus (lazily) PyYAML.

``load()`` picks the configuration the way kubectl does:

1. an explicit file (``--kubeconfig``): that one file, which must exist;
2. else ``$KUBECONFIG``, a path list merged in order: for every named cluster, user and
   context, and for ``current-context``, the FIRST file that sets it wins; files in the
   list that do not exist are skipped;
3. else ``~/.kube/config``;
4. else, when nothing above holds any configuration, the in-cluster service account
   (``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` and
   ``/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}``).

Relative paths (certificate-authority, client-certificate, client-key, tokenFile, and
an exec command that contains a slash) resolve against the directory of the file that
defined the entry. The namespace is the context's, else ``"default"``; in a pod,
``POD_NAMESPACE``, else the service account's.

The server URL is checked here (a typo is a KubeConfigError, never a crash later); its
``user:password@``, if any, is taken out of ``server`` (so that no message shows it) and
kept as the lowest-precedence basic credentials, as Go's HTTP client uses it. A server
without a scheme is ``http://``, as in kubectl. An ``http://`` server gets none of the
user's credentials (kubectl's rule: they are only read for TLS); impersonation still applies.
The user entry itself is read by kubeuser.py.

Every problem is a :class:`KubeConfigError` with a one-line message naming the file.
The YAML is bounded: at most 4 MiB, no aliases (a "billion laughs" file is refused
before it expands), parsed with PyYAML's safe loader.
"""
from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field

from debugkit.core.files import read_capped
from debugkit.runtimes.kubernetes.kubeuser import (  # noqa: F401 - re-exported: the package's names
    EXEC_API_VERSIONS,
    ExecConfig,
    Impersonation,
    KubeConfigError,
    OIDCConfig,
    check_impersonation,
    field_b64 as _b64,
    field_bool as _bool,
    field_path as _path,
    field_str as _str,
    parse_user,
)


class ContextNotFound(KubeConfigError):
    """The context named with --context is not in the configuration: a flag's value, not a
    broken file."""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_KUBECONFIG_BYTES = 4 << 20
# Where the in-cluster service-account credentials live (tests point these elsewhere).
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_NAMESPACE = "default"
EXEC_EXTENSION = "client.authentication.k8s.io/exec"


@dataclass(frozen=True)
class ClusterAuth:
    """Everything needed to connect to one API server as one user."""

    server: str
    namespace: str = DEFAULT_NAMESPACE
    namespace_set: bool = False   # the context (or the service account) named it; False: the default
    context: str | None = None
    ca_file: str | None = None
    ca_data: bytes | None = None  # PEM
    insecure: bool = False
    tls_server_name: str | None = None
    client_cert_file: str | None = None
    client_cert_data: bytes | None = None  # PEM
    client_key_file: str | None = None
    client_key_data: bytes | None = None  # PEM
    token: str | None = None
    token_file: str | None = None
    username: str | None = None
    password: str | None = None
    exec_config: ExecConfig | None = None
    oidc: OIDCConfig | None = None
    impersonation: Impersonation = field(default_factory=Impersonation)
    server_userinfo: tuple[str, str] | None = None  # user:password@ from the server URL
    proxy_url: str | None = None
    withheld: tuple[str, ...] = ()  # the user's credentials not used because the server is http://
    cluster: str | None = None  # names in the kubeconfig, for messages
    user: str | None = None
    source: str | None = None  # the file (or "in-cluster") the context came from
    in_cluster: bool = False

    def __repr__(self) -> str:  # never print secrets
        return (f"ClusterAuth(server={self.server!r}, context={self.context!r}, namespace={self.namespace!r}, "
                f"user={self.user!r}, source={self.source!r})")


# -- discovery -------------------------------------------------------------------------------

def _env_paths() -> list[str] | None:
    value = os.environ.get("KUBECONFIG")
    if not value:
        return None
    seen: list[str] = []
    for part in value.split(os.pathsep):
        if part and part not in seen:
            seen.append(part)
    return seen or None


def _home_config() -> str:
    return os.path.join(os.path.expanduser("~"), ".kube", "config")


def _in_cluster_possible() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST") and os.environ.get("KUBERNETES_SERVICE_PORT")
                and os.path.exists(os.path.join(SERVICE_ACCOUNT_DIR, "token")))


def config_available(kubeconfig: str | None = None) -> bool:
    """Is there anything to load? Cheap: environment and file existence only, no parsing."""
    if kubeconfig:
        return True
    paths = _env_paths()
    if paths:
        return any(os.path.exists(p) for p in paths) or _in_cluster_possible()
    return os.path.exists(_home_config()) or _in_cluster_possible()


# -- reading one file ------------------------------------------------------------------------

def _yaml_loader():
    import yaml

    class _BoundedLoader(yaml.SafeLoader):
        """SafeLoader that refuses aliases, so a small file cannot expand into a huge one."""

        def compose_node(self, parent, index):  # noqa: D401 - PyYAML hook
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, "YAML aliases (*name) are not allowed in a kubeconfig", event.start_mark)
            return super().compose_node(parent, index)

    return yaml, _BoundedLoader


def _parse(path: str, raw: bytes) -> dict:
    if b"\x00" in raw:
        raise KubeConfigError(f"{path}: not a kubeconfig (binary data)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise KubeConfigError(f"{path}: not a kubeconfig (not UTF-8 text)") from None
    if not text.strip():
        return {}
    if text.lstrip().startswith("{"):  # JSON is YAML too, and json parses it without importing yaml
        import json

        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            return data
    yaml, loader = _yaml_loader()
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(exc.problem or exc.context or "invalid").split())
        raise KubeConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise KubeConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise KubeConfigError(f"{path}: invalid YAML: nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise KubeConfigError(f"{path}: not a kubeconfig (the top level is a {type(data).__name__}, not a mapping)")
    return data


def _read(path: str, *, required: bool) -> dict | None:
    try:
        raw = read_capped(path, MAX_KUBECONFIG_BYTES)
    except IsADirectoryError:
        raise KubeConfigError(f"{path}: is a directory, not a kubeconfig file") from None
    except OSError as exc:
        raise KubeConfigError(f"{path}: cannot read kubeconfig: {exc.strerror or exc}") from None
    if raw is None:
        if required:
            raise KubeConfigError(f"{path}: kubeconfig file does not exist")
        return None
    if len(raw) > MAX_KUBECONFIG_BYTES:
        raise KubeConfigError(f"{path}: kubeconfig larger than {MAX_KUBECONFIG_BYTES >> 20} MiB")
    return _parse(path, raw)


class _Entry:
    __slots__ = ("body", "source")

    def __init__(self, body: dict, source: str):
        self.body = body
        self.source = source


class _Merged:
    """The merge of one or more kubeconfig files, with the file each entry came from."""

    def __init__(self) -> None:
        self.clusters: dict[str, _Entry] = {}
        self.users: dict[str, _Entry] = {}
        self.contexts: dict[str, _Entry] = {}
        self.current_context: str | None = None
        self.current_source: str | None = None
        self.files: list[str] = []

    @property
    def empty(self) -> bool:
        return not (self.clusters or self.users or self.contexts or self.current_context)

    def add(self, path: str, data: dict) -> None:
        self.files.append(path)
        for key, inner, target in (("clusters", "cluster", self.clusters), ("users", "user", self.users),
                                   ("contexts", "context", self.contexts)):
            items = data.get(key)
            if items is None:
                continue
            if not isinstance(items, list):
                raise KubeConfigError(f"{path}: {key!r} must be a list")
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                    raise KubeConfigError(f"{path}: every entry of {key!r} needs a name")
                body = item.get(inner)
                if body is None:
                    body = {}
                if not isinstance(body, dict):
                    raise KubeConfigError(f"{path}: {key} entry {item['name']!r}: {inner!r} must be a mapping")
                target.setdefault(item["name"], _Entry(body, path))  # the first file wins
        current = data.get("current-context")
        if current is not None and not isinstance(current, str):
            raise KubeConfigError(f"{path}: current-context must be a string")
        if current and self.current_context is None:
            self.current_context, self.current_source = current, path

    def describe(self) -> str:
        return self.files[0] if len(self.files) == 1 else "KUBECONFIG (" + os.pathsep.join(self.files) + ")"


# -- load --------------------------------------------------------------------------------------

def load(kubeconfig: str | None = None, context: str | None = None, *,
         impersonate: Impersonation | None = None) -> ClusterAuth:
    """The connection settings for ``context`` (default: current-context), kubectl's way;
    ``impersonate``: kubectl's --as, --as-group and --as-uid, over the kubeconfig's."""
    merged = _Merged()
    if kubeconfig:
        merged.add(kubeconfig, _read(kubeconfig, required=True) or {})
    else:
        paths = _env_paths()
        for path in paths or [_home_config()]:
            data = _read(path, required=False)
            if data is not None:
                merged.add(path, data)
        if merged.empty and not context and _in_cluster_possible():
            return load_in_cluster(impersonate=impersonate)
        if not merged.files:
            if paths:
                raise KubeConfigError(f"none of the KUBECONFIG files exist ({os.pathsep.join(paths)}) "
                                      "and this is not a pod with a service account")
            raise KubeConfigError(f"no Kubernetes configuration: {_home_config()} does not exist, KUBECONFIG is "
                                  "not set and this is not a pod with a service account")
    return _resolve(merged, context, impersonate)


def context_names(kubeconfig: str | None = None) -> list[str]:
    """The context names the files ``load`` would read define (sorted; [] when none).
    For shell completion of --context: no connection, no credentials are touched."""
    merged = _Merged()
    if kubeconfig:
        merged.add(kubeconfig, _read(kubeconfig, required=True) or {})
    else:
        for path in _env_paths() or [_home_config()]:
            data = _read(path, required=False)
            if data is not None:
                merged.add(path, data)
    return sorted(merged.contexts)


def redact(text: str) -> str:
    """A URL (or a message quoting one) with every ``user:password@`` replaced by ``***@``."""
    import re

    return re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"]*@", r"\1***@", text)


def server_url(server: str, where: str) -> tuple[str, tuple[str, str] | None]:
    """(the server URL as requests use it, the user:password it carried or None).

    As kubectl: a server without a scheme is http://; the query and fragment are dropped.
    Refused with one line: a scheme other than http(s), control characters or whitespace,
    a malformed host (``http://[::1``), a port out of 1-65535, no host."""
    shown = redact(server)
    if any(ord(c) < 0x21 or 0x7F <= ord(c) < 0xA0 for c in server):
        raise KubeConfigError(f"{where}: server {shown!r} contains whitespace or control characters")
    if "://" not in server:
        server = "http://" + server
    try:
        parts = urllib.parse.urlsplit(server)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise KubeConfigError(f"{where}: server {shown!r} is not a valid URL ({str(exc).lower()})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise KubeConfigError(f"{where}: server {shown!r} must be an http:// or https:// URL")
    if not host:
        raise KubeConfigError(f"{where}: server {shown!r} has no host")
    if port == 0:
        raise KubeConfigError(f"{where}: server {shown!r}: port 0 is not a port to connect to")
    userinfo = None
    netloc = parts.netloc
    if "@" in netloc:
        raw, _, netloc = netloc.rpartition("@")
        user, _, password = raw.partition(":")
        userinfo = (urllib.parse.unquote(user), urllib.parse.unquote(password))
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}", userinfo


def _proxy_url(body: dict, where: str) -> str | None:
    text = _str(body, "proxy-url", where)
    if text is None:
        return None
    from debugkit.runtimes.kubernetes.proxy import ProxyConfigError, parse

    try:
        parse(text, source="proxy-url")
    except ProxyConfigError as exc:
        raise KubeConfigError(f"{where}: {exc}") from None
    return text


def _exec_extension(body: dict, where: str):
    """The cluster's ``client.authentication.k8s.io/exec`` extension (for provideClusterInfo)."""
    extensions = body.get("extensions") or []
    if not isinstance(extensions, list):
        raise KubeConfigError(f"{where}: 'extensions' must be a list")
    for item in extensions:
        if isinstance(item, dict) and item.get("name") == EXEC_EXTENSION:
            return item.get("extension")
    return None


def _resolve(merged: _Merged, context: str | None, impersonate: Impersonation | None) -> ClusterAuth:
    where = merged.describe()
    name = context or merged.current_context
    if not name:
        raise KubeConfigError(f"{where}: no current-context is set; choose a context")
    ctx = merged.contexts.get(name)
    if ctx is None:
        raise (ContextNotFound if context else KubeConfigError)(f"{where}: context {name!r} not found")
    ctx_where = f"{ctx.source}: context {name!r}"
    cluster_name = _str(ctx.body, "cluster", ctx_where)
    if not cluster_name:
        raise KubeConfigError(f"{ctx_where} names no cluster")
    cluster = merged.clusters.get(cluster_name)
    if cluster is None:
        raise KubeConfigError(f"{ctx_where}: cluster {cluster_name!r} not found")
    user_name = _str(ctx.body, "user", ctx_where)
    user = None
    if user_name:
        user = merged.users.get(user_name)
        if user is None:
            raise KubeConfigError(f"{ctx_where}: user {user_name!r} not found")
    named = _str(ctx.body, "namespace", ctx_where)
    namespace = named or DEFAULT_NAMESPACE

    cw = f"{cluster.source}: cluster {cluster_name!r}"
    cbase = os.path.dirname(os.path.abspath(cluster.source))
    server = _str(cluster.body, "server", cw)
    if not server:
        raise KubeConfigError(f"{cw} has no server")
    server, userinfo = server_url(server, cw)
    kwargs: dict[str, Any] = dict(
        server=server, namespace=namespace, namespace_set=bool(named), context=name, cluster=cluster_name,
        user=user_name, source=ctx.source, server_userinfo=userinfo,
        ca_file=_path(cluster.body, "certificate-authority", cw, cbase),
        ca_data=_b64(cluster.body, "certificate-authority-data", cw),
        insecure=_bool(cluster.body, "insecure-skip-tls-verify", cw),
        tls_server_name=_str(cluster.body, "tls-server-name", cw),
        proxy_url=_proxy_url(cluster.body, cw),
    )
    impersonation = Impersonation()
    if user is not None:
        uw = f"{user.source}: user {user_name!r}"
        credentials = parse_user(user.body, where=uw, base=os.path.dirname(os.path.abspath(user.source)),
                                 source=user.source, name=user_name, cluster_extension=_exec_extension(cluster.body, cw))
        impersonation = credentials.pop("impersonation")
        kwargs.update(credentials)
    kwargs["impersonation"] = impersonation.merged(impersonate)
    check_impersonation(kwargs["impersonation"], f"{user.source}: user {user_name!r}" if user else where)
    if server.startswith("http://"):
        kwargs.update(_withheld(kwargs))
    return ClusterAuth(**kwargs)


_CREDENTIAL_FIELDS = {"token": "token", "token_file": "tokenFile", "username": "username", "password": "password",
                      "client_cert_file": "client-certificate", "client_cert_data": "client-certificate-data",
                      "client_key_file": "client-key", "client_key_data": "client-key-data",
                      "exec_config": "exec", "oidc": "auth-provider", "server_userinfo": "the server URL's user:password"}


def _withheld(kwargs: dict) -> dict:
    """kubectl reads a user's credentials only for a TLS server: for http:// every one is
    dropped (and named, for the warning the client prints)."""
    withheld = tuple(dict.fromkeys(label for key, label in _CREDENTIAL_FIELDS.items() if kwargs.get(key)))
    cleared = {key: None for key in _CREDENTIAL_FIELDS}
    return {**cleared, "withheld": withheld}


def load_in_cluster(*, impersonate: Impersonation | None = None) -> ClusterAuth:
    """The pod's service account, as client-go's InClusterConfig reads it; the namespace
    from POD_NAMESPACE when set, else the service account's namespace file (kubectl)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeConfigError("in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")
    token_file = os.path.join(SERVICE_ACCOUNT_DIR, "token")
    if not os.path.exists(token_file):
        raise KubeConfigError(f"in-cluster: {token_file} does not exist")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    server, _ = server_url(f"https://{host}:{port}", "in-cluster (KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT)")
    namespace = os.environ.get("POD_NAMESPACE") or ""
    if not namespace:
        try:
            with open(os.path.join(SERVICE_ACCOUNT_DIR, "namespace"), "rb") as fh:
                namespace = fh.read(256).decode("utf-8", "replace").strip()
        except OSError:
            pass
    impersonation = Impersonation().merged(impersonate)
    check_impersonation(impersonation, "in-cluster")
    ca_file = os.path.join(SERVICE_ACCOUNT_DIR, "ca.crt")
    return ClusterAuth(server=server, namespace=namespace or DEFAULT_NAMESPACE, namespace_set=bool(namespace), context=None,
                       ca_file=ca_file if os.path.exists(ca_file) else None, token_file=token_file,
                       impersonation=impersonation, source="in-cluster", in_cluster=True)
