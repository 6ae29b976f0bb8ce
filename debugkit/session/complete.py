"""What the shell may complete: running containers, pods, workloads, namespaces, kube
contexts, runbooks. Plain strings in, plain strings out; the CLI wraps them for click.

Completion runs while a person waits at a prompt, so it never hangs and never
complains: every engine or API call gives up after CALL_TIMEOUT seconds, all the
lookups for one TAB run side by side and whatever has not answered after BUDGET
seconds is left behind (its thread is a daemon; the process exits without it), and any
failure (no engine, no kubeconfig, RBAC, a broken config file) completes nothing.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable

from debugkit.core.spec import LABEL_MANAGED
from debugkit.core.targets import WORKLOAD_KINDS

CALL_TIMEOUT = 1.0   # one engine or API request
BUDGET = 1.5         # everything for one TAB
POD_KINDS = ("pod", "pods", "po")
WORKLOAD_API = {"deployments": "apps/v1", "statefulsets": "apps/v1", "daemonsets": "apps/v1",
                "replicasets": "apps/v1", "jobs": "batch/v1"}
SHORT_KINDS = ("deploy", "sts", "ds", "rs", "job")
MAX_ITEMS = 500      # a namespace with more pods than this is listed in part


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


# -- engines --------------------------------------------------------------------------------

def container_names(runtime: str = "docker", *, prefix: str = "", docker_host: str | None = None,
                    docker_context: str | None = None) -> list[str]:
    """Running containers on Docker or Podman, but not debugkit's own sidecars (they are
    refused as targets), each as `prefix + name`."""
    from debugkit.session import probes

    if runtime == "podman" and not probes.engine_configured("podman"):
        return []
    api = probes.engine_client(runtime, timeout=CALL_TIMEOUT, docker_host=docker_host, docker_context=docker_context)
    try:
        found = api.containers(filters={"status": ["running"]})
    finally:
        api.close()
    names = []
    for ctr in found or []:
        if (ctr.get("Labels") or {}).get(LABEL_MANAGED):
            continue
        for name in ctr.get("Names") or []:
            names.append(prefix + name.lstrip("/"))
    return sorted(names)


# -- Kubernetes -----------------------------------------------------------------------------

class Cluster:
    """The kube context the flags typed so far name, connected on first use (or None:
    no kubeconfig here, or one that cannot be used)."""

    def __init__(self, *, kubeconfig: str | None = None, context: str | None = None,
                 namespace: str | None = None):
        self.kubeconfig = kubeconfig
        self.context = context
        self.flag_namespace = namespace
        self._client = None
        self._auth = None
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        from debugkit.session import probes

        try:
            return probes.kube_configured(self.kubeconfig)
        except Exception:  # noqa: BLE001
            return False

    def client(self):
        with self._lock:
            if self._client is None:
                from debugkit.session import probes

                self._client, self._auth = probes.kube_client(self.kubeconfig, self.context,
                                                              exec_timeout=CALL_TIMEOUT, quiet=True)
            return self._client

    @property
    def namespace(self) -> str:
        from debugkit.session import probes

        self.client()
        return probes.kube_namespace(self.flag_namespace, self._auth)

    def get(self, path: str, **query) -> dict:
        return self.client().request("GET", path, query=query or None, timeout=CALL_TIMEOUT)

    def names(self, path: str) -> list[str]:
        items = self.get(path, limit=MAX_ITEMS).get("items") or []
        return sorted(item["metadata"]["name"] for item in items)

    # -- what can be completed ------------------------------------------------------------

    def namespaces(self) -> list[str]:
        return self.names("/api/v1/namespaces")

    def pods(self, namespace: str | None = None) -> list[str]:
        from urllib.parse import quote

        ns = namespace or self.namespace
        items = self.get(f"/api/v1/namespaces/{quote(ns, safe='')}/pods", limit=MAX_ITEMS).get("items") or []
        # A pod that is not running cannot be debugged: leave it out (kubectl does too, for exec).
        return sorted(item["metadata"]["name"] for item in items
                      if (item.get("status") or {}).get("phase") == "Running")

    def workloads(self, plural: str, namespace: str | None = None) -> list[str]:
        from urllib.parse import quote

        ns = namespace or self.namespace
        return self.names(f"/apis/{WORKLOAD_API[plural]}/namespaces/{quote(ns, safe='')}/{plural}")

    def containers(self, pod: str, namespace: str | None = None) -> list[str]:
        from urllib.parse import quote

        ns = namespace or self.namespace
        found = self.get(f"/api/v1/namespaces/{quote(ns, safe='')}/pods/{quote(pod, safe='')}")
        return [c["name"] for c in (found.get("spec") or {}).get("containers") or []]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def kube_contexts(kubeconfig: str | None = None) -> list[str]:
    from debugkit.runtimes.kubernetes.kubeconfig import context_names

    return context_names(kubeconfig)


# -- targets --------------------------------------------------------------------------------

def targets(incomplete: str, *, kubeconfig: str | None = None, context: str | None = None,
            namespace: str | None = None, docker_host: str | None = None, docker_context: str | None = None,
            budget: float = BUDGET) -> list[str]:
    """Every target reference that starts with `incomplete`:

        NAME, docker://NAME     running Docker containers
        podman://NAME           running Podman containers (when Podman is configured)
        pod/NAME[/CONTAINER]    running pods in the namespace (-n, or the context's)
        deploy/ sts/ ds/ rs/ job/NAME   workloads (once the first letter is typed)
        k8s://NAMESPACE/POD[/CONTAINER]

    With nothing typed yet: Docker names, podman:// names and pod/ names."""
    cluster = Cluster(kubeconfig=kubeconfig, context=context, namespace=namespace)
    calls: list[Callable[[], Iterable[str]]] = []
    scheme, sep, rest = incomplete.partition("://")
    if sep:
        if scheme == "docker":
            calls.append(lambda: container_names("docker", prefix="docker://", docker_host=docker_host,
                                                          docker_context=docker_context))
        elif scheme == "podman":
            calls.append(lambda: container_names("podman", prefix="podman://"))
        elif scheme == "k8s" and cluster.configured:
            calls.append(lambda: _k8s_refs(cluster, rest))
    elif "/" in incomplete:
        kind, _, name = incomplete.partition("/")
        if kind in POD_KINDS and cluster.configured:
            pod, sep, _ctr = name.partition("/")
            if sep:
                calls.append(lambda: [f"{kind}/{pod}/{c}" for c in cluster.containers(pod)])
            else:
                calls.append(lambda: [f"{kind}/{p}" for p in cluster.pods()])
        elif kind in WORKLOAD_KINDS and cluster.configured:
            plural = WORKLOAD_KINDS[kind]
            calls.append(lambda: [f"{kind}/{w}" for w in cluster.workloads(plural)])
    else:
        calls.append(lambda: container_names("docker", docker_host=docker_host, docker_context=docker_context))
        if not incomplete or "podman://".startswith(incomplete):
            calls.append(lambda: container_names("podman", prefix="podman://"))
        if cluster.configured:
            if not incomplete or "pod/".startswith(incomplete):
                calls.append(lambda: [f"pod/{p}" for p in cluster.pods()])
            for short in SHORT_KINDS:
                if incomplete and f"{short}/".startswith(incomplete):
                    plural = WORKLOAD_KINDS[short]
                    calls.append(lambda short=short, plural=plural: [f"{short}/{w}" for w in cluster.workloads(plural)])
    try:
        found = bounded(calls, budget=budget)
    finally:
        cluster.close()
    return [ref for ref in dict.fromkeys(found) if ref.startswith(incomplete)]


def _k8s_refs(cluster: Cluster, rest: str) -> list[str]:
    """k8s://NAMESPACE/POD[/CONTAINER]. While the namespace is typed, the namespaces; when
    only one matches, its pods at once (a lone `k8s://ns/` would get a space after it)."""
    parts = rest.split("/")
    if len(parts) == 1:
        matching = [ns for ns in cluster.namespaces() if ns.startswith(parts[0])]
        if len(matching) != 1:
            return [f"k8s://{ns}/" for ns in matching]
        parts = [matching[0], ""]
    if len(parts) == 2:
        return [f"k8s://{parts[0]}/{p}" for p in cluster.pods(parts[0])]
    return [f"k8s://{parts[0]}/{parts[1]}/{c}" for c in cluster.containers(parts[1], parts[0])]


def namespaces(incomplete: str, *, kubeconfig: str | None = None, context: str | None = None,
               budget: float = BUDGET) -> list[str]:
    cluster = Cluster(kubeconfig=kubeconfig, context=context)
    if not cluster.configured:
        return []
    try:
        return [ns for ns in bounded([cluster.namespaces], budget=budget) if ns.startswith(incomplete)]
    finally:
        cluster.close()


def pod_containers(target: str, incomplete: str, *, kubeconfig: str | None = None, context: str | None = None,
                   namespace: str | None = None, budget: float = BUDGET) -> list[str]:
    """-c: the containers of the pod TARGET names (pod/NAME or k8s://NS/NAME)."""
    if target.startswith("k8s://"):
        parts = target[len("k8s://"):].split("/")
        if len(parts) < 2:
            return []
        namespace, pod = parts[0], parts[1]
    elif target.partition("/")[0] in POD_KINDS:
        pod = target.split("/")[1]
    else:
        return []
    cluster = Cluster(kubeconfig=kubeconfig, context=context, namespace=namespace)
    if not pod or not cluster.configured:
        return []
    try:
        return [c for c in bounded([lambda: cluster.containers(pod)], budget=budget) if c.startswith(incomplete)]
    finally:
        cluster.close()


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
