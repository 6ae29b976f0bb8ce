"""Filling in what the person did not type: the environment, then the config file, then
the built-in default (session/config.py has the file and the precedence).

A value from the environment or the file is checked by the same rules as the flag and,
when it is wrong, named by where it came from. A profile above restricted that only the
environment or the file asks for is refused: privilege comes from a flag.
"""
from __future__ import annotations

import os

from debugkit.core.errors import DebugkitError, InvalidInput
from debugkit.core.imageref import toolbox_ref
from debugkit.core.options import Flags
from debugkit.runtimes.base import Preferences
from debugkit.session import config

FILLED = ("memory", "pids_limit", "cpus", "timeout", "keep_alive")


def _value(key: str, *, runtime: str | None, kube_context: str | None) -> str | None:
    setting = config.current().setting(key, runtime=runtime, kube_context=kube_context)
    if setting is None:
        return None
    if setting.source.startswith("environment"):
        try:
            config.check(key, setting.value)
        except DebugkitError as exc:
            raise InvalidInput(f"{setting.source}: {exc.message}") from None
    return setting.value


def fill(flags: Flags, *, runtime: str, kube_context: str | None) -> dict:
    """The flags with every default filled in, as keyword arguments of
    core.options.sidecar_options (but for the target, --custom and the connection)."""
    cfg = config.current()
    out = {"command": flags.command, "stdin": flags.stdin, "tty": flags.tty, "user": flags.user,
           "image": flags.image, "new": flags.new, "target_env": flags.target_env, "session_id": flags.session_id}
    for key in FILLED:
        value = getattr(flags, key)
        if value is None:
            value = _value(key, runtime=runtime, kube_context=kube_context)
        if value is None and key in config.BUILT_IN:
            value = config.BUILT_IN[key]
        if value is not None:
            out[key] = value
    out["profile"] = config.granted_profile(
        cfg.effective("profile", runtime=runtime, kube_context=kube_context), flags.profile)
    out["reason"] = flags.reason
    require_reason(flags.reason)
    return out


def namespace(*, kube_context: str | None) -> str | None:
    """A namespace that beats the kube context's own: $DEBUGKIT_NAMESPACE, then the file's
    entry for this context. (The file's global `namespace` only fills in when the context
    names none: namespace_fallback.)"""
    if os.environ.get(config.ENV["namespace"]) is not None:
        return _value("namespace", runtime=None, kube_context=None)
    entry = config.current().contexts.get(kube_context or "", {}).get("namespace")
    return entry.value if entry is not None else None


def namespace_fallback() -> str:
    setting = config.current().values.get("namespace")
    return setting.value if setting is not None else "default"


def toolbox_image() -> str:
    """The sidecar image when no --image is given: $DEBUGKIT_IMAGE, the config's image, or
    the bundled toolbox's standard tag."""
    return _value("image", runtime=None, kube_context=None) or toolbox_ref()


def toolbox_for(runtime: str, context: str | None) -> str:
    """The toolbox a target of `runtime` gets in `context` (a kube context): the
    environment, else the file's context, runtime and global entries, else built in."""
    return _value("image", runtime=runtime, kube_context=context) or toolbox_ref()


class SessionPreferences(Preferences):
    """The runtimes' view of the environment and the config file (runtimes/base.py)."""

    def namespace(self, context: str | None) -> str | None:
        return namespace(kube_context=context)

    def namespace_fallback(self) -> str:
        return namespace_fallback()

    def image(self, runtime: str, context: str | None = None) -> tuple[str, str]:
        setting = config.current().effective("image", runtime=runtime, kube_context=context)
        return setting.value, setting.source


PREFERENCES = SessionPreferences()


def require_reason(reason: str | None) -> None:
    """The config file's `require_reason: true`: a session without --reason is refused
    (exit 64) before anything is contacted or started."""
    setting = config.current().effective("require_reason")
    if reason is None and setting.value == "true":
        raise InvalidInput(f"a reason is required ({setting.source}: require_reason: true): "
                           f"pass --reason TEXT (why you are debugging, a sentence or a ticket)")


def record_sessions() -> bool:
    """The config file's `record: always`: every attach and runbook session is recorded."""
    return config.current().effective("record").value == "always"
