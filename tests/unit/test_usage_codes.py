"""Exit codes of what a person can mistype, decided before anything is contacted: a bad
--parallel, a selector or filter together with a TARGET, a flag the target's runtime does
not take, and a context that does not exist (64 for a kube context as for a Docker one)."""
from __future__ import annotations

import pytest

from debugkit.cli import main
from debugkit.core.errors import ExitCode


@pytest.fixture(autouse=True)
def nothing_reachable(monkeypatch, tmp_path):
    """No engine and no cluster may answer: a case that got that far would fail differently."""
    monkeypatch.setenv("DEBUGKIT_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    for name in ("DEBUGKIT_CONFIG", "DOCKER_CONTEXT", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)


def run(capsys, *argv) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return exited.value.code, err


@pytest.mark.parametrize("argv", [
    ["attach", "-l", "app=web", "--parallel", "0", "--", "true"],
    ["attach", "deploy/web", "--parallel", "65", "--", "true"],
    ["attach", "web", "--parallel", "-1", "--", "true"],
    ["runbook", "run", "processes", "web", "--parallel", "eight"],
])
def test_a_bad_parallel_is_invalid_input(capsys, argv):
    code, err = run(capsys, *argv)
    assert code == ExitCode.INVALID_INPUT and "--parallel" in err


@pytest.mark.parametrize("argv,flag", [
    (["attach", "-l", "app=web", "pod/web", "--", "id"], "-l"),
    (["attach", "-l", "app=web", "web", "cat", "/etc/passwd"], "-l"),
    (["attach", "--filter", "label=team=pay", "web", "--", "id"], "--filter"),
])
def test_a_target_with_a_selector_or_a_filter_is_refused_not_run_as_the_command(capsys, argv, flag):
    code, err = run(capsys, *argv)
    assert code == ExitCode.INVALID_INPUT
    assert f"a TARGET ('{argv[3]}') together with {flag}" in err


@pytest.mark.parametrize("argv,message", [
    (["attach", "pod/web", "--memory", "64m", "--", "true"],
     "--memory does not apply to Kubernetes targets: Kubernetes sets no resources on ephemeral containers"),
    (["attach", "k8s://shop/web", "--pids-limit", "10", "--", "true"], "--pids-limit does not apply"),
    (["attach", "deploy/web", "--cpus", "1", "--", "true"], "--cpus does not apply to Kubernetes targets"),
    (["port-forward", "--via", "portforward", "web", "8080"], "Docker targets cannot: use --via sidecar"),
])
def test_a_flag_the_targets_runtime_does_not_take_is_refused_first(capsys, argv, message):
    code, err = run(capsys, *argv)
    assert code == ExitCode.INVALID_INPUT and message in err


def test_a_missing_context_is_invalid_input_for_kubernetes_as_for_docker(capsys, tmp_path, monkeypatch):
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\ncontexts: []\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    kube, kube_err = run(capsys, "attach", "pod/web", "--context", "nope", "--", "true")
    monkeypatch.delenv("DOCKER_HOST")
    docker, docker_err = run(capsys, "attach", "web", "--docker-context", "nope", "--", "true")
    assert kube == docker == ExitCode.INVALID_INPUT, (kube_err, docker_err)
    assert "context 'nope' not found" in kube_err and 'context "nope"' in docker_err
    # A kubeconfig whose own current-context is missing is a broken file, as before.
    kubeconfig.write_text("apiVersion: v1\nkind: Config\ncurrent-context: gone\ncontexts: []\n")
    assert run(capsys, "attach", "pod/web", "--", "true")[0] == ExitCode.FILE_INVALID
