"""Sessions that leave nothing behind: TTYs, signals, faults, concurrency, audit, ps and gc."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import REPO, Pty, audit_records, leaked_sidecars, run_cli, wait_for

pytestmark = pytest.mark.docker
CLI = [sys.executable, "-m", "debugkit"]


def _sidecar_of(client, target):
    """The target's sidecar, once it is running (not merely created)."""
    return wait_for(lambda: [c for c in leaked_sidecars(client, **{"io.debugkit.target": target.name})
                             if c.status == "running"],
                    timeout=30, what="the sidecar to run")[0]


def _gone(client, target, *, timeout: float, what: str = "the sidecar to be removed"):
    wait_for(lambda: not leaked_sidecars(client, **{"io.debugkit.target": target.name}), timeout=timeout, what=what)


def test_interactive_tty_with_resize_and_exit_code(docker_client, start_target, toolbox_image):
    target = start_target("named-user")
    term = Pty(["attach", target.name], rows=40, cols=120)
    try:
        term.expect(b"/proc/1/root")  # the banner says where the target's files are
        term.send("id -u; stty size; tty\n")
        screen = term.expect(b"/dev/pts/")
        assert b"\r65532\r\n40 120\r\n/dev/pts/" in screen
        term.resize(50, 132)
        term.proc.send_signal(signal.SIGWINCH)
        time.sleep(0.3)  # give the resize request its round trip before asking
        term.send("stty size\n")
        term.expect(b"50 132")
        term.send("exit 5\n")
        assert term.proc.wait(timeout=30) == 5
    finally:
        term.close()
    _gone(docker_client, target, timeout=15)


def test_sigkill_of_interactive_cli_ends_its_sidecar(docker_client, start_target, toolbox_image):
    target = start_target("named-user")
    term = Pty(["attach", target.name])
    try:
        term.expect(b"/proc/1/root")
        _sidecar_of(docker_client, target)
        term.proc.kill()
        term.proc.wait(timeout=10)
    finally:
        term.close()  # the terminal goes away with its CLI
    _gone(docker_client, target, timeout=10, what="the interactive sidecar to end with its TTY")


def test_sigkill_mid_command_leaves_no_sidecar_and_valid_audit(docker_client, start_target, toolbox_image,
                                                             audit_log):
    target = start_target("named-user")
    proc = subprocess.Popen(CLI + ["attach", target.name, "--", "sleep", "3"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _sidecar_of(docker_client, target)
    proc.kill()
    proc.wait(timeout=10)
    _gone(docker_client, target, timeout=3 + 10, what="the sidecar to go within 10 s of its command ending")
    records = audit_records(audit_log)  # parses every line: none is half-written
    assert [r["event"] for r in records] == ["start", "created"]
    gc = run_cli("gc", "--runtime", "docker")  # not hostage to the other runtimes' health
    assert gc.returncode == 0 and b"closed" in gc.stdout
    events = [(r["event"], r.get("outcome")) for r in audit_records(audit_log)]
    assert events == [("start", None), ("created", None), ("end", "abandoned")]


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, ExitCode.INTERRUPTED), (signal.SIGTERM, ExitCode.TERMINATED),
                                      (signal.SIGHUP, ExitCode.HANGUP)])
def test_signals_clean_up_at_once(docker_client, start_target, toolbox_image, audit_log, sig, code):
    target = start_target("named-user")
    proc = subprocess.Popen(CLI + ["attach", target.name, "--", "sleep", "120"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _sidecar_of(docker_client, target)
    proc.send_signal(sig)
    assert proc.wait(timeout=20) == code
    assert b"Traceback" not in proc.stderr.read()
    # Well before `sleep 120` could end: the CLI removed it.
    _gone(docker_client, target, timeout=10, what="the sidecar to be removed by the CLI itself")
    end = audit_records(audit_log)[-1]
    assert (end["event"], end["exit_code"], end["outcome"]) == ("end", code, "interrupted")


def _ignoring(*signals):
    """preexec_fn: start with these signals ignored, as a background job of a script
    (SIGINT) or nohup (SIGHUP) does; an ignored signal stays ignored across exec."""
    def ignore():
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)
    return ignore


LONG_RUNNING = {
    # argv ({T} the target, {L} its label, {R} a slow runbook); a line on stdout that says it
    # is ready (or None); what runs in the sidecar meanwhile
    "port-forward": (["port-forward", "{T}", ":8080"], b"Forwarding from", "relay --listen"),
    "attach": (["attach", "{T}", "--", "sleep", "120"], None, "sleep 120"),
    "attach -i": (["attach", "-i", "{T}", "--", "cat"], None, "cat"),
    "attach --keep-alive": (["attach", "--keep-alive", "1m", "{T}", "--", "sleep", "120"], None, "sleep 120"),
    "a fleet": (["attach", "--filter", "label=dk-signal-test={L}", "--", "sleep", "120"], None, "sleep 120"),
    "runbook": (["runbook", "run", "{R}", "{T}"], None, "sleep 120"),
}


def _processes(container) -> str:
    return " | ".join(" ".join(row) for row in container.top(ps_args="-o pid,args").get("Processes") or [])


@pytest.mark.parametrize("what", list(LONG_RUNNING))
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, ExitCode.INTERRUPTED), (signal.SIGHUP, ExitCode.HANGUP),
                                      (signal.SIGTERM, ExitCode.TERMINATED)])
def test_a_signal_ends_a_session_whatever_was_inherited(docker_client, fixture_images, started_targets,
                                                        toolbox_image, audit_log, tmp_path, what, sig, code):
    """`debugkit port-forward T 8080 &` in a script starts with SIGINT ignored (and under
    nohup, SIGHUP): `kill -INT $!` still ends it, as it ends kubectl, and it cleans up as
    on Ctrl-C (issue 27, section 2). Every long-running command, every such signal."""
    from tests.helpers import labels_for_test

    label = os.urandom(4).hex()
    target = docker_client.containers.run(fixture_images["named-user"], name=f"dk-test-signal-{label}", detach=True,
                                          labels={**labels_for_test(), "dk-signal-test": label})
    started_targets.append(target.id)
    try:
        wait_for(lambda: b"listening on" in target.logs(), timeout=20, what="the target to listen")
        runbook = tmp_path / "slow.yaml"
        runbook.write_text("name: slow\nsteps:\n  - name: wait\n    run: sleep 120\n    timeout: 200\n")
        argv, ready, running = LONG_RUNNING[what]
        argv = [a.replace("{T}", target.name).replace("{L}", label).replace("{R}", str(runbook)) for a in argv]
        proc = subprocess.Popen(CLI + argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=_ignoring(signal.SIGINT, signal.SIGHUP, signal.SIGTERM))
        try:
            if ready is not None:
                assert ready in proc.stdout.readline()
            sidecar = _sidecar_of(docker_client, target)
            wait_for(lambda: running in _processes(sidecar), timeout=30, what=f"{running} to run in the sidecar")
            proc.send_signal(sig)
            assert proc.wait(timeout=30) == code
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = proc.stderr.read().decode()
        assert "Traceback" not in err, err
        if what == "attach --keep-alive":  # the sidecar is kept for reuse, by design; its command has ended
            wait_for(lambda: running not in _processes(sidecar), timeout=15, what="the command to end")
            sidecar.remove(force=True)
        else:
            _gone(docker_client, target, timeout=15, what="the sidecar to be removed by the CLI itself")
        if what == "a fleet":  # each member's line says so (its sidecar was stopped under it)
            assert f"{target.name}: interrupted ({int(code)})" in err, err
            # ...and so does its audit record: not the code of the signal that stopped its command.
            ends = [r for r in audit_records(audit_log) if r["event"] == "end"]
            assert ends and {(r["exit_code"], r["outcome"]) for r in ends} == {(int(code), "interrupted")}, ends
        else:
            ends = [r for r in audit_records(audit_log) if r["event"] == "end"]
            assert ends and {(r["exit_code"], r["outcome"]) for r in ends} == {(int(code), "interrupted")}, ends
    finally:
        target.remove(force=True)


def test_target_killed_mid_session(docker_client, start_target, toolbox_image, audit_log):
    target = start_target("named-user")
    proc = subprocess.Popen(CLI + ["attach", target.name, "--", "sleep", "120"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _sidecar_of(docker_client, target)
    target.kill()
    code = proc.wait(timeout=30)
    # The kernel kills every process of the PID namespace when its init (the target) dies.
    assert code == 137, proc.stderr.read()
    _gone(docker_client, target, timeout=10)
    end = audit_records(audit_log)[-1]
    assert (end["event"], end["exit_code"]) == ("end", 137)


def test_twenty_concurrent_sessions_on_one_target(docker_client, start_target, toolbox_image, audit_log):
    target = start_target("named-user")
    procs = [subprocess.Popen(CLI + ["attach", target.name, "--", "sh", "-c", 'echo "$DEBUGKIT_SESSION"; id -u'],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(20)]
    results = [(p.wait(timeout=180), p.stdout.read(), p.stderr.read()) for p in procs]
    assert [r[0] for r in results] == [0] * 20, [r[2] for r in results if r[0]]
    sessions = {r[1].split()[0] for r in results}
    assert len(sessions) == 20 and all(r[1].split()[1] == b"65532" for r in results)
    records = audit_records(audit_log)
    assert len(records) == 60  # start, created and end of each session, every line whole
    assert {r["session"] for r in records if r["event"] == "created"} == {s.decode() for s in sessions}
    assert {r["session"] for r in records if r["event"] == "start"} == {s.decode() for s in sessions}
    assert {r["session"] for r in records if r["event"] == "end" and r["exit_code"] == 0} == \
        {s.decode() for s in sessions}
    _gone(docker_client, target, timeout=15)


def test_engine_socket_missing_is_refused_and_audited(tmp_path, audit_log):
    result = run_cli("attach", "web", "--", "true", env={"DOCKER_HOST": f"unix://{tmp_path}/gone.sock"})
    assert result.returncode == ExitCode.ENGINE_UNREACHABLE
    (record,) = audit_records(audit_log)
    assert (record["event"], record["exit_code"], record["outcome"]) == ("refused", 69, "refused")


def test_resource_limits_are_set_and_adjustable(docker_client, start_target, toolbox_image):
    target = start_target("named-user")
    script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
              "/sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max")
    default = run_cli("attach", target.name, "--", "sh", "-c", script)
    assert default.stdout.split()[:2] == [str(256 * 1024 * 1024).encode(), b"256"], default.stderr
    custom = run_cli("attach", "--memory", "64m", "--pids-limit", "50", "--cpus", "0.5", target.name, "--",
                     "sh", "-c", script)
    assert custom.stdout.split() == [str(64 * 1024 * 1024).encode(), b"50", b"50000"], custom.stderr
    bad = run_cli("attach", "--pids-limit", "0", target.name, "--", "true")
    assert bad.returncode == ExitCode.INVALID_INPUT


def test_ps_and_gc_find_sessions_by_label(docker_client, start_target, toolbox_image):
    target = start_target("named-user")
    proc = subprocess.Popen(CLI + ["attach", target.name, "--", "sleep", "60"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sidecar = _sidecar_of(docker_client, target)
        rows = json.loads(run_cli("ps", "--runtime", "docker", "-o", "json").stdout)
        (row,) = [r for r in rows if r["target"] == target.name]
        assert (row["user"], row["state"], row["cli_alive"], row["cli_pid"]) == ("65532:65532", "running", True,
                                                                                proc.pid)
        assert row["name"] == sidecar.name
        # A live CLI's sidecar is not stale...
        assert target.name not in run_cli("gc", "--dry-run", "--runtime", "docker").stdout.decode()
        # ...unless it is older than the limit; --dry-run changes nothing.
        dry = run_cli("gc", "--dry-run", "--older-than", "0s", "--runtime", "docker", "-o", "json")
        assert any(a["name"] == sidecar.name and a["action"] == "would remove" for a in json.loads(dry.stdout))
        assert leaked_sidecars(docker_client, **{"io.debugkit.target": target.name})
        real = run_cli("gc", "--older-than", "0s", "--runtime", "docker", "-o", "json")
        assert any(a["name"] == sidecar.name and a["action"] == "removed" for a in json.loads(real.stdout))
        _gone(docker_client, target, timeout=10)
        assert proc.wait(timeout=20) != 0  # its sidecar was collected under it
    finally:
        proc.kill()
        proc.wait()


def test_audit_command_filters_and_renders(start_target, toolbox_image, audit_log):
    target = start_target("named-user")
    assert run_cli("attach", target.name, "--", "sh", "-c", "exit 4").returncode == 4
    sessions = json.loads(run_cli("audit", "-o", "json").stdout)
    (s,) = sessions
    assert (s["target"], s["exit_code"], s["identity"]["uid"], s["image_id"].startswith("sha256:")) == \
        (target.name, 4, 65532, True)
    assert s["command"] == ["sh", "-c", "exit 4"] and s["local_user"] and s["start"] <= s["end"]
    assert json.loads(run_cli("audit", "--since", "1h", "-o", "json").stdout) == sessions
    assert json.loads(run_cli("audit", "--since", "2999-01-01T00:00", "-o", "json").stdout) == []
    assert run_cli("audit", "--since", "yesterday").returncode == ExitCode.INVALID_INPUT
    assert target.name.encode() in run_cli("audit").stdout


def _dockerd_pid() -> int | None:
    try:
        with open("/var/run/docker.pid", encoding="utf-8") as fh:
            pid = int(fh.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return pid if b"dockerd" in fh.read() else None
    except (OSError, ValueError):
        return None


@pytest.mark.skipif(os.geteuid() != 0 or os.path.exists("/run/systemd/system"),
                    reason="restarts dockerd: needs root and a dockerd started by scripts/docker-testenv")
def test_dockerd_restarted_mid_session(docker_client, start_target, toolbox_image, audit_log):
    pid = _dockerd_pid()
    if pid is None:
        pytest.skip("dockerd was not started from a pidfile we can restart")
    target = start_target("named-user")
    proc = subprocess.Popen(CLI + ["attach", target.name, "--", "sleep", "120"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _sidecar_of(docker_client, target)
    os.kill(pid, signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
        stderr = proc.stderr.read().decode()
    finally:
        wait_for(lambda: _dockerd_pid() is None, timeout=30, what="dockerd to stop")
        subprocess.run([str(REPO / "scripts" / "docker-testenv"), "engine"], check=True, capture_output=True)
    # The engine stopped the sidecar on its way down (SIGTERM 143, or SIGKILL 137 after
    # the grace period), or we lost the engine first (69); either way one clean line.
    assert code in (143, 137, ExitCode.ENGINE_UNREACHABLE), stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) <= 1
    wait_for(lambda: not leaked_sidecars(docker_client), timeout=30, what="no sidecar after the restart")
    end = audit_records(audit_log)[-1]
    assert end["event"] == "end" and end["exit_code"] == code
