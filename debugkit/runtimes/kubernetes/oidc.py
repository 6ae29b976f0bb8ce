"""The ``oidc`` auth-provider, as client-go's plugin/pkg/client/auth/oidc does it.

The ``id-token`` is the bearer token while it is valid: its JWT ``exp`` is more than 10 s
away. Otherwise, with a ``refresh-token``: the issuer's token endpoint comes from
``{idp-issuer-url}/.well-known/openid-configuration``; a ``refresh_token`` grant is posted
there with the client's id and secret (HTTP basic first, then in the form, as Go's oauth2
library detects); the answer must hold an ``id_token``. The new ``id-token``, and the new
``refresh-token`` if the issuer rotated it, are written back into the kubeconfig file that
defines the user, as kubectl does (an issuer that rotates refresh tokens would otherwise
lock the user out at the next refresh).

Differences from client-go, on purpose: the issuer must be ``https://`` (a refresh token and
a client secret never go over plain http); answers are bounded (64 KiB); the file is
rewritten atomically with its mode kept.
"""
from __future__ import annotations

import base64
import json
import time

from debugkit.runtimes.kubernetes.kubeuser import KubeConfigError, OIDCConfig

EXPIRY_DELTA = 10.0
MAX_ANSWER = 64 << 10
TIMEOUT = 30.0


class OIDCError(KubeConfigError):
    """The ID token cannot be used or refreshed (the message never holds a token)."""


def token_valid(id_token: str, now: float | None = None) -> bool:
    """client-go's idTokenExpired, inverted: exp is more than EXPIRY_DELTA seconds ahead."""
    parts = id_token.split(".")
    if len(parts) != 3:
        raise OIDCError("the id-token is not a JWT")
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
        exp = float(claims["exp"])
    except (ValueError, KeyError, TypeError):
        raise OIDCError("the id-token's claims cannot be read (no numeric exp)") from None
    return (time.time() if now is None else now) + EXPIRY_DELTA < exp


def refresh(cfg: OIDCConfig, *, user_agent: str) -> tuple[str, str | None]:
    """(new id-token, new refresh-token or None when unchanged) from the issuer."""
    where = f"{cfg.source}: user {cfg.user!r}: auth-provider oidc"
    if not cfg.refresh_token:
        raise OIDCError(f"{where}: the id-token has expired and there is no refresh-token to renew it "
                        "(log in again with your OIDC login tool)")
    issuer = cfg.issuer_url.rstrip("/")
    if not issuer.lower().startswith("https://"):
        raise OIDCError(f"{where}: idp-issuer-url must be https:// (the refresh token is never sent over plain http)")
    status, body = _request("GET", issuer + "/.well-known/openid-configuration", None, {}, cfg, user_agent, where)
    if status != 200:
        raise OIDCError(f"{where}: the issuer's discovery document answered {status}")
    try:
        token_url = json.loads(body)["token_endpoint"]
    except (ValueError, KeyError, TypeError):
        raise OIDCError(f"{where}: the issuer's discovery document has no token_endpoint") from None
    if not isinstance(token_url, str) or not token_url.lower().startswith("https://"):
        raise OIDCError(f"{where}: the issuer's token_endpoint is not an https:// URL")
    import urllib.parse

    form = {"grant_type": "refresh_token", "refresh_token": cfg.refresh_token}
    basic = base64.b64encode(f"{urllib.parse.quote(cfg.client_id, safe='')}:"
                             f"{urllib.parse.quote(cfg.client_secret or '', safe='')}".encode()).decode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, body = _request("POST", token_url, urllib.parse.urlencode(form).encode(),
                            {**headers, "Authorization": f"Basic {basic}"}, cfg, user_agent, where)
    if not 200 <= status < 300:  # Go's oauth2 AuthStyleAutoDetect: then the credentials in the form
        form.update(client_id=cfg.client_id, **({"client_secret": cfg.client_secret} if cfg.client_secret else {}))
        status, body = _request("POST", token_url, urllib.parse.urlencode(form).encode(), headers, cfg, user_agent,
                                where)
    if not 200 <= status < 300:
        raise OIDCError(f"{where}: the issuer refused to refresh the token ({status}{_oauth_error(body)}); "
                        "log in again with your OIDC login tool")
    answer = _token_answer(body)
    if not answer.get("access_token"):
        raise OIDCError(f"{where}: the issuer's token answer has no access_token")
    id_token = answer.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise OIDCError(f"{where}: the token answer did not contain an id_token (was the openid scope requested "
                        "at login?)")
    new_refresh = answer.get("refresh_token")
    changed = new_refresh if isinstance(new_refresh, str) and new_refresh and new_refresh != cfg.refresh_token else None
    return id_token, changed


def _oauth_error(body: bytes) -> str:
    try:
        error = _token_answer(body).get("error")
    except OIDCError:
        return ""
    return f": {''.join(c for c in str(error) if c.isalnum() or c in '_-')[:60]}" if error else ""


def _token_answer(body: bytes) -> dict:
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            return data
    except ValueError:
        pass
    import urllib.parse

    try:  # an answer may be form-encoded (RFC 6749 issuers of old; oauth2 reads both)
        return {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("ascii")).items()}
    except (UnicodeDecodeError, ValueError):
        raise OIDCError("the issuer's token answer is neither JSON nor a form") from None


def _request(method: str, url: str, body: bytes | None, headers: dict, cfg: OIDCConfig, user_agent: str,
             where: str) -> tuple[int, bytes]:
    import http.client
    import socket
    import ssl
    import urllib.parse

    from debugkit.runtimes.kubernetes import proxy as proxies

    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    ctx = ssl.create_default_context()
    try:
        if cfg.ca_data:
            ctx = ssl.create_default_context(cadata=cfg.ca_data.decode("ascii", "replace"))
        elif cfg.ca_file:
            from debugkit.core.files import read_regular

            ctx = ssl.create_default_context(cadata=read_regular(cfg.ca_file, 1 << 20).decode("ascii", "replace"))
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise OIDCError(f"{where}: the idp-certificate-authority cannot be used: "
                        f"{getattr(exc, 'strerror', None) or exc}") from None
    try:
        chosen = proxies.from_environment("https", host, port)
        if chosen is not None:
            sock = proxies.dial(chosen, host, port, timeout=TIMEOUT, user_agent=user_agent)
        else:
            sock = socket.create_connection((host, port), timeout=TIMEOUT)
        conn = http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=ctx)
        conn.sock = ctx.wrap_socket(sock, server_hostname=host)
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request(method, target, body=body, headers={"User-Agent": user_agent, "Accept": "application/json",
                                                             **headers})
            resp = conn.getresponse()
            data = resp.read(MAX_ANSWER + 1)
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, proxies.ProxyConfigError) as exc:
        raise OIDCError(f"{where}: cannot reach the issuer {parts.scheme}://{parts.netloc.rpartition('@')[2]}: "
                        f"{getattr(exc, 'strerror', None) or exc}") from None
    if len(data) > MAX_ANSWER:
        raise OIDCError(f"{where}: the issuer's answer is larger than {MAX_ANSWER >> 10} KiB")
    return resp.status, data


def persist(cfg: OIDCConfig, id_token: str, refresh_token: str | None) -> None:
    """Write the new tokens into the user's auth-provider config in cfg.source, as kubectl's
    persister does (the file is re-read, changed and replaced atomically)."""
    import os
    import tempfile

    import yaml

    where = f"{cfg.source}: user {cfg.user!r}"
    path = os.path.realpath(cfg.source)  # a symlinked kubeconfig stays a symlink, as kubectl leaves it
    try:
        with open(path, "rb") as fh:
            data = yaml.safe_load(fh.read(4 << 20))
        mode = os.stat(path).st_mode & 0o7777
    except (OSError, yaml.YAMLError) as exc:
        raise OIDCError(f"{where}: cannot re-read the kubeconfig to save the refreshed token: "
                        f"{getattr(exc, 'strerror', None) or exc.__class__.__name__}") from None
    entry = next((u for u in (data or {}).get("users") or [] if isinstance(u, dict) and u.get("name") == cfg.user),
                 None)
    provider = ((entry or {}).get("user") or {}).get("auth-provider") if isinstance(entry, dict) else None
    if not isinstance(provider, dict) or not isinstance(provider.get("config"), dict):
        raise OIDCError(f"{where}: the user's auth-provider is no longer in the file; the refreshed token is not saved")
    provider["config"]["id-token"] = id_token
    if refresh_token:
        provider["config"]["refresh-token"] = refresh_token
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".kubeconfig-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(data, fh, default_flow_style=False, sort_keys=False)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OIDCError(f"{where}: cannot save the refreshed token: {exc.strerror or exc}") from None
