"""The standard-library Kubernetes client against the real test node: REST round trips,
error mapping, exec exit codes from the status channel, stdin and the v5 half-close,
attach, portforward over a websocket, concurrency, and an exec credential plugin.

The client under test never imports the kubernetes package; the fixtures still do.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from debugkit.runtimes.kubernetes import kubeconfig
from debugkit.runtimes.kubernetes.kubeclient import ApiError, KubeClient
from debugkit.runtimes.kubernetes.websocket import container_not_found, exec_failure_code
from tests.helpers import IN_CI, RUN_LABEL, RUN_ID
from tests.integration.kubernetes.cluster import BUSYBOX_IMAGE, K8sCluster, host_unsuitable, k8s_testenv

pytestmark = pytest.mark.kubernetes

RESTRICTED_SC = {"runAsUser": 1000, "runAsNonRoot": True, "allowPrivilegeEscalation": False,
                 "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


@pytest.fixture(scope="module")
def cluster(request) -> K8sCluster:
    """The node. When it is already up (another engineer runs it) use it as it is, without
    `up`; otherwise (and always in CI) the standard k8s_cluster fixture brings it up.
    DEBUGKIT_K8S_NO_UP=1 skips instead of bringing a down node up."""
    reason = host_unsuitable()
    if reason and not IN_CI:
        pytest.skip(reason)
    if IN_CI or k8s_testenv("is-up", timeout=60).returncode != 0:
        if os.environ.get("DEBUGKIT_K8S_NO_UP") == "1" and not IN_CI:
            pytest.skip("the Kubernetes test node is not up (DEBUGKIT_K8S_NO_UP=1)")
        return request.getfixturevalue("k8s_cluster")
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "image", "inspect", BUSYBOX_IMAGE], capture_output=True).returncode:
        return request.getfixturevalue("k8s_cluster")  # it builds the busybox image
    info = dict(line.split("=", 1) for line in k8s_testenv("paths", timeout=30).stdout.split())
    return K8sCluster(kubeconfig=info["kubeconfig"], restricted_user_kubeconfig=info["restricted_kubeconfig"],
                      bin_dir=Path(info["bin_dir"]))


@pytest.fixture(scope="module")
def busybox(cluster) -> str:
    return cluster.load_image(BUSYBOX_IMAGE)


@pytest.fixture(scope="module")
def kc(cluster) -> KubeClient:
    client = KubeClient(kubeconfig.load(cluster.kubeconfig))
    yield client
    client.close()


def run_pod(cluster: K8sCluster, ns: str, image: str, **kwargs) -> str:
    """run_pod, waiting out the ServiceAccount admission of a namespace whose default
    service account the controller manager has not created yet."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return cluster.run_pod(ns, image, **kwargs).metadata.name
        except Exception as exc:  # noqa: BLE001 - the fixture raises the kubernetes package's ApiException
            if "serviceaccount" not in str(getattr(exc, "body", "")) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture(scope="module")
def shell_pod(cluster, busybox):
    """A long-running busybox pod (uid 1000) with a writable emptyDir at /work."""
    with cluster.namespace("restricted", prefix="dk-kc") as ns:
        name = run_pod(cluster, ns, busybox, command=["sleep", "3600"], run_as_user=1000,
                       container={"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                       volumes=[{"name": "work", "emptyDir": {}}])
        yield ns, name


def collect(ws, timeout=30.0):
    """Everything until the stream ends: ({channel: bytes}, status)."""
    out: dict[int, bytes] = {}
    try:
        while True:
            item = ws.recv(timeout)
            assert item is not None, f"no data for {timeout} s; so far {out}"
            out[item[0]] = out.get(item[0], b"") + item[1]
    except EOFError:
        pass
    ws.close()
    return out, ws.status()


# -- REST -------------------------------------------------------------------------------------------------

def test_admin_kubeconfig_loads(cluster):
    auth = kubeconfig.load(cluster.kubeconfig)
    assert auth.server.startswith("https://") and auth.token and auth.ca_file and auth.namespace == "default"


def test_get_list_patch_watch_round_trips(cluster, kc, shell_pod):
    ns, pod = shell_pod
    got = kc.read_pod(ns, pod)
    assert got["metadata"]["name"] == pod and got["status"]["phase"] == "Running"
    assert kc.read_namespace(ns)["metadata"]["labels"][RUN_LABEL] == RUN_ID
    assert kc.read_node(cluster.node_name)["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.37")
    listed = kc.list_pods(ns, label_selector=f"{RUN_LABEL}={RUN_ID}")
    assert [p["metadata"]["name"] for p in listed["items"]] == [pod]
    assert kc.list_pods(field_selector=f"metadata.namespace={ns},metadata.name={pod}")["items"]
    assert kc.list_pods(ns, field_selector="metadata.name=nothing")["items"] == []

    rv = got["metadata"]["resourceVersion"]
    events = []
    with kc.watch_pod(ns, pod, resource_version=rv, timeout_seconds=20) as watch:
        patched = kc.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{pod}",
                             body={"metadata": {"annotations": {"debugkit.test/touched": "yes"}}})
        assert patched["metadata"]["annotations"]["debugkit.test/touched"] == "yes"
        for event in watch:
            events.append(event)
            if event["object"]["metadata"].get("annotations", {}).get("debugkit.test/touched") == "yes":
                break
    assert events[-1]["type"] == "MODIFIED"
    assert kc.self_subject_access_review("create", "pods", ns, subresource="exec") is True


def test_404_and_403_mapping(cluster, kc, busybox):
    with cluster.namespace("restricted", prefix="dk-kc") as ns:
        with pytest.raises(ApiError) as info:
            kc.read_pod(ns, "no-such-pod")
        assert info.value.status == 404 and info.value.reason == "NotFound"
        assert info.value.message == 'pods "no-such-pod" not found'

        restricted = KubeClient(kubeconfig.load(cluster.restricted_user_kubeconfig))
        with pytest.raises(ApiError) as info:
            restricted.read_pod(ns, "anything")
        assert info.value.status == 403 and info.value.reason == "Forbidden"
        assert 'User "debugkit-restricted" cannot get resource "pods"' in info.value.message
        assert restricted.self_subject_access_review("get", "pods", ns) is False

        pod = run_pod(cluster, ns, busybox, command=["sleep", "3600"], run_as_user=1000)
        cluster.grant_restricted_user(ns, [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])
        deadline = time.monotonic() + 20
        while not restricted.self_subject_access_review("get", "pods", ns):
            assert time.monotonic() < deadline, "RBAC grant did not take effect"
            time.sleep(0.2)
        assert restricted.read_pod(ns, pod)["metadata"]["name"] == pod
        assert restricted.self_subject_access_review("create", "pods", ns, subresource="exec") is False
        with pytest.raises(ApiError) as info:  # the websocket upgrade refused with a Status body
            restricted.exec_stream(ns, pod, ["true"])
        assert info.value.status == 403
        # the websocket is a GET: RBAC first asks for "get" on pods/exec ...
        assert 'User "debugkit-restricted" cannot get resource "pods/exec"' in info.value.message
        cluster.grant_restricted_user(ns, [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get"]}])
        deadline = time.monotonic() + 20
        while not restricted.self_subject_access_review("get", "pods", ns, subresource="exec"):
            assert time.monotonic() < deadline, "RBAC grant did not take effect"
            time.sleep(0.2)
        # ... and since 1.35 "create" as well (AuthorizePodWebsocketUpgradeCreatePermission):
        # "get" alone is refused, with a 403 whose message (on 1.37.2) names no verb.
        with pytest.raises(ApiError) as info:
            restricted.exec_stream(ns, pod, ["true"])
        assert info.value.status == 403
        assert info.value.message.startswith(f'pods "{pod}" is forbidden')
        cluster.grant_restricted_user(ns, [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get", "create"]}])
        deadline = time.monotonic() + 20
        while not restricted.self_subject_access_review("create", "pods", ns, subresource="exec"):
            assert time.monotonic() < deadline, "RBAC grant did not take effect"
            time.sleep(0.2)
        _out, status = collect(restricted.exec_stream(ns, pod, ["true"]))
        assert status["status"] == "Success"
        with pytest.raises(ApiError) as info:
            restricted.patch_ephemeral_containers(ns, pod, [])
        assert info.value.status == 403 and "pods/ephemeralcontainers" in info.value.message
        restricted.close()


# -- exec -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command, code", [
    (["true"], 0),
    (["sh", "-c", "exit 3"], 3),
    (["sh", "-c", "exit 42"], 42),
    (["sh", "-c", "kill -9 $$"], 137),
])
def test_exec_exit_codes(kc, shell_pod, command, code):
    ns, pod = shell_pod
    ws = kc.exec_stream(ns, pod, command)
    assert ws.protocol == "v5.channel.k8s.io"
    _out, status = collect(ws)
    assert ws.exit_code() == code
    if code == 0:
        assert status == {"metadata": {}, "status": "Success"}
    else:
        assert status["reason"] == "NonZeroExitCode"
        assert status["details"]["causes"] == [{"reason": "ExitCode", "message": str(code)}]


@pytest.mark.parametrize("command, code, words", [
    (["no-such-command"], 127, 'exec: "no-such-command": executable file not found in $PATH'),
    (["/no/such/file"], 127, "no such file or directory"),
    (["/work/not-executable"], 126, "permission denied"),
    (["/bin"], 126, "is a directory"),  # runc 1.5 says so; runc 1.1 said "permission denied"
])
def test_exec_that_cannot_start(kc, shell_pod, command, code, words):
    ns, pod = shell_pod
    _, status = collect(kc.exec_stream(ns, pod, ["sh", "-c", "echo hi > /work/not-executable"]))
    assert status["status"] == "Success"
    ws = kc.exec_stream(ns, pod, command)
    _out, status = collect(ws)
    assert ws.exit_code() is None
    assert status["reason"] == "InternalError" and status["code"] == 500
    assert words in status["message"]
    assert exec_failure_code(status) == code == ws.exec_failure_code()


def test_exec_stdout_stderr_separation_and_v4(kc, shell_pod):
    ns, pod = shell_pod
    out, status = collect(kc.exec_stream(ns, pod, ["sh", "-c", "echo out; echo err >&2; echo out2; exit 3"]))
    assert out.get(1) == b"out\nout2\n" and out.get(2) == b"err\n"
    ws = kc.stream(f"/api/v1/namespaces/{ns}/pods/{pod}/exec",
                   [("command", "sh"), ("command", "-c"), ("command", "echo v4; exit 3"), ("stdout", "true"),
                    ("stderr", "true")], protocols=("v4.channel.k8s.io",))
    assert ws.protocol == "v4.channel.k8s.io" and ws.close_channel(0) is False
    out, status = collect(ws)
    assert out.get(1) == b"v4\n" and ws.exit_code() == 3
    assert status["message"] == "command terminated with non-zero exit code: error executing command " \
                                "[sh -c echo v4; exit 3], exit code 3"


def test_exec_stdin_and_v5_half_close(kc, shell_pod):
    ns, pod = shell_pod
    ws = kc.exec_stream(ns, pod, ["sh", "-c", "wc -c; echo done >&2; exit 5"], stdin=True)
    ws.send(0, b"x" * 1_000_000)
    assert ws.close_channel(0) is True  # cat/wc see EOF; output and the exit code still arrive
    out, _status = collect(ws)
    assert out[1].strip() == b"1000000" and out[2] == b"done\n" and ws.exit_code() == 5


def test_exec_100_mib_through_cat(kc, shell_pod):
    ns, pod = shell_pod
    ws = kc.exec_stream(ns, pod, ["cat"], stdin=True)
    chunk = os.urandom(1 << 20)
    total, received = 100 << 20, 0
    start = time.monotonic()
    for _ in range(100):
        ws.send(0, chunk)  # reads what arrives while the pipe is full
        while (item := ws.recv(0)) is not None:
            received += len(item[1])
    ws.close_channel(0)
    try:
        while True:
            item = ws.recv(30)
            assert item is not None
            received += len(item[1])
    except EOFError:
        pass
    elapsed = time.monotonic() - start
    ws.close()
    assert received == total and ws.exit_code() == 0
    print(f"\n100 MiB through exec cat (both ways): {elapsed:.1f} s")
    assert elapsed < 60


def test_exec_into_missing_container(kc, shell_pod):
    ns, pod = shell_pod
    with pytest.raises(ApiError) as info:
        kc.exec_stream(ns, pod, ["true"], container="nope")
    assert info.value.status == 400 and info.value.reason == "BadRequest"
    assert info.value.message == f"container nope is not valid for pod {pod}"


# -- ephemeral containers: exec before the API says running; attach ---------------------------------------

def test_exec_into_a_just_added_ephemeral_container(cluster, kc, shell_pod):
    ns, pod = shell_pod
    name = f"dbg-{uuid.uuid4().hex[:6]}"
    spec = {"name": name, "image": BUSYBOX_IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "600"],
            "targetContainerName": "app", "securityContext": RESTRICTED_SC}
    current = kc.read_pod(ns, pod)["spec"].get("ephemeralContainers")
    patch = ([{"op": "add", "path": "/spec/ephemeralContainers/-", "value": spec}] if current else
             [{"op": "add", "path": "/spec/ephemeralContainers", "value": [spec]}])
    start = time.monotonic()
    kc.patch_ephemeral_containers(ns, pod, patch)
    failures = []
    while True:
        # Until the container runs, the kubelet answers "container not found": at the
        # handshake (a 500 Status, as Kubernetes 1.37 does), or in the stream's status.
        try:
            ws = kc.exec_stream(ns, pod, ["echo", "ready"], container=name)
        except ApiError as exc:
            assert exc.status == 500 and "container not found" in exc.message, exc
        else:
            out, status = collect(ws)
            if ws.exit_code() == 0:
                break
            assert container_not_found(status), status
            assert status["reason"] == "InternalError" and status["code"] == 500
        failures.append(time.monotonic() - start)
        assert time.monotonic() - start < 60
        time.sleep(0.05)
    exec_ok = time.monotonic() - start
    assert out[1] == b"ready\n"
    running = None
    while running is None:
        for st in kc.read_pod(ns, pod)["status"].get("ephemeralContainerStatuses") or []:
            if st["name"] == name and "running" in st.get("state", {}):
                running = time.monotonic() - start
        time.sleep(0.05)
    print(f"\nephemeral container: {len(failures)} 'container not found' statuses, first exec success "
          f"{exec_ok:.2f} s after the PATCH, API status running after {running:.2f} s")


def test_attach_to_an_ephemeral_container_with_stdin(cluster, kc, shell_pod):
    ns, pod = shell_pod
    name = f"att-{uuid.uuid4().hex[:6]}"
    spec = {"name": name, "image": BUSYBOX_IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sh"],
            "stdin": True, "targetContainerName": "app", "securityContext": RESTRICTED_SC}
    current = kc.read_pod(ns, pod)["spec"].get("ephemeralContainers")
    kc.patch_ephemeral_containers(ns, pod, [{"op": "add", "path": "/spec/ephemeralContainers/-", "value": spec}]
                                  if current else [{"op": "add", "path": "/spec/ephemeralContainers",
                                                    "value": [spec]}])
    cluster.wait_ephemeral_running(ns, pod, name)
    ws = kc.attach_stream(ns, pod, container=name)
    # The kubelet may pass stdin on before it streams the output back (seen once under
    # load: "hi" lost): the shell waits a moment before it writes. And an attach (which
    # debugkit never uses; exec has no such race) can lose what was written just before
    # the process exits (1.37.2 with containerd 2.4: "oops" lost about one run in three):
    # the shell waits a moment before it exits, too.
    ws.send(0, b"sleep 0.5; echo hi; echo oops >&2; sleep 0.5; exit 7\n")
    out, status = collect(ws)
    assert out.get(1) == b"hi\n" and out.get(2) == b"oops\n"
    # attach's status is not the process's exit: that is in the container's terminated state
    assert status == {"metadata": {}, "status": "Success"}
    deadline = time.monotonic() + 30
    while True:
        st = next(s for s in kc.read_pod(ns, pod)["status"]["ephemeralContainerStatuses"] if s["name"] == name)
        if "terminated" in st["state"]:
            assert st["state"]["terminated"]["exitCode"] == 7
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)


# -- portforward ---------------------------------------------------------------------------------------------

def test_portforward_to_a_localhost_only_server(cluster, kc, busybox):
    with cluster.namespace("restricted", prefix="dk-kc") as ns:
        pod = run_pod(cluster, ns, busybox, run_as_user=1000,
                      command=["sh", "-c", "nc -ll -p 9001 -e cat & exec httpd -f -p 127.0.0.1:9000 -h /bin"])
        # Is the httpd listening yet? An exec of wget from inside is the cheapest check.
        deadline = time.monotonic() + 30
        while True:
            ws = kc.exec_stream(ns, pod, ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9000/true"])
            collect(ws)
            if ws.exit_code() == 0:
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)

        ws = kc.portforward_stream(ns, pod, [9000, 9001, 9002])
        assert ws.protocol == "v4.channel.k8s.io"
        ws.send(0, b"GET /true HTTP/1.0\r\n\r\n")  # port 9000: data channel 0, error channel 1
        ws.send(2, b"echo me\n")  # port 9001: channels 2 and 3
        data: dict[int, bytes] = {}
        deadline = time.monotonic() + 20
        while (b"\r\n\r\n" not in data.get(0, b"") or b"echo me\n" not in data.get(2, b"")
               or not data.get(5)):
            assert time.monotonic() < deadline, data
            item = ws.recv(1)
            if item:
                data[item[0]] = data.get(item[0], b"") + item[1]
        assert data[0].startswith(b"HTTP/1.1 200 OK")
        assert data[2] == b"echo me\n"
        assert b"9002" in data[5] and b"connection refused" in data[5]  # port 9002: error channel 5
        assert ws.port_of(0) == 9000 and ws.port_of(2) == 9001 and ws.port_of(5) == 9002
        ws.close()

        # The base protocol (no Sec-WebSocket-Protocol answered) works too; portforward.k8s.io
        # and v5.channel.k8s.io are refused with a bare 403.
        ws = kc.stream(f"/api/v1/namespaces/{ns}/pods/{pod}/portforward", [("ports", "9000")], protocols=())
        assert ws.protocol == ""
        ws.close()
        for protocol in ("portforward.k8s.io", "v5.channel.k8s.io"):
            with pytest.raises(ApiError) as info:
                kc.stream(f"/api/v1/namespaces/{ns}/pods/{pod}/portforward", [("ports", "9000")],
                          protocols=(protocol,))
            assert info.value.status == 403


# -- concurrency ----------------------------------------------------------------------------------------------

def test_parallel_requests_share_the_pool_and_the_rate_limit(cluster, shell_pod):
    ns, pod = shell_pod
    client = KubeClient(kubeconfig.load(cluster.kubeconfig), qps=10, burst=5, pool_size=4)
    client.read_pod(ns, pod)  # one warm connection
    results, errors = [], []

    def one():
        try:
            results.append(client.read_pod(ns, pod)["metadata"]["name"])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    start = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - start
    assert not errors and results == [pod] * 20
    # the bucket held 4 tokens after the warm-up request: 16 more at 10 per second
    assert elapsed >= 1.4
    assert client.pool.opened <= 4 and client.pool.reused >= 17
    client.close()


# -- exec credential plugin -------------------------------------------------------------------------------------

def test_exec_plugin_kubeconfig_authenticates(cluster, tmp_path, shell_pod):
    ns, pod = shell_pod
    admin = kubeconfig.load(cluster.kubeconfig)
    plugin = tmp_path / "token-plugin"
    plugin.write_text("#!/bin/sh\n"
                      'printf \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
                      '"status":{"token":"%s","expirationTimestamp":"2999-01-01T00:00:00Z"}}\' "$DEBUGKIT_TOKEN"\n'
                      "echo run >> \"$0.runs\"\n")
    plugin.chmod(0o755)
    config = tmp_path / "config"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "plugin",
        "clusters": [{"name": "node", "cluster": {"server": admin.server, "certificate-authority": admin.ca_file}}],
        "users": [{"name": "via-plugin", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": "./token-plugin",
            "env": [{"name": "DEBUGKIT_TOKEN", "value": admin.token}], "interactiveMode": "Never"}}}],
        "contexts": [{"name": "plugin", "context": {"cluster": "node", "user": "via-plugin", "namespace": ns}}],
    }))
    auth = kubeconfig.load(str(config))
    assert auth.exec_config.command == str(plugin) and auth.namespace == ns
    client = KubeClient(auth)
    assert client.read_pod(ns, pod)["metadata"]["name"] == pod
    _out, status = collect(client.exec_stream(ns, pod, ["true"]))
    assert status["status"] == "Success"
    assert (tmp_path / "token-plugin.runs").read_text().count("run") == 1  # cached until its expiry
    client.close()
