"""debugkit's Kubernetes backend against the real node, in namespaces enforcing `restricted`."""
from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import wait_for, REPO, run_cli, text

pytestmark = pytest.mark.kubernetes
REGISTRY = "127.0.0.1:5000"


@pytest.fixture(scope="module")
def toolbox_on_node(k8s_cluster, toolbox_image):
    return k8s_cluster.load_image(toolbox_image)


@pytest.fixture(scope="module")
def registry_image(k8s_cluster, docker_client, fixture_images):
    """The distroless fixture pushed to a real local registry and present on the node under
    that name, but no longer in the local engine: debugkit must read its USER and its
    /etc/passwd from the registry (v2 API, manifest -> config -> layers)."""
    pushed = subprocess.run([str(REPO / "scripts" / "registry-testenv"), "push", fixture_images["distroless"]],
                            check=True, capture_output=True, text=True).stdout.strip()
    k8s_cluster.load_image(pushed)
    docker_client.images.remove(pushed)
    return pushed


@pytest.fixture
def restricted_ns(k8s_cluster):
    with k8s_cluster.namespace("restricted") as ns:
        yield ns


@pytest.fixture
def target_pod(k8s_cluster, restricted_ns, registry_image):
    """A pod whose spec says nothing about the user: the UID is only in the image."""
    pod = k8s_cluster.run_pod(restricted_ns, registry_image, container_name="app")
    assert pod.spec.security_context.run_as_user is None
    assert pod.spec.containers[0].security_context.run_as_user is None
    return pod


def kube(cluster, command, *args, kubeconfig=None, **kwargs):
    """The CLI with the test cluster's kubeconfig (before any `--`, which ends our options)."""
    return run_cli(command, "--kubeconfig", kubeconfig or cluster.kubeconfig, *args, **kwargs)


def test_identity_comes_from_the_image_through_the_registry(k8s_cluster, target_pod, restricted_ns):
    result = kube(k8s_cluster, "inspect", f"pod/{target_pod.metadata.name}", "-n", restricted_ns, "-o", "json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["uid"], info["gid"], info["source"]) == (65532, 65532, "image-config")
    assert any(f"registry {REGISTRY}" in note for note in info["notes"]), info["notes"]
    assert info["pod_security_enforce"] == "restricted" and info["admitted_by_namespace"] is True
    by_source = {s["source"]: s for s in info["sources"]}
    assert "runAsUser" in by_source["config"]["error"]


def test_sidecar_runs_as_target_sees_it_reads_its_root_and_reaches_its_port(
        k8s_cluster, target_pod, restricted_ns, toolbox_on_node):
    script = ("id -u; id -g; grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; "
              "ps -o user,args | grep /server | grep -v grep; "
              "cat /proc/1/root/home/nonroot/secret.txt; curl -fsS http://127.0.0.1:8080/healthz")
    result = kube(k8s_cluster, "attach", f"pod/{target_pod.metadata.name}", "-n", restricted_ns, "--", "sh", "-c",
                  script, timeout=180)
    out, err = text(result)
    assert result.returncode == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["65532", "65532"]
    assert "CapEff:\t0000000000000000" in lines and "NoNewPrivs:\t1" in lines
    assert any(line.endswith("/server") for line in lines), out
    assert "only nonroot can read this" in out and lines[-1] == "ok"
    pod = k8s_cluster.api.read_namespaced_pod(target_pod.metadata.name, restricted_ns)
    (debug,) = pod.spec.ephemeral_containers
    assert debug.name.startswith("debugkit-") and debug.target_container_name == "app"
    sc = debug.security_context
    assert (sc.run_as_user, sc.run_as_non_root, sc.allow_privilege_escalation, sc.capabilities.drop,
            sc.seccomp_profile.type) == (65532, True, False, ["ALL"], "RuntimeDefault")


@pytest.mark.parametrize("code", [0, 3, 42])
def test_real_exit_code_and_separate_streams(k8s_cluster, target_pod, restricted_ns, toolbox_on_node, code):
    result = kube(k8s_cluster, "attach", f"k8s://{restricted_ns}/{target_pod.metadata.name}/app", "--",
                  "sh", "-c", f"echo out; echo err >&2; exit {code}", timeout=180)
    assert (result.returncode, result.stdout, result.stderr) == (code, b"out\n", b"err\n")


def test_piped_stdin_reaches_the_command(k8s_cluster, target_pod, restricted_ns, toolbox_on_node):
    result = kube(k8s_cluster, "attach", "-i", f"pod/{target_pod.metadata.name}", "-n", restricted_ns, "--",
                  "wc", "-c", input=b"y" * 5000, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == b"5000"


def test_capability_profile_is_refused_before_any_patch(k8s_cluster, target_pod, restricted_ns, toolbox_on_node):
    result = kube(k8s_cluster, "attach", "--profile", "netadmin", f"pod/{target_pod.metadata.name}",
                  "-n", restricted_ns, "--", "true")
    out, err = text(result)
    assert result.returncode == ExitCode.POLICY_REJECTED, err
    assert "PodSecurity 'restricted'" in err and "capabilities.add" in err and "runAsNonRoot" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    pod = k8s_cluster.api.read_namespaced_pod(target_pod.metadata.name, restricted_ns)
    assert not pod.spec.ephemeral_containers  # nothing was patched


def test_kubectl_debug_default_is_rejected_where_debugkit_is_admitted(k8s_cluster, target_pod, restricted_ns,
                                                                     toolbox_on_node):
    kubectl = k8s_cluster.kubectl("debug", "-n", restricted_ns, target_pod.metadata.name, f"--image={toolbox_on_node}",
                                  "--target=app", "--", "true", check=False)
    assert kubectl.returncode != 0 and "violates PodSecurity" in kubectl.stderr, kubectl.stderr
    ours = kube(k8s_cluster, "attach", f"pod/{target_pod.metadata.name}", "-n", restricted_ns, "--", "true",
                timeout=180)
    assert ours.returncode == 0, ours.stderr


def test_forbidden_user_gets_one_clean_line(k8s_cluster, target_pod, restricted_ns, toolbox_on_node):
    pod = target_pod.metadata.name
    nothing = kube(k8s_cluster, "attach", f"pod/{pod}", "-n", restricted_ns, "--", "true",
                   kubeconfig=k8s_cluster.restricted_user_kubeconfig)
    assert nothing.returncode == ExitCode.FORBIDDEN
    assert b"cannot get pods in namespace" in nothing.stderr
    k8s_cluster.grant_restricted_user(restricted_ns, [
        {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]}])
    no_patch = kube(k8s_cluster, "attach", f"pod/{pod}", "-n", restricted_ns, "--", "true",
                    kubeconfig=k8s_cluster.restricted_user_kubeconfig)
    out, err = text(no_patch)
    assert no_patch.returncode == ExitCode.FORBIDDEN, err
    assert err.strip() == (f"debugkit: error: forbidden: cannot patch pods/ephemeralcontainers in namespace "
                           f"{restricted_ns} as {k8s_cluster.restricted_user} (ask for RBAC that grants this verb "
                           f"on this resource)")


def test_timeout_names_the_last_waiting_reason(k8s_cluster, target_pod, restricted_ns):
    result = kube(k8s_cluster, "attach", "--image", "debugkit/not-on-this-node:0", "--timeout", "20",
                  f"pod/{target_pod.metadata.name}", "-n", restricted_ns, "--", "true", timeout=120)
    out, err = text(result)
    assert result.returncode == ExitCode.TIMEOUT, err
    assert "within 20s" in err and ("ErrImagePull" in err or "ImagePullBackOff" in err), err


def test_missing_pod_container_and_ambiguous_container(k8s_cluster, restricted_ns, registry_image):
    missing = kube(k8s_cluster, "attach", "pod/no-such-pod", "-n", restricted_ns, "--", "true")
    assert missing.returncode == ExitCode.TARGET_NOT_FOUND and b"no-such-pod" in missing.stderr
    two = k8s_cluster.pod_manifest(restricted_ns, registry_image, container_name="a")
    second = dict(two["spec"]["containers"][0], name="b", args=["-listen", ":8081"])
    two["spec"]["containers"].append(second)
    k8s_cluster.api.create_namespaced_pod(restricted_ns, two)
    k8s_cluster.wait_pod_running(restricted_ns, two["metadata"]["name"])
    ambiguous = kube(k8s_cluster, "attach", f"pod/{two['metadata']['name']}", "-n", restricted_ns, "--", "true")
    assert ambiguous.returncode == ExitCode.INVALID_INPUT and b"a, b" in ambiguous.stderr
    wrong = kube(k8s_cluster, "attach", f"pod/{two['metadata']['name']}/c", "-n", restricted_ns, "--", "true")
    assert wrong.returncode == ExitCode.TARGET_NOT_FOUND and b"containers: a, b" in wrong.stderr


def test_ps_lists_debug_containers(k8s_cluster, target_pod, restricted_ns, toolbox_on_node):
    """A debug container stays for reuse (--keep-alive, 10m by default): ps lists it as
    reusable; with --keep-alive 0 it ends with its command."""
    pod = target_pod.metadata.name
    assert kube(k8s_cluster, "attach", f"pod/{pod}", "-n", restricted_ns, "--",
                "sh", "-c", "exit 9", timeout=180).returncode == 9

    def rows():
        return json.loads(kube(k8s_cluster, "ps", "--runtime", "kubernetes", "-n", restricted_ns, "-o",
                               "json").stdout)

    (row,) = wait_for(lambda: [r for r in rows() if r["state"] == "running"], timeout=30,
                      what="the kept-alive debug container to be reported running")
    assert (row["runtime"], row["user"], row["target"], row["reusable"]) == (
        "kubernetes", "65532:65532", f"{pod}/app", True)
    gc = json.loads(kube(k8s_cluster, "gc", "--runtime", "kubernetes", "-n", restricted_ns, "-o", "json").stdout)
    assert [a["action"] for a in gc if a["runtime"] == "kubernetes"] == ["kept (still running)"]
    # --keep-alive 0 and --new: a fresh container that ends with the command.
    assert kube(k8s_cluster, "attach", f"pod/{pod}", "-n", restricted_ns, "--new", "--keep-alive", "0", "--",
                "true", timeout=180).returncode == 0
    ended = wait_for(lambda: [r for r in rows() if r["state"].startswith("exited")], timeout=30,
                     what="the --keep-alive 0 container to end")
    assert [r["state"] for r in ended] == ["exited(0)"]


def test_runbook_runs_in_one_debug_container(k8s_cluster, target_pod, restricted_ns, toolbox_on_node, tmp_path):
    """A bundled runbook against a pod: one ephemeral container, one exec per step."""
    report_path = tmp_path / "report.json"
    result = run_cli("runbook", "run", "--kubeconfig", k8s_cluster.kubeconfig, "http-health",
                     f"pod/{target_pod.metadata.name}", "-n", restricted_ns, "--var", "URL_PATH=/healthz",
                     "-o", "json", "--report", str(report_path), timeout=300)
    out, err = text(result)
    assert result.returncode == 0, out + err
    report = json.loads(report_path.read_text())
    assert all(step["status"] == "passed" for step in report["steps"]), report["steps"]
    assert "status=200" in report["steps"][1]["stdout"]
    pod = k8s_cluster.api.read_namespaced_pod(target_pod.metadata.name, restricted_ns)
    assert len(pod.spec.ephemeral_containers) == 1  # one sidecar served every step
    # A second run, and an attach, reuse it: the pod still carries one debug container.
    again = run_cli("runbook", "run", "--kubeconfig", k8s_cluster.kubeconfig, "http-health",
                    f"pod/{target_pod.metadata.name}", "-n", restricted_ns, "--var", "URL_PATH=/healthz", timeout=300)
    assert again.returncode == 0, text(again)
    assert kube(k8s_cluster, "attach", f"pod/{target_pod.metadata.name}", "-n", restricted_ns, "--", "true",
                timeout=180).returncode == 0
    pod = k8s_cluster.api.read_namespaced_pod(target_pod.metadata.name, restricted_ns)
    assert len(pod.spec.ephemeral_containers) == 1


def test_interactive_shell_over_the_websocket(k8s_cluster, target_pod, restricted_ns, toolbox_on_node):
    """Raw-mode TTY on a real pseudo-terminal: the banner, the shell as 65532, resize, exit code."""
    from tests.helpers import Pty

    term = Pty(["attach", "--kubeconfig", k8s_cluster.kubeconfig, f"pod/{target_pod.metadata.name}",
                "-n", restricted_ns], rows=40, cols=120)
    try:
        term.expect(b"/proc/1/root", timeout=120)  # the banner, once the container runs
        term.send("id -u; stty size; tty\n")
        screen = term.expect(b"/dev/pts/", timeout=30)
        assert b"\r65532\r\n40 120\r\n" in screen
        term.resize(50, 132)  # noticed by the next pass of the copy loop
        term.send("sleep 0.5; stty size\n")
        term.expect(b"50 132", timeout=30)
        term.send("exit 4\n")
        assert term.proc.wait(timeout=60) == 4
    finally:
        term.close()


def test_a_pod_deleted_during_an_attach_is_67_and_one_line(k8s_cluster, target_pod, restricted_ns, toolbox_on_node):
    """Not a raw runtime error blamed on debugkit-helper with exit 1: the pod is going
    away, and debugkit says so (67), in one line."""
    from tests.integration.fleet.helpers import popen_cli

    name = target_pod.metadata.name
    proc = popen_cli("attach", "--kubeconfig", k8s_cluster.kubeconfig, f"pod/{name}", "-n", restricted_ns,
                     "--", "sh", "-c", "sleep 60; echo done")
    try:
        def debugged():
            status = k8s_cluster.api.read_namespaced_pod(name, restricted_ns).status
            return any(st.state.running for st in status.ephemeral_container_statuses or [])

        wait_for(debugged, timeout=60, interval=0.25, what="the debug container to run")
        time.sleep(1)  # its exec starts right after the probe that found it running
        k8s_cluster.api.delete_namespaced_pod(name, restricted_ns, grace_period_seconds=1)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = err.decode(errors="replace").splitlines()
    assert proc.returncode == ExitCode.TARGET_NOT_RUNNING, lines
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert re.match(rf"debugkit: error: k8s://{restricted_ns}/{name} (was (being )?deleted|stopped running) while "
                    rf"it was debugged", lines[0]), lines
    assert b"done" not in out
