"""Fixtures shared by more than one directory of integration tests: the Kubernetes test
node (a session fixture: one node handle for every directory that needs it) and the Docker
fixture targets that a test starts and that are removed after it."""
from __future__ import annotations

import contextlib
import os
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import IN_CI, labels_for_test, wait_for
from tests.integration.kubernetes.cluster import K8sCluster, host_unsuitable, k8s_testenv, sweep_namespaces


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
    was_up = k8s_testenv("is-up", timeout=60).returncode == 0
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    ctx = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with ctx:
        if not was_up:
            print("\n[k8s_cluster] scripts/k8s-testenv up (a cold first run builds Kubernetes "
                  "from source: 7 to 15 min on 2 cores)", file=sys.stderr, flush=True)
        # The build is cached; bounded by CI's own budget, not here. 75 min covers a cold build.
        up = k8s_testenv("up", timeout=75 * 60, show=True)
    if up.returncode != 0:
        pytest.fail(f"scripts/k8s-testenv up failed with exit code {up.returncode} (see its output above)")
    paths = k8s_testenv("paths", timeout=30)
    assert paths.returncode == 0, paths.stderr
    info = dict(line.split("=", 1) for line in paths.stdout.split())
    cluster = K8sCluster(kubeconfig=info["kubeconfig"], restricted_user_kubeconfig=info["restricted_kubeconfig"],
                         bin_dir=Path(info["bin_dir"]))
    images = k8s_testenv("images", timeout=600)
    if images.returncode != 0:
        pytest.fail(f"scripts/k8s-testenv images failed:\n{images.stderr}")
    sweep_namespaces(cluster, stale_only=True, wait=False)
    going_down = os.environ.get("DEBUGKIT_K8S_DOWN") == "1"
    try:
        yield cluster
    finally:
        try:
            # The last test's namespace is some 5 s from gone; a node going down takes it anyway.
            sweep_namespaces(cluster, stale_only=False, wait=not going_down)
        finally:
            if going_down:
                down = k8s_testenv("down", timeout=300)
                if down.returncode != 0:
                    print(f"[k8s_cluster] down failed:\n{down.stderr}", file=sys.stderr)


@pytest.fixture
def started_targets():
    """IDs of the targets this test started: the leak check looks at their sidecars only."""
    return []


@pytest.fixture
def start_target(docker_client, fixture_images, started_targets):
    """Start a fixture target; removed (with any sidecar of its own) at teardown."""
    started = []

    def start(kind: str = "named-user", **kwargs):
        name = f"dk-test-{kind}-{uuid.uuid4().hex[:8]}"
        ctr = docker_client.containers.run(
            fixture_images[kind], name=name, detach=True, labels=labels_for_test(), **kwargs
        )
        started.append(ctr)
        started_targets.append(ctr.id)
        wait_for(lambda: b"listening on" in ctr.logs(), timeout=20, what=f"{name} to listen")
        ctr.reload()
        return ctr

    yield start
    for ctr in started:
        try:
            ctr.remove(force=True)
        except Exception:  # noqa: BLE001 - already gone (a test killed it, or the engine restarted)
            pass
