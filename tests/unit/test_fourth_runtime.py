"""A fourth runtime, registered here and nowhere else, goes through every capability the
session layer and the CLI offer, with no change to either: attach (its exit code, its
audit records, flags it does not take refused before anything runs), a fleet, ps, gc,
doctor and completion. That is what `one package plus one registry entry` promises."""
from __future__ import annotations

import json

import click
import pytest

from debugkit import runtimes
from debugkit.cli import main
from debugkit.cli.attach import attach as attach_command
from debugkit.cli.completion import complete_namespace, complete_target
from debugkit.core.errors import ExitCode
from debugkit.session import audit, config
from tests.unit import fake_runtime


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """The fake runtime registered beside the three real ones; nothing else of this
    machine's: an audit log and a config home of the test's own, and the other runtimes
    pointed at addresses where nothing answers, so that none of them waits."""
    monkeypatch.setenv("DEBUGKIT_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("DEBUGKIT_CONFIG", "DEBUGKIT_IMAGE", "DOCKER_CONTEXT", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    monkeypatch.setenv("CONTAINER_HOST", f"unix://{tmp_path}/no-podman.sock")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    config.use(None)
    engine = fake_runtime.Engine()
    monkeypatch.setattr(fake_runtime, "ENGINE", engine)
    runtimes.register(fake_runtime.entry())
    try:
        yield engine
    finally:
        runtimes.unregister("fake")
        config.use(None)


def run(capsys, *argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out = capsys.readouterr()
    return exited.value.code, out.out, out.err


def test_it_is_a_fourth_runtime_of_the_registry(fake):
    assert runtimes.names() == ("docker", "podman", "kubernetes", "fake")
    assert ("fake://", "fake") in runtimes.syntax().container_schemes


def test_attach_plans_audits_and_returns_the_commands_exit_code(fake, capsys):
    fake.add("web", uid=65532)
    code, out, err = run(capsys, "attach", "fake://web", "--", "exit", "3")
    assert (code, out, err) == (3, "exit 3 as 65532:65532 next to web\n", "")
    records = audit.read().records
    assert [r["event"] for r in records] == ["start", "created", "end"]
    assert records[0]["runtime"] == "fake" and records[0]["sidecar_user"] == "65532:65532"
    assert records[0]["engine"] == "fake://engine" and records[2]["exit_code"] == 3


def test_what_the_runtime_does_not_take_is_refused_before_it_is_asked_anything(fake, capsys, tmp_path):
    fake.add("web")
    custom = tmp_path / "c.yaml"
    custom.write_text("workingDir: /tmp\n")
    code, out, err = run(capsys, "attach", "fake://web", "--custom", str(custom), "--", "true")
    assert code == ExitCode.INVALID_INPUT and out == ""
    assert err == "debugkit: error: --custom does not apply to Fake targets: a fake has no container spec\n"
    assert fake.sidecars == {}
    assert [r["event"] for r in audit.read().records] == ["refused"]
    code, out, _err = run(capsys, "attach", "fake://web", "--memory", "64m", "--", "true")
    assert code == 0  # --memory is one it takes


def test_a_missing_and_a_stopped_target_have_their_codes(fake, capsys):
    fake.add("down", running=False)
    assert run(capsys, "attach", "fake://nope", "--", "true")[0] == ExitCode.TARGET_NOT_FOUND
    assert run(capsys, "attach", "fake://down", "--", "true")[0] == ExitCode.TARGET_NOT_RUNNING


@pytest.mark.parametrize("command,detail", [
    (["vanish"], ""),                                        # the session broke on the way
    (["vanish", "killed"], " (the command ended with exit 143)"),  # its command died with it
])
def test_a_target_that_goes_away_during_an_attach_is_67_in_one_line(fake, capsys, command, detail):
    fake.add("web")
    code, out, err = run(capsys, "attach", "fake://web", "--", *command)
    assert (code, out) == (ExitCode.TARGET_NOT_RUNNING, "")
    assert err == f"debugkit: error: fake://web was deleted while it was debugged{detail}\n"
    assert audit.read().records[-1]["exit_code"] == ExitCode.TARGET_NOT_RUNNING


def test_a_command_killed_by_a_signal_keeps_its_code_while_its_target_lives(fake, capsys):
    fake.add("web")
    assert run(capsys, "attach", "fake://web", "--", "exit", "137")[0] == 137


def test_a_fleet_by_label(fake, capsys):
    fake.add("a", labels={"team": "pay"})
    fake.add("b", labels={"team": "pay"})
    fake.add("c", labels={"team": "pay"}, running=False)
    fake.add("other", labels={"team": "web"})
    code, out, err = run(capsys, "attach", "--filter", "label=team=pay", "--runtime", "fake", "-o", "json",
                         "--", "exit", "0")
    assert code == 0, err
    results = json.loads(out)
    assert [(r["target"], r["status"], r["stdout"]) for r in results] == [
        ("a", "passed", "exit 0 as 10001:10001 next to a\n"), ("b", "passed", "exit 0 as 10001:10001 next to b\n")]
    assert "skipped c: stopped" in err
    assert len(fake.sidecars) == 2


def test_ps_and_gc(fake, capsys):
    fake.add("web")
    assert run(capsys, "attach", "fake://web", "--", "true")[0] == 0
    code, out, _err = run(capsys, "ps", "--runtime", "fake", "-o", "json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["runtime"], r["target"]) for r in rows] == [("fake", "web")]
    code, out, _err = run(capsys, "gc", "--runtime", "fake", "--older-than", "1h", "-o", "json")
    assert code == 0
    actions = [a for a in json.loads(out) if a["name"] != "audit record"]
    assert [(a["runtime"], a["action"]) for a in actions] == [("fake", "removed")]
    assert fake.sidecars == {}


def test_doctor_runs_its_checks_and_those_of_a_target(fake, capsys):
    fake.add("web")
    code, out, _err = run(capsys, "doctor", "fake://web", "-o", "json")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["fake-engine"]["status"] == "ok" and checks["fake-target"]["status"] == "ok"
    assert checks["target"]["detail"] == "fake web (image fake/app)"
    assert checks["target-identity"]["detail"] == "10001:10001 from config"
    # The real runtimes, pointed at nothing, fail or are not configured: doctor says so.
    assert checks["docker-engine"]["status"] == "fail" and checks["kube-context"]["status"] == "not configured"
    assert code == 1


def test_completion_offers_its_targets_and_namespaces(fake):
    fake.add("web")
    fake.add("worker")
    fake.add("stopped", running=False)
    ctx = click.Context(attach_command)
    assert [c.value for c in complete_target(ctx, None, "fake://w")] == ["fake://web", "fake://worker"]
    assert [c.value for c in complete_namespace(ctx, None, "")] == ["fake-space"]
