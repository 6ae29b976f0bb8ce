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
defined the entry. The namespace is the context's, else ``"default"``.

Every problem is a :class:`KubeConfigError` with a one-line message naming the file.
The YAML is bounded: at most 4 MiB, no aliases (a "billion laughs" file is refused
before it expands), parsed with PyYAML's safe loader.
"""
from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

from debugkit.core.files import read_capped

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_KUBECONFIG_BYTES = 4 << 20
# Where the in-cluster service-account credentials live (tests point these elsewhere).
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_NAMESPACE = "default"
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


class KubeConfigError(Exception):
    """The Kubernetes configuration cannot be used; the message is one line and names the file."""


class ContextNotFound(KubeConfigError):
    """The context named with --context is not in the configuration: a flag's value, not a
    broken file."""


@dataclass(frozen=True)
class ExecConfig:
    """A ``users[].user.exec`` credential plugin."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    api_version: str = "client.authentication.k8s.io/v1"
    install_hint: str | None = None
    provide_cluster_info: bool = False
    interactive_mode: str | None = None
    source: str | None = None  # the kubeconfig file that defined it, for messages


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
    proxy_url: str | None = None
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


# -- field helpers ----------------------------------------------------------------------------

def _str(body: dict, key: str, where: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise KubeConfigError(f"{where}: {key!r} must be a string")
    return value


def _bool(body: dict, key: str, where: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise KubeConfigError(f"{where}: {key!r} must be true or false")
    return value


def _b64(body: dict, key: str, where: str) -> bytes | None:
    value = _str(body, key, where)
    if value is None:
        return None
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise KubeConfigError(f"{where}: {key!r} is not valid base64") from None


def _path(body: dict, key: str, where: str, base: str) -> str | None:
    value = _str(body, key, where)
    if value is None:
        return None
    value = os.path.expanduser(value)
    return value if os.path.isabs(value) else os.path.normpath(os.path.join(base, value))


def _exec_config(body: dict, where: str, base: str, source: str) -> ExecConfig:
    if not isinstance(body, dict):
        raise KubeConfigError(f"{where}: 'exec' must be a mapping")
    command = _str(body, "command", where)
    if not command:
        raise KubeConfigError(f"{where}: exec needs a command")
    if os.sep in command and not os.path.isabs(os.path.expanduser(command)):
        command = os.path.normpath(os.path.join(base, command))  # kubectl: only path-like commands
    args = body.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
        raise KubeConfigError(f"{where}: exec args must be a list of strings")
    env = []
    for item in body.get("env") or []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise KubeConfigError(f"{where}: exec env entries need a name and a value")
        env.append((item["name"], "" if item.get("value") is None else str(item["value"])))
    api_version = _str(body, "apiVersion", where) or ""
    if api_version not in EXEC_API_VERSIONS:
        raise KubeConfigError(f"{where}: exec apiVersion {api_version or '(none)'!r} is not supported "
                              f"(use one of {', '.join(EXEC_API_VERSIONS)})")
    return ExecConfig(command=command, args=tuple(str(a) for a in args), env=tuple(env), api_version=api_version,
                      install_hint=_str(body, "installHint", where),
                      provide_cluster_info=_bool(body, "provideClusterInfo", where),
                      interactive_mode=_str(body, "interactiveMode", where), source=source)


# -- load --------------------------------------------------------------------------------------

def load(kubeconfig: str | None = None, context: str | None = None) -> ClusterAuth:
    """The connection settings for ``context`` (default: current-context), kubectl's way."""
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
            return load_in_cluster()
        if not merged.files:
            if paths:
                raise KubeConfigError(f"none of the KUBECONFIG files exist ({os.pathsep.join(paths)}) "
                                      "and this is not a pod with a service account")
            raise KubeConfigError(f"no Kubernetes configuration: {_home_config()} does not exist, KUBECONFIG is "
                                  "not set and this is not a pod with a service account")
    return _resolve(merged, context)


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


def _resolve(merged: _Merged, context: str | None) -> ClusterAuth:
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
    if not server.startswith(("https://", "http://")):
        if "://" in server:
            raise KubeConfigError(f"{cw}: server {server!r} must be an http:// or https:// URL")
        server = "https://" + server  # kubectl accepts a bare host:port
    kwargs: dict[str, Any] = dict(
        server=server.rstrip("/"), namespace=namespace, namespace_set=bool(named), context=name, cluster=cluster_name, user=user_name,
        source=ctx.source,
        ca_file=_path(cluster.body, "certificate-authority", cw, cbase),
        ca_data=_b64(cluster.body, "certificate-authority-data", cw),
        insecure=_bool(cluster.body, "insecure-skip-tls-verify", cw),
        tls_server_name=_str(cluster.body, "tls-server-name", cw),
        proxy_url=_str(cluster.body, "proxy-url", cw),
    )
    if kwargs["proxy_url"] and not kwargs["proxy_url"].startswith("http://"):
        raise KubeConfigError(f"{cw}: proxy-url {kwargs['proxy_url']!r} is not supported (only http:// proxies)")
    if user is not None:
        uw = f"{user.source}: user {user_name!r}"
        ubase = os.path.dirname(os.path.abspath(user.source))
        body = user.body
        if body.get("auth-provider"):
            provider = body["auth-provider"].get("name", "?") if isinstance(body["auth-provider"], dict) else "?"
            raise KubeConfigError(f"{uw}: auth-provider {provider!r} is not supported; use an exec credential "
                                  "plugin instead (for example kubelogin, gke-gcloud-auth-plugin, aws eks get-token)")
        kwargs.update(
            client_cert_file=_path(body, "client-certificate", uw, ubase),
            client_cert_data=_b64(body, "client-certificate-data", uw),
            client_key_file=_path(body, "client-key", uw, ubase),
            client_key_data=_b64(body, "client-key-data", uw),
            token=_str(body, "token", uw),
            token_file=_path(body, "tokenFile", uw, ubase),
            username=_str(body, "username", uw),
            password=_str(body, "password", uw),
        )
        if body.get("exec") is not None:
            kwargs["exec_config"] = _exec_config(body["exec"], uw, ubase, user.source)
        has_cert = kwargs["client_cert_file"] or kwargs["client_cert_data"]
        has_key = kwargs["client_key_file"] or kwargs["client_key_data"]
        if bool(has_cert) != bool(has_key):
            raise KubeConfigError(f"{uw}: a client certificate needs a client key, and a key a certificate")
        unsupported = sorted(set(body) & {"as", "as-groups", "as-uid", "as-user-extra"})
        if unsupported:
            raise KubeConfigError(f"{uw}: impersonation ({', '.join(unsupported)}) is not supported")
    return ClusterAuth(**kwargs)


def load_in_cluster() -> ClusterAuth:
    """The pod's service account, as client-go's InClusterConfig reads it."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeConfigError("in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")
    token_file = os.path.join(SERVICE_ACCOUNT_DIR, "token")
    if not os.path.exists(token_file):
        raise KubeConfigError(f"in-cluster: {token_file} does not exist")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    namespace = DEFAULT_NAMESPACE
    try:
        with open(os.path.join(SERVICE_ACCOUNT_DIR, "namespace"), encoding="utf-8") as fh:
            namespace = fh.read(256).strip() or DEFAULT_NAMESPACE
    except OSError:
        pass
    ca_file = os.path.join(SERVICE_ACCOUNT_DIR, "ca.crt")
    return ClusterAuth(server=f"https://{host}:{port}", namespace=namespace, namespace_set=True, context=None,
                       ca_file=ca_file if os.path.exists(ca_file) else None, token_file=token_file,
                       source="in-cluster", in_cluster=True)
