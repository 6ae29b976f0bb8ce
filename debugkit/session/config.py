"""The configuration file: defaults for every flag a person would otherwise repeat.

    $XDG_CONFIG_HOME/debugkit/config.yaml   (or --config PATH, or $DEBUGKIT_CONFIG)

    image: REF                  # sidecar image for every runtime
    runtimes:                   # per runtime (the registry's names: docker, podman, kubernetes)
      kubernetes: {image: REF}
    profile: restricted         # may ask; anything above restricted still needs --profile
    namespace: NAME             # Kubernetes, when the context has none
    limits: {memory: 256m, pids: 256, cpus: 1}
    timeout: 120                # Kubernetes: seconds for a debug container to start
    keep_alive: 10m             # how long a reusable sidecar stays once idle
    runbook_paths: [DIR, ...]   # team runbooks, listed beside the bundled ones
    require_reason: true        # refuse a session without --reason (exit 64)
    record: always              # record every attach and runbook session (as --record); default never
    contexts:                   # per kube context
      CONTEXT_NAME: {image: REF, namespace: NAME}

Precedence, for every value: a flag > the environment (DEBUGKIT_IMAGE, DEBUGKIT_PROFILE,
DEBUGKIT_MEMORY, DEBUGKIT_PIDS_LIMIT, DEBUGKIT_CPUS, DEBUGKIT_TIMEOUT, DEBUGKIT_KEEP_ALIVE,
DEBUGKIT_NAMESPACE) > the file (its per-context entry, then per-runtime, then global) >
the built-in default. Errors name FILE:LINE and exit 74; nothing is launched.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from debugkit import runtimes
from debugkit.core import options as opts
from debugkit.core.errors import ConfigInvalid, DebugkitError
from debugkit.core.imageref import toolbox_ref, validate_image_ref
from debugkit.core.profiles import PROFILES
from debugkit.core.targets import check_k8s_name

MAX_BYTES = 256 * 1024
TOP_KEYS = ("image", "runtimes", "profile", "namespace", "limits", "timeout", "keep_alive", "runbook_paths",
            "contexts", "require_reason", "record")
RECORD_CHOICES = ("always", "never")
LIMIT_KEYS = ("memory", "pids", "cpus")
ENV = {
    "image": "DEBUGKIT_IMAGE", "profile": "DEBUGKIT_PROFILE", "memory": "DEBUGKIT_MEMORY",
    "pids_limit": "DEBUGKIT_PIDS_LIMIT", "cpus": "DEBUGKIT_CPUS", "timeout": "DEBUGKIT_TIMEOUT",
    "keep_alive": "DEBUGKIT_KEEP_ALIVE", "namespace": "DEBUGKIT_NAMESPACE",
}
BUILT_IN = {
    "profile": "restricted", "memory": opts.DEFAULT_MEMORY, "pids_limit": opts.DEFAULT_PIDS,
    "cpus": opts.DEFAULT_CPUS, "timeout": str(int(opts.DEFAULT_TIMEOUT)), "require_reason": "false",
    "record": "never",
}


@dataclass(frozen=True)
class Setting:
    value: str
    source: str   # "flag", "environment DEBUGKIT_X", "FILE:LINE", "built-in"


@dataclass
class Config:
    path: Path
    exists: bool
    values: dict[str, Setting] = field(default_factory=dict)          # global keys, as flags spell them
    runtimes: dict[str, dict[str, Setting]] = field(default_factory=dict)
    contexts: dict[str, dict[str, Setting]] = field(default_factory=dict)
    runbook_paths: tuple[str, ...] = ()

    def setting(self, key: str, *, runtime: str | None = None, kube_context: str | None = None) -> Setting | None:
        """Environment > the file's context entry > its runtime entry > its global value."""
        env = ENV.get(key)
        if env and os.environ.get(env) is not None:
            return Setting(os.environ[env], f"environment {env}")
        if kube_context and key in self.contexts.get(kube_context, {}):
            return self.contexts[kube_context][key]
        if runtime and key in self.runtimes.get(runtime, {}):
            return self.runtimes[runtime][key]
        return self.values.get(key)

    def effective(self, key: str, *, runtime: str | None = None, kube_context: str | None = None) -> Setting:
        found = self.setting(key, runtime=runtime, kube_context=kube_context)
        if found is not None:
            return found
        if key == "image":
            return Setting(toolbox_ref(), "built-in")
        return Setting(BUILT_IN[key], "built-in") if key in BUILT_IN else Setting("", "built-in")


def config_path(explicit: str | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if os.environ.get("DEBUGKIT_CONFIG"):
        return Path(os.environ["DEBUGKIT_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "debugkit" / "config.yaml"


_CACHE: dict[str, Config] = {}
_EXPLICIT: dict[str, str | None] = {"path": None}


def use(path: str | None) -> None:
    """The CLI's --config: every later `current()` reads that file."""
    _EXPLICIT["path"] = path
    _CACHE.clear()


def active_path() -> Path:
    """The file `current()` reads (--config, $DEBUGKIT_CONFIG, or the default place),
    whether it exists or not: where `toolbox push --set-default` writes."""
    return config_path(_EXPLICIT["path"])


def current() -> Config:
    path = active_path()
    key = str(path)
    if key not in _CACHE:
        _CACHE[key] = load(path, required=_EXPLICIT["path"] is not None or bool(os.environ.get("DEBUGKIT_CONFIG")))
    return _CACHE[key]


def load(path: Path, *, required: bool = False) -> Config:
    """Read and validate the file. A missing default file is an empty config; a file named
    by --config or $DEBUGKIT_CONFIG must exist."""
    from debugkit.core.files import read_capped

    try:
        data = read_capped(path, MAX_BYTES)
    except OSError as exc:
        raise ConfigInvalid(f"{path}: cannot read the configuration file: {exc.strerror or exc}") from None
    if data is None:
        if required:
            raise ConfigInvalid(f"{path}: the configuration file does not exist")
        return Config(path=path, exists=False)
    from debugkit.core import yamlsafe  # PyYAML costs ~7 ms to import: only when there is a file

    text = yamlsafe.decode(data, str(path), max_bytes=MAX_BYTES, fail=ConfigInvalid)
    with yamlsafe.Document(text, str(path), fail=ConfigInvalid) as doc:
        config = Config(path=path, exists=True)
        if doc.root is None:
            return config
        top = doc.mapping(doc.root, "the configuration", "at the top level", TOP_KEYS)
        for key, (key_node, node) in top.items():
            if key == "limits":
                for limit, (_k, lnode) in doc.mapping(node, "limits", "in limits", LIMIT_KEYS).items():
                    name = "pids_limit" if limit == "pids" else limit
                    config.values[name] = _checked(doc, name, lnode)
            elif key == "runtimes":
                for rt, (_k, rnode) in doc.mapping(node, "runtimes", "in runtimes", runtimes.names()).items():
                    entries = doc.mapping(rnode, f"runtimes.{rt}", f"in runtimes.{rt}", ("image",))
                    config.runtimes[rt] = {k: _checked(doc, k, v) for k, (_kk, v) in entries.items()}
            elif key == "contexts":
                for ctx, (_k, cnode) in doc.mapping(node, "contexts", "in contexts", None).items():
                    entries = doc.mapping(cnode, f"contexts.{ctx}", f"in contexts.{ctx}", ("image", "namespace"))
                    config.contexts[ctx] = {k: _checked(doc, k, v) for k, (_kk, v) in entries.items()}
            elif key == "require_reason":
                value = doc.scalar(node, key)
                if not isinstance(value, bool):
                    doc.fail(node, f"require_reason must be true or false, not {_describe(value)}")
                config.values[key] = Setting("true" if value else "false", f"{doc.source}:{node.start_mark.line + 1}")
            elif key == "runbook_paths":
                if not isinstance(node, yamlsafe.yaml.SequenceNode):
                    doc.fail(node, "runbook_paths must be a list of directories")
                paths = [doc.string(item, "each runbook path") for item in node.value]
                base = path.parent
                config.runbook_paths = tuple(str((base / os.path.expanduser(p)).resolve()) for p in paths)
            else:
                config.values[key] = _checked(doc, key, node)
        return config


def _checked(doc, key: str, node) -> Setting:
    """A value as a flag would spell it, checked by the same rules as the flag."""
    value = doc.scalar(node, key)
    if isinstance(value, bool) or value is None or not isinstance(value, (str, int, float)):
        doc.fail(node, f"{key} must be a string or a number, not {_describe(value)}")
    text = str(value)
    try:
        check(key, text)
    except DebugkitError as exc:
        doc.fail(node, exc.message)
    return Setting(text, f"{doc.source}:{node.start_mark.line + 1}")


def _describe(value) -> str:
    from debugkit.core.yamlsafe import describe

    return describe(value)


def check(key: str, value: str) -> None:
    """The flag's own validation for a value from the file or the environment."""
    if key == "image":
        validate_image_ref(value, flag="image")
    elif key == "profile":
        if value not in PROFILES:
            raise ConfigInvalid(f"unknown profile {value!r} (expected one of: {', '.join(PROFILES)})")
    elif key == "namespace":
        check_k8s_name("namespace", value, value, label=True)
    elif key == "memory":
        opts.parse_memory(value, flag="memory")
    elif key == "pids_limit":
        opts.parse_pids(value, flag="pids")
    elif key == "cpus":
        opts.parse_cpus(value, flag="cpus")
    elif key == "timeout":
        opts.parse_seconds(value, flag="timeout")
    elif key == "keep_alive":
        opts.parse_seconds(value, flag="keep_alive", allow_zero=True)
    elif key == "record":
        if value not in RECORD_CHOICES:
            raise ConfigInvalid(f"record must be one of {', '.join(RECORD_CHOICES)}, not {value!r}")


def granted_profile(setting: Setting, flag: str | None) -> str:
    """A profile from the environment or the file is a request: above restricted it runs
    only when the same --profile is typed."""
    if flag is not None:
        return flag
    if setting.value != "restricted" and setting.source != "built-in":
        raise ConfigInvalid(f"{setting.source}: asks for profile {setting.value!r}, which grants more than "
                            f"restricted; pass --profile {setting.value} to allow that")
    return setting.value
