"""A real single-node Kubernetes for the tests: kube-apiserver, etcd, containerd and a kubelet
built and started by scripts/k8s-testenv (see docs/k8s-testenv.md).

Session fixture ``k8s_cluster`` brings the node up once (a cold first run builds Kubernetes
from source, which takes a long time) and yields a :class:`K8sCluster`. It skips only when
this machine cannot host a node (not Linux, or not root), and never in CI.
"""
from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import IN_CI, REPO, wait_for, RUN_ID, RUN_LABEL, STALE_AFTER_S, TEST_LABEL

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


def host_unsuitable() -> str | None:
    """Why this machine cannot host the node, or None."""
    if platform.system() != "Linux":
        return f"the Kubernetes test node needs Linux (this is {platform.system()})"
    if os.geteuid() != 0:
        return "the Kubernetes test node needs root (kubelet and containerd manage mounts, cgroups, netns)"
    return None


def _script(*args: str, timeout: float, show: bool = False) -> subprocess.CompletedProcess:
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
            proc = _script("load-image", ref, timeout=300)
            if proc.returncode != 0:
                raise AssertionError(f"k8s-testenv load-image {ref} failed:\n{proc.stderr}")
            self._loaded.add(ref)
        return ref

    # ------------------------------------------------------------------ namespaces
    @contextlib.contextmanager
    def namespace(self, level: str = "restricted", *, prefix: str = "dk-test") -> Iterator[str]:
        """A new namespace whose PodSecurity enforce level is ``level``
        (restricted, baseline or privileged); deleted with its pods afterwards."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        labels = {
            "pod-security.kubernetes.io/enforce": level,
            "pod-security.kubernetes.io/enforce-version": "latest",
            TEST_LABEL: "1",
            RUN_LABEL: RUN_ID,
        }
        self.api.create_namespace({"metadata": {"name": name, "labels": labels}})
        try:
            yield name
        finally:
            self.delete_namespace(name)

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace now. There is no controller-manager on this node, so nothing
        else would empty it or drop its ``kubernetes`` finalizer."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.delete_collection_namespaced_pod(name, grace_period_seconds=0)
            self.api.delete_namespace(name, grace_period_seconds=0)
            ns = self.api.read_namespace(name)
            ns.spec.finalizers = []
            self.api.replace_namespace_finalize(name, ns)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # ------------------------------------------------------------------ pods
    def pod_manifest(self, namespace: str, image: str, *, name: str | None = None,
                     command: list[str] | None = None, container_name: str = "app",
                     run_as_user: int | None = None, run_as_group: int | None = None,
                     restricted: bool = True, container: dict | None = None,
                     **spec_overrides: Any) -> dict:
        """A pod bound to the node (spec.nodeName: there is no scheduler), without a
        service-account token. ``restricted`` adds what PodSecurity ``restricted`` demands.
        ``container`` is merged into the container, ``spec_overrides`` into the pod spec."""
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
            # A sandbox the runtime refuses three times will not start by waiting longer.
            failed = self.api.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={name},reason=FailedCreatePodSandBox").items
            if sum(e.count or 1 for e in failed) >= 3:
                raise AssertionError(f"pod {namespace}/{name}: the runtime cannot create its sandbox: "
                                     f"{failed[-1].message}\n{self.describe(namespace, name)}")
            statuses = last.status.container_statuses or []
            for st in statuses:
                waiting = st.state.waiting
                if waiting is not None and waiting.reason in _STUCK:
                    raise AssertionError(f"pod {namespace}/{name} container {st.name} is stuck: "
                                         f"{waiting.reason}: {waiting.message}\n{self.describe(namespace, name)}")
            if last.status.phase in _TERMINAL_PHASES:
                raise AssertionError(f"pod {namespace}/{name} ended ({last.status.phase}) instead of running\n"
                                     f"{self.describe(namespace, name)}")
            return (last.status.phase == "Running" and statuses
                    and all(st.state.running is not None for st in statuses))

        try:
            wait_for(running, timeout=timeout, interval=0.25, what=f"pod {namespace}/{name} to run")
        except AssertionError as exc:
            if "timed out" in str(exc):
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


def _sweep_namespaces(cluster: K8sCluster, *, stale_only: bool) -> None:
    """Delete test namespaces that tests left behind: this run's (at its end), or those of
    any run older than STALE_AFTER_S (a crashed run). A concurrent run's are left alone."""
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc)
    for ns in cluster.api.list_namespace(label_selector=f"{TEST_LABEL}=1").items:
        mine = (ns.metadata.labels or {}).get(RUN_LABEL) == RUN_ID
        age = (now - ns.metadata.creation_timestamp).total_seconds()
        if (not stale_only and mine) or age > STALE_AFTER_S:
            cluster.delete_namespace(ns.metadata.name)


@pytest.fixture(scope="session")
def k8s_cluster(pytestconfig) -> Iterator[K8sCluster]:
    """The real single-node cluster, up for the whole session. Like the Docker engine it
    stays up afterwards, so that the next run starts in a second and a concurrent session
    is not cut off; DEBUGKIT_K8S_DOWN=1 brings it down at the end of the session."""
    reason = host_unsuitable()
    if reason:
        if IN_CI:
            pytest.fail(f"CI must run the Kubernetes tests, but {reason}")
        pytest.skip(reason)
    try:
        import kubernetes  # noqa: F401
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"CI must run the Kubernetes tests, but the kubernetes client is missing: {exc}")
        pytest.skip(f"the kubernetes client is not installed: {exc}")
    was_up = _script("is-up", timeout=60).returncode == 0
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    ctx = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with ctx:
        if not was_up:
            print("\n[k8s_cluster] scripts/k8s-testenv up (a cold first run builds Kubernetes "
                  "from source: 7 to 15 min on 2 cores)", file=sys.stderr, flush=True)
        # The build is cached; bounded by CI's own budget, not here. 75 min covers a cold build.
        up = _script("up", timeout=75 * 60, show=True)
    if up.returncode != 0:
        pytest.fail(f"scripts/k8s-testenv up failed with exit code {up.returncode} (see its output above)")
    paths = _script("paths", timeout=30)
    assert paths.returncode == 0, paths.stderr
    info = dict(line.split("=", 1) for line in paths.stdout.split())
    cluster = K8sCluster(kubeconfig=info["kubeconfig"], restricted_user_kubeconfig=info["restricted_kubeconfig"],
                         bin_dir=Path(info["bin_dir"]))
    images = _script("images", timeout=600)
    if images.returncode != 0:
        pytest.fail(f"scripts/k8s-testenv images failed:\n{images.stderr}")
    _sweep_namespaces(cluster, stale_only=True)
    try:
        yield cluster
    finally:
        try:
            _sweep_namespaces(cluster, stale_only=False)
        finally:
            if os.environ.get("DEBUGKIT_K8S_DOWN") == "1":
                down = _script("down", timeout=300)
                if down.returncode != 0:
                    print(f"[k8s_cluster] down failed:\n{down.stderr}", file=sys.stderr)
