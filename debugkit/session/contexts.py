"""Several clusters at once: `--context a,b,c` and `--all-contexts` on attach, runbook run,
ps and inspect fan out over named contexts the way a fleet fans out over pods.

One runtime (and so one API client) per context, all at once in threads; each result
names its context; a context that fails (unreachable, forbidden, credentials expired, no
such context) is one result with its reason, and the others go on. `--context` with one
name is not a fan-out: the commands take today's path.

Written once over the protocol: which runtimes have named contexts comes from the
registry (`contexts=True`), and their names from `Runtime.contexts()`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, TypeVar

from debugkit import runtimes
from debugkit.core.errors import DebugkitError, InvalidInput
from debugkit.core.options import Connection
from debugkit.runtimes.base import Runtime
from debugkit.session import defaults

T = TypeVar("T")
ALL = ("*",)   # --all-contexts, before the kubeconfig was read
MAX_CONTEXTS = 64


class ContextResult(NamedTuple):
    """What one context answered, or why it could not."""

    context: str
    value: object = None
    error: DebugkitError | None = None


def requested(kube_context: str | None, all_contexts: bool) -> tuple[str, ...] | None:
    """The contexts asked for, when several are (ALL for --all-contexts); None for one
    context or none (today's path). Pure: checked before anything is contacted."""
    if all_contexts:
        if kube_context is not None:
            raise InvalidInput("--all-contexts and --context contradict each other: give one of them")
        return ALL
    if kube_context is None or "," not in kube_context:
        return None
    names = [name.strip() for name in kube_context.split(",")]
    if not all(names):
        raise InvalidInput(f"invalid --context {kube_context!r}: a comma-separated list of context names, none empty")
    names = list(dict.fromkeys(names))
    if len(names) > MAX_CONTEXTS:
        raise InvalidInput(f"--context names {len(names)} contexts: at most {MAX_CONTEXTS} at once")
    return tuple(names)


def check_runtime(runtime_name: str, flag: str) -> None:
    """Only a runtime with named contexts fans out over them."""
    if runtime_name not in runtimes.with_contexts():
        title = runtimes.syntax().title(runtime_name)
        raise InvalidInput(f"{flag} applies to targets of a runtime with named contexts "
                           f"({', '.join(runtimes.syntax().title(n) for n in runtimes.with_contexts())}), "
                           f"not to a {title} target")


def resolve(names: tuple[str, ...], connection: Connection, runtime_name: str) -> list[str]:
    """The context names: as given, or every context the runtime's configuration names."""
    if names != ALL:
        return list(names)
    runtime = runtimes.get(runtime_name, connection, preferences=defaults.PREFERENCES)
    try:
        found = runtime.contexts()
    finally:
        runtime.close()
    if not found:
        raise InvalidInput("--all-contexts: the configuration names no context")
    return found[:MAX_CONTEXTS]


def connection_for(connection: Connection, context: str) -> Connection:
    return dataclasses.replace(connection, kube_context=context)


def runtime_for(runtime_name: str, connection: Connection, context: str) -> Runtime:
    """The runtime for one context: its own client, connection pool and rate limit."""
    return runtimes.get(runtime_name, connection_for(connection, context), preferences=defaults.PREFERENCES)


def fan_out(contexts: list[str], work: Callable[[str], T]) -> list[ContextResult]:
    """work(context) for every context at once, in the contexts' order. A debugkit error
    is that context's result (its reason); a bug is not caught, and stays exit 70."""
    def one(context: str) -> ContextResult:
        try:
            return ContextResult(context, work(context))
        except DebugkitError as exc:
            return ContextResult(context, error=exc)

    from concurrent.futures import ThreadPoolExecutor  # not at import: a single-cluster attach pays 5-10 ms for it

    with ThreadPoolExecutor(max_workers=max(1, len(contexts)), thread_name_prefix="debugkit-context") as pool:
        return list(pool.map(one, contexts))


def exit_status(results: list[ContextResult], *, passed: Callable[[object], bool] = lambda value: True) -> int:
    """The fleet rules over contexts: 0 when every context passed; 1 when one failed while
    another was reached; debugkit's own error code when no context could be reached (the
    most common one)."""
    if results and all(r.error is None and passed(r.value) for r in results):
        return 0
    reached = [r for r in results if r.error is None]
    if reached or not results:
        return 1
    codes = [int(r.error.exit_code) for r in results]
    return max(codes, key=lambda code: (codes.count(code), -codes.index(code)))
