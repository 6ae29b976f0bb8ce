"""One runtime as the registry knows it: what can be said about it without importing it.

An entry names the runtime, how its targets are written, which of the runtime-specific
sidecar flags it takes, and where its code is ("module:attribute", imported only when the
runtime is used, so `debugkit --help` and a Docker attach never load the others).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, NamedTuple

# The sidecar flags that only some runtimes take (the rest apply everywhere), as the
# person types them. An entry lists those its runtime takes; the others are refused
# before anything is contacted.
RUNTIME_FLAGS = {"memory": "--memory", "pids_limit": "--pids-limit", "cpus": "--cpus", "custom": "--custom"}


def load(where: str | Callable) -> Any:
    """"package.module:attribute" -> that attribute (imported now); anything else as it is."""
    if not isinstance(where, str):
        return where
    module, _, attribute = where.partition(":")
    found: Any = importlib.import_module(module)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


class RuntimeEntry(NamedTuple):
    name: str                          # in target references, labels, the audit log, --runtime
    title: str                         # in messages: "Docker"
    runtime: str | Callable            # "module:Class" of its Runtime (Class.for_connection builds one)
    configured: str | Callable         # "module:function"(Connection) -> bool: set up here at all?
    schemes: tuple[str, ...] = ()      # container schemes it owns: SCHEME NAME ("podman://")
    bare_names: bool = False           # a NAME without a scheme is one of its containers
    pods: bool = False                 # its targets are pods: k8s://, pod/NAME, deploy/NAME, -l SELECTOR
    label_sets: bool = False           # --filter label=K=V and compose/PROJECT name sets of its containers
    sidecar_flags: frozenset[str] = frozenset()   # which of RUNTIME_FLAGS it takes
    refusals: tuple[tuple[str, str], ...] = ()    # (flag, why it does not apply here), for the message
    contexts: bool = False             # it has named contexts: the config file's `contexts:` apply to it
    direct_forward: bool = False       # it may forward ports without a sidecar (port-forward --via portforward)

    def runtime_class(self):
        return load(self.runtime)

    def is_configured(self, connection) -> bool:
        return bool(load(self.configured)(connection))

    def refusal(self, flag: str) -> str | None:
        """Why `flag` (a key of RUNTIME_FLAGS) does not apply to this runtime's targets, or None."""
        if flag in self.sidecar_flags or flag not in RUNTIME_FLAGS:
            return None
        why = dict(self.refusals).get(flag)
        return f"{RUNTIME_FLAGS[flag]} does not apply to {self.title} targets" + (f": {why}" if why else "")
