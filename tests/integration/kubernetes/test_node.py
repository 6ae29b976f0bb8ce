"""The test node is a real Kubernetes node: real kubelet, real admission, real RBAC.

These tests need no debugkit code; they prove what the Kubernetes backend tests rely on.
"""
from __future__ import annotations

import json
import uuid

import pytest

from tests.integration.kubernetes.cluster import BUSYBOX_IMAGE, K8sCluster

pytestmark = pytest.mark.kubernetes


@pytest.fixture(scope="module")
def target_image(k8s_cluster: K8sCluster, fixture_images) -> str:
    """The distroless-style named-user fixture (FROM scratch, USER nonroot:nonroot = 65532)."""
    return k8s_cluster.load_image(fixture_images["named-user"])


@pytest.fixture(scope="module")
def busybox(k8s_cluster: K8sCluster) -> str:
    return k8s_cluster.load_image(BUSYBOX_IMAGE)


def test_node_is_ready_and_reports_its_real_versions(k8s_cluster: K8sCluster):
    node = k8s_cluster.api.read_node(k8s_cluster.node_name)
    ready = {c.type: c.status for c in node.status.conditions}["Ready"]
    assert ready == "True"
    info = node.status.node_info
    server = k8s_cluster.kubectl("version", "-o", "json").stdout
    assert json.loads(server)["serverVersion"]["gitVersion"] == info.kubelet_version
    assert info.kubelet_version.startswith("v1.")
    assert info.container_runtime_version.startswith("containerd://")


def test_distroless_pod_runs_on_the_node(k8s_cluster: K8sCluster, target_image: str):
    with k8s_cluster.namespace("restricted") as ns:
        pod = k8s_cluster.run_pod(ns, target_image, run_as_user=65532, run_as_group=65532)
        assert pod.spec.node_name == k8s_cluster.node_name
        assert pod.status.phase == "Running"
        (status,) = pod.status.container_statuses
        assert status.ready is True
        assert status.state.running.started_at is not None
        assert status.image_id  # the kubelet resolved the image in containerd
        assert pod.status.pod_ip and pod.status.pod_ip.startswith("10.244.77.")
        # The container really runs the image's server: its log says it listens.
        k8s_cluster.wait_logs(ns, pod.metadata.name, "app", "listening", timeout=30)


def test_kubectl_debug_target_sees_the_target_process(k8s_cluster: K8sCluster, target_image: str,
                                                      busybox: str):
    with k8s_cluster.namespace("baseline") as ns:
        pod = k8s_cluster.run_pod(ns, target_image, run_as_user=65532, run_as_group=65532)
        name = pod.metadata.name
        script = ("echo CMDLINE=$(tr '\\0' ' ' </proc/1/cmdline); "
                  "echo $(grep ^Uid: /proc/1/status); ps -o pid,user,comm; echo DONE; sleep 3600")
        k8s_cluster.kubectl(
            "debug", "-n", ns, name, "--image", busybox, "--image-pull-policy", "IfNotPresent",
            "--target", "app", "--container", "debugger", "--profile", "baseline",
            "--", "sh", "-c", script,
        )
        pod = k8s_cluster.wait_ephemeral_running(ns, name, "debugger")
        (eph,) = pod.spec.ephemeral_containers
        assert eph.target_container_name == "app"
        log = k8s_cluster.wait_logs(ns, name, "debugger", "DONE")
        # PID 1 of the debugger's PID namespace is the target's server, running as 65532.
        assert "CMDLINE=/server" in log, log
        assert "Uid: 65532 65532 65532 65532" in log, log
        assert any(line.split()[-1:] == ["server"] for line in log.splitlines()), log


def test_restricted_namespace_rejects_a_root_pod(k8s_cluster: K8sCluster, busybox: str):
    from kubernetes.client.exceptions import ApiException

    with k8s_cluster.namespace("restricted") as ns:
        compliant = k8s_cluster.pod_manifest(ns, busybox, command=["sleep", "60"], run_as_user=65532)
        # Control: the same pod with restricted settings is admitted (server-side dry run).
        k8s_cluster.api.create_namespaced_pod(ns, compliant, dry_run="All")
        as_root = k8s_cluster.pod_manifest(ns, busybox, command=["sleep", "60"], restricted=False)
        with pytest.raises(ApiException) as err:
            k8s_cluster.api.create_namespaced_pod(ns, as_root)
        assert err.value.status == 403
        message = json.loads(err.value.body)["message"]
        assert 'violates PodSecurity "restricted:latest"' in message, message
        assert "runAsNonRoot != true" in message, message
        assert k8s_cluster.api.list_namespaced_pod(ns).items == []


def test_kubectl_debug_defaults_rejected_but_restricted_profile_as_target_user_admitted(
        k8s_cluster: K8sCluster, target_image: str, busybox: str, tmp_path):
    """What DESIGN.md builds on: on a restricted namespace the peers' default (root, legacy
    profile) is refused, while a restricted-profile container running as the target's own
    UID is admitted and reads the target's files through /proc/1/root without capabilities."""
    with k8s_cluster.namespace("restricted") as ns:
        pod = k8s_cluster.run_pod(ns, target_image, run_as_user=65532, run_as_group=65532)
        name = pod.metadata.name
        refused = k8s_cluster.kubectl(
            "debug", "-n", ns, name, "--image", busybox, "--image-pull-policy", "IfNotPresent",
            "--target", "app", "--container", "legacy", "--profile", "legacy", "--", "sleep", "60",
            check=False,
        )
        assert refused.returncode != 0
        assert "violates PodSecurity" in refused.stderr, refused.stderr

        custom = tmp_path / "as-target.json"
        custom.write_text(json.dumps({"securityContext": {"runAsUser": 65532, "runAsGroup": 65532}}))
        k8s_cluster.kubectl(
            "debug", "-n", ns, name, "--image", busybox, "--image-pull-policy", "IfNotPresent",
            "--target", "app", "--container", "asuser", "--profile", "restricted", "--custom", str(custom),
            "--", "sh", "-c",
            "id -u; cat /proc/1/root/etc/passwd; echo; "
            "grep CapEff /proc/self/status; wget -qO- http://127.0.0.1:8080/healthz; echo DONE; sleep 3600",
        )
        k8s_cluster.wait_ephemeral_running(ns, name, "asuser")
        log = k8s_cluster.wait_logs(ns, name, "asuser", "DONE")
        assert log.splitlines()[0] == "65532", log
        assert "nonroot:x:65532:65532" in log, log
        assert "CapEff:\t0000000000000000" in log, log
        assert "\nok\n" in log, log  # the target's port, reached on the pod's localhost


def test_restricted_user_is_forbidden_to_patch_ephemeral_containers(k8s_cluster: K8sCluster,
                                                                     busybox: str):
    from kubernetes.client.exceptions import ApiException

    with k8s_cluster.namespace("baseline") as ns:
        pod = k8s_cluster.run_pod(ns, busybox, command=["sleep", "3600"], restricted=False)
        name = pod.metadata.name
        k8s_cluster.grant_restricted_user(ns, [{"apiGroups": [""], "resources": ["pods"],
                                                "verbs": ["get", "list"]}])
        user_api = k8s_cluster.restricted_api()
        body = {"spec": {"ephemeralContainers": [{
            "name": f"dbg-{uuid.uuid4().hex[:6]}", "image": busybox, "imagePullPolicy": "IfNotPresent",
            "command": ["sleep", "60"], "targetContainerName": "app"}]}}

        # Control: the user is authenticated and may read the pod (RBAC applies per subresource).
        def can_read():
            try:
                return user_api.read_namespaced_pod(name, ns).metadata.name == name
            except ApiException as exc:
                if exc.status == 403:
                    return False  # the RBAC cache may lag the new binding for a moment
                raise
        from tests.helpers import wait_for
        wait_for(can_read, timeout=15, interval=0.25, what="the role binding to take effect")

        with pytest.raises(ApiException) as err:
            user_api.patch_namespaced_pod_ephemeralcontainers(name, ns, body)
        assert err.value.status == 403
        message = json.loads(err.value.body)["message"]
        assert 'cannot patch resource "pods/ephemeralcontainers"' in message, message
        assert f'User "{k8s_cluster.restricted_user}"' in message, message
        assert not k8s_cluster.api.read_namespaced_pod(name, ns).spec.ephemeral_containers

        # And it is RBAC that decides: with the subresource granted, the same patch works.
        k8s_cluster.grant_restricted_user(ns, [{"apiGroups": [""], "resources": ["pods/ephemeralcontainers"],
                                                "verbs": ["patch"]}])

        def patched():
            try:
                return user_api.patch_namespaced_pod_ephemeralcontainers(name, ns, body)
            except ApiException as exc:
                if exc.status == 403:
                    return None
                raise
        result = wait_for(patched, timeout=15, interval=0.25, what="the patch to be allowed")
        assert [c.name for c in result.spec.ephemeral_containers] == [body["spec"]["ephemeralContainers"][0]["name"]]


# ---------------------------------------------------------------- controllers and scheduler
def test_deployment_pods_are_created_by_the_controllers_and_placed_by_the_scheduler(
        k8s_cluster: K8sCluster, target_image: str):
    with k8s_cluster.namespace("restricted") as ns:
        name = k8s_cluster.run_deployment(ns, target_image, replicas=6, labels={"tier": "web"},
                                          run_as_user=65532, run_as_group=65532)
        pods = k8s_cluster.pods_of(ns, "tier=web")
        assert len(pods) == 6
        assert len({p.status.pod_ip for p in pods}) == 6
        (rs,) = k8s_cluster.apps.list_namespaced_replica_set(ns).items
        assert [o.name for o in rs.metadata.owner_references] == [name]
        for pod in pods:
            assert pod.status.phase == "Running"
            assert [o.name for o in pod.metadata.owner_references] == [rs.metadata.name]
            # The template has no nodeName: the scheduler bound each pod to the node.
            assert pod.spec.node_name == k8s_cluster.node_name
            scheduled = {c.type: c.status for c in pod.status.conditions}["PodScheduled"]
            assert scheduled == "True"
            # ServiceAccount admission gave every pod the namespace's default account.
            assert pod.spec.service_account_name == "default"
        deployment = k8s_cluster.apps.read_namespaced_deployment(name, ns)
        assert deployment.spec.template.spec.node_name is None
        node = k8s_cluster.api.read_node(k8s_cluster.node_name)
        assert not node.spec.taints, node.spec.taints


def test_namespace_deletion_completes_without_finalizing_by_hand(k8s_cluster: K8sCluster, target_image: str):
    from kubernetes.client.exceptions import ApiException
    from tests.helpers import wait_for

    with k8s_cluster.namespace("restricted") as ns:
        k8s_cluster.run_deployment(ns, target_image, replicas=2, run_as_user=65532, run_as_group=65532)
        k8s_cluster.api.delete_namespace(ns)

        def gone():
            try:
                k8s_cluster.api.read_namespace(ns)
            except ApiException as exc:
                if exc.status == 404:
                    return True
                raise
            return False

        # The namespace controller waits 5 s, then deletes the Deployment, its ReplicaSet
        # and the pods (each with its 1 s grace period), then drops the finalizer.
        wait_for(gone, timeout=60, interval=0.5, what=f"namespace {ns} to be deleted by its controller")


def test_kube_root_ca_is_published_and_a_mounted_token_works(k8s_cluster: K8sCluster, busybox: str):
    from tests.helpers import wait_for

    ca = open(k8s_cluster.api_client.configuration.ssl_ca_cert).read()
    with k8s_cluster.namespace("restricted") as ns:
        cm = wait_for(lambda: next(iter(k8s_cluster.api.list_namespaced_config_map(
            ns, field_selector="metadata.name=kube-root-ca.crt").items), None),
            timeout=30, interval=0.25, what=f"kube-root-ca.crt in {ns}")
        assert cm.data["ca.crt"].strip() == ca.strip()
        sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
        pod = k8s_cluster.run_pod(
            ns, busybox, run_as_user=65532, automountServiceAccountToken=True,
            command=["sh", "-c", f"cat {sa_dir}/namespace; echo; cat {sa_dir}/ca.crt; "
                                 f"echo TOKEN=$(cut -c1-20 {sa_dir}/token); echo DONE; sleep 3600"])
        log = k8s_cluster.wait_logs(ns, pod.metadata.name, "app", "DONE")
        assert log.splitlines()[0] == ns, log
        assert ca.strip() in log, log
        assert "TOKEN=eyJ" in log, log  # a JWT, issued for the pod by the TokenRequest API


def test_service_account_admission_rejects_a_missing_service_account(k8s_cluster: K8sCluster, busybox: str):
    from kubernetes.client.exceptions import ApiException

    with k8s_cluster.namespace("restricted") as ns:
        plain = k8s_cluster.pod_manifest(ns, busybox, command=["sleep", "60"], run_as_user=65532)
        admitted = k8s_cluster.api.create_namespaced_pod(ns, plain, dry_run="All")
        assert admitted.spec.service_account_name == "default"

        missing = k8s_cluster.pod_manifest(ns, busybox, command=["sleep", "60"], run_as_user=65532,
                                           serviceAccountName="dk-missing")
        with pytest.raises(ApiException) as err:
            k8s_cluster.api.create_namespaced_pod(ns, missing)
        assert err.value.status == 403
        message = json.loads(err.value.body)["message"]
        assert 'serviceaccount "dk-missing" not found' in message, message

        # Control: once the account exists, the same pod is admitted.
        k8s_cluster.api.create_namespaced_service_account(ns, {"metadata": {"name": "dk-missing"}})
        k8s_cluster.api.create_namespaced_pod(ns, missing, dry_run="All")
