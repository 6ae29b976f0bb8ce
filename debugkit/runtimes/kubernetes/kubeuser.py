"""A kubeconfig's ``users[].user`` entry, read as client-go reads it, and the field readers
the cluster half (kubeconfig.py) shares.

What a user entry may hold: ``token`` and ``tokenFile``; ``username``/``password``; a client
certificate and key (files or base64 data); an ``exec`` credential plugin; the ``oidc``
``auth-provider`` (``id-token``, refreshed with ``refresh-token`` from ``idp-issuer-url``);
and impersonation (``as``, ``as-uid``, ``as-groups``, ``as-user-extra``), which kubectl's
``--as``, ``--as-group`` and ``--as-uid`` override. The ``gcp`` and ``azure`` providers are
refused, as kubectl refuses them, with the plugin that replaced each.

Every problem is a :class:`KubeConfigError` whose message names the file and the entry,
and never contains a credential.
"""
from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
INTERACTIVE_MODES = ("Never", "IfAvailable", "Always")
# client-go's messages for the providers kubectl no longer has, with their replacements.
REMOVED_PROVIDERS = {
    "gcp": "the gcp auth-provider was removed from kubectl; use the gke-gcloud-auth-plugin exec credential plugin "
           "instead (https://cloud.google.com/blog/products/containers-kubernetes/kubectl-auth-changes-in-gke)",
    "azure": "the azure auth-provider was removed from kubectl; use the kubelogin exec credential plugin instead "
             "(https://go.microsoft.com/fwlink/?linkid=2227102)",
}
# Characters net/http allows in a header name (RFC 7230 tokens); others are %-escaped in an
# Impersonate-Extra-<key> header, as client-go's headerKeyEscape does.
_HEADER_KEY_BYTES = frozenset(b"!#$&'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`abcdefghijklmnopqrstuvwxyz|~")


class KubeConfigError(Exception):
    """The Kubernetes configuration cannot be used; the message is one line and names the file."""


@dataclass(frozen=True)
class ExecConfig:
    """A ``users[].user.exec`` credential plugin."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    api_version: str = "client.authentication.k8s.io/v1"
    install_hint: str | None = None
    provide_cluster_info: bool = False
    interactive_mode: str = "IfAvailable"
    cluster_config: Any = None  # the cluster's client.authentication.k8s.io/exec extension
    source: str | None = None  # the kubeconfig file that defined it, for messages


class _Value:
    """A small immutable value: the fields in __slots__, given by keyword. A plain class,
    not a dataclass: each dataclass costs about 1 ms of import, on every command."""

    __slots__ = ()

    def __init__(self, **fields):
        for name in self.__slots__:
            object.__setattr__(self, name, fields.pop(name, self._DEFAULTS.get(name)))
        if fields:
            raise TypeError(f"unknown fields {sorted(fields)}")

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other):
        return type(other) is type(self) and other._values() == self._values()

    def __hash__(self):
        return hash(self._values())

    def replace(self, **changes):
        return type(self)(**{**dict(zip(self.__slots__, self._values())), **changes})


class OIDCConfig(_Value):
    """``auth-provider: {name: oidc}``: an ID token, refreshed from the issuer when it expires.
    Fields: issuer_url, client_id, client_secret, id_token, refresh_token, ca_file, ca_data,
    user (the users[] entry, where refreshed tokens are written back), source (its file)."""

    __slots__ = ("issuer_url", "client_id", "client_secret", "id_token", "refresh_token", "ca_file", "ca_data",
                 "user", "source")
    _DEFAULTS: dict = {}

    def __repr__(self) -> str:  # never the tokens or the secret
        return f"OIDCConfig(issuer_url={self.issuer_url!r}, client_id={self.client_id!r}, user={self.user!r})"


class Impersonation(_Value):
    """Who the API server should treat the request as (the Impersonate-* headers): user, uid,
    groups (a tuple), extra (a tuple of (key, tuple of values))."""

    __slots__ = ("user", "uid", "groups", "extra")
    _DEFAULTS = {"groups": (), "extra": ()}

    def __repr__(self) -> str:
        return f"Impersonation(user={self.user!r}, uid={self.uid!r}, groups={self.groups!r}, extra={self.extra!r})"

    def __bool__(self) -> bool:
        return bool(self.user or self.uid or self.groups or self.extra)

    def headers(self) -> list[tuple[str, str]]:
        """The headers client-go's impersonating round tripper adds, in its order."""
        out = [("Impersonate-User", self.user or "")]
        if self.uid:
            out.append(("Impersonate-Uid", self.uid))
        out += [("Impersonate-Group", group) for group in self.groups]
        for key, values in self.extra:
            escaped = "".join(chr(b) if b in _HEADER_KEY_BYTES else f"%{b:02X}" for b in key.encode())
            out += [(f"Impersonate-Extra-{escaped}", value) for value in values]
        return out

    def merged(self, override: Impersonation | None) -> Impersonation:
        """kubectl's flags over the kubeconfig: each field given on the command line wins."""
        if not override:
            return self
        return Impersonation(user=override.user or self.user, uid=override.uid or self.uid,
                             groups=override.groups or self.groups, extra=self.extra)


# -- field readers ------------------------------------------------------------------------------

def field_str(body: dict, key: str, where: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise KubeConfigError(f"{where}: {key!r} must be a string")
    return value


def field_bool(body: dict, key: str, where: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise KubeConfigError(f"{where}: {key!r} must be true or false")
    return value


def field_b64(body: dict, key: str, where: str) -> bytes | None:
    value = field_str(body, key, where)
    if value is None:
        return None
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise KubeConfigError(f"{where}: {key!r} is not valid base64") from None


def field_path(body: dict, key: str, where: str, base: str) -> str | None:
    value = field_str(body, key, where)
    if value is None:
        return None
    value = os.path.expanduser(value)
    return value if os.path.isabs(value) else os.path.normpath(os.path.join(base, value))


def header_safe(value: str, what: str, where: str) -> str:
    """A credential that goes into an HTTP header: surrounding whitespace stripped (a YAML
    ``token: |`` block ends with a newline), and refused, without echoing it, when a control
    character is left inside."""
    value = value.strip()
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise KubeConfigError(f"{where}: the {what} contains a line break or a control character")
    return value


# -- the user entry -------------------------------------------------------------------------------

def parse_user(body: dict, *, where: str, base: str, source: str, name: str,
               cluster_extension: Any = None) -> dict:
    """ClusterAuth keyword arguments for one user entry (``where`` names it in messages)."""
    token = field_str(body, "token", where)
    out: dict[str, Any] = dict(
        client_cert_file=field_path(body, "client-certificate", where, base),
        client_cert_data=field_b64(body, "client-certificate-data", where),
        client_key_file=field_path(body, "client-key", where, base),
        client_key_data=field_b64(body, "client-key-data", where),
        token=header_safe(token, "token", where) if token else None,
        token_file=field_path(body, "tokenFile", where, base),
        username=field_str(body, "username", where),
        password=field_str(body, "password", where),
        impersonation=_impersonation(body, where),
    )
    if out["token"] == "":
        out["token"] = None
    provider = body.get("auth-provider")
    if body.get("exec") is not None:
        if provider:
            raise KubeConfigError(f"{where}: an exec plugin and an auth-provider cannot be used together")
        out["exec_config"] = _exec_config(body["exec"], where, base, source, cluster_extension)
    elif provider:
        out["oidc"] = _auth_provider(provider, where, base, source, name)
    has_cert = out["client_cert_file"] or out["client_cert_data"]
    has_key = out["client_key_file"] or out["client_key_data"]
    if bool(has_cert) != bool(has_key):
        raise KubeConfigError(f"{where}: a client certificate needs a client key, and a key a certificate")
    return out


def _impersonation(body: dict, where: str) -> Impersonation:
    groups = body.get("as-groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise KubeConfigError(f"{where}: 'as-groups' must be a list of strings")
    extra_body = body.get("as-user-extra") or {}
    if not isinstance(extra_body, dict):
        raise KubeConfigError(f"{where}: 'as-user-extra' must be a mapping of lists of strings")
    extra = []
    for key, values in extra_body.items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(key, str) or not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise KubeConfigError(f"{where}: 'as-user-extra' must be a mapping of lists of strings")
        extra.append((key, tuple(values)))
    found = Impersonation(user=field_str(body, "as", where), uid=field_str(body, "as-uid", where),
                          groups=tuple(groups), extra=tuple(sorted(extra)))
    check_impersonation(found, where)
    return found


def check_impersonation(found: Impersonation, where: str) -> None:
    """client-go's rule: a UID, groups or extra need a user to impersonate; and every
    value goes into a header."""
    if (found.uid or found.groups or found.extra) and not found.user:
        raise KubeConfigError(f"{where}: impersonating a uid, groups or user-extra needs a user to impersonate "
                              "(as, or --as)")
    for _name, value in found.headers():
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise KubeConfigError(f"{where}: an impersonation value contains a line break or a control character")


def _exec_config(body: Any, where: str, base: str, source: str, cluster_extension: Any) -> ExecConfig:
    if not isinstance(body, dict):
        raise KubeConfigError(f"{where}: 'exec' must be a mapping")
    command = field_str(body, "command", where)
    if not command:
        raise KubeConfigError(f"{where}: exec needs a command")
    if os.sep in command and not os.path.isabs(os.path.expanduser(command)):
        command = os.path.normpath(os.path.join(base, command))  # kubectl: only path-like commands
    args = body.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
        raise KubeConfigError(f"{where}: exec args must be a list of strings")
    env = []
    for item in body.get("env") or []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise KubeConfigError(f"{where}: exec env entries need a name and a value")
        env.append((item["name"], "" if item.get("value") is None else str(item["value"])))
    api_version = field_str(body, "apiVersion", where) or ""
    if api_version not in EXEC_API_VERSIONS:
        raise KubeConfigError(f"{where}: exec apiVersion {api_version or '(none)'!r} is not supported "
                              f"(use one of {', '.join(EXEC_API_VERSIONS)})")
    # client-go defaults v1beta1 to IfAvailable and requires it for v1; debugkit takes
    # IfAvailable for v1 too (a deliberate difference: see docs/kubernetes.md).
    mode = field_str(body, "interactiveMode", where) or "IfAvailable"
    if mode not in INTERACTIVE_MODES:
        raise KubeConfigError(f"{where}: exec interactiveMode {mode!r} is not one of {', '.join(INTERACTIVE_MODES)}")
    return ExecConfig(command=command, args=tuple(str(a) for a in args), env=tuple(env), api_version=api_version,
                      install_hint=field_str(body, "installHint", where),
                      provide_cluster_info=field_bool(body, "provideClusterInfo", where),
                      interactive_mode=mode, cluster_config=cluster_extension, source=source)


def _auth_provider(provider: Any, where: str, base: str, source: str, name: str) -> OIDCConfig:
    if not isinstance(provider, dict) or not isinstance(provider.get("name"), str):
        raise KubeConfigError(f"{where}: 'auth-provider' needs a name")
    kind = provider["name"]
    if kind in REMOVED_PROVIDERS:
        raise KubeConfigError(f"{where}: {REMOVED_PROVIDERS[kind]}")
    if kind != "oidc":
        raise KubeConfigError(f"{where}: auth-provider {kind!r} is not supported (only oidc; or use an exec "
                              "credential plugin such as kubelogin)")
    cfg = provider.get("config") or {}
    if not isinstance(cfg, dict):
        raise KubeConfigError(f"{where}: the oidc auth-provider's 'config' must be a mapping")
    pw = f"{where}: auth-provider oidc"
    issuer = field_str(cfg, "idp-issuer-url", pw)
    client_id = field_str(cfg, "client-id", pw)
    if not issuer:
        raise KubeConfigError(f"{pw}: idp-issuer-url is missing")
    if not client_id:
        raise KubeConfigError(f"{pw}: client-id is missing")
    id_token = field_str(cfg, "id-token", pw)
    refresh_token = field_str(cfg, "refresh-token", pw)
    return OIDCConfig(issuer_url=issuer, client_id=client_id, client_secret=field_str(cfg, "client-secret", pw),
                      id_token=header_safe(id_token, "id-token", pw) if id_token else None,
                      refresh_token=refresh_token.strip() if refresh_token else None,
                      ca_file=field_path(cfg, "idp-certificate-authority", pw, base),
                      ca_data=field_b64(cfg, "idp-certificate-authority-data", pw), user=name, source=source)
