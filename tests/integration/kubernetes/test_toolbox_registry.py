"""The toolbox through a real registry to the real node: `debugkit toolbox push` to the
local registry (scripts/registry-testenv, 127.0.0.1:5000), digests checked against the
registry's v2 API, the node *pulling* the digest-pinned reference (not given it by
`k8s-testenv load-image`, which copies an image from the local Docker engine into the
node's containerd under its tag: a pull is proven by removing the node's reference first
and finding the kubelet's `Successfully pulled image` event), and `attach` taking the
pinned image from the config file's entry for the kube context in use."""
from __future__ import annotations

import hashlib
import json
import subprocess
import urllib.request

import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import IN_CI, REPO, run_cli, text, wait_for

pytestmark = pytest.mark.kubernetes

REGISTRY = "127.0.0.1:5000"
REPOSITORY = f"{REGISTRY}/debugkit-test/toolbox"
MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


def k8s_testenv(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "scripts" / "k8s-testenv"), *args], capture_output=True, text=True, timeout=120)


def registry_get(path: str, method: str = "GET") -> tuple[dict, bytes]:
    request = urllib.request.Request(f"http://{REGISTRY}/v2/{path}", method=method, headers={"Accept": MANIFEST_TYPES})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return dict(resp.headers), resp.read()


@pytest.fixture(scope="module")
def local_registry():
    done = subprocess.run([str(REPO / "scripts" / "registry-testenv"), "up"], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        if IN_CI:
            pytest.fail(f"scripts/registry-testenv up failed:\n{done.stderr}")
        pytest.skip(f"no local registry: {done.stderr.strip()}")
    return REGISTRY


@pytest.fixture(scope="module")
def kube_context(k8s_cluster) -> str:
    return k8s_cluster.kubectl("config", "current-context").stdout.strip()


def forget_on_node(repository: str) -> None:
    """Remove every reference to `repository` from the node, so that its next use pulls."""
    refs = [ref for ref in k8s_testenv("node-images").stdout.split() if ref.startswith(repository + "@")
            or ref.startswith(repository + ":")]
    if refs:
        assert k8s_testenv("node-rmi", *refs).returncode == 0
    assert not [ref for ref in k8s_testenv("node-images").stdout.split() if ref.startswith(repository)]


@pytest.fixture(scope="module")
def pushed(k8s_cluster, local_registry, toolbox_image, kube_context, tmp_path_factory, docker_client):
    """The full toolbox pushed with --set-default --context into a config file that has a
    person's comments; {"pinned", "config", "seconds", "result"}."""
    import time

    config = tmp_path_factory.mktemp("config") / "config.yaml"
    config.write_text("# the team's debugkit settings\nprofile: restricted  # never more by default\n"
                      "contexts:\n  some-other-cluster: {namespace: payments}\n")
    started = time.monotonic()
    result = run_cli("toolbox", "push", f"{REPOSITORY}:it", "--variant", "full", "--set-default",
                     "--context", kube_context, env={"DEBUGKIT_CONFIG": str(config)}, timeout=600)
    seconds = time.monotonic() - started
    out, err = text(result)
    assert result.returncode == 0, err
    (pinned,) = out.splitlines()
    yield {"pinned": pinned, "config": config, "seconds": seconds, "stderr": err}
    forget_on_node(REPOSITORY)
    try:
        docker_client.images.remove(f"{REPOSITORY}:it")
    except Exception:  # noqa: BLE001 - a concurrent run may have removed the tag already
        pass


def test_push_prints_the_digest_the_registry_serves(pushed, docker_client, toolbox_image):
    repository, _, digest = pushed["pinned"].partition("@")
    assert repository == REPOSITORY and digest.startswith("sha256:") and len(digest) == 71
    headers, body = registry_get("debugkit-test/toolbox/manifests/it")
    assert headers["Docker-Content-Digest"] == digest
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest   # the manifest is what the digest names
    _, by_digest = registry_get(f"debugkit-test/toolbox/manifests/{digest}")
    assert by_digest == body
    manifest = json.loads(body)
    local = docker_client.images.get(toolbox_image)
    # ... and it is the local toolbox image: an engine's image ID is the config's digest with
    # a graph driver, the manifest's with the containerd image store (Docker 29's default).
    assert local.id in (manifest["config"]["digest"], digest)
    assert f"{REPOSITORY}@{digest}" in local.attrs["RepoDigests"]
    print(f"\n[push] {toolbox_image} -> {pushed['pinned']} in {pushed['seconds']:.1f} s")


def test_set_default_wrote_the_contexts_entry_and_kept_the_comments(pushed, kube_context):
    config = pushed["config"].read_text()
    assert config.startswith("# the team's debugkit settings\nprofile: restricted  # never more by default\n")
    assert "some-other-cluster: {namespace: payments}" in config
    view = run_cli("config", "view", "--context", kube_context, "--runtime", "kubernetes", "-o", "json",
                   env={"DEBUGKIT_CONFIG": str(pushed["config"])})
    values = json.loads(view.stdout)["values"]
    assert values["image"]["value"] == pushed["pinned"]
    assert values["image"]["source"].startswith(f"{pushed['config']}:")
    assert f"set contexts.{kube_context}.image in {pushed['config']}:" in pushed["stderr"]


def pull_events(k8s_cluster, namespace: str, pod: str, image: str) -> list[str]:
    """The kubelet's `Pulled` events for image in the pod. They are recorded asynchronously:
    the container can be running a moment before its event is in the API."""
    found: list[str] = []

    def recorded():
        events = k8s_cluster.api.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod}").items
        found[:] = [e.message for e in events if e.reason == "Pulled" and image in (e.message or "")]
        return bool(found)

    try:
        wait_for(recorded, timeout=30, interval=0.5, what=f"the Pulled event for {image}")
    except AssertionError:
        pass  # the caller's assertion says what is missing
    return found


def test_the_node_pulls_the_pinned_reference(k8s_cluster, pushed):
    pinned = pushed["pinned"]
    forget_on_node(REPOSITORY)  # nothing of it on the node: only a pull can start this pod
    with k8s_cluster.namespace("restricted") as ns:
        pod = k8s_cluster.run_pod(ns, pinned, command=["sleep", "3600"], container_name="toolbox",
                                  run_as_user=65532, run_as_group=65532, timeout=180)
        (status,) = pod.status.container_statuses
        assert status.image_id == pinned, status
        messages = pull_events(k8s_cluster, ns, pod.metadata.name, pinned)
        assert any(m.startswith(f'Successfully pulled image "{pinned}"') for m in messages), messages
        assert not any("already present" in m for m in messages), messages
        print(f"\n[pull] {messages[0]}")


def test_attach_uses_the_configured_pinned_image_for_the_context(k8s_cluster, pushed, fixture_images):
    pinned = pushed["pinned"]
    target_image = k8s_cluster.load_image(fixture_images["distroless"])
    forget_on_node(REPOSITORY)
    with k8s_cluster.namespace("restricted") as ns:
        target = k8s_cluster.run_pod(ns, target_image, container_name="app")
        result = run_cli("attach", "--kubeconfig", k8s_cluster.kubeconfig, f"pod/{target.metadata.name}", "-n", ns,
                         "--", "sh", "-c", "id -u; test -x /usr/local/bin/debugkit-helper && echo helper",
                         env={"DEBUGKIT_CONFIG": str(pushed["config"])}, timeout=300)
        out, err = text(result)
        assert result.returncode == 0, err
        assert out.splitlines() == ["65532", "helper"]
        pod = k8s_cluster.api.read_namespaced_pod(target.metadata.name, ns)
        (debug,) = pod.spec.ephemeral_containers
        assert debug.image == pinned
        messages = pull_events(k8s_cluster, ns, target.metadata.name, pinned)
        assert any(m.startswith(f'Successfully pulled image "{pinned}"') for m in messages), messages


def test_a_node_that_cannot_pull_gets_a_timeout_that_names_the_image(k8s_cluster, kube_context, fixture_images,
                                                                      tmp_path):
    """The configured toolbox is in a registry the node cannot reach (nothing on :5001)."""
    unreachable = "127.0.0.1:5001/debugkit-test/toolbox@sha256:" + "0" * 64
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"contexts": {kube_context: {"image": unreachable}}}))
    target_image = k8s_cluster.load_image(fixture_images["distroless"])
    with k8s_cluster.namespace("restricted") as ns:
        target = k8s_cluster.run_pod(ns, target_image, container_name="app")
        # The kubelet may take 15 s to start on a new ephemeral container: 30 s sees the pull fail.
        result = run_cli("attach", "--kubeconfig", k8s_cluster.kubeconfig, "--timeout", "30",
                         f"pod/{target.metadata.name}", "-n", ns, "--", "true",
                         env={"DEBUGKIT_CONFIG": str(config)}, timeout=120)
    out, err = text(result)
    assert result.returncode == ExitCode.TIMEOUT, err
    assert f"the node cannot pull the image {unreachable}" in err, err
    assert "connection refused" in err, err  # why the pull failed, from the kubelet
    assert f"debugkit toolbox push REGISTRY/REPOSITORY --set-default --context {kube_context}" in err, err
    # stderr is not a terminal here: the waiting reasons are plain lines, as before
    assert "debugkit: waiting: ErrImagePull" in err or "debugkit: waiting: ImagePullBackOff" in err, err
