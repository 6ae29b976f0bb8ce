"""Fleets: one command or runbook across every target a reference names, in parallel.

`deploy/checkout`, `-l app=web`, `--filter label=team=pay` or `compose/shop` expand to the
running targets (the skipped ones are reported, with why); each target then goes through
the ordinary session flow on its own (identity, PodSecurity pre-check, audit record) in a
pool of threads that share one runtime and so one API connection pool and rate limit.
Partial failure is normal: a target's error is its own line and the others carry on.
Ctrl-C stops them all, cleans up every sidecar, and the results so far are still reported.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from debugkit import runtimes
from debugkit.core.errors import DebugkitError, ExitCode, Interrupted, InvalidInput
from debugkit.core.options import Connection
from debugkit.core.targets import ContainerRef, ContainerSetRef, ManyRef, PodRef, SelectorRef, WorkloadRef
from debugkit.session import defaults

MAX_CAPTURE = 64 * 1024
WORKLOAD_API = {"deployments": "apps/v1", "statefulsets": "apps/v1", "daemonsets": "apps/v1",
                "replicasets": "apps/v1", "jobs": "batch/v1"}


@dataclass(frozen=True)
class Member:
    ref: ContainerRef | PodRef
    label: str                      # pod/NAME or the container's name
    namespace: str | None = None
    container: str | None = None


@dataclass
class Outcome:
    target: str
    namespace: str | None
    container: str | None
    status: str = "pending"         # pending, running, passed, failed, error, interrupted
    exit_code: int | None = None
    duration_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    error: dict | None = None       # {"message": ..., "exit_code": ...}: debugkit's own failure
    report: object = None           # a runbook's Report, when a runbook ran

    def as_dict(self) -> dict:
        return {"target": self.target, "namespace": self.namespace, "container": self.container,
                "status": self.status, "exit_code": self.exit_code, "duration_s": round(self.duration_s, 3),
                "stdout": self.stdout, "stderr": self.stderr, "output_truncated": self.truncated,
                "error": self.error}


class Capture:
    """A stream that keeps the first MAX_CAPTURE bytes, and says whether it dropped any."""

    def __init__(self):
        self.data = bytearray()
        self.truncated = False

    def write(self, data: bytes) -> int:
        room = MAX_CAPTURE - len(self.data)
        if len(data) > room:
            self.truncated = True
        self.data += data[:max(room, 0)]
        return len(data)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


# -- expansion ---------------------------------------------------------------------------------------

def runtime_for(many: ManyRef, connection: Connection):
    return runtimes.get(many.runtime, connection, namespace_fallback=defaults.namespace_fallback())


def expand(many: ManyRef, runtime) -> tuple[list[Member], list[tuple[str, str]]]:
    """(running targets, [(name, why skipped)]) of a reference that names many."""
    if isinstance(many, ContainerSetRef):
        return _containers(many, runtime)
    return _pods(many, runtime)


def _containers(many: ContainerSetRef, runtime) -> tuple[list[Member], list[tuple[str, str]]]:
    from debugkit.core.spec import LABEL_MANAGED

    with runtime.calls():
        found = runtime.api.containers(all=True, filters={"label": list(many.labels)})
    members, skipped = [], []
    for ctr in sorted(found, key=lambda c: (c.get("Names") or ["?"])[0]):
        name = (ctr.get("Names") or ["?"])[0].lstrip("/")
        if (ctr.get("Labels") or {}).get(LABEL_MANAGED) == "true":
            continue  # debugkit's own sidecars are never targets
        if ctr.get("State") != "running":
            skipped.append((name, f"not running ({ctr.get('State', '?')})"))
            continue
        members.append(Member(ContainerRef(name, runtime=many.runtime), label=name))
    return members, skipped


def selector_of(workload: dict, kind: str, name: str) -> str:
    """A workload's own pod selector as a label selector string."""
    selector = (workload.get("spec") or {}).get("selector") or {}
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            terms.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            terms.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            terms.append(key)
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
    if not terms:
        raise InvalidInput(f"{kind}/{name} has an empty selector: it would match every pod")
    return ",".join(terms)


def _pods(many: WorkloadRef | SelectorRef, runtime) -> tuple[list[Member], list[tuple[str, str]]]:
    api = runtime.api
    if isinstance(many, SelectorRef) and many.all_namespaces:
        namespace = None
    else:
        namespace = many.namespace or runtime.default_namespace
    if isinstance(many, WorkloadRef):
        selector = selector_of(_read_workload(runtime, many, namespace), many.kind, many.name)
    else:
        selector = many.selector
    where = namespace or "(all namespaces)"
    running = runtime.call(api.list_pods, namespace, label_selector=selector, field_selector="status.phase=Running",
                           verb="list", resource="pods", namespace=where)
    others = runtime.call(api.list_pods, namespace, label_selector=selector, field_selector="status.phase!=Running",
                          verb="list", resource="pods", namespace=where)
    members, skipped = [], []
    for pod in others.get("items") or []:
        skipped.append((f"pod/{pod['metadata']['name']}", f"phase {pod.get('status', {}).get('phase', '?')}"))
    for pod in sorted(running.get("items") or [], key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
        meta = pod["metadata"]
        label = f"pod/{meta['name']}"
        if meta.get("deletionTimestamp"):
            skipped.append((label, "terminating"))
            continue
        container = many.container or _default_container(pod)
        if container is None:
            names = ", ".join(c["name"] for c in pod["spec"]["containers"])
            skipped.append((label, f"several containers and no -c ({names})"))
            continue
        state = next((st.get("state") or {} for st in pod.get("status", {}).get("containerStatuses") or []
                      if st["name"] == container), None)
        if state is None:
            skipped.append((label, f"no container {container!r}"))
            continue
        if "running" not in state:
            skipped.append((label, f"container {container} is {next(iter(state), 'not running')}"))
            continue
        members.append(Member(PodRef(meta["name"], container=container, namespace=meta["namespace"]),
                              label=label, namespace=meta["namespace"], container=container))
    return members, skipped


def _read_workload(runtime, many: WorkloadRef, namespace: str) -> dict:
    group = WORKLOAD_API[many.kind]
    path = f"/apis/{group}/namespaces/{namespace}/{many.kind}/{many.name}"
    return runtime.call(runtime.api.request, "GET", path, verb="get", resource=many.kind, namespace=namespace,
                        name=many.name)


def _default_container(pod: dict) -> str | None:
    names = [c["name"] for c in pod["spec"]["containers"]]
    annotated = (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
    if annotated in names:
        return annotated
    return names[0] if len(names) == 1 else None


# -- running --------------------------------------------------------------------------------------------

@dataclass
class Fleet:
    members: list[Member]
    parallel: int = 8
    fail_fast: bool = False
    on_change: Callable[[Outcome], None] = lambda outcome: None
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def prepare(self) -> list[Outcome]:
        """One pending outcome per member, before anything runs (a display can show them)."""
        if not self.outcomes:
            self.outcomes = [Outcome(m.label, m.namespace, m.container) for m in self.members]
        return self.outcomes

    def run(self, work: Callable[[Member, Outcome], None], *, cancel: Callable[[], None]) -> list[Outcome]:
        """Run work(member, outcome) for every member, at most `parallel` at a time. On
        Ctrl-C or SIGTERM: no new target starts, `cancel()` stops the running ones, and
        the interruption is raised once they have returned."""
        self.prepare()
        queue = list(zip(self.members, self.outcomes))
        lock = threading.Lock()

        def worker() -> None:
            while not self._stop.is_set():
                with lock:
                    if not queue:
                        return
                    member, outcome = queue.pop(0)
                outcome.status = "running"
                self.on_change(outcome)
                started = time.monotonic()
                try:
                    work(member, outcome)
                except Interrupted as exc:
                    outcome.status, outcome.exit_code = "interrupted", int(exc.exit_code)
                except DebugkitError as exc:
                    outcome.status = "error"
                    outcome.error = {"message": str(exc), "exit_code": int(exc.exit_code)}
                except Exception as exc:  # noqa: BLE001 - one target's bug must not stop the others
                    outcome.status = "error"
                    outcome.error = {"message": f"internal error: {type(exc).__name__}: {exc}",
                                     "exit_code": int(ExitCode.INTERNAL)}
                outcome.duration_s = time.monotonic() - started
                if outcome.status in ("failed", "error") and self.fail_fast:
                    self._stop.set()
                self.on_change(outcome)

        threads = [threading.Thread(target=worker, daemon=True, name=f"debugkit-fleet-{i}")
                   for i in range(max(1, min(self.parallel, len(self.members))))]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except (KeyboardInterrupt, Interrupted):
            self._stop.set()
            cancel()
            for thread in threads:
                thread.join(30)
            for outcome in self.outcomes:
                if outcome.status in ("pending", "running"):
                    outcome.status = "interrupted" if outcome.status == "running" else "not started"
            raise
        for outcome in self.outcomes:
            if outcome.status == "pending":
                outcome.status = "not started"  # --fail-fast
        return self.outcomes


def exit_status(outcomes: list[Outcome]) -> int:
    """0: every target passed; 1: a command or runbook failed somewhere; debugkit's own
    error code when no target could be reached at all."""
    if not outcomes:
        return int(ExitCode.TARGET_NOT_FOUND)
    if all(o.status == "passed" for o in outcomes):
        return 0
    reached = [o for o in outcomes if o.status in ("passed", "failed")]
    if not reached:
        errors = [o.error["exit_code"] for o in outcomes if o.error]
        return errors[0] if errors else 1
    return 1
