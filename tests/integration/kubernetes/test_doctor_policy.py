"""Doctor's policy blind spots and RBAC for what the user is about to do, on the real node:
a real ValidatingWebhookConfiguration on `pods` only is named, and node debugging's RBAC
(create, delete, websocket exec: get and create) is asked before its pod is created."""
from __future__ import annotations

import json
import uuid

import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import run_cli, text

pytestmark = pytest.mark.kubernetes


@pytest.fixture
def pods_only_webhook(k8s_cluster):
    """A webhook on pods (CREATE, UPDATE) and not pods/ephemeralcontainers. It harms no other
    test: its namespaceSelector matches a label no namespace has, its failurePolicy is
    Ignore, and the service it names does not exist."""
    from kubernetes import client

    api = client.AdmissionregistrationV1Api(k8s_cluster.api_client)
    name = f"dk-test-pods-only-{uuid.uuid4().hex[:8]}"
    api.create_validating_webhook_configuration({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"io.debugkit.test": "1"}},
        "webhooks": [{
            "name": "pods.policy.debugkit-test.example.com",
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                       "resources": ["pods"]}],
            "clientConfig": {"service": {"namespace": "default", "name": "dk-test-no-such-service",
                                         "path": "/validate"}},
            "namespaceSelector": {"matchLabels": {"io.debugkit.test-webhook": name}},
            "failurePolicy": "Ignore", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 1,
        }],
    })
    try:
        yield name
    finally:
        api.delete_validating_webhook_configuration(name)


def doctor_checks(*args, kubeconfig):
    result = run_cli("doctor", "--kubeconfig", kubeconfig, *args, "-o", "json", timeout=120)
    out, err = text(result)
    assert err == "", err
    return result.returncode, json.loads(out)["checks"]


def test_a_webhook_on_pods_only_is_named_with_what_it_misses(k8s_cluster, pods_only_webhook):
    _code, checks = doctor_checks("-n", "default", kubeconfig=k8s_cluster.kubeconfig)
    lines = [c for c in checks if c["name"] == "admission-webhooks"]
    ours = [c for c in lines if pods_only_webhook in c["detail"]]
    assert len(ours) == 1, lines
    assert ours[0]["status"] == "warn"
    assert ours[0]["detail"] == (f"validatingwebhookconfiguration {pods_only_webhook}: webhook "
                                 f"pods.policy.debugkit-test.example.com checks pods (CREATE, UPDATE) but not "
                                 f"pods/ephemeralcontainers, so it never sees a debug container")
    assert "pods/ephemeralcontainers" in ours[0]["fix"]


def test_doctor_on_a_node_fails_the_rbac_node_debugging_needs(k8s_cluster):
    with k8s_cluster.namespace("privileged", prefix="dk-node-rbac") as ns:
        # The restricted user may read pods and exec into them, not create or delete them.
        k8s_cluster.grant_restricted_user(ns, [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get", "create"]},
        ])
        user = k8s_cluster.restricted_user_kubeconfig
        code, checks = doctor_checks(f"node/{k8s_cluster.node_name}", "-n", ns, kubeconfig=user)
        by_name = {c["name"]: c for c in checks}
        assert code != 0
        assert by_name["rbac create pods"]["status"] == "fail" and by_name["rbac delete pods"]["status"] == "fail"
        assert by_name["rbac create pods/exec"]["status"] == "ok"
        # A debug container in a pod is not what this user is about to do: a warning only.
        assert by_name["rbac patch pods/ephemeralcontainers"]["status"] == "warn"

        attach = run_cli("attach", "--kubeconfig", user, f"node/{k8s_cluster.node_name}", "-n", ns,
                         "--profile", "node", "--", "true")
        err = text(attach)[1]
        assert attach.returncode == ExitCode.FORBIDDEN, err
        assert "create pods" in err and "delete pods" in err and "exec" not in err.split("needs", 1)[1].split("(")[0]
        assert k8s_cluster.api.list_namespaced_pod(ns).items == []
