"""Completion of Kubernetes targets: running pods, workloads and namespaces, in the kube
context the flags typed so far name. Every request gives up after the caller's timeout;
the caller bounds the whole TAB and completes nothing on any failure."""
from __future__ import annotations

import threading
from urllib.parse import quote

from debugkit.core.targets import POD_KINDS, POD_SCHEME, WORKLOAD_KINDS, WORKLOAD_SHORT

WORKLOAD_API = {"deployments": "apps/v1", "statefulsets": "apps/v1", "daemonsets": "apps/v1",
                "replicasets": "apps/v1", "jobs": "batch/v1"}
MAX_ITEMS = 500      # a namespace with more pods than this is listed in part


class Cluster:
    """The runtime's kube context, connected on first use, with a short timeout."""

    def __init__(self, runtime, *, namespace: str | None = None, timeout: float):
        self.runtime = runtime
        self.flag_namespace = namespace
        self.timeout = timeout
        self._client = None
        self._auth = None
        self._lock = threading.Lock()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def client(self):
        with self._lock:
            if self._client is None:
                from debugkit.runtimes.kubernetes.clients import quiet_client

                connection = self.runtime.connection
                self._client, self._auth = quiet_client(connection.kubeconfig, connection.kube_context,
                                                        impersonate=connection.kube_impersonate,
                                                        exec_timeout=self.timeout, quiet=True)
            return self._client

    @property
    def namespace(self) -> str:
        from debugkit.runtimes.kubernetes.clients import namespace_for

        self.client()
        return namespace_for(self.flag_namespace, self._auth, self.runtime.preferences)

    def get(self, path: str, **query) -> dict:
        return self.client().request("GET", path, query=query or None, timeout=self.timeout)

    def names(self, path: str) -> list[str]:
        items = self.get(path, limit=MAX_ITEMS).get("items") or []
        return sorted(item["metadata"]["name"] for item in items)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- what can be completed ------------------------------------------------------------

    def namespaces(self) -> list[str]:
        return self.names("/api/v1/namespaces")

    def pods(self, namespace: str | None = None) -> list[str]:
        ns = namespace or self.namespace
        items = self.get(f"/api/v1/namespaces/{quote(ns, safe='')}/pods", limit=MAX_ITEMS).get("items") or []
        # A pod that is not running cannot be debugged: leave it out (kubectl does too, for exec).
        return sorted(item["metadata"]["name"] for item in items
                      if (item.get("status") or {}).get("phase") == "Running")

    def workloads(self, plural: str, namespace: str | None = None) -> list[str]:
        ns = namespace or self.namespace
        return self.names(f"/apis/{WORKLOAD_API[plural]}/namespaces/{quote(ns, safe='')}/{plural}")

    def containers(self, pod: str, namespace: str | None = None) -> list[str]:
        ns = namespace or self.namespace
        found = self.get(f"/api/v1/namespaces/{quote(ns, safe='')}/pods/{quote(pod, safe='')}")
        return [c["name"] for c in (found.get("spec") or {}).get("containers") or []]

    def targets(self, word: str) -> list[str]:
        """pod/NAME[/CONTAINER], deploy/ sts/ ds/ rs/ job/NAME (once a letter of the kind is
        typed), k8s://NAMESPACE/POD[/CONTAINER]; with nothing typed yet, pod/ names."""
        if word.startswith(POD_SCHEME):
            return self._k8s_refs(word[len(POD_SCHEME):])
        if "://" in word:
            return []
        kind, sep, name = word.partition("/")
        if sep:
            if kind in POD_KINDS:
                pod, sep, _ctr = name.partition("/")
                if sep:
                    return [f"{kind}/{pod}/{c}" for c in self.containers(pod)]
                return [f"{kind}/{p}" for p in self.pods()]
            if kind in WORKLOAD_KINDS:
                return [f"{kind}/{w}" for w in self.workloads(WORKLOAD_KINDS[kind])]
            return []
        found = []
        if not word or "pod/".startswith(word):
            found += [f"pod/{p}" for p in self.pods()]
        for plural, short in WORKLOAD_SHORT.items():
            if word and f"{short}/".startswith(word):
                found += [f"{short}/{w}" for w in self.workloads(plural)]
        return found

    def _k8s_refs(self, rest: str) -> list[str]:
        """While the namespace is typed, the namespaces; when only one matches, its pods at
        once (a lone `k8s://ns/` would get a space after it)."""
        parts = rest.split("/")
        if len(parts) == 1:
            matching = [ns for ns in self.namespaces() if ns.startswith(parts[0])]
            if len(matching) != 1:
                return [f"{POD_SCHEME}{ns}/" for ns in matching]
            parts = [matching[0], ""]
        if len(parts) == 2:
            return [f"{POD_SCHEME}{parts[0]}/{p}" for p in self.pods(parts[0])]
        return [f"{POD_SCHEME}{parts[0]}/{parts[1]}/{c}" for c in self.containers(parts[1], parts[0])]
