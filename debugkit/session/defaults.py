"""Filling in what the person did not type: the environment, then the config file, then
the built-in default (session/config.py has the file and the precedence).

A value from the environment or the file is checked by the same rules as the flag and,
when it is wrong, named by where it came from. A profile above restricted that only the
environment or the file asks for is refused: privilege comes from a flag.
"""
from __future__ import annotations

import os
from dataclasses import replace

from debugkit.core.errors import DebugkitError, InvalidInput
from debugkit.core.imageref import toolbox_ref
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


def fill(raw: dict, *, runtime: str, kube_context: str | None) -> dict:
    """The flags as typed (None: not given) with every default filled in."""
    cfg = config.current()
    out = dict(raw)
    for key in FILLED:
        if out.get(key) is None:
            value = _value(key, runtime=runtime, kube_context=kube_context)
            if value is not None:
                out[key] = value
            elif key in config.BUILT_IN:
                out[key] = config.BUILT_IN[key]
    out["profile"] = config.granted_profile(
        cfg.effective("profile", runtime=runtime, kube_context=kube_context), out.get("profile"))
    require_reason(out.get("reason"))
    # The configured image is the toolbox (pushed to a registry, say): it carries the helper.
    out["toolbox"] = _value("image", runtime=runtime, kube_context=kube_context) or toolbox_ref()
    return out


def namespace(*, kube_context: str | None) -> str | None:
    """A namespace that beats the kube context's own: $DEBUGKIT_NAMESPACE, then the file's
    entry for this context. (The file's global `namespace` only fills in when the context
    names none: namespace_fallback.)"""
    if os.environ.get(config.ENV["namespace"]) is not None:
        return _value("namespace", runtime="kubernetes", kube_context=None)
    entry = config.current().contexts.get(kube_context or "", {}).get("namespace")
    return entry.value if entry is not None else None


def namespace_fallback() -> str:
    setting = config.current().values.get("namespace")
    return setting.value if setting is not None else "default"


def toolbox_image() -> str:
    """The sidecar image when no --image is given: $DEBUGKIT_IMAGE, the config's image, or
    the bundled toolbox's standard tag."""
    return _value("image", runtime=None, kube_context=None) or toolbox_ref()


def apply_context(raw: dict, options, *, kube_context: str | None):
    """Kubernetes, once the kube context is known: its entry in the file may name the image
    and the namespace."""
    target = options.target
    if target.namespace is None:
        chosen = namespace(kube_context=kube_context)
        if chosen is not None:
            target = replace(target, namespace=chosen)
    toolbox = _value("image", runtime="kubernetes", kube_context=kube_context) or options.toolbox
    return options.evolve(target=target, toolbox=toolbox)


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
