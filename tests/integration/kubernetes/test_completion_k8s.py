"""Shell completion against the real node: pods, workloads, namespaces, contexts and
containers; the namespace from -n or the context; a cluster that hangs completes nothing."""
from __future__ import annotations

import time

import pytest
import yaml

from tests.integration.shells import InteractiveShell, SilentServer, bin_dir, complete, silent_kubeconfig

pytestmark = pytest.mark.kubernetes
QUICK = 3.0


@pytest.fixture(scope="module")
def app_image(k8s_cluster, fixture_images):
    return k8s_cluster.load_image(fixture_images["named-user"])


@pytest.fixture(scope="module")
def shop(k8s_cluster, app_image):
    """A namespace with a running pod and a Deployment."""
    with k8s_cluster.namespace("restricted", prefix="dk-test-cmpl") as ns:
        pod = k8s_cluster.run_pod(ns, app_image, run_as_user=65532, run_as_group=65532)
        deployment = k8s_cluster.run_deployment(ns, app_image, replicas=1, run_as_user=65532, run_as_group=65532)
        yield {"ns": ns, "pod": pod.metadata.name, "deployment": deployment}


def kube(k8s_cluster, words: str, **kwargs):
    """Completion with the test node's kubeconfig in KUBECONFIG, as a shell user has it."""
    return complete(words, env={"KUBECONFIG": k8s_cluster.kubeconfig, **kwargs.pop("env", {})}, **kwargs)


def test_pods_complete_in_the_namespace_from_n(k8s_cluster, shop):
    ns, pod = shop["ns"], shop["pod"]
    values, elapsed, proc = complete(f"debugkit attach --kubeconfig {k8s_cluster.kubeconfig} -n {ns} pod/")
    assert proc.returncode == 0 and proc.stderr == b""
    assert f"pod/{pod}" in values and all(v.startswith("pod/") for v in values)
    assert elapsed < QUICK
    # Nothing typed: pods come with their prefix, among the containers.
    assert f"pod/{pod}" in kube(k8s_cluster, f"debugkit attach -n {ns} ")[0]
    # The spellings a TARGET accepts, and the other commands.
    assert kube(k8s_cluster, f"debugkit inspect -n {ns} po/{pod[:-2]}")[0] == [f"po/{pod}"]
    assert f"pod/{pod}" in kube(k8s_cluster, f"debugkit runbook run dns -n {ns} pod/")[0]
    assert f"pod/{pod}" in kube(k8s_cluster, f"debugkit doctor -n {ns} pod/")[0]


def test_the_namespace_comes_from_the_context(k8s_cluster, shop, tmp_path):
    config = yaml.safe_load(open(k8s_cluster.kubeconfig))
    config["contexts"][0]["context"]["namespace"] = shop["ns"]
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    values, _, _ = complete(f"debugkit attach --kubeconfig {path} pod/")
    assert f"pod/{shop['pod']}" in values
    # and the config file's entry for the context beats it, as attach decides
    other = tmp_path / "config.yaml"
    other.write_text(f"contexts:\n  {config['current-context']}: {{namespace: kube-system}}\n")
    values, _, _ = complete(f"debugkit attach --kubeconfig {path} pod/", env={"DEBUGKIT_CONFIG": str(other)})
    assert f"pod/{shop['pod']}" not in values


def test_workloads_complete_by_kind(k8s_cluster, shop):
    ns, deployment = shop["ns"], shop["deployment"]
    assert kube(k8s_cluster, f"debugkit attach -n {ns} deploy/")[0] == [f"deploy/{deployment}"]
    assert kube(k8s_cluster, f"debugkit attach -n {ns} deployment/")[0] == [f"deployment/{deployment}"]
    assert f"deploy/{deployment}" in kube(k8s_cluster, f"debugkit attach -n {ns} de")[0]
    assert kube(k8s_cluster, f"debugkit attach -n {ns} sts/")[0] == []
    assert kube(k8s_cluster, f"debugkit attach -n {ns} job/")[0] == []


def test_namespaces_contexts_and_containers(k8s_cluster, shop):
    ns, pod = shop["ns"], shop["pod"]
    assert kube(k8s_cluster, f"debugkit attach -n {ns[:-3]}")[0] == [ns]
    assert kube(k8s_cluster, f"debugkit ps --namespace {ns[:-3]}")[0] == [ns]
    contexts = complete(f"debugkit attach --kubeconfig {k8s_cluster.kubeconfig} --context ")[0]
    assert contexts == yaml.safe_load(open(k8s_cluster.kubeconfig))["current-context"].split()
    assert kube(k8s_cluster, f"debugkit attach -n {ns} pod/{pod} -c ")[0] == ["app"]
    assert kube(k8s_cluster, f"debugkit attach -n {ns} pod/{pod}/")[0] == [f"pod/{pod}/app"]


def test_k8s_scheme_goes_namespace_then_pod(k8s_cluster, shop):
    ns, pod = shop["ns"], shop["pod"]
    values = kube(k8s_cluster, f"debugkit attach k8s://{ns}/")[0]
    assert f"k8s://{ns}/{pod}" in values and len(values) == 2  # the pod and the Deployment's
    # Only one namespace matches: its pods at once (a lone `k8s://ns/` would get a space).
    assert kube(k8s_cluster, "debugkit attach k8s://dk-test-cmpl-")[0] == values
    assert f"k8s://{ns}/" in kube(k8s_cluster, "debugkit attach k8s://")[0]
    assert kube(k8s_cluster, f"debugkit attach k8s://{ns}/{pod}/")[0] == [f"k8s://{ns}/{pod}/app"]


def test_a_user_without_list_rights_completes_nothing_quietly(k8s_cluster, shop):
    values, _, proc = complete(f"debugkit attach --kubeconfig {k8s_cluster.restricted_user_kubeconfig} "
                               f"-n {shop['ns']} pod/")
    assert (values, proc.returncode, proc.stderr) == ([], 0, b"")


def test_a_cluster_that_hangs_completes_nothing_within_the_budget(tmp_path):
    with SilentServer() as server:
        kubeconfig = silent_kubeconfig(tmp_path / "kubeconfig", server.address)
        for words in (f"debugkit attach --kubeconfig {kubeconfig} pod/",
                      f"debugkit attach --kubeconfig {kubeconfig} -n ",
                      f"debugkit attach --kubeconfig {kubeconfig} deploy/"):
            values, elapsed, proc = complete(words, env={"DOCKER_HOST": "tcp://127.0.0.1:1"})
            assert (values, proc.stdout.strip(), proc.stderr) == ([], b"", b""), words
            assert elapsed < QUICK, f"{words}: {elapsed:.2f}s"
        assert server.accepted


def test_a_dead_cluster_completes_nothing_at_once(tmp_path):
    kubeconfig = silent_kubeconfig(tmp_path / "kubeconfig", "127.0.0.1:1")
    started = time.monotonic()
    values, _, proc = complete(f"debugkit attach --kubeconfig {kubeconfig} pod/")
    assert values == [] and proc.stderr == b"" and time.monotonic() - started < QUICK


def test_bash_keeps_words_with_colons_and_equals_whole(k8s_cluster, shop, tmp_path):
    ns, pod = shop["ns"], shop["pod"]
    shell = InteractiveShell(["bash", "--norc", "--noprofile", "-i"], path_dir=bin_dir(tmp_path),
                             env={"KUBECONFIG": k8s_cluster.kubeconfig})
    try:
        shell.run('eval "$(debugkit completion bash)"')
        assert f"k8s://{ns}/{pod} " in shell.tab(f"debugkit attach k8s://{ns}/{pod[:-2]}")
        assert f"--namespace={ns} " in shell.tab(f"debugkit attach --namespace={ns[:-2]}")
        assert f"pod/{pod} " in shell.tab(f"debugkit attach -n {ns} pod/{pod[:-2]}")
    finally:
        shell.close()
