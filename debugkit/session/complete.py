"""What the shell may complete: targets, namespaces, contexts, a pod's containers (each
runtime offers its own candidates through the protocol), and runbooks. Plain strings in,
plain strings out; the CLI wraps them for click.

Completion runs while a person waits at a prompt, so it never hangs and never
complains: every runtime request gives up after CALL_TIMEOUT seconds, all the lookups
for one TAB run side by side and whatever has not answered after BUDGET seconds is left
behind (its thread is a daemon; the process exits without it), and any failure (no
engine, no kubeconfig, RBAC, a broken config file) completes nothing. A runtime that is
not set up here is not asked.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable

from debugkit import runtimes
from debugkit.core.errors import DebugkitError
from debugkit.core.options import Connection
from debugkit.core.targets import parse_target
from debugkit.runtimes.base import Runtime

CALL_TIMEOUT = 1.0   # one engine or API request
BUDGET = 1.5         # everything for one TAB


def presentable(values: Iterable[str]) -> list[str]:
    """The candidates a shell may be given: names from outside (kube contexts, runbook
    files, containers, pods) that hold a control character or another unprintable one
    (an escape sequence, a newline that would break the protocol) are left out. Escaping
    them would complete a name that does not exist; passing them would put the sequence
    on the terminal."""
    return [v for v in values if isinstance(v, str) and v.isprintable()]


def bounded(calls: Iterable[Callable[[], Iterable[str]]], *, budget: float = BUDGET) -> list[str]:
    """Run the lookups side by side; the answers of those done within `budget` seconds,
    in the order given. A lookup that fails or is late contributes nothing."""
    calls = list(calls)
    results: dict[int, list[str]] = {}

    def run(index: int, fn) -> None:
        try:
            results[index] = list(fn())
        except BaseException:  # noqa: BLE001 - completion never complains
            pass

    threads = []
    for index, fn in enumerate(calls):
        thread = threading.Thread(target=run, args=(index, fn), daemon=True, name="debugkit-complete")
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + budget
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    done = dict(results)  # a late thread may still add to `results`: read it once
    out: list[str] = []
    for index in range(len(calls)):
        out += done.get(index, [])
    return out


def _configured(connection: Connection) -> list[Runtime]:
    """The runtimes set up here, built for `connection` (nothing contacted yet)."""
    from debugkit.session import defaults

    found = []
    for name in runtimes.names():
        try:
            if runtimes.configured(name, connection):
                found.append(runtimes.get(name, connection, preferences=defaults.PREFERENCES))
        except Exception:  # noqa: BLE001 - completion never complains
            continue
    return found


def _asking(connection: Connection, ask: Callable[[Runtime], Iterable[str]], *, budget: float) -> list[str]:
    """Every configured runtime's answer to `ask`, side by side, within `budget`."""
    asked = _configured(connection)
    try:
        return bounded([lambda runtime=runtime: ask(runtime) for runtime in asked], budget=budget)
    finally:
        for runtime in asked:
            try:
                runtime.close()
            except Exception:  # noqa: BLE001
                pass


def targets(incomplete: str, *, connection: Connection | None = None, namespace: str | None = None,
            budget: float = BUDGET) -> list[str]:
    """Every target reference that starts with `incomplete`, from every runtime set up
    here: running containers (a bare name or SCHEME://NAME), running pods, workloads,
    NAMESPACE/POD forms; each runtime offers what its own syntax allows for the word."""
    found = _asking(connection or Connection(),
                    lambda runtime: runtime.complete_targets(incomplete, namespace=namespace, timeout=CALL_TIMEOUT),
                    budget=budget)
    return [ref for ref in dict.fromkeys(found) if ref.startswith(incomplete)]


def namespaces(incomplete: str, *, connection: Connection | None = None, budget: float = BUDGET) -> list[str]:
    found = _asking(connection or Connection(),
                    lambda runtime: runtime.complete_namespaces(incomplete, timeout=CALL_TIMEOUT), budget=budget)
    return [ns for ns in dict.fromkeys(found) if ns.startswith(incomplete)]


def contexts(incomplete: str, *, connection: Connection | None = None, budget: float = BUDGET) -> list[str]:
    found = _asking(connection or Connection(), lambda runtime: runtime.complete_contexts(incomplete),
                    budget=budget)
    return [name for name in dict.fromkeys(found) if name.startswith(incomplete)]


def containers(target: str, incomplete: str, *, connection: Connection | None = None, namespace: str | None = None,
               budget: float = BUDGET) -> list[str]:
    """-c: the containers of the target TARGET names (a pod)."""
    from debugkit.session import defaults

    connection = connection or Connection()
    try:
        ref = parse_target(target, runtimes.syntax(), namespace=namespace)
    except DebugkitError:
        return []
    runtime = runtimes.get(ref.runtime, connection, preferences=defaults.PREFERENCES)
    try:
        found = bounded([lambda: runtime.complete_containers(ref, incomplete, timeout=CALL_TIMEOUT)], budget=budget)
    finally:
        runtime.close()
    return [c for c in found if c.startswith(incomplete)]


def runbooks(incomplete: str) -> list[str]:
    """Bundled runbook names, then those in the configured runbook_paths."""
    from debugkit.runbook import load
    from debugkit.session import config

    names = list(load.bundled_names())
    try:
        names += list(load.search_path_entries(config.current().runbook_paths))
    except Exception:  # noqa: BLE001 - a broken config file still leaves the bundled ones
        pass
    return [n for n in dict.fromkeys(names) if n.startswith(incomplete)]
