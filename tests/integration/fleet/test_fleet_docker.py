"""Fleets on the real Docker engine (and Podman's, when it is set up): containers chosen by
label and by Compose labels, one sidecar each, Ctrl-C, --fail-fast and the exit status."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import uuid

import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import labels_for_test, leaked_sidecars, run_cli, text, wait_for
from tests.integration.fleet.helpers import popen_cli, run_json

pytestmark = pytest.mark.docker
FLEET_LABEL = "io.debugkit.fleet-test"
PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"


@pytest.fixture
def fleet(docker_client, fixture_images, toolbox_image):
    """Four running fixture targets sharing a label (a Compose project: three `web`, one
    `db`), and a fifth that has it but was never started. Removed at teardown, after a
    check that no sidecar of theirs is left."""
    tag = uuid.uuid4().hex[:8]
    project = f"dkfleet{tag}"
    started, ids = [], []

    def run(name, service, *, start=True):
        labels = {**labels_for_test(), FLEET_LABEL: tag, PROJECT: project, SERVICE: service}
        if start:
            ctr = docker_client.containers.run(fixture_images["named-user"], name=name, detach=True, labels=labels)
        else:
            labels["io.debugkit.fleet-stopped"] = tag
            ctr = docker_client.containers.create(fixture_images["named-user"], name=name, labels=labels)
        started.append(ctr)
        ids.append(ctr.id)
        return ctr

    names = [f"dk-fleet-{tag}-{i}" for i in range(4)]
    for i, name in enumerate(names):
        run(name, "db" if i == 3 else "web")
    stopped = run(f"dk-fleet-{tag}-stopped", "web", start=False)
    for ctr in started[:4]:
        wait_for(lambda: b"listening on" in ctr.logs(), timeout=20, what=f"{ctr.name} to listen")
    yield {"tag": tag, "project": project, "names": names, "stopped": stopped.name, "ids": ids,
           "filter": f"label={FLEET_LABEL}={tag}"}

    def settled():
        return not [c for c in leaked_sidecars(docker_client) if c.labels.get("io.debugkit.target-id") in ids]

    try:
        wait_for(settled, timeout=15, what="the fleet's sidecars to be removed")
    finally:
        for ctr in started:
            try:
                ctr.remove(force=True)
            except Exception:  # noqa: BLE001 - gone already
                pass


def sidecars_of(docker_client, ids) -> list:
    return [c for c in leaked_sidecars(docker_client) if c.labels.get("io.debugkit.target-id") in ids]


def test_filter_by_label_runs_on_every_running_container(fleet, docker_client):
    result, data, err = run_json("attach", "--filter", fleet["filter"], "-o", "json", "--", "sh", "-c",
                                 "id -u; hostname", timeout=120)
    assert result.returncode == 0, err
    assert [o["target"] for o in data] == fleet["names"]
    for o, name in zip(data, fleet["names"]):
        short_id = docker_client.containers.get(name).id[:12]
        assert (o["status"], o["exit_code"], o["error"], o["container"], o["namespace"]) == \
            ("passed", 0, None, name, None)
        assert o["stdout"] == f"65532\n{short_id}\n"  # the target's own user; its UTS namespace is not joined
    assert f"debugkit: skipped {fleet['stopped']}: not running (created)" in err.splitlines()


def test_plain_lines_are_prefixed_with_the_container(fleet):
    result = run_cli("attach", "--filter", fleet["filter"], "--", "sh", "-c", "echo out; echo err >&2", timeout=120)
    out, err = text(result)
    assert result.returncode == 0, err
    assert sorted(out.splitlines()) == [f"{n}: out" for n in fleet["names"]]
    for name in fleet["names"]:
        assert f"{name}: [stderr] err" in err.splitlines()
        assert re.search(rf"^{name}: passed, exit 0 \(\d+\.\d\ds\)$", err, re.M)


def test_compose_project_and_service_from_compose_labels(fleet):
    result, data, err = run_json("attach", f"compose/{fleet['project']}", "-o", "json", "--", "true", timeout=120)
    assert result.returncode == 0, err
    assert [o["target"] for o in data] == fleet["names"]
    result, data, err = run_json("attach", f"docker://compose/{fleet['project']}/web", "-o", "json", "--", "true",
                                 timeout=120)
    assert result.returncode == 0, err
    assert [o["target"] for o in data] == fleet["names"][:3]
    assert f"skipped {fleet['stopped']}" in err


def test_fail_fast_starts_no_new_target_after_the_first_failure(fleet):
    result, data, err = run_json("attach", "--filter", fleet["filter"], "--parallel", "1", "--fail-fast", "-o", "json",
                                 "--", "sh", "-c", "exit 3", timeout=120)
    assert result.returncode == 1, err
    assert [(o["status"], o["exit_code"]) for o in data] == [("failed", 3)] + [("not started", None)] * 3
    result, data, err = run_json("attach", "--filter", fleet["filter"], "--parallel", "1", "-o", "json", "--",
                                 "sh", "-c", "exit 3", timeout=120)
    assert result.returncode == 1 and [o["status"] for o in data] == ["failed"] * 4


def test_no_target_reachable_exits_with_debugkits_own_code(fleet):
    result = run_cli("attach", "--filter", fleet["filter"], "--image", "debugkit/not-on-this-engine:0", "--", "true",
                     timeout=120)
    out, err = text(result)
    assert result.returncode == ExitCode.IMAGE_MISSING, err
    for name in fleet["names"]:
        assert re.search(rf"^{name}: error \(71\): sidecar image 'debugkit/not-on-this-engine:0' is not in the "
                         rf"local Docker engine", err, re.M), err
    # Nothing matches: 66; what matches does not run: 67. One line each.
    nothing = run_cli("attach", "--filter", f"label={FLEET_LABEL}=nothing-{fleet['tag']}", "--", "true")
    assert (nothing.returncode, nothing.stderr.decode()) == (
        ExitCode.TARGET_NOT_FOUND, f"debugkit: error: label={FLEET_LABEL}=nothing-{fleet['tag']} matches no "
                                   f"containers\n")
    stopped = run_cli("attach", "--filter", f"label=io.debugkit.fleet-stopped={fleet['tag']}", "--", "true")
    assert (stopped.returncode, stopped.stderr.decode()) == (
        ExitCode.TARGET_NOT_RUNNING, f"debugkit: error: label=io.debugkit.fleet-stopped={fleet['tag']}: none of the "
                                     f"1 it matches can be debugged ({fleet['stopped']}: not running (created))\n")


def test_an_interactive_shell_on_many_containers_is_refused_with_what_matched(fleet):
    result = run_cli("attach", "--filter", fleet["filter"])
    out, err = text(result)
    assert result.returncode == ExitCode.INVALID_INPUT, err
    assert err == (f"debugkit: error: an interactive shell needs one target, and {fleet['filter']} matches 4: "
                   f"{', '.join(fleet['names'])}; pick one, e.g. debugkit attach {fleet['names'][0]}, or run a "
                   f"command on all of them after --\n")


def test_ctrl_c_stops_every_sidecar_and_reports_what_finished(fleet, docker_client):
    proc = popen_cli("attach", "--filter", fleet["filter"], "--parallel", "2", "--", "sh", "-c",
                     "echo started; sleep 60")
    try:
        wait_for(lambda: len([c for c in sidecars_of(docker_client, fleet["ids"]) if c.status == "running"]) == 2,
                 timeout=30, what="two running sidecars")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err.decode()
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert len(re.findall(r"^dk-fleet-\S+: interrupted \(130\): interrupted before it finished$", err, re.M)) == 2, err
    assert "4 target(s): 2 interrupted, 2 not started" in err
    # Every sidecar is gone by the time the CLI has exited: none started afterwards either.
    assert [(c.name, c.status) for c in sidecars_of(docker_client, fleet["ids"])] == []


def test_ctrl_c_during_a_fleet_runbook_still_writes_the_report_of_what_finished(fleet, docker_client, tmp_path):
    book = tmp_path / "slow.yaml"
    book.write_text(textwrap.dedent("""\
        name: slow
        description: a quick step, then a slow one
        steps:
          - name: quick
            run: id -u
          - name: slow
            run: sleep 60
            timeout: 90
        """))
    report = tmp_path / "fleet.json"
    proc = popen_cli("runbook", "run", str(book), "--filter", fleet["filter"], "--parallel", "2", "--report",
                     str(report))
    try:
        wait_for(lambda: _slow_step_running(docker_client, fleet["ids"]), timeout=30,
                 what="the slow step in two sidecars")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert sidecars_of(docker_client, fleet["ids"]) == []
    data = json.loads(report.read_text())
    assert (data["targets"], data["passed"]) == (4, 0)
    cut = [r for r in data["results"] if r["status"] == "interrupted"]
    assert len(cut) == 2 and [r["status"] for r in data["results"]].count("not started") == 2
    for r in cut:
        assert r["error"]["exit_code"] == 130
        assert r["report"]["steps"][0]["name"] == "quick" and r["report"]["steps"][0]["status"] == "passed"
        assert r["report"]["steps"][0]["stdout"] == "65532\n"


def _slow_step_running(docker_client, ids) -> bool:
    """Both sidecars run their `sleep 60` step (seen in their process lists)."""
    found = 0
    for ctr in sidecars_of(docker_client, ids):
        try:
            top = ctr.top()  # UID PID PPID C STIME TTY TIME CMD
        except Exception:  # noqa: BLE001 - it may be going
            return False
        found += any("sleep 60" in p[-1] for p in top.get("Processes") or [])
    return found == 2


# -- Podman ---------------------------------------------------------------------------------------------------------

PODMAN_SOCKET = "/run/podman/podman.sock"


@pytest.fixture
def podman_fleet(fixture_images):
    if not (os.environ.get("CONTAINER_HOST") or os.path.exists(PODMAN_SOCKET)):
        pytest.skip("no Podman service (scripts/podman-testenv up && scripts/podman-testenv images)")
    tag = uuid.uuid4().hex[:8]
    project = f"dkfleet{tag}"
    names = [f"dk-fleet-pm-{tag}-{i}" for i in range(2)]
    try:
        for name in names:
            subprocess.run(["podman", "run", "-d", "--name", name, "--label", f"{FLEET_LABEL}={tag}",
                            "--label", f"{PROJECT}={project}", "--label", "io.debugkit.test=1",
                            fixture_images["named-user"]], check=True, capture_output=True, timeout=120)
        for name in names:
            wait_for(lambda: b"listening on" in subprocess.run(["podman", "logs", name], capture_output=True).stdout
                     + subprocess.run(["podman", "logs", name], capture_output=True).stderr,
                     timeout=20, what=f"{name} to listen")
        yield {"names": names, "project": project, "tag": tag}
    finally:
        subprocess.run(["podman", "rm", "-f", *names], capture_output=True, timeout=120)


@pytest.mark.parametrize("how", ["compose", "filter"])
def test_podman_fleets(podman_fleet, how):
    if how == "compose":
        args = [f"podman://compose/{podman_fleet['project']}"]
    else:
        args = ["--filter", f"label={FLEET_LABEL}={podman_fleet['tag']}", "--runtime", "podman"]
    result, data, err = run_json("attach", *args, "-o", "json", "--", "id", "-u", timeout=180)
    assert result.returncode == 0, err
    assert [(o["target"], o["stdout"], o["status"]) for o in data] == \
        [(n, "65532\n", "passed") for n in podman_fleet["names"]]

    def sidecars_left():
        return subprocess.run(["podman", "ps", "-a", "-q", "--filter", "label=io.debugkit.managed=true",
                               "--filter", f"label=io.debugkit.target={podman_fleet['names'][0]}"],
                              capture_output=True, text=True).stdout.split()

    # Podman's --rm runs after the exit status is out (its cleanup process): a moment later.
    wait_for(lambda: sidecars_left() == [], timeout=15, what="Podman to remove the exited sidecars")
