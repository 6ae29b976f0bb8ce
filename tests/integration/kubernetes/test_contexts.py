"""Several clusters at once, on the real node. The test node is one cluster: the kubeconfig
here gets a second context pointing at the same API server (`second`) and one whose
server is a closed loopback port (`dead`), so a command runs on two reachable contexts
and reports the unreachable one once, with its reason."""
from __future__ import annotations

import json
import socket

import pytest
import yaml

from debugkit.core.errors import ExitCode
from tests.helpers import run_cli, text

pytestmark = pytest.mark.kubernetes


@pytest.fixture(scope="module")
def toolbox_on_node(k8s_cluster, toolbox_image):
    return k8s_cluster.load_image(toolbox_image)


@pytest.fixture(scope="module")
def app_image(k8s_cluster, fixture_images):
    return k8s_cluster.load_image(fixture_images["named-user"])


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def three_contexts(k8s_cluster, tmp_path):
    """first and second: the test node's API server; dead: a closed loopback port."""
    config = yaml.safe_load(open(k8s_cluster.kubeconfig))
    current = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
    config["clusters"].append({"name": "dead", "cluster": {"server": f"https://127.0.0.1:{closed_port()}",
                                                           "insecure-skip-tls-verify": True}})
    config["contexts"] = [{"name": "first", "context": dict(current)}, {"name": "second", "context": dict(current)},
                          {"name": "dead", "context": {**current, "cluster": "dead"}}]
    config["current-context"] = "first"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return str(path)


@pytest.fixture
def web(k8s_cluster, app_image):
    with k8s_cluster.namespace("restricted", prefix="dk-ctx") as ns:
        k8s_cluster.run_pod(ns, app_image, name="web", run_as_user=65532, run_as_group=65532)
        yield ns


def test_one_command_on_two_clusters_and_an_unreachable_one(three_contexts, web, toolbox_on_node):
    result = run_cli("attach", "--kubeconfig", three_contexts, "pod/web", "-n", web, "--context", "first,second,dead",
                     "--", "id", "-u", timeout=180)
    out, err = text(result)
    assert result.returncode == 1, err  # the fleet rule: one failed, others passed
    assert sorted(out.splitlines()) == [f"[first] k8s://{web}/web: 65532", f"[second] k8s://{web}/web: 65532"]
    dead = [line for line in err.splitlines() if line.startswith("[dead]")]
    assert len(dead) == 1 and "error (69): cannot reach the Kubernetes API server" in dead[0], err
    assert "2 passed, 1 error" in err or "1 error, 2 passed" in err


def test_json_records_name_their_context(three_contexts, web, toolbox_on_node):
    result = run_cli("attach", "--kubeconfig", three_contexts, "pod/web", "-n", web, "--context", "first,dead",
                     "-o", "json", "--", "id", "-u", timeout=180)
    records = {r["context"]: r for r in json.loads(result.stdout)}
    assert set(records) == {"first", "dead"}
    assert records["first"]["status"] == "passed" and records["first"]["stdout"] == "65532\n"
    assert records["dead"]["status"] == "error" and records["dead"]["error"]["exit_code"] == ExitCode.ENGINE_UNREACHABLE


def test_every_context_unreachable_is_debugkits_own_error(three_contexts, web):
    result = run_cli("attach", "--kubeconfig", three_contexts, "pod/web", "-n", web, "--context", "dead",
                     "--", "true")
    assert result.returncode == ExitCode.ENGINE_UNREACHABLE  # one name: today's path
    result = run_cli("attach", "--kubeconfig", three_contexts, "pod/web", "-n", web, "--context", "dead,nope",
                     "--", "true")
    err = text(result)[1]
    # No context reached: the most common error, the first one on a tie (69 before 64).
    assert result.returncode == ExitCode.ENGINE_UNREACHABLE, err
    assert "[dead]" in err and "[nope]" in err and "--context nope" in err


def test_all_contexts_on_runbook_ps_and_inspect(three_contexts, web, toolbox_on_node):
    runbook = run_cli("runbook", "run", "--kubeconfig", three_contexts, "processes", "pod/web", "-n", web,
                      "--all-contexts", "-o", "json", timeout=240)
    report = json.loads(runbook.stdout)
    by_context = {r["context"]: r for r in report["results"]}
    assert set(by_context) == {"first", "second", "dead"}
    assert by_context["first"]["status"] == by_context["second"]["status"] == "passed", by_context
    assert by_context["dead"]["status"] == "error" and runbook.returncode == 1

    ps = run_cli("ps", "--kubeconfig", three_contexts, "-n", web, "--all-contexts", "-o", "json")
    rows = json.loads(ps.stdout)
    assert {r["context"] for r in rows} == {"first", "second"}  # the same node seen through two contexts
    assert ps.returncode == ExitCode.ENGINE_UNREACHABLE
    assert text(ps)[1].count("context dead: cannot reach") == 1

    inspect = run_cli("inspect", "--kubeconfig", three_contexts, "pod/web", "-n", web, "--context", "first,dead",
                      "-o", "json")
    records = json.loads(inspect.stdout)
    assert [r["context"] for r in records] == ["first", "dead"]
    assert records[0]["uid"] == 65532 and records[1]["exit_code"] == ExitCode.ENGINE_UNREACHABLE
    assert inspect.returncode == 1
