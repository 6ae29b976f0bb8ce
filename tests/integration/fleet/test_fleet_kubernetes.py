"""Fleets on the real Kubernetes node: Deployments of a distroless image in namespaces that
enforce `restricted`, one debug container per pod, each with its own identity resolution,
PodSecurity pre-check and audit record."""
from __future__ import annotations

import collections
import json
import re
import threading
import time
import uuid

import pytest

from debugkit.core.errors import ExitCode
from debugkit.runbook.load import load_file
from tests.helpers import audit_records, run_cli, text, wait_for
from tests.integration.fleet.helpers import popen_cli, run_json
from tests.integration.kubernetes.cluster import DEPLOYMENT_LABEL

pytestmark = pytest.mark.kubernetes
REPLICAS = 6


@pytest.fixture(scope="module")
def toolbox_on_node(k8s_cluster, toolbox_image):
    return k8s_cluster.load_image(toolbox_image)


@pytest.fixture(scope="module")
def target_image(k8s_cluster, fixture_images):
    return k8s_cluster.load_image(fixture_images["distroless"])


@pytest.fixture(scope="module")
def fleet_ns(k8s_cluster):
    with k8s_cluster.namespace("restricted", prefix="dk-fleet") as ns:
        yield ns


@pytest.fixture(scope="module")
def web(k8s_cluster, fleet_ns, target_image, toolbox_on_node):
    """Six replicas of the distroless image, running as 65532 (the pod's securityContext)."""
    return k8s_cluster.run_deployment(fleet_ns, target_image, replicas=REPLICAS, run_as_user=65532,
                                      name=f"web-{uuid.uuid4().hex[:6]}")


def kube(cluster, command, *args, **kwargs):
    return run_cli(*command.split(), "--kubeconfig", cluster.kubeconfig, *args, **kwargs)


def kube_json(cluster, command, *args, **kwargs):
    return run_json(*command.split(), "--kubeconfig", cluster.kubeconfig, *args, **kwargs)


def running_pods(cluster, namespace, deployment) -> list[str]:
    return [p.metadata.name for p in cluster.pods_of(namespace, {DEPLOYMENT_LABEL: deployment})
            if p.metadata.deletion_timestamp is None and p.status.phase == "Running"]


def test_a_command_runs_on_every_pod_of_the_deployment_as_its_own_user(k8s_cluster, fleet_ns, web, audit_log):
    pods = running_pods(k8s_cluster, fleet_ns, web)
    assert len(pods) == REPLICAS
    result, data, err = kube_json(k8s_cluster, "attach", f"deploy/{web}", "-n", fleet_ns, "-o", "json", "--",
                                  "sh", "-c", "id -u; hostname", timeout=240)
    assert result.returncode == 0, err
    assert [o["target"] for o in data] == [f"pod/{p}" for p in sorted(pods)]
    for o in data:
        pod = o["target"].removeprefix("pod/")
        assert (o["status"], o["exit_code"], o["error"], o["namespace"], o["container"]) == \
            ("passed", 0, None, fleet_ns, "app"), o
        assert o["stdout"] == f"65532\n{pod}\n" and o["stderr"] == "" and o["duration_s"] > 0
    assert err.splitlines()[-1].startswith(f"debugkit: attach deploy/{web}: {REPLICAS} target(s): {REPLICAS} passed")
    # Each target is its own session: a start and an end record each, with its own identity.
    records = audit_records(audit_log)
    starts = [r for r in records if r["event"] == "start"]
    assert sorted(r["target"] for r in starts) == sorted(f"{fleet_ns}/{p}/app" for p in pods)
    assert len({r["session"] for r in starts}) == REPLICAS
    assert all(r["sidecar_user"] == "65532:65532" and r["identity"]["source"] == "config" for r in starts)
    ends = [r for r in records if r["event"] == "end"]
    assert sorted(r["session"] for r in ends) == sorted(r["session"] for r in starts)
    assert all(r["exit_code"] == 0 for r in ends)


def test_the_pod_whose_command_fails_is_named_and_the_fleet_exits_1(k8s_cluster, fleet_ns, web):
    pods = sorted(running_pods(k8s_cluster, fleet_ns, web))
    bad = pods[2]
    result = kube(k8s_cluster, "attach", f"deploy/{web}", "-n", fleet_ns, "--", "sh", "-c",
                  f'test "$(hostname)" != {bad}', timeout=240)
    out, err = text(result)
    assert result.returncode == 1, err
    assert out == ""
    assert re.search(rf"^pod/{bad}: failed, exit 1 \(", err, re.M), err
    assert len(re.findall(r"^pod/\S+: passed, exit 0 \(", err, re.M)) == REPLICAS - 1
    assert f"{REPLICAS - 1} passed, 1 failed" in err.splitlines()[-1]


def test_a_pod_deleted_mid_run_is_reported_and_the_others_finish(k8s_cluster, fleet_ns, target_image,
                                                                  toolbox_on_node):
    name = k8s_cluster.run_deployment(fleet_ns, target_image, replicas=3, run_as_user=65532,
                                      name=f"gone-{uuid.uuid4().hex[:6]}")
    pods = sorted(running_pods(k8s_cluster, fleet_ns, name))
    victim = pods[1]
    proc = popen_cli("attach", "--kubeconfig", k8s_cluster.kubeconfig, f"deploy/{name}", "-n", fleet_ns,
                     "-o", "json", "--", "sh", "-c", "sleep 15; echo done")
    try:
        def all_debugged():
            for pod in pods:
                status = k8s_cluster.api.read_namespaced_pod(pod, fleet_ns).status
                if not any(st.state.running for st in status.ephemeral_container_statuses or []):
                    return False
            return True

        wait_for(all_debugged, timeout=60, interval=0.25, what="a running debug container in each pod")
        time.sleep(1)  # the long command is running in each
        k8s_cluster.api.delete_namespaced_pod(victim, fleet_ns, grace_period_seconds=1)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    by = {o["target"]: o for o in json.loads(out)}
    gone = by.pop(f"pod/{victim}")
    assert gone["status"] == "error" and gone["error"]["exit_code"] == ExitCode.TARGET_NOT_RUNNING, gone
    assert re.match(rf"pod/{victim} was (being )?deleted while it was debugged", gone["error"]["message"]), gone
    assert [(o["status"], o["stdout"]) for o in by.values()] == [("passed", "done\n")] * 2


def test_a_bundled_runbook_over_the_deployment_writes_valid_reports(k8s_cluster, fleet_ns, web, tmp_path):
    pods = sorted(running_pods(k8s_cluster, fleet_ns, web))
    steps_in_runbook = len(load_file("processes").steps)  # the bundled runbook grows; the report follows it
    markdown = tmp_path / "fleet.md"
    result, report, err = kube_json(k8s_cluster, "runbook run", "processes", f"deploy/{web}", "-n", fleet_ns,
                                    "-o", "json", "--report", str(markdown), expect_list=False, timeout=240)
    assert result.returncode == 0, err
    assert (report["runbook"]["name"], report["targets"], report["passed"]) == ("processes", REPLICAS, REPLICAS)
    assert [r["target"] for r in report["results"]] == [f"pod/{p}" for p in pods]
    for r in report["results"]:
        steps = r["report"]["steps"]
        assert r["status"] == "passed" and r["error"] is None and r["namespace"] == fleet_ns
        assert [s["status"] for s in steps] == ["passed"] * steps_in_runbook
        assert r["report"]["identity"] == {"uid": 65532, "gid": 65532, "source": "config"}
        assert re.search(r"^\s*1\s+0\s+\S+\s", steps[0]["stdout"], re.M), steps[0]["stdout"]  # PID 1, the target
    md = markdown.read_text()
    assert md.startswith(f"# Runbook `processes` over {REPLICAS} targets: {REPLICAS} passed\n")
    rows = [line for line in md.splitlines() if line.startswith("| pod/")]
    assert len(rows) == REPLICAS
    for pod, row in zip(pods, rows):
        assert re.fullmatch(rf"\| pod/{pod} \| PASSED \| {steps_in_runbook} \| 0 \| [0-9.]+s \|  \|", row), row
    sections = re.findall(r"^## (pod/\S+): (\w+)$", md, re.M)
    assert sections == [(f"pod/{p}", "PASSED") for p in pods]
    assert md.count("### 1. process tree: PASS") == REPLICAS
    # The same run as a JSON report file is the JSON on stdout.
    as_json = tmp_path / "fleet.json"
    again = kube(k8s_cluster, "runbook run", "processes", f"deploy/{web}", "-n", fleet_ns, "--report", str(as_json),
                 timeout=240)
    assert again.returncode == 0, again.stderr
    assert json.loads(as_json.read_text())["passed"] == REPLICAS


def test_a_selector_across_deployments_and_namespaces_and_a_refusal_on_some_pods(k8s_cluster, fleet_ns, target_image,
                                                                                toolbox_on_node):
    tag = uuid.uuid4().hex[:8]
    labels = {"io.debugkit.fleet-selector": tag}
    a = k8s_cluster.run_deployment(fleet_ns, target_image, replicas=2, run_as_user=65532, labels=labels,
                                   name=f"sel-a-{tag}")
    b = k8s_cluster.run_deployment(fleet_ns, target_image, replicas=1, run_as_user=65532, labels=labels,
                                   name=f"sel-b-{tag}")
    mine = sorted(running_pods(k8s_cluster, fleet_ns, a) + running_pods(k8s_cluster, fleet_ns, b))
    result, data, err = kube_json(k8s_cluster, "attach", "-l", f"io.debugkit.fleet-selector={tag}", "-n", fleet_ns,
                                  "-o", "json", "--", "hostname", timeout=240)
    assert result.returncode == 0, err
    assert [(o["target"], o["stdout"]) for o in data] == [(f"pod/{p}", f"{p}\n") for p in mine]
    # Across namespaces: a privileged one admits --profile ptrace, the restricted one refuses
    # it pod by pod (PodSecurity pre-check, nothing patched), and the fleet says both.
    with k8s_cluster.namespace("privileged", prefix="dk-fleet") as other:
        c = k8s_cluster.run_deployment(other, target_image, replicas=1, run_as_user=65532, labels=labels,
                                       restricted=False, name=f"sel-c-{tag}")
        (theirs,) = running_pods(k8s_cluster, other, c)
        result, data, err = kube_json(k8s_cluster, "attach", "-l", f"io.debugkit.fleet-selector={tag}", "-A",
                                      "--profile", "ptrace", "-o", "json", "--", "id", "-u", timeout=240)
        assert result.returncode == 1, err
        by = {o["target"]: o for o in data}
        assert sorted(by) == sorted([f"k8s://{fleet_ns}/{p}" for p in mine] + [f"k8s://{other}/{theirs}"])
        admitted = by.pop(f"k8s://{other}/{theirs}")
        assert (admitted["status"], admitted["stdout"], admitted["namespace"]) == ("passed", "0\n", other)
        for o in by.values():
            assert o["status"] == "error" and o["error"]["exit_code"] == ExitCode.POLICY_REJECTED, o
            assert "enforces PodSecurity 'restricted'" in o["error"]["message"]
        for pod in mine:  # refused before any patch: only the earlier run's debug container is there
            debug = k8s_cluster.api.read_namespaced_pod(pod, fleet_ns).spec.ephemeral_containers or []
            assert [e.security_context.run_as_user for e in debug] == [65532]


def test_no_pod_reachable_exits_with_debugkits_own_code(k8s_cluster, fleet_ns, web, audit_log):
    result = kube(k8s_cluster, "attach", f"deploy/{web}", "-n", fleet_ns, "--profile", "netadmin", "--", "true",
                  timeout=120)
    out, err = text(result)
    assert result.returncode == ExitCode.POLICY_REJECTED, err
    assert len(re.findall(r"^pod/\S+: error \(80\): namespace \S+ enforces PodSecurity 'restricted'", err, re.M)) \
        == REPLICAS
    refused = [r for r in audit_records(audit_log) if r["event"] == "refused"]
    assert len(refused) == REPLICAS and all(r["exit_code"] == 80 for r in refused)
    # A workload that does not exist, and a selector that matches nothing: one line each.
    missing = kube(k8s_cluster, "attach", "deploy/no-such-thing", "-n", fleet_ns, "--", "true")
    assert missing.returncode == ExitCode.TARGET_NOT_FOUND
    assert missing.stderr.decode().strip() == (f"debugkit: error: deployment 'no-such-thing' not found in namespace "
                                               f"{fleet_ns}")
    nothing = kube(k8s_cluster, "attach", "-l", "io.debugkit.nothing=here", "-n", fleet_ns, "--", "true")
    assert (nothing.returncode, nothing.stderr.decode().strip()) == (
        ExitCode.TARGET_NOT_FOUND, "debugkit: error: -l io.debugkit.nothing=here matches no pods")


def test_an_interactive_shell_on_many_pods_is_refused_with_what_matched(k8s_cluster, fleet_ns, web, audit_log):
    pods = sorted(running_pods(k8s_cluster, fleet_ns, web))
    for extra in ((), ("-t", "--", "sh"), ("-i", "--", "cat")):
        result = kube(k8s_cluster, "attach", f"deploy/{web}", "-n", fleet_ns, *extra)
        out, err = text(result)
        assert result.returncode == ExitCode.INVALID_INPUT, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        if extra[:1] == ("-i",):
            assert "-i cannot feed one stdin to many targets" in err
        else:
            assert f"an interactive shell needs one target, and deploy/{web} matches {REPLICAS}: " \
                   + ", ".join(f"pod/{p}" for p in pods) in err
            assert f"pick one, e.g. debugkit attach k8s://{fleet_ns}/{pods[0]}/app" in err
    assert not [r for r in audit_records(audit_log) if r["event"] == "start"]


def test_one_client_for_the_fleet_and_the_requests_each_target_costs(k8s_cluster, fleet_ns, web, capsys,
                                                                     monkeypatch):
    """In-process, with the client's request and stream counted: the whole fleet goes
    through ONE client (one pool, one rate limiter), lists once, and each target costs a
    bounded number of requests (docs/fleet.md has the measured numbers)."""
    from debugkit.cli import main
    from debugkit.runtimes.kubernetes import kubeclient

    counts: collections.Counter = collections.Counter()
    clients = []
    lock = threading.Lock()

    def kind(method, path):
        path = re.sub(r"/namespaces/[^/]+", "/namespaces/NS", path.split("?")[0])
        path = re.sub(r"/(pods|deployments)/[^/]+", r"/\1/NAME", path)
        return f"{method} {path}"

    real_init, real_request, real_stream = kubeclient.KubeClient.__init__, kubeclient.KubeClient.request, \
        kubeclient.KubeClient.stream

    def init(self, *args, **kwargs):
        clients.append(self)
        real_init(self, *args, **kwargs)

    def request(self, method, path, **kwargs):
        with lock:
            counts[kind(method, path)] += 1
        return real_request(self, method, path, **kwargs)

    def stream(self, path, query, **kwargs):
        with lock:
            counts[kind("EXEC", path)] += 1
        return real_stream(self, path, query, **kwargs)

    monkeypatch.setattr(kubeclient.KubeClient, "__init__", init)
    monkeypatch.setattr(kubeclient.KubeClient, "request", request)
    monkeypatch.setattr(kubeclient.KubeClient, "stream", stream)

    def run(*extra) -> dict:
        counts.clear()
        clients.clear()
        with pytest.raises(SystemExit) as done:
            main(["attach", "--kubeconfig", k8s_cluster.kubeconfig, f"deploy/{web}", "-n", fleet_ns, "--parallel",
                  "3", *extra, "--", "true"])
        assert done.value.code == 0, capsys.readouterr().err
        capsys.readouterr()
        assert len(clients) == 1  # one runtime, one client, one pool and rate limiter for all targets
        return dict(counts)

    new = run("--new", "--keep-alive", "0")
    n = REPLICAS
    assert new["GET /apis/apps/v1/namespaces/NS/deployments/NAME"] == 1
    assert new["GET /api/v1/namespaces/NS/pods"] == 1  # one list: the selector, nothing more
    assert new["PATCH /api/v1/namespaces/NS/pods/NAME/ephemeralcontainers"] == n
    assert new["GET /api/v1/namespaces/NS"] == n  # each target's PodSecurity pre-check
    assert n <= new["GET /api/v1/namespaces/NS/pods/NAME"] <= 4 * n  # the target, and waiting reasons
    assert 2 * n <= new["EXEC /api/v1/namespaces/NS/pods/NAME/exec"] <= 12 * n  # readiness probes and the command
    # Reusing the debug containers of an earlier run (the default keep-alive): the target,
    # and one exec each (a probe first, for a container the API does not yet report running).
    run()  # leaves kept-alive debug containers
    reuse = run()
    assert reuse.get("PATCH /api/v1/namespaces/NS/pods/NAME/ephemeralcontainers", 0) == 0
    assert reuse.get("GET /api/v1/namespaces/NS", 0) == 0  # admitted when it was made
    assert n <= reuse["GET /api/v1/namespaces/NS/pods/NAME"] <= 2 * n
    assert n <= reuse["EXEC /api/v1/namespaces/NS/pods/NAME/exec"] <= 2 * n
    print(f"\nrequests for {n} targets, new debug containers: {new}\nreused: {reuse}")
