"""`debugkit doctor` on the real engine: green here, each failure named with its fix."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import audit_records, labels_for_test, run_cli, text, wait_for
from tests.integration.shells import SilentServer

BUSYBOX = "debugkit-testenv/busybox:1"
# No kubeconfig: the Kubernetes checks are "not configured" (the node has its own tests).
NO_KUBE = {"KUBECONFIG": "/nonexistent/kubeconfig"}


def doctor(*args: str, env: dict | None = None, timeout: float = 120):
    result = run_cli("doctor", *args, env={**NO_KUBE, **(env or {})}, timeout=timeout)
    return result, *text(result)


def lines_by_name(out: str) -> dict[str, str]:
    found = {}
    for line in out.splitlines():
        status, name, _rest = line.split(None, 2)
        found[name] = line
    return found


def as_json(*args: str, env: dict | None = None) -> tuple[int, dict]:
    result, out, err = doctor(*args, "-o", "json", env=env)
    data = json.loads(out)
    return result.returncode, {c["name"]: c for c in data["checks"]} | {"_ok": data["ok"]}


def test_everything_passes_on_this_machine(toolbox_image):
    result, out, err = doctor()
    assert result.returncode == 0, out + err
    lines = lines_by_name(out)
    for name in ("config", "audit-log", "docker-engine", "docker-socket", "docker-toolbox"):
        assert lines[name].startswith("ok "), lines[name]
    assert "FAIL" not in out
    assert lines["kube-context"].startswith("n/a ") and "no kubeconfig" in lines["kube-context"]
    assert toolbox_image in lines["docker-toolbox"]
    assert "/var/run/docker.sock" in lines["docker-socket"]


def test_json_output_names_every_check_and_its_status(toolbox_image):
    code, checks = as_json()
    assert code == 0 and checks.pop("_ok") is True
    assert checks["kube-context"]["status"] == "not configured" and checks["kube-context"]["ok"] is True
    for check in checks.values():
        assert set(check) == {"name", "status", "ok", "detail", "fix"}
        assert check["status"] in ("ok", "warn", "skip", "not configured")


def test_a_dead_docker_host_fails_that_check_with_its_fix():
    result, out, err = doctor(env={"DOCKER_HOST": "tcp://127.0.0.1:1"})
    assert result.returncode == 1, out + err
    lines = lines_by_name(out)
    assert lines["docker-engine"].startswith("FAIL ")
    assert "cannot reach the Docker engine at tcp://127.0.0.1:1" in lines["docker-engine"]
    assert "fix: start the Docker engine on that host: systemctl start docker" in lines["docker-engine"]
    assert "DOCKER_HOST" in lines["docker-engine"] and "scripts/" not in out
    assert lines["docker-toolbox"].startswith("skip ")
    assert lines["config"].startswith("ok ")  # one failure does not hide the rest
    code, checks = as_json(env={"DOCKER_HOST": "tcp://127.0.0.1:1"})
    assert code == 1 and checks["_ok"] is False and checks["docker-engine"]["status"] == "fail"
    assert "DOCKER_HOST" in checks["docker-engine"]["fix"]


def test_an_engine_that_hangs_is_reported_in_bounded_time(tmp_path):
    with SilentServer(str(tmp_path / "engine.sock")) as engine:
        started = time.monotonic()
        result, out, err = doctor(env={"DOCKER_HOST": engine.address})
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "timed out" in lines_by_name(out)["docker-engine"]
    assert elapsed < 15, elapsed  # ENGINE_TIMEOUT (5 s) and the rest


def test_a_socket_that_is_not_there_is_named(tmp_path):
    result, out, _ = doctor(env={"DOCKER_HOST": f"unix://{tmp_path}/docker.sock"})
    lines = lines_by_name(out)
    assert result.returncode == 1
    assert lines["docker-socket"].startswith("FAIL ") and "does not exist" in lines["docker-socket"]


def test_an_unusable_docker_host_is_named():
    result, out, _ = doctor(env={"DOCKER_HOST": "bogus://x"})
    assert result.returncode == 1
    assert "unsupported engine address 'bogus://x'" in lines_by_name(out)["docker-engine"]


def test_a_missing_toolbox_says_how_to_build_it(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("image: debugkit/toolbox:0.0.0-not-built\n")
    result, out, _ = doctor(env={"DEBUGKIT_CONFIG": str(config)})
    line = lines_by_name(out)["docker-toolbox"]
    assert result.returncode == 1
    assert line.startswith("FAIL ") and "debugkit/toolbox:0.0.0-not-built" in line and f"{config}:1" in line
    assert "fix: debugkit toolbox build --tag debugkit/toolbox:0.0.0-not-built" in line


def test_a_broken_config_file_and_a_bad_variable_are_named(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("profile: restricted\nlimits: {memory: lots}\n")
    result, out, _ = doctor(env={"DEBUGKIT_CONFIG": str(config)})
    assert result.returncode == 1
    assert f"{config}:2" in lines_by_name(out)["config"] and "memory" in lines_by_name(out)["config"]
    result, out, _ = doctor(env={"DEBUGKIT_PIDS_LIMIT": "many"})
    assert result.returncode == 1 and "environment DEBUGKIT_PIDS_LIMIT" in lines_by_name(out)["config"]


def test_an_audit_log_that_cannot_be_written_fails(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result, out, _ = doctor(env={"DEBUGKIT_AUDIT_LOG": str(blocker / "audit.jsonl")})
    line = lines_by_name(out)["audit-log"]
    assert result.returncode == 1 and line.startswith("FAIL ") and "DEBUGKIT_AUDIT_LOG" in line


def test_a_new_audit_log_is_checked_without_leaving_anything(tmp_path):
    path = tmp_path / "state" / "deep" / "audit.jsonl"
    result, out, _ = doctor(env={"DEBUGKIT_AUDIT_LOG": str(path)})
    assert "can be created" in lines_by_name(out)["audit-log"]
    assert not (tmp_path / "state").exists()


def test_a_target_that_runs_as_itself_passes(start_target, audit_log, toolbox_image):
    target = start_target("named-user")
    result, out, err = doctor(target.name)
    assert result.returncode == 0, out + err
    lines = lines_by_name(out)
    assert f"docker {target.name}" in lines["target"]
    assert "65532:65532 nonroot from process" in lines["target-identity"]
    assert lines["target-dumpable"].startswith("ok ")
    assert lines["target-filesystem"].startswith("ok ") and "no capability" in lines["target-filesystem"]
    assert lines["target-zombies"].startswith("ok ")
    assert audit_records(audit_log) == []  # doctor starts nothing, so it records nothing


def test_a_target_that_is_not_dumpable_gets_the_ptrace_fix(start_target, toolbox_image):
    target = start_target("drops-privs")
    result, out, err = doctor(target.name)
    assert result.returncode == 1, out + err
    lines = lines_by_name(out)
    assert lines["target-dumpable"].startswith("FAIL ") and "changed UID at runtime" in lines["target-dumpable"]
    assert "fix: use --profile ptrace" in lines["target-dumpable"]
    assert lines["target-filesystem"].startswith("FAIL ") and "--profile ptrace" in lines["target-filesystem"]
    assert lines["target-identity"].startswith("ok ")


def test_zombies_are_counted_and_only_a_restart_removes_them(docker_client, toolbox_image):
    if not docker_client.images.list(name=BUSYBOX):
        pytest.skip(f"{BUSYBOX} is not built (scripts/k8s-testenv images)")
    # PID 1 becomes `sleep` once the shell execs it, and never reaps the child it inherited.
    ctr = docker_client.containers.run(BUSYBOX, ["sh", "-c", "sleep 0.2 & exec sleep 600"], detach=True,
                                       name=f"dk-test-zombie-{uuid.uuid4().hex[:8]}", labels=labels_for_test())
    try:
        time.sleep(0.5)
        result, out, err = doctor(ctr.name)
        line = lines_by_name(out)["target-zombies"]
        assert line.startswith("warn ") and "holds 1 zombie process(es)" in line, out + err
        assert "only restarting the target removes them" in line
        assert result.returncode == 0  # a warning: debugging still works
    finally:
        ctr.remove(force=True)


def test_a_missing_target_is_a_failed_check_and_bad_syntax_is_bad_input():
    result, out, _ = doctor("dk-test-no-such-container")
    assert result.returncode == 1
    assert "no container named 'dk-test-no-such-container'" in lines_by_name(out)["target"]
    result, out, err = doctor("Bad Name!")
    assert result.returncode == ExitCode.INVALID_INPUT and out == ""
    assert err.count("\n") == 1 and "invalid Docker container name" in err
    result, out, err = doctor("web", "-n", "Bad_NS")  # -n still applies to the Kubernetes checks
    assert result.returncode == ExitCode.INVALID_INPUT


def test_a_namespace_with_a_docker_target_is_for_the_kubernetes_checks(start_target, toolbox_image):
    target = start_target("named-user")
    result, out, err = doctor(target.name, "-n", "shop")
    assert result.returncode == 0, out + err
    assert "target-identity" in out


@pytest.fixture
def fake_sidecar(docker_client, fixture_images):
    ctr = docker_client.containers.run(fixture_images["named-user"], detach=True,
                                       name=f"dk-test-doc-{uuid.uuid4().hex[:8]}",
                                       labels={**labels_for_test(), "io.debugkit.managed": "true"})
    wait_for(lambda: b"listening on" in ctr.logs(), timeout=20, what="the container to listen")
    yield ctr
    ctr.remove(force=True)


def test_a_sidecar_is_not_a_target(fake_sidecar):
    result, out, _ = doctor(fake_sidecar.name)
    assert result.returncode == 1 and "is itself a debugkit sidecar" in lines_by_name(out)["target"]


def test_the_engine_checked_is_the_one_h_or_a_docker_context_names(tmp_path):
    """doctor takes -H and --docker-context like every command, and checks that engine."""
    by_flag = run_cli("doctor", "-H", f"unix://{tmp_path}/no-engine.sock", "-o", "json")
    checks = {c["name"]: c for c in json.loads(by_flag.stdout)["checks"]}
    assert by_flag.returncode == 1
    assert checks["docker-engine"]["status"] == "fail" and "no-engine.sock" in checks["docker-engine"]["detail"]
    by_context = run_cli("doctor", "--docker-context", "no-such-context", "-o", "json")
    checks = {c["name"]: c for c in json.loads(by_context.stdout)["checks"]}
    assert by_context.returncode == 1
    assert 'context "no-such-context"' in checks["docker-engine"]["detail"]
