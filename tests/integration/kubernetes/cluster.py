"""A real single-node Kubernetes for the tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, containerd and a kubelet built and started by scripts/k8s-testenv (see
docs/k8s-testenv.md).

:class:`K8sCluster` is the handle on the node that the session fixture ``k8s_cluster``
(tests/integration/conftest.py, shared by every directory that needs the node) yields; the
fixture brings the node up once with :func:`k8s_testenv` (a cold first run builds Kubernetes
from source, which takes a long time) and sweeps test namespaces with
:func:`sweep_namespaces`. It skips only when this machine cannot host a node
(:func:`host_unsuitable`: not Linux, or not root), and never in CI.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

from tests.helpers import REPO, RUN_ID, RUN_LABEL, STALE_AFTER_S, TEST_LABEL, wait_for

SCRIPT = REPO / "scripts" / "k8s-testenv"
NODE_NAME = "debugkit-node"
RESTRICTED_USER = "debugkit-restricted"
# Built by `scripts/k8s-testenv images` into the local Docker engine.
BUSYBOX_IMAGE = "debugkit-testenv/busybox:1"
# Container states that will not become Running by waiting.
_STUCK = {
    "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError", "CrashLoopBackOff",
}
_TERMINAL_PHASES = {"Failed", "Succeeded"}
# run_deployment's pods carry this label with the Deployment's name; it is the selector.
DEPLOYMENT_LABEL = "io.debugkit.test-deployment"
# The serviceaccount controller creates a namespace's default ServiceAccount within a second;
# until then the ServiceAccount admission plugin refuses the namespace's pods.
DEFAULT_SA_TIMEOUT = 30
# The namespace controller starts emptying a deleted namespace 5 s after the deletion
# (its namespaceDeletionGracePeriod, fixed), and removes it a moment later.
NAMESPACE_GONE_TIMEOUT = 20
# A pod the scheduler has found no place for this long will not be placed by waiting.
UNSCHEDULABLE_AFTER_S = 10
CONTROLLER_MANAGER_LOG = "/var/lib/debugkit-k8s/log/kube-controller-manager.log"


def host_unsuitable() -> str | None:
    """Why this machine cannot host the node, or None."""
    if platform.system() != "Linux":
        return f"the Kubernetes test node needs Linux (this is {platform.system()})"
    if os.geteuid() != 0:
        return "the Kubernetes test node needs root (kubelet and containerd manage mounts, cgroups, netns)"
    return None


def k8s_testenv(*args: str, timeout: float, show: bool = False) -> subprocess.CompletedProcess:
    """Run scripts/k8s-testenv; its progress goes to the terminal when show is set."""
    return subprocess.run(
        [str(SCRIPT), *args], text=True, timeout=timeout,
        stdout=subprocess.PIPE, stderr=None if show else subprocess.PIPE,
    )


class K8sCluster:
    """Handle on the test node. All names created through it are unique per call."""

    def __init__(self, *, kubeconfig: str, restricted_user_kubeconfig: str, bin_dir: Path):
        from kubernetes import client, config

        self.kubeconfig = kubeconfig
        self.restricted_user_kubeconfig = restricted_user_kubeconfig
        self.restricted_user = RESTRICTED_USER
        self.node_name = NODE_NAME
        self.bin_dir = bin_dir
        self.kubectl_path = str(bin_dir / "kubectl")
        self.api_client = config.new_client_from_config(config_file=kubeconfig)
        self.api = client.CoreV1Api(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        self.rbac = client.RbacAuthorizationV1Api(self.api_client)
        self._loaded: set[str] = set()

    # ------------------------------------------------------------------ clients
    def restricted_api(self):
        """CoreV1Api acting as the RBAC-restricted user (no permissions until granted)."""
        from kubernetes import client, config

        return client.CoreV1Api(config.new_client_from_config(config_file=self.restricted_user_kubeconfig))

    def kubectl(self, *args: str, kubeconfig: str | None = None, check: bool = True,
                input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        """The kubectl built with the node, as text. check=True raises with its stderr."""
        proc = subprocess.run(
            [self.kubectl_path, "--kubeconfig", kubeconfig or self.kubeconfig, *args],
            input=input, capture_output=True, text=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    # ------------------------------------------------------------------ images
    def load_image(self, ref: str) -> str:
        """Make an image from the local Docker engine available to the node; returns ref."""
        if ref not in self._loaded:
            proc = k8s_testenv("load-image", ref, timeout=300)
            if proc.returncode != 0:
                raise AssertionError(f"k8s-testenv load-image {ref} failed:\n{proc.stderr}")
            self._loaded.add(ref)
        return ref

    # ------------------------------------------------------------------ namespaces
    @contextlib.contextmanager
    def namespace(self, level: str = "restricted", *, prefix: str = "dk-test") -> Iterator[str]:
        """A new namespace whose PodSecurity enforce level is ``level``
        (restricted, baseline or privileged), with its default ServiceAccount already
        there; its deletion starts afterwards (see delete_namespace)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        labels = {
            "pod-security.kubernetes.io/enforce": level,
            "pod-security.kubernetes.io/enforce-version": "latest",
            TEST_LABEL: "1",
            RUN_LABEL: RUN_ID,
        }
        self.api.create_namespace({"metadata": {"name": name, "labels": labels}})
        try:
            self.wait_default_service_account(name)
            yield name
        finally:
            self.delete_namespace(name)

    def wait_default_service_account(self, namespace: str, *, timeout: float = DEFAULT_SA_TIMEOUT) -> None:
        """Wait until ``namespace`` has its ``default`` ServiceAccount: the ServiceAccount
        admission plugin refuses every pod of a namespace that has none yet."""
        from kubernetes.client.exceptions import ApiException

        def exists():
            try:
                return self.api.read_namespaced_service_account("default", namespace) is not None
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise

        try:
            wait_for(exists, timeout=timeout, interval=0.1, what=f"the default ServiceAccount of {namespace}")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}: kube-controller-manager's serviceaccount-controller creates it, and until it "
                f"does, ServiceAccount admission refuses the namespace's pods. Is kube-controller-manager "
                f"running (scripts/k8s-testenv status)? Its log: {CONTROLLER_MANAGER_LOG}") from None

    def delete_namespace(self, name: str, *, timeout: float | None = None) -> None:
        """Start deleting a namespace: kube-controller-manager's namespace controller empties
        and removes it some 5 s later. Its pods are force-deleted at once, so that the
        controller has no grace periods to wait for (the kubelet stops them meanwhile).
        With ``timeout``, wait that long for it to be gone (see wait_namespaces_gone)."""
        from kubernetes.client.exceptions import ApiException

        try:
            # Terminating first: from then on no controller can create pods in it.
            self.api.delete_namespace(name)
            self.api.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise
        if timeout is not None:
            self.wait_namespaces_gone([name], timeout=timeout)

    def wait_namespaces_gone(self, names: list[str], *, timeout: float = NAMESPACE_GONE_TIMEOUT) -> list[str]:
        """Wait until none of ``names`` exists, for all of them together at most ``timeout``
        seconds; returns those that had to be finalized. Those still there then are stuck
        (kube-controller-manager down, or a finalizer nothing handles): their finalizers are
        dropped through the ``finalize`` subresource, which removes them at once. Whatever
        they still held stays in etcd, out of sight."""
        from kubernetes.client.exceptions import ApiException

        left = set(names)

        def gone():
            for name in sorted(left):
                try:
                    self.api.read_namespace(name)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    left.discard(name)
            return not left

        try:
            wait_for(gone, timeout=timeout, interval=0.5, what="namespaces to be deleted")
            return []
        except AssertionError:
            pass
        stuck = sorted(left)
        for name in stuck:
            try:
                ns = self.api.read_namespace(name)
                ns.spec.finalizers = []
                self.api.replace_namespace_finalize(name, ns)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        print(f"[k8s_cluster] finalized namespaces still there {timeout} s after their deletion: "
              f"{', '.join(stuck)} (is kube-controller-manager running? log: {CONTROLLER_MANAGER_LOG})",
              file=sys.stderr)
        return stuck

    # ------------------------------------------------------------------ pods
    def pod_manifest(self, namespace: str, image: str, *, name: str | None = None,
                     command: list[str] | None = None, container_name: str = "app",
                     run_as_user: int | None = None, run_as_group: int | None = None,
                     restricted: bool = True, container: dict | None = None,
                     **spec_overrides: Any) -> dict:
        """A pod bound to the node by spec.nodeName (the scheduler leaves such pods alone),
        without a service-account token. ``restricted`` adds what PodSecurity ``restricted``
        demands. ``container`` is merged into the container, ``spec_overrides`` into the pod
        spec (``automountServiceAccountToken=True`` mounts the token)."""
        ctr: dict[str, Any] = {"name": container_name, "image": image, "imagePullPolicy": "IfNotPresent"}
        if command is not None:
            ctr["command"] = command
        pod_sc: dict[str, Any] = {}
        if restricted:
            pod_sc.update(runAsNonRoot=True, seccompProfile={"type": "RuntimeDefault"})
            ctr["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        if run_as_user is not None:
            pod_sc["runAsUser"] = run_as_user
        if run_as_group is not None:
            pod_sc["runAsGroup"] = run_as_group
        ctr.update(container or {})
        spec: dict[str, Any] = {
            "nodeName": self.node_name,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": pod_sc,
            "containers": [ctr],
        }
        spec.update(spec_overrides)
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name or f"dk-pod-{uuid.uuid4().hex[:8]}", "namespace": namespace,
                         "labels": {TEST_LABEL: "1", RUN_LABEL: RUN_ID}},
            "spec": spec,
        }

    def run_pod(self, namespace: str, image: str, *, name: str | None = None, timeout: float = 120,
                **kwargs: Any):
        """Create a pod (see pod_manifest for the arguments) and wait until it is Running
        with every container started; returns the V1Pod. Fails early, with the events and
        container states, when it cannot get there."""
        manifest = self.pod_manifest(namespace, image, name=name, **kwargs)
        self.api.create_namespaced_pod(namespace, manifest)
        return self.wait_pod_running(namespace, manifest["metadata"]["name"], timeout=timeout)

    def wait_pod_running(self, namespace: str, name: str, *, timeout: float = 120):
        last = None

        def running():
            nonlocal last
            last = self.api.read_namespaced_pod(name, namespace)
            failed = self.api.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={name},reason=FailedCreatePodSandBox").items
            problem = _pod_problem(last, failed)
            if problem:
                raise AssertionError(f"{problem}\n{self.describe(namespace, name)}")
            return _pod_started(last)

        try:
            wait_for(running, timeout=timeout, interval=0.25, what=f"pod {namespace}/{name} to run")
        except AssertionError as exc:
            if str(exc).startswith("timed out"):
                raise AssertionError(f"{exc}\n{self.describe(namespace, name)}") from None
            raise
        return last

    def wait_ephemeral_running(self, namespace: str, pod: str, container: str, *, timeout: float = 90):
        def running():
            p = self.api.read_namespaced_pod(pod, namespace)
            for st in p.status.ephemeral_container_statuses or []:
                if st.name == container:
                    if st.state.waiting is not None and st.state.waiting.reason in _STUCK:
                        raise AssertionError(f"ephemeral container {container} stuck: {st.state.waiting}")
                    if st.state.terminated is not None:
                        raise AssertionError(f"ephemeral container {container} ended: {st.state.terminated}")
                    return st.state.running is not None and p
            return None

        try:
            return wait_for(running, timeout=timeout, interval=0.25, what=f"ephemeral container {container} in {namespace}/{pod}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe(namespace, pod)}") from None

    def wait_logs(self, namespace: str, pod: str, container: str, contains: str, *, timeout: float = 60) -> str:
        """Poll a container's log until it contains ``contains``; returns the log."""
        from kubernetes.client.exceptions import ApiException

        log = ""

        def has():
            nonlocal log
            try:
                log = self.api.read_namespaced_pod_log(pod, namespace, container=container)
            except ApiException:
                return False
            return contains in log

        try:
            wait_for(has, timeout=timeout, interval=0.5, what=f"{contains!r} in the log of {pod}/{container}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; log so far:\n{log}") from None
        return log

    # ------------------------------------------------------------------ workloads
    def pods_of(self, namespace: str, selector: str | dict[str, str]) -> list:
        """The pods matching a label selector (``"a=b,c"`` or ``{"a": "b"}``), by name,
        as the API lists them: terminating ones included."""
        if isinstance(selector, dict):
            selector = ",".join(f"{k}={v}" for k, v in selector.items())
        pods = self.api.list_namespaced_pod(namespace, label_selector=selector).items
        return sorted(pods, key=lambda p: p.metadata.name)

    def run_deployment(self, namespace: str, image: str, *, replicas: int, name: str | None = None,
                       labels: dict[str, str] | None = None, container: dict | None = None,
                       timeout: float = 120, **pod_kwargs: Any) -> str:
        """Create a Deployment and wait until exactly ``replicas`` of its pods run with every
        container started; returns its name. The pod template is pod_manifest's (restricted
        by default; ``pod_kwargs`` are its arguments, such as ``run_as_user`` or ``command``)
        without spec.nodeName: the scheduler places the pods. ``labels`` go on the
        Deployment and its pods, which also carry ``app=<name>`` unless ``labels`` sets
        ``app``; the selector is DEPLOYMENT_LABEL=<name>. Fails early, with kubectl
        describe, when the pods cannot get there (see wait_deployment_running)."""
        name = name or f"dk-deploy-{uuid.uuid4().hex[:8]}"
        pod = self.pod_manifest(namespace, image, container=container, **pod_kwargs)
        spec = pod["spec"]
        del spec["nodeName"]
        meta_labels = {TEST_LABEL: "1", RUN_LABEL: RUN_ID, **(labels or {})}
        pod_labels = {"app": name, **meta_labels, DEPLOYMENT_LABEL: name}
        self.apps.create_namespaced_deployment(namespace, {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": meta_labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {DEPLOYMENT_LABEL: name}},
                "template": {"metadata": {"labels": pod_labels}, "spec": spec},
            },
        })
        self.wait_deployment_running(namespace, name, replicas=replicas, timeout=timeout)
        return name

    def wait_deployment_running(self, namespace: str, name: str, *, replicas: int,
                                timeout: float = 120) -> list:
        """Wait until exactly ``replicas`` pods of the Deployment exist (terminating ones
        aside) and all run with every container started; returns them. Fails early when a
        ReplicaSet cannot create pods (PodSecurity, ServiceAccount admission, quota), when a
        pod is stuck as wait_pod_running sees it, or stays unschedulable."""
        dep = self.apps.read_namespaced_deployment(name, namespace)
        selector = ",".join(f"{k}={v}" for k, v in (dep.spec.selector.match_labels or {}).items())
        what = f"deployment {namespace}/{name}"
        pods: list = []

        def running():
            nonlocal pods
            self._raise_if_replicas_fail(namespace, name, selector)
            pods = [p for p in self.pods_of(namespace, selector) if p.metadata.deletion_timestamp is None]
            sandbox = self.api.list_namespaced_event(namespace, field_selector="reason=FailedCreatePodSandBox").items
            now = datetime.datetime.now(datetime.timezone.utc)
            for p in pods:
                problem = _pod_problem(p, [e for e in sandbox if e.involved_object.name == p.metadata.name])
                if problem is None:
                    problem = _unschedulable(p, now)
                if problem:
                    raise AssertionError(f"{what}: {problem}\n{self.describe_deployment(namespace, name, p)}")
            return len(pods) == replicas and all(_pod_started(p) for p in pods) and pods

        try:
            return wait_for(running, timeout=timeout, interval=0.5,
                            what=f"{replicas} running pods of {what}")
        except AssertionError as exc:
            if not str(exc).startswith("timed out"):
                raise
            started = sum(1 for p in pods if _pod_started(p))
            hint = ""
            if not pods:
                hint = ("\nno pods at all: is kube-controller-manager running (scripts/k8s-testenv "
                        f"status)? Its log: {CONTROLLER_MANAGER_LOG}")
            elif any(not p.spec.node_name for p in pods):
                hint = "\npods without a node: is kube-scheduler running (scripts/k8s-testenv status)?"
            stuck = next((p for p in pods if not _pod_started(p)), None)
            raise AssertionError(f"{exc}: {len(pods)} pods, {started} running{hint}\n"
                                 f"{self.describe_deployment(namespace, name, stuck)}") from None

    def _raise_if_replicas_fail(self, namespace: str, name: str, selector: str) -> None:
        """A ReplicaSet whose pods admission refuses says so in its ReplicaFailure condition."""
        for rs in self.apps.list_namespaced_replica_set(namespace, label_selector=selector).items:
            for cond in rs.status.conditions or []:
                if cond.type == "ReplicaFailure" and cond.status == "True":
                    raise AssertionError(
                        f"deployment {namespace}/{name}: replicaset {rs.metadata.name} cannot create pods: "
                        f"{cond.reason}: {cond.message}\n{self.describe_deployment(namespace, name)}")

    def describe_deployment(self, namespace: str, name: str, pod=None) -> str:
        """kubectl describe of the Deployment, its pods in a table, and ``pod`` described."""
        dep = self.kubectl("describe", "deployment", "-n", namespace, name, check=False)
        table = self.kubectl("get", "pods", "-n", namespace, "-o", "wide", "-l", f"{DEPLOYMENT_LABEL}={name}",
                             check=False)
        text = f"{dep.stdout}{dep.stderr}\n{table.stdout}{table.stderr}"
        if pod is not None:
            text += f"\n{self.describe(namespace, pod.metadata.name)}"
        return text

    def describe(self, namespace: str, pod: str) -> str:
        """kubectl describe plus the end of the kubelet log: context for a failure message."""
        out = self.kubectl("describe", "pod", "-n", namespace, pod, check=False)
        kubelet_log = ""
        log_path = Path("/var/lib/debugkit-k8s/log/kubelet.log")
        if log_path.exists():
            kubelet_log = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        return f"{out.stdout}{out.stderr}\n--- kubelet.log (tail) ---\n{kubelet_log}"

    # ------------------------------------------------------------------ RBAC
    def grant_restricted_user(self, namespace: str, rules: list[dict]) -> str:
        """Bind a Role with ``rules`` to the restricted user in ``namespace``; returns its name."""
        name = f"dk-role-{uuid.uuid4().hex[:8]}"
        self.rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
        self.rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": self.restricted_user}],
        })
        return name


def _pod_started(pod) -> bool:
    statuses = pod.status.container_statuses or []
    return bool(pod.status.phase == "Running" and statuses and all(st.state.running is not None for st in statuses))


def _pod_problem(pod, sandbox_failures: list) -> str | None:
    """Why ``pod`` will not run by waiting longer, or None. ``sandbox_failures``: its
    FailedCreatePodSandBox events."""
    where = f"pod {pod.metadata.namespace}/{pod.metadata.name}"
    # A sandbox the runtime refuses three times will not start by waiting longer.
    if sum(e.count or 1 for e in sandbox_failures) >= 3:
        return f"{where}: the runtime cannot create its sandbox: {sandbox_failures[-1].message}"
    for st in pod.status.container_statuses or []:
        waiting = st.state.waiting
        if waiting is not None and waiting.reason in _STUCK:
            return f"{where} container {st.name} is stuck: {waiting.reason}: {waiting.message}"
    if pod.status.phase in _TERMINAL_PHASES:
        return f"{where} ended ({pod.status.phase}) instead of running"
    return None


def _unschedulable(pod, now: datetime.datetime) -> str | None:
    for cond in pod.status.conditions or []:
        if (cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable"
                and cond.last_transition_time is not None
                and (now - cond.last_transition_time).total_seconds() > UNSCHEDULABLE_AFTER_S):
            return f"pod {pod.metadata.name} is unschedulable: {cond.message}"
    return None


def sweep_namespaces(cluster: K8sCluster, *, stale_only: bool, wait: bool) -> None:
    """Delete test namespaces that tests left behind: this run's (at its end), or those of
    any run older than STALE_AFTER_S (a crashed run). A concurrent run's are left alone.
    This run's include those its tests deleted that are still terminating; with ``wait``,
    all are waited for (bounded) and finalized if stuck."""
    now = datetime.datetime.now(datetime.timezone.utc)
    names = []
    for ns in cluster.api.list_namespace(label_selector=f"{TEST_LABEL}=1").items:
        mine = (ns.metadata.labels or {}).get(RUN_LABEL) == RUN_ID
        age = (now - ns.metadata.creation_timestamp).total_seconds()
        if (not stale_only and mine) or age > STALE_AFTER_S:
            names.append(ns.metadata.name)
    for name in names:
        cluster.delete_namespace(name)
    if wait and names:
        cluster.wait_namespaces_gone(names)
