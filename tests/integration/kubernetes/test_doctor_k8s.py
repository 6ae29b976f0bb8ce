"""`debugkit doctor` against the real node: green for the admin, the RBAC-restricted user
sees what is missing (and the fixes it prints are enough to attach), PodSecurity per
profile, the cluster's toolbox in a real registry, and clusters that cannot be reached."""
from __future__ import annotations

import json
import shlex
import subprocess
import time

import pytest

from tests.helpers import REPO, run_cli, text
from tests.integration.kubernetes.cluster import BUSYBOX_IMAGE
from tests.integration.shells import SilentServer, silent_kubeconfig

pytestmark = pytest.mark.kubernetes
REQUIRED = ("rbac get pods", "rbac patch pods/ephemeralcontainers", "rbac get pods/exec", "rbac create pods/exec")
OPTIONAL = ("rbac get pods/portforward", "rbac create pods/portforward", "rbac get namespaces", "rbac list pods")


@pytest.fixture(scope="module")
def toolbox_on_node(k8s_cluster, toolbox_image):
    return k8s_cluster.load_image(toolbox_image)


@pytest.fixture(scope="module")
def app_image(k8s_cluster, fixture_images):
    return k8s_cluster.load_image(fixture_images["named-user"])


@pytest.fixture
def shop(k8s_cluster, app_image):
    with k8s_cluster.namespace("restricted", prefix="dk-test-doctor") as ns:
        k8s_cluster.run_pod(ns, app_image, name="web", run_as_user=65532, run_as_group=65532)
        yield ns


def doctor(*args: str, kubeconfig: str, env: dict | None = None):
    result = run_cli("doctor", "--kubeconfig", kubeconfig, *args, "-o", "json", env=env, timeout=120)
    out, err = text(result)
    assert err == "", err
    data = json.loads(out)
    return result.returncode, {c["name"]: c for c in data["checks"]}


def statuses(checks: dict, *names: str) -> list[str]:
    return [checks[n]["status"] for n in names]


def test_the_admin_is_all_green(k8s_cluster, shop):
    code, checks = doctor("-n", shop, kubeconfig=k8s_cluster.kubeconfig)
    failed = {n: c for n, c in checks.items() if c["status"] == "fail"}
    assert code == 0 and not failed, failed
    names = ("kube-context", "kube-api", "ephemeral-containers", *REQUIRED, *OPTIONAL, "pod-security")
    assert statuses(checks, *names) == ["ok"] * len(names)
    assert "Kubernetes v1.37" in checks["kube-api"]["detail"]
    assert f"namespace {shop}" in checks["kube-context"]["detail"]
    assert f"namespace {shop} enforces restricted" in checks["pod-security"]["detail"]
    assert "admits restricted;" in checks["pod-security"]["detail"]
    assert checks["cluster-toolbox"]["status"] == "not configured"
    # The same in text: one line per check.
    result = run_cli("doctor", "--kubeconfig", k8s_cluster.kubeconfig, "-n", shop)
    out, _ = text(result)
    assert result.returncode == 0 and len(out.splitlines()) == len(checks)


def grant(k8s_cluster, fix: str) -> None:
    """Run the commands a doctor fix asks an admin to run, as they are written."""
    assert fix.startswith("ask an admin for: kubectl ")
    for command in fix.removeprefix("ask an admin for: ").split(" && "):
        argv = shlex.split(command)
        assert argv[0] == "kubectl"
        k8s_cluster.kubectl(*argv[1:])


def test_the_restricted_user_sees_what_is_missing_and_the_fixes_suffice(k8s_cluster, shop, toolbox_on_node):
    user = k8s_cluster.restricted_user_kubeconfig
    code, checks = doctor("-n", shop, kubeconfig=user)
    assert code == 1
    assert statuses(checks, *REQUIRED) == ["fail"] * len(REQUIRED)
    assert statuses(checks, *OPTIONAL) == ["warn"] * len(OPTIONAL)
    for name in REQUIRED:
        assert f"denied in {shop} to {k8s_cluster.restricted_user}" in checks[name]["detail"]
        assert f"--user={k8s_cluster.restricted_user}" in checks[name]["fix"]
    assert "--verb=patch --resource=pods/ephemeralcontainers" in checks["rbac patch pods/ephemeralcontainers"]["fix"]
    assert "--verb=get --resource=pods/exec" in checks["rbac get pods/exec"]["fix"]
    assert "--verb=create --resource=pods/exec" in checks["rbac create pods/exec"]["fix"]
    assert checks["rbac get pods/attach"]["status"] == "ok"  # not needed, whatever the answer
    assert checks["pod-security"]["status"] == "warn" and "cannot read namespace" in checks["pod-security"]["detail"]
    assert f"as {k8s_cluster.restricted_user}" in checks["kube-context"]["detail"]

    # An admin runs exactly what the failures ask for, and nothing else.
    for name in REQUIRED:
        grant(k8s_cluster, checks[name]["fix"])
    code, checks = doctor("-n", shop, kubeconfig=user)
    assert statuses(checks, *REQUIRED) == ["ok"] * len(REQUIRED)
    assert code == 0  # only warnings left
    # ... and that is enough to debug: exec is a websocket, authorized as get and (since
    # 1.35) create on pods/exec.
    result = run_cli("attach", "--kubeconfig", user, "-n", shop, "pod/web", "--", "sh", "-c",
                     "id -u; cat /proc/1/root/home/nonroot/secret.txt", timeout=180)
    out, err = text(result)
    assert result.returncode == 0, err
    assert out.splitlines() == ["65532", "only nonroot can read this"]

    # The namespace grant the warning suggests lets doctor read the PodSecurity level.
    grant(k8s_cluster, checks["rbac get namespaces"]["fix"])
    code, checks = doctor("-n", shop, kubeconfig=user)
    assert statuses(checks, "rbac get namespaces", "pod-security") == ["ok", "ok"]


def test_a_pod_target(k8s_cluster, shop):
    code, checks = doctor(f"k8s://{shop}/web", kubeconfig=k8s_cluster.kubeconfig)
    assert code == 0
    assert checks["target"]["detail"].startswith(f"kubernetes {shop}/web/app (image ")
    assert checks["target-identity"]["detail"].startswith("65532:65532")
    assert statuses(checks, "target-dumpable", "target-filesystem", "target-zombies") == ["skip"] * 3
    assert f"namespace {shop}" in checks["kube-context"]["detail"]  # the target's namespace
    assert "for a target running as 65532" in checks["pod-security"]["detail"]


def test_a_missing_pod_is_a_failed_check(k8s_cluster, shop):
    code, checks = doctor("pod/nosuch", "-n", shop, kubeconfig=k8s_cluster.kubeconfig)
    assert code == 1 and checks["target"]["detail"] == f"pod 'nosuch' not found in namespace {shop}"


def test_each_level_admits_what_it_should(k8s_cluster):
    for level, admitted in (("privileged", "restricted, netadmin, ptrace, sysadmin"), ("baseline", "restricted")):
        with k8s_cluster.namespace(level, prefix="dk-test-doctor") as ns:
            code, checks = doctor("-n", ns, kubeconfig=k8s_cluster.kubeconfig)
            detail = checks["pod-security"]["detail"]
            assert code == 0 and f"enforces {level}" in detail and f"it admits {admitted}" in detail, detail


def test_a_root_target_in_a_restricted_namespace_is_refused_beforehand(k8s_cluster):
    """A pod that ran before its namespace became restricted: the default profile, as
    its UID 0, would be refused. doctor says so before anyone tries."""
    image = k8s_cluster.load_image(BUSYBOX_IMAGE)
    with k8s_cluster.namespace("privileged", prefix="dk-test-doctor") as ns:
        k8s_cluster.run_pod(ns, image, name="rooted", command=["sleep", "600"], restricted=False, run_as_user=0)
        k8s_cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted", "--overwrite")
        code, checks = doctor("pod/rooted", "-n", ns, kubeconfig=k8s_cluster.kubeconfig)
        assert code == 1
        assert checks["pod-security"]["status"] == "fail"
        assert "for a target running as 0 it admits no profile" in checks["pod-security"]["detail"]
        assert "runAsNonRoot must be true" in checks["pod-security"]["detail"]
        assert checks["target-filesystem"]["status"] == "fail"


def test_the_cluster_toolbox_is_looked_up_in_its_registry(k8s_cluster, shop, fixture_images, tmp_path):
    pushed = subprocess.run([str(REPO / "scripts" / "registry-testenv"), "push", fixture_images["distroless"]],
                            check=True, capture_output=True, text=True).stdout.strip()
    context = k8s_cluster.kubectl("config", "current-context").stdout.strip()
    config = tmp_path / "config.yaml"
    for image, status in ((pushed, "ok"), (pushed.rsplit(":", 1)[0] + ":no-such-tag", "fail")):
        config.write_text(f"contexts:\n  {context}:\n    image: {image}\n")
        code, checks = doctor("-n", shop, kubeconfig=k8s_cluster.kubeconfig, env={"DEBUGKIT_CONFIG": str(config)})
        check = checks["cluster-toolbox"]
        assert check["status"] == status, check
        assert image in check["detail"] and f"{config}:3" in check["detail"]
        assert checks["docker-toolbox"]["status"] == "ok"  # a context's image is the cluster's only
    assert code == 1 and "answered 404" in check["detail"] and "docker push" in check["fix"]


def test_a_cluster_that_hangs_is_reported_in_bounded_time(tmp_path):
    with SilentServer() as server:
        kubeconfig = silent_kubeconfig(tmp_path / "kubeconfig", server.address)
        started = time.monotonic()
        code, checks = doctor(kubeconfig=str(kubeconfig))
        elapsed = time.monotonic() - started
    assert code == 1 and elapsed < 20, elapsed
    assert checks["kube-api"]["status"] == "fail" and "no answer within 5 s" in checks["kube-api"]["detail"]
    assert checks["kube-access"]["status"] == "skip"
    assert checks["kube-context"]["detail"].endswith("namespace shop")


def test_a_context_that_does_not_exist(k8s_cluster):
    code, checks = doctor("--context", "nosuch", kubeconfig=k8s_cluster.kubeconfig)
    assert code == 1 and checks["kube-context"]["status"] == "fail"
    assert "context 'nosuch' not found" in checks["kube-context"]["detail"]
    assert "--context" in checks["kube-context"]["fix"]
