"""Fleets on Kubernetes: a workload's pods (through its own selector) or the pods a label
selector matches, each running container a member and every other pod reported with why;
and why a pod went away while it was debugged."""
from __future__ import annotations

from debugkit.core.errors import DebugkitError, InvalidInput, TargetNotFound
from debugkit.core.targets import PodRef, SelectorRef, WorkloadRef
from debugkit.runtimes.base import Expansion, Member
from debugkit.runtimes.kubernetes.planning import default_container


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


def expand(runtime, many: WorkloadRef | SelectorRef) -> Expansion:
    """One API list for the whole fleet (after one read of the workload)."""
    api = runtime.api
    if isinstance(many, SelectorRef) and many.all_namespaces:
        namespace = None
    else:
        namespace = many.namespace or runtime.default_namespace
    if isinstance(many, WorkloadRef):
        workload = runtime.call(api.read_workload, many.kind, namespace, many.name, verb="get", resource=many.kind,
                                namespace=namespace, name=many.name)
        selector = selector_of(workload, many.kind, many.name)
    else:
        selector = many.selector
    where = namespace or "(all namespaces)"
    found = runtime.call(api.list_pods, namespace, label_selector=selector, verb="list", resource="pods",
                         namespace=where)
    members, skipped = [], []
    for pod in sorted(found.get("items") or [], key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
        meta = pod["metadata"]
        # Across namespaces a name alone is ambiguous: debugkit's own NAMESPACE/POD form.
        label = f"pod/{meta['name']}" if namespace else f"k8s://{meta['namespace']}/{meta['name']}"
        phase = (pod.get("status") or {}).get("phase", "?")
        if phase != "Running":
            skipped.append((label, f"phase {phase}"))
            continue
        if meta.get("deletionTimestamp"):
            skipped.append((label, "terminating"))
            continue
        container = many.container or default_container(pod)
        if container is None:
            names = ", ".join(c["name"] for c in pod["spec"]["containers"])
            skipped.append((label, f"several containers and no -c ({names})"))
            continue
        state = next((st.get("state") or {} for st in (pod.get("status") or {}).get("containerStatuses") or []
                      if st["name"] == container), None)
        if state is None:
            skipped.append((label, f"no container {container!r}"))
            continue
        if "running" not in state:
            skipped.append((label, f"container {container} is {next(iter(state), 'not running')}"))
            continue
        ref = PodRef(meta["name"], container=container, namespace=meta["namespace"], runtime=many.runtime)
        members.append(Member(ref, label=label, namespace=meta["namespace"], container=container))
    return Expansion(members=tuple(members), skipped=tuple(skipped))


def why_gone(runtime, ref: PodRef) -> str | None:
    """Deleted, being deleted, or no longer running; None while it runs (one GET, asked only
    after a target failed in a way that a disappearing pod explains)."""
    if not isinstance(ref, PodRef):
        return None
    try:
        pod = runtime.read_pod(ref.namespace or runtime.default_namespace, ref.pod)
    except TargetNotFound:
        return "was deleted while it was debugged"
    except DebugkitError:
        return None
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "was being deleted while it was debugged"
    phase = (pod.get("status") or {}).get("phase")
    if phase != "Running":
        return f"stopped running while it was debugged (phase {phase})"
    return None
