"""Registry credentials for the engine, found the way the docker CLI finds them
(cli/config/configfile, cli/config/credentials, cli/command/registry.go).

`$DOCKER_CONFIG/config.json` (default `~/.docker`):
- ``credHelpers[registry]`` names the helper for that registry, else ``credsStore`` the
  helper for every registry; a helper is the program ``docker-credential-NAME`` on PATH,
  asked with ``get`` (the registry on stdin; JSON ``ServerURL``/``Username``/``Secret`` on
  stdout; a ``Username`` of ``<token>`` means the secret is an identity token);
- otherwise ``auths[registry]``: ``auth`` (base64 ``user:password``) and ``identitytoken``;
  a key written as a URL (``https://registry.example/v1/``) matches its host.
The key of Docker Hub is ``https://index.docker.io/v1/``, of any other registry its
``host[:port]``.

The engine gets them as the docker CLI sends them: ``X-Registry-Auth`` (one registry, for a
pull or a push) and ``X-Registry-Config`` (every registry, for a build), base64url JSON.
Credentials are never logged or put in a message; a helper runs with a time limit and a
bounded answer.
"""
from __future__ import annotations

import base64
import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
HELPER_TIMEOUT = 30.0
MAX_CONFIG = 4 << 20
MAX_HELPER_ANSWER = 64 << 10
_FIELDS = ("username", "password", "auth", "email", "serveraddress", "identitytoken", "registrytoken")


class RegistryAuthError(Exception):
    """The docker config or a credential helper cannot give credentials (no secret in it)."""


def config_path(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    directory = env.get("DOCKER_CONFIG") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def load_config(environ: Mapping[str, str] | None = None) -> dict:
    """config.json as the docker CLI reads it ({} when absent); its auths decoded."""
    from debugkit.core.files import read_regular

    path = config_path(environ)
    try:
        raw = read_regular(path, MAX_CONFIG)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RegistryAuthError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        raise RegistryAuthError(f"{path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise RegistryAuthError(f"{path} is not a JSON object")
    auths = {}
    for key, entry in (data.get("auths") or {}).items() if isinstance(data.get("auths"), dict) else ():
        if not isinstance(entry, dict):
            continue
        found = {k: str(v) for k, v in entry.items() if k in _FIELDS and isinstance(v, str) and v}
        if found.get("auth"):
            try:
                user, sep, password = base64.b64decode(found["auth"]).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                raise RegistryAuthError(f"{path}: the auth of {key!r} is not base64 user:password") from None
            if not sep or not user:
                raise RegistryAuthError(f"{path}: the auth of {key!r} is not base64 user:password")
            found.update(username=user, password=password.strip("\x00"))
        found.pop("auth", None)
        found["serveraddress"] = key
        auths[key] = found
    data["auths"] = auths
    return data


def auth_key(repository: str) -> str:
    """The config key of an image's registry (reference.Domain, with Docker Hub's key)."""
    first, sep, _rest = repository.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return DOCKER_HUB_KEY if first in ("docker.io", "index.docker.io", "registry-1.docker.io") else first
    return DOCKER_HUB_KEY


def _hostname(key: str) -> str:
    """credentials.ConvertToHostname: a URL-looking key stands for its host[:port]."""
    if "://" in key:
        rest = key.split("://", 1)[1]
        return rest.split("/", 1)[0]
    return key.split("/", 1)[0]


def _from_file(config: dict, key: str) -> dict:
    auths = config.get("auths") or {}
    if key in auths:
        return dict(auths[key])
    for entry_key, entry in auths.items():
        if _hostname(entry_key) == key:
            return dict(entry)
    return {}


def credentials(key: str, config: dict | None = None, *, environ: Mapping[str, str] | None = None) -> dict:
    """The AuthConfig the docker CLI would send for this registry key ({} fields omitted)."""
    config = load_config(environ) if config is None else config
    helpers = config.get("credHelpers") if isinstance(config.get("credHelpers"), dict) else {}
    helper = helpers.get(key) or config.get("credsStore")
    found = _from_file(config, key)
    if not helper or not isinstance(helper, str):
        return found
    answer = _helper(helper, "get", key, environ)
    if answer is None:  # the helper has nothing for it: the CLI keeps what the file has, without secrets
        return {k: v for k, v in found.items() if k == "email"}
    found.pop("username", None)
    found.pop("password", None)
    found.pop("identitytoken", None)
    user, secret = str(answer.get("Username") or ""), str(answer.get("Secret") or "")
    if user == "<token>":
        found["identitytoken"] = secret
    else:
        found.update(username=user, password=secret)
    found["serveraddress"] = key
    return {k: v for k, v in found.items() if v}


def all_credentials(config: dict | None = None, *, environ: Mapping[str, str] | None = None) -> dict:
    """GetAllCredentials: the default store's (the file's auths, or the credsStore's list),
    then each credHelpers registry's."""
    config = load_config(environ) if config is None else config
    out: dict = {}
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        listed = _helper(store, "list", "", environ) or {}
        for registry in listed:
            out[registry] = credentials(registry, {**config, "credHelpers": {}}, environ=environ)
    else:
        out.update({k: dict(v) for k, v in (config.get("auths") or {}).items()})
    for registry in (config.get("credHelpers") or {}) if isinstance(config.get("credHelpers"), dict) else ():
        try:
            out[registry] = credentials(registry, config, environ=environ)
        except RegistryAuthError:
            continue  # the docker CLI warns and goes on
    return out


def encode(value: dict) -> str:
    """X-Registry-Auth / X-Registry-Config: base64url of the JSON (registrytypes.EncodeAuthConfig)."""
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def _helper(name: str, action: str, server: str, environ: Mapping[str, str] | None) -> dict | None:
    """Run docker-credential-NAME ACTION; None when it has no credentials for server."""
    import subprocess

    program = f"docker-credential-{name}"
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise RegistryAuthError(f"the credential helper name {name!r} is not a program name")
    try:
        proc = subprocess.run([program, action], input=server.encode(), capture_output=True,
                              timeout=HELPER_TIMEOUT, env=dict(os.environ if environ is None else environ))
    except FileNotFoundError:
        raise RegistryAuthError(f"the credential helper {program} is not installed (named in the docker config)") \
            from None
    except subprocess.TimeoutExpired:
        raise RegistryAuthError(f"the credential helper {program} did not answer within {HELPER_TIMEOUT:g} s") from None
    except OSError as exc:
        raise RegistryAuthError(f"the credential helper {program} cannot run: {exc.strerror or exc}") from None
    out = proc.stdout[:MAX_HELPER_ANSWER + 1]
    if proc.returncode != 0:
        if b"credentials not found" in out.lower() or b"credentials not found" in proc.stderr.lower():
            return None
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = "".join(c for c in (lines[-1] if lines else "") if c.isprintable())[:200]
        raise RegistryAuthError(f"the credential helper {program} {action} failed (exit {proc.returncode})"
                                + (f": {reason}" if reason else ""))
    if len(out) > MAX_HELPER_ANSWER:
        raise RegistryAuthError(f"the credential helper {program} answered more than {MAX_HELPER_ANSWER >> 10} KiB")
    try:
        answer = json.loads(out)
    except (ValueError, RecursionError):
        raise RegistryAuthError(f"the credential helper {program} did not answer JSON") from None
    if not isinstance(answer, dict):
        raise RegistryAuthError(f"the credential helper {program} did not answer a JSON object")
    return answer
