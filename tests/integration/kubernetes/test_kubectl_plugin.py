"""`kubectl debugkit ...` through the node's own kubectl: the plugin entry point on PATH,
kubectl's global flags before the subcommand, and a bare TARGET that means a pod."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from debugkit.core.errors import ExitCode
from tests.integration.shells import bin_dir

pytestmark = pytest.mark.kubernetes


@pytest.fixture(scope="module")
def toolbox_on_node(k8s_cluster, toolbox_image):
    return k8s_cluster.load_image(toolbox_image)


@pytest.fixture(scope="module")
def web(k8s_cluster, fixture_images):
    """A namespace with a running pod named web."""
    image = k8s_cluster.load_image(fixture_images["named-user"])
    with k8s_cluster.namespace("restricted", prefix="dk-test-plugin") as ns:
        k8s_cluster.run_pod(ns, image, name="web", run_as_user=65532, run_as_group=65532)
        yield ns


@pytest.fixture
def kubectl(k8s_cluster, tmp_path):
    """kubectl as a person runs it, with kubectl-debugkit (this checkout) on PATH next
    to the virtualenv's bin directory."""
    path = os.pathsep.join([str(bin_dir(tmp_path, "kubectl-debugkit")), os.path.dirname(sys.executable),
                            os.environ["PATH"]])

    def run(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([k8s_cluster.kubectl_path, *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PATH": path, **(env or {})}, stdin=subprocess.DEVNULL)
    return run


def test_kubectl_finds_the_plugin(kubectl):
    listed = kubectl("plugin", "list")
    assert "kubectl-debugkit" in listed.stdout, listed.stdout + listed.stderr


def test_global_flags_before_the_subcommand_and_a_bare_pod(kubectl, k8s_cluster, web, toolbox_on_node):
    result = kubectl("debugkit", "--kubeconfig", k8s_cluster.kubeconfig, "-n", web, "attach", "web", "--",
                     "sh", "-c", "id -u; cat /proc/1/root/home/nonroot/secret.txt; exit 7")
    assert result.returncode == 7, result.stderr
    assert result.stdout.splitlines() == ["65532", "only nonroot can read this"]


def test_every_spelling_of_the_flags(kubectl, k8s_cluster, web):
    context = k8s_cluster.kubectl("config", "current-context").stdout.strip()
    for flags in (["-n", web], [f"-n{web}"], [f"--namespace={web}"], ["--namespace", web]):
        result = kubectl("debugkit", *flags, f"--kubeconfig={k8s_cluster.kubeconfig}", "--context", context,
                         "inspect", "web", "-o", "json")
        assert result.returncode == 0, (flags, result.stderr)
        info = json.loads(result.stdout)
        assert (info["namespace"], info["pod"], info["uid"]) == (web, "web", 65532)


def test_kubeconfig_from_the_environment_and_flags_after_the_subcommand_win(kubectl, k8s_cluster, web):
    result = kubectl("debugkit", "-n", "default", "inspect", "web", "-n", web, "-o", "json",
                     env={"KUBECONFIG": k8s_cluster.kubeconfig})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["namespace"] == web


def test_a_group_and_its_subcommand(kubectl, k8s_cluster, web, toolbox_on_node):
    result = kubectl("debugkit", "--kubeconfig", k8s_cluster.kubeconfig, "runbook", "-n", web, "run", "processes",
                     "web", "-o", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["passed"] is True


def test_cp_takes_a_bare_pod_too(kubectl, k8s_cluster, web, toolbox_on_node, tmp_path):
    dest = tmp_path / "secret.txt"
    result = kubectl("debugkit", "--kubeconfig", k8s_cluster.kubeconfig, "-n", web, "cp",
                     "web:/home/nonroot/secret.txt", str(dest))
    assert result.returncode == 0, result.stderr
    assert dest.read_text().strip() == "only nonroot can read this"


def test_kinds_and_schemes_keep_their_meaning(kubectl, k8s_cluster, web):
    result = kubectl("debugkit", "--kubeconfig", k8s_cluster.kubeconfig, "inspect", f"k8s://{web}/web", "-o", "json")
    assert result.returncode == 0 and json.loads(result.stdout)["namespace"] == web
    # docker:// is still Docker: the engine answers that there is no such container.
    result = kubectl("debugkit", "inspect", "docker://dk-test-no-such-container")
    assert result.returncode == ExitCode.TARGET_NOT_FOUND and "on Docker" in result.stderr


def test_a_missing_pod_is_named_as_a_pod(kubectl, k8s_cluster, web):
    result = kubectl("debugkit", "--kubeconfig", k8s_cluster.kubeconfig, "-n", web, "attach", "nosuch", "--", "true")
    assert result.returncode == ExitCode.TARGET_NOT_FOUND
    assert result.stderr.strip() == f"debugkit: error: pod 'nosuch' not found in namespace {web}"


def test_a_flag_the_subcommand_does_not_take_is_refused(kubectl):
    result = kubectl("debugkit", "-n", "shop", "toolbox", "ref")
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.strip() == ("debugkit: error: -n does not apply to `kubectl debugkit toolbox ref` "
                                     "(see kubectl debugkit --help)")
    result = kubectl("debugkit", "--context")
    assert result.returncode == ExitCode.USAGE and "requires an argument" in result.stderr


def test_flags_before_the_plugin_name_are_kubectls_to_refuse(kubectl):
    result = kubectl("-n", "shop", "debugkit", "toolbox", "ref")
    assert result.returncode == 1
    assert "flags cannot be placed before plugin name: -n" in result.stderr


def test_help_names_the_plugin(kubectl):
    result = kubectl("debugkit", "-n", "shop", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: kubectl debugkit [OPTIONS] COMMAND")
    assert "a bare TARGET is a pod" in result.stdout
    sub = kubectl("debugkit", "attach", "-h")
    assert sub.returncode == 0 and sub.stdout.startswith("Usage: kubectl debugkit attach")


def test_doctor_as_a_plugin(kubectl, k8s_cluster, web):
    result = kubectl("debugkit", "--kubeconfig", k8s_cluster.kubeconfig, "-n", web, "doctor", "web", "-o", "json")
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["target"]["status"] == "ok" and f"{web}/web/app" in checks["target"]["detail"]
    assert checks["kube-context"]["status"] == "ok" and f"namespace {web}" in checks["kube-context"]["detail"]
