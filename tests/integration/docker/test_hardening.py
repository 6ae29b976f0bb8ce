"""Regression tests for the hostile-input review's findings, on the real engine."""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import uuid

import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import audit_records, labels_for_test, leaked_sidecars, run_cli, text, wait_for

pytestmark = pytest.mark.docker

HOSTILE_NAME = "evil\x1b[2J\x1b]0;owned\x07"


# -- 1. a runbook's profile is a request; only the flag grants it --------------------------------

def test_a_runbook_asking_for_ptrace_runs_only_with_the_flag(start_target, toolbox_image, tmp_path, audit_log):
    target = start_target("named-user")
    book = tmp_path / "needs-ptrace.yaml"
    book.write_text("name: p\nprofile: ptrace\nsteps:\n  - name: caps\n    run: grep CapEff /proc/self/status\n")
    refused = run_cli("runbook", "run", str(book), target.name)
    out, errout = text(refused)
    assert refused.returncode == ExitCode.FILE_INVALID, errout
    assert errout == (f"debugkit: error: {book}: the runbook asks for profile 'ptrace', which grants more than "
                      f"restricted; run it with --profile ptrace to allow that\n")
    assert [r["outcome"] for r in audit_records(audit_log)] == ["refused"]
    granted = run_cli("runbook", "run", str(book), target.name, "--profile", "ptrace", "-o", "json")
    assert granted.returncode == 0, granted.stderr
    assert json.loads(granted.stdout)["profile"] == "ptrace"
    shown = run_cli("runbook", "validate", str(book)).stdout.decode()
    assert "profile ptrace (asks for more than restricted: runs only with --profile ptrace)" in shown
    listed = json.loads(run_cli("runbook", "list", "-o", "json").stdout)
    assert {b["name"]: b["profile"] for b in listed}["http-health"] == "restricted"


# -- 2. a file in the working directory never shadows a bundled runbook ------------------------

def test_a_local_file_does_not_shadow_a_bundled_runbook(start_target, toolbox_image, tmp_path, audit_log):
    target = start_target("named-user")
    (tmp_path / "http-health").write_text("name: impostor\nsteps:\n  - name: x\n    run: 'echo IMPOSTOR'\n")
    ran = subprocess.run([sys.executable, "-m", "debugkit", "runbook", "run", "http-health", target.name,
                          "-o", "json", "--report", "r.json"], cwd=tmp_path, capture_output=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert b"IMPOSTOR" not in ran.stdout
    result = json.loads(ran.stdout)
    assert result["runbook"]["file"] == "http-health (bundled)"
    from debugkit.runbook.load import bundled_dir

    digest = hashlib.sha256((bundled_dir() / "http-health.yaml").read_bytes()).hexdigest()
    assert result["runbook"]["sha256"] == digest
    assert json.loads((tmp_path / "r.json").read_text())["runbook"]["sha256"] == digest
    start = next(r for r in audit_records(audit_log) if r["event"] == "start")
    assert (start["runbook"], start["runbook_sha256"]) == ("http-health (bundled)", digest)
    # The local file runs when it is named as a path, and is named by its path.
    local = subprocess.run([sys.executable, "-m", "debugkit", "runbook", "run", "./http-health", target.name,
                            "-o", "json"], cwd=tmp_path, capture_output=True, timeout=120)
    assert local.returncode == 0 and b"IMPOSTOR" in local.stdout
    assert json.loads(local.stdout)["runbook"]["file"] == str(tmp_path / "http-health")


# -- 4. a variable in a list-form `sh -c` script is data ----------------------------------------

def test_variables_in_a_list_form_shell_script_stay_inert(start_target, toolbox_image, tmp_path):
    target = start_target("named-user")
    book = tmp_path / "inject.yaml"
    book.write_text("name: i\nvars:\n  PORT: '8080'\nsteps:\n"
                    "  - name: echo\n    run: [sh, -c, 'echo port={{ PORT }}']\n"
                    "  - name: nothing ran\n    run: [sh, -c, 'test ! -e /tmp/pwned']\n")
    result = run_cli("runbook", "run", str(book), target.name, "--var", "PORT=$(touch /tmp/pwned)", "-o", "json")
    assert result.returncode == 0, result.stdout
    steps = json.loads(result.stdout)["steps"]
    assert steps[0]["stdout"] == "port=$(touch /tmp/pwned)\n"
    assert steps[1]["status"] == "passed"


# -- 7. escape sequences from an image never reach the terminal ---------------------------------

@pytest.fixture
def hostile_image(docker_client, fixture_images):
    """A FROM scratch image whose passwd names and configured user carry escape sequences."""
    tag = f"debugkit-test/hostile:{uuid.uuid4().hex[:8]}"
    files = {
        "Dockerfile": f"FROM {fixture_images['named-user']}\nCOPY passwd group /etc/\n"
                      f"USER {HOSTILE_NAME}\n".encode(),
        "passwd": f"{HOSTILE_NAME}:x:65532:65532::/home/nonroot:/sbin/nologin\n".encode(),
        "group": f"{HOSTILE_NAME}:x:65532:\n".encode(),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    docker_client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


def test_inspect_escapes_names_from_the_image(docker_client, hostile_image, started_targets):
    ctr = docker_client.containers.run(hostile_image, name=f"dk-hostile-{uuid.uuid4().hex[:8]}", detach=True,
                                       labels=labels_for_test())
    started_targets.append(ctr.id)
    try:
        wait_for(lambda: b"listening on" in ctr.logs(), timeout=20, what="the hostile target")
        for fmt in ("text", "yaml"):
            result = run_cli("inspect", ctr.name, "-o", fmt)
            assert result.returncode == 0, result.stderr
            assert b"\x1b" not in result.stdout and b"\x07" not in result.stdout
            assert b"evil\\x1b[2J\\x1b]0;owned\\x07" in result.stdout
        data = json.loads(run_cli("inspect", ctr.name, "-o", "json").stdout)
        assert data["configured_user"] == HOSTILE_NAME  # JSON carries the exact value, escaped by the encoder
    finally:
        ctr.remove(force=True)


# -- 9. a reader that goes away is not an engine failure ----------------------------------------

@pytest.mark.parametrize("command", ["yes", "head -c 100000000 /dev/zero"])
def test_a_broken_pipe_ends_quietly_with_141_and_cleans_up(docker_client, start_target, toolbox_image, audit_log,
                                                          command):
    """As soon as the reader is gone, not after dockerd's timeouts: closing our end of the
    attach stream comes before stopping the sidecar (dockerd, blocked writing into it,
    held the container, and the stop waited 120 s, in 3 runs of 5). Three runs, each
    bounded well below that."""
    target = start_target("named-user")
    for _run in range(3):
        pipeline = subprocess.run(
            f"{sys.executable} -m debugkit attach {target.name} -- {command} | head -c1; "
            f"echo status=${{PIPESTATUS[0]}} >&2",
            shell=True, executable="/bin/bash", capture_output=True, timeout=60)
        assert len(pipeline.stdout) == 1
        assert pipeline.stderr.decode().strip().splitlines() == ["status=141"]
        wait_for(lambda: not leaked_sidecars(docker_client, **{"io.debugkit.target": target.name}), timeout=15,
                 what="the sidecar to be removed")
    end = [r for r in audit_records(audit_log) if r["event"] == "end"]
    assert [(r["exit_code"], r["outcome"]) for r in end] == [(141, "output closed")] * 3


# -- 10 and 13. gc: a damaged log, and labels alone are not trusted ---------------------------------

def test_gc_skips_forged_sidecars_and_survives_a_damaged_log(docker_client, toolbox_image, audit_log, start_target):
    target = start_target("named-user")
    forged = docker_client.containers.run(
        toolbox_image, ["sleep", "300"], name=f"dk-forged-{uuid.uuid4().hex[:8]}", detach=True,
        labels={**labels_for_test(), "io.debugkit.managed": "true", "io.debugkit.session": "f0f0f0f0",
                "io.debugkit.cli-pid": "999999", "io.debugkit.cli-host": __import__("socket").gethostname(),
                "io.debugkit.target": target.name})
    try:
        audit_log.write_text('[1,2]\n{"event": "start"}\n{"session": "x", "event": "end", "ts": "bad"}\n')
        result = run_cli("gc", "--runtime", "docker", "-o", "json")
        assert result.returncode == 0, result.stderr
        assert result.stderr.decode().count("skipped 3 malformed line(s) in the audit log") == 1
        (action,) = [a for a in json.loads(result.stdout) if a["name"] == forged.name]
        assert action["action"] == "skipped" and "no record of debugkit creating it" in action["reason"]
        forged.reload()
        assert forged.status == "running"
        audit_view = run_cli("audit", "-o", "json")
        assert audit_view.returncode == 0 and json.loads(audit_view.stdout) == []
        by_label = run_cli("gc", "--all", "--runtime", "docker", "-o", "json")
        assert any(a["name"] == forged.name and a["action"] == "removed" for a in json.loads(by_label.stdout))
        wait_for(lambda: not docker_client.containers.list(all=True, filters={"id": forged.id}), timeout=15,
                 what="the forged container to go")
    finally:
        try:
            forged.remove(force=True)
        except Exception:  # noqa: BLE001 - already collected
            pass


def test_every_container_debugkit_creates_is_recorded(start_target, toolbox_image, audit_log, docker_client):
    target = start_target("named-user")
    # The command outlives every timeout below: an exit before it ends is the SIGTERM's doing.
    proc = subprocess.Popen([sys.executable, "-m", "debugkit", "attach", target.name, "--", "sleep", "600"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        sidecar = wait_for(lambda: leaked_sidecars(docker_client, **{"io.debugkit.target": target.name}),
                           timeout=20, what="the sidecar")[0]
        created = [r for r in audit_records(audit_log) if r["event"] == "created"]
        assert [r["container_id"] for r in created] == [sidecar.id]
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert (code, proc.stderr.read()) == (ExitCode.TERMINATED, b"debugkit: received SIGTERM, cleaned up\n")


# == Round 2 (issue 27) ==========================================================================================

def test_gc_and_audit_count_a_deeply_nested_line_and_carry_on(toolbox_image, audit_log, start_target):
    """Item 10: a line of 100,000 nested brackets ended gc with 'internal error' and exit 0."""
    start_target("named-user")
    audit_log.write_text("[" * 100000 + "]" * 100000 + "\n")
    for argv in (("gc", "--runtime", "docker", "--dry-run", "-o", "json"), ("audit", "-o", "json")):
        result = run_cli(*argv)
        _out, errout = text(result)
        assert result.returncode == 0 and "internal error" not in errout and "Traceback" not in errout, errout
        assert errout.splitlines() == [f"debugkit: warning: skipped 1 malformed line(s) in the audit log {audit_log}"]
        assert isinstance(json.loads(result.stdout), list)


def test_the_audit_record_names_the_real_uid_and_sudo_user_not_user(start_target, toolbox_image, audit_log):
    """Item 6: $USER is anyone's to set; the record names the real UID, its passwd name, and SUDO_USER."""
    import os
    import pwd

    target = start_target("named-user")
    result = run_cli("attach", target.name, "--", "true", env={"USER": "mallory", "LOGNAME": "mallory",
                                                               "SUDO_USER": "alice"})
    assert result.returncode == 0, result.stderr
    start = next(r for r in audit_records(audit_log) if r["event"] == "start")
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = str(os.getuid())
    assert (start["local_user"], start["local_uid"], start["sudo_user"]) == (name, os.getuid(), "alice")
    listed = run_cli("audit", "-o", "json")
    (session,) = json.loads(listed.stdout)
    assert session["local_user"] == name and session["sudo_user"] == "alice"
