"""The registry of runtimes: one entry each, and every list of them is derived from here.

The session layer and the CLI know runtimes only through this registry and the protocol
(runtimes/base.py): the names `--runtime` accepts, which target schemes exist, which
runtime a target names, which are set up on this machine, which flags apply to which.
Adding a runtime is one package (a `Runtime` subclass) and one entry below; a test may
`register` its own.

Entries are plain data: a runtime's code is imported only when `get` builds it, so
`debugkit --help` and a Docker attach never pay for the others.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from debugkit.runtimes.runtime_entry import RUNTIME_FLAGS, RuntimeEntry

if TYPE_CHECKING:  # pragma: no cover
    from debugkit.core.options import Connection
    from debugkit.core.targets import TargetSyntax
    from debugkit.runtimes.base import Preferences, Runtime

RESOURCES = frozenset({"memory", "pids_limit", "cpus"})

_ENTRIES: dict[str, RuntimeEntry] = {}
_SYNTAX: list = []  # the TargetSyntax of the entries registered now (built on first use)


def register(entry: RuntimeEntry) -> RuntimeEntry:
    """Add a runtime (or replace the one of the same name)."""
    _ENTRIES[entry.name] = entry
    _SYNTAX.clear()
    return entry


def unregister(name: str) -> None:
    _ENTRIES.pop(name, None)
    _SYNTAX.clear()


register(RuntimeEntry(
    name="docker", title="Docker",
    runtime="debugkit.runtimes.docker.runtime:DockerRuntime",
    configured="debugkit.runtimes.docker.clients:configured",
    schemes=("docker://",), bare_names=True, label_sets=True, sidecar_flags=RESOURCES,
    refusals=(("custom", "it is a partial Kubernetes container spec; Docker sidecars take --memory, --pids-limit "
                         "and --cpus instead"),),
))
register(RuntimeEntry(
    name="podman", title="Podman",
    runtime="debugkit.runtimes.podman.runtime:PodmanRuntime",
    configured="debugkit.runtimes.podman.address:configured",
    schemes=("podman://",), label_sets=True, sidecar_flags=RESOURCES,
    refusals=(("custom", "it is a partial Kubernetes container spec; Podman sidecars take --memory, --pids-limit "
                         "and --cpus instead"),),
))
register(RuntimeEntry(
    name="kubernetes", title="Kubernetes",
    runtime="debugkit.runtimes.kubernetes.runtime:KubernetesRuntime",
    configured="debugkit.runtimes.kubernetes.clients:configured",
    pods=True, contexts=True, direct_forward=True, sidecar_flags=frozenset({"custom"}),
    refusals=tuple((flag, "Kubernetes sets no resources on ephemeral containers") for flag in sorted(RESOURCES)),
))


def entries() -> tuple[RuntimeEntry, ...]:
    return tuple(_ENTRIES.values())


def names() -> tuple[str, ...]:
    return tuple(_ENTRIES)


def entry(name: str) -> RuntimeEntry:
    try:
        return _ENTRIES[name]
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}") from None


def with_label_sets() -> tuple[str, ...]:
    """The runtimes `--filter label=...` may look in."""
    return tuple(e.name for e in _ENTRIES.values() if e.label_sets)


def with_contexts() -> tuple[str, ...]:
    """The runtimes whose named contexts the config file's `contexts:` entries are for."""
    return tuple(e.name for e in _ENTRIES.values() if e.contexts)


def syntax() -> "TargetSyntax":
    """How targets are written, from the entries registered now (core.targets parses with it)."""
    if not _SYNTAX:
        from debugkit.core.targets import TargetSyntax

        found = entries()
        _SYNTAX.append(TargetSyntax(
            container_schemes=tuple((scheme, e.name) for e in found for scheme in e.schemes),
            bare=next((e.name for e in found if e.bare_names), None),
            pods=next((e.name for e in found if e.pods), None),
            label_sets=tuple(e.name for e in found if e.label_sets),
            titles=tuple((e.name, e.title) for e in found),
        ))
    return _SYNTAX[0]


def refusals(name: str, typed: dict) -> list[str]:
    """Why each runtime-specific flag typed (a value other than None) does not apply to
    runtime `name`: pure, so it is said before anything is contacted."""
    found = entry(name)
    return [why for flag in RUNTIME_FLAGS if typed.get(flag) is not None
            and (why := found.refusal(flag)) is not None]


def configured(name: str, connection: "Connection") -> bool:
    """Whether runtime `name` is set up on this machine (ps --runtime auto, doctor and
    completion leave the others quietly alone)."""
    return entry(name).is_configured(connection)


def get(name: str, connection: "Connection | None" = None, *,
        preferences: "Preferences | None" = None) -> "Runtime":
    """The runtime `name`, for this connection; nothing is contacted yet."""
    from debugkit.core.options import Connection

    found = entry(name)
    return found.runtime_class().for_connection(found, connection or Connection(), preferences)


def for_target(target, connection: "Connection | None" = None, *,
               preferences: "Preferences | None" = None) -> "Runtime":
    return get(target.runtime, connection, preferences=preferences)
