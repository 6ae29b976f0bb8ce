"""debugkit against an ssh:// engine: the real CLI, the system's ssh, a real sshd, and
`docker system dial-stdio` on the server side, in front of the real Docker engine."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import Pty, audit_records, run_cli, text, wait_for
from tests.integration.remote.helpers import kill_server, make_home, sidecars_of, ssh_clients

pytestmark = [pytest.mark.docker, pytest.mark.ssh]
CLI = [sys.executable, "-m", "debugkit"]
STATUS_IDS = "grep -E '^(Uid|Gid|Groups):' /proc/self/status; echo ===; grep -E '^(Uid|Gid|Groups):' /proc/1/status"
# How long the engine may take to end and remove a sidecar whose connection dropped
# (docs/remote-engines.md: measured well under this on the test machine).
DROP_BOUND_S = 10


def one_error_line(result, code: ExitCode, *needles: str) -> str:
    out, errout = text(result)
    assert result.returncode == code, (result.returncode, errout)
    lines = errout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("debugkit: error: "), errout
    assert "Traceback" not in errout
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _ids(block: str) -> dict[str, list[str]]:
    return {k: v.split() for k, v in re.findall(r"^(Uid|Gid|Groups):\s*(.*)$", block, re.M)}


@pytest.mark.parametrize("kind", ["named-user", "drops-privs"])
def test_identity_comes_from_the_engines_top_api(start_target, toolbox_image, ssh_env, ssh_url, kind):
    target = start_target(kind)
    result = run_cli("attach", "-H", ssh_url, target.name, "--", "sh", "-c", STATUS_IDS, env=ssh_env)
    out, errout = text(result)
    assert result.returncode == 0, errout
    mine, theirs = (_ids(part) for part in out.split("==="))
    assert mine["Uid"] == theirs["Uid"] == ["65532"] * 4 and mine["Gid"] == theirs["Gid"], out
    assert set(mine["Groups"]) == set(theirs["Groups"]), out

    info = json.loads(run_cli("inspect", "-H", ssh_url, target.name, "-o", "json", env=ssh_env).stdout)
    assert (info["uid"], info["gid"], info["source"]) == (65532, 65532, "process-top")
    assert info["engine"] == ssh_url and info["engine_source"] == "-H/--host"
    assert any("top API" in note for note in info["notes"]), info["notes"]
    assert info["target_dumpable"] is None  # the target's /proc is not on this machine
    assert info["attach_command"].startswith(f"docker -H {ssh_url} run ")


@pytest.mark.parametrize("code", [0, 3, 42])
def test_exit_codes_and_separate_streams(start_target, toolbox_image, ssh_env, ssh_url, code):
    target = start_target("named-user")
    result = run_cli("attach", "-H", ssh_url, target.name, "--", "sh", "-c", f"echo out; echo err >&2; exit {code}",
                     env=ssh_env)
    assert (result.returncode, result.stdout, result.stderr) == (code, b"out\n", b"err\n")


def test_piped_stdin_reaches_the_command(start_target, toolbox_image, ssh_env, ssh_url):
    target = start_target("named-user")
    data = bytes(range(256)) * 400  # binary, 100 KiB
    result = run_cli("attach", "-i", "-H", ssh_url, target.name, "--", "sh", "-c", "wc -c; cat /proc/1/root/etc/group | wc -l",
                     input=data, env=ssh_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [b"102400", b"6"]


def test_a_command_the_toolbox_lacks_is_the_same_error_as_locally(start_target, toolbox_image, ssh_env, ssh_url):
    """The reaper starts the command and reports as a shell does: 127 / 126 and one line,
    the same on a remote engine as on a local one (tests/integration/docker/test_attach.py)."""
    target = start_target("named-user")
    for argv, code, needle in ((["no-such-tool"], ExitCode.COMMAND_NOT_FOUND, "no-such-tool: command not found"),
                               (["/etc/passwd"], ExitCode.COMMAND_NOT_EXECUTABLE, "/etc/passwd")):
        result = run_cli("attach", "-H", ssh_url, target.name, "--", *argv, env=ssh_env)
        out, errout = text(result)
        assert result.returncode == code, errout
        assert errout.splitlines() == [errout.strip()] and needle in errout and "Traceback" not in errout, errout


def test_interactive_tty_with_resize_and_exit_code(docker_client, start_target, toolbox_image, ssh_env, ssh_url):
    target = start_target("named-user")
    term = Pty(["attach", "-H", ssh_url, target.name], rows=40, cols=120, env=ssh_env)
    try:
        term.expect(b"/proc/1/root")
        term.send("id -u; stty size; tty\n")
        screen = term.expect(b"/dev/pts/")
        assert b"\r65532\r\n40 120\r\n/dev/pts/" in screen
        term.resize(50, 132)
        term.proc.send_signal(signal.SIGWINCH)
        time.sleep(0.5)  # the resize request's round trip over ssh
        term.send("stty size\n")
        term.expect(b"50 132")
        term.send("exit 5\n")
        assert term.proc.wait(timeout=30) == 5
    finally:
        term.close()
    wait_for(lambda: not sidecars_of(docker_client, target), timeout=15, what="the sidecar to go")


def test_a_runbook_runs_over_ssh(start_target, toolbox_image, ssh_env, ssh_url, tmp_path):
    target = start_target("named-user")
    book = tmp_path / "rb.yaml"
    book.write_text("name: remote\nsteps:\n"
                    "  - name: identity\n    run: grep -E '^Uid:' /proc/self/status\n"
                    "    expect:\n      stdout_matches: '^Uid:\\s+65532\\s'\n"
                    "  - name: the target\n    run: [cat, /proc/1/cmdline]\n"
                    "    expect:\n      stdout_matches: '^/server'\n"
                    "  - name: its port\n    run: curl -fsS http://127.0.0.1:8080/\n"
                    "    expect:\n      stdout_matches: 'uid=65532'\n")
    result = run_cli("runbook", "run", str(book), target.name, "-H", ssh_url, "-o", "json", env=ssh_env, timeout=180)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [s["status"] for s in report["steps"]] == ["passed"] * 3


def test_ps_gc_and_audit_over_ssh(docker_client, start_target, toolbox_image, ssh_env, ssh_url, audit_log):
    target = start_target("named-user")
    proc = subprocess.Popen(CLI + ["attach", "-H", ssh_url, target.name, "--", "sleep", "60"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **ssh_env})
    try:
        wait_for(lambda: [c for c in sidecars_of(docker_client, target) if c.status == "running"], timeout=30,
                 what="the sidecar to run")
        # An exec starts a moment after the sidecar: wait for it, then list.
        time.sleep(1)
        ps = run_cli("ps", "-H", ssh_url, "--runtime", "docker", "-o", "json", env=ssh_env)
        assert ps.returncode == 0, ps.stderr
        rows = [r for r in json.loads(ps.stdout) if r["target"] == target.name]
        assert len(rows) == 1 and rows[0]["cli_alive"] is True and rows[0]["user"] == "65532:65532"
        dry = run_cli("gc", "-H", ssh_url, "--runtime", "docker", "--dry-run", "-o", "json", env=ssh_env)
        assert not [a for a in json.loads(dry.stdout) if a["name"] == rows[0]["name"]]  # its CLI lives, young
        gc = run_cli("gc", "-H", ssh_url, "--runtime", "docker", "--older-than", "1s", "-o", "json", env=ssh_env)
        assert gc.returncode == 0, gc.stderr
        removed = [a for a in json.loads(gc.stdout) if a["name"] == rows[0]["name"]]
        assert removed and removed[0]["action"] == "removed"
        # The CLI whose sidecar was collected ends as locally: gc stopped the command first, so
        # nothing hangs on the engine. Its code is the signal that ended it: gc's SIGTERM to the
        # command's reaper (143) when the engine reported the exec's end before the sidecar went,
        # the runtime's SIGKILL with the sidecar (137) otherwise; over ssh the first is the rule.
        code = proc.wait(timeout=30)
        errout = proc.stderr.read().decode()
        assert code in (143, 137) and "Traceback" not in errout, errout
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: not sidecars_of(docker_client, target), timeout=15, what="the sidecar to go")
    audit = run_cli("audit", "-o", "json")
    sessions = [s for s in json.loads(audit.stdout) if s.get("target") == target.name]
    assert sessions and sessions[-1]["runtime"] == "docker" and "end" in sessions[-1]


def test_the_audit_log_records_a_remote_session(start_target, toolbox_image, ssh_env, ssh_url, audit_log):
    target = start_target("named-user")
    assert run_cli("attach", "-H", ssh_url, target.name, "--", "sh", "-c", "exit 7", env=ssh_env).returncode == 7
    events = audit_records(audit_log)
    assert [e["event"] for e in events] == ["start", "created", "end"]
    assert events[0]["identity"]["source"] == "process-top" and events[2]["exit_code"] == 7
    assert events[0]["engine"] == ssh_url  # which server, not only which container name


# -- the connection drops -----------------------------------------------------------------

def test_server_gone_mid_command_ends_the_sidecar_and_exits_69(docker_client, start_target, toolbox_image, ssh_env,
                                                               ssh_url, ssh_server, sshd_restored):
    target = start_target("named-user")
    proc = subprocess.Popen(CLI + ["attach", "-H", ssh_url, target.name, "--", "sh", "-c", "echo started; sleep 120"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **ssh_env})
    try:
        assert proc.stdout.readline() == b"started\n"
        dropped = time.monotonic()
        kill_server(ssh_server)  # no session, no listener: debugkit cannot reach the engine to clean up
        cli_s = gone_s = None
        while (cli_s is None or gone_s is None) and time.monotonic() - dropped < 60:
            if cli_s is None and proc.poll() is not None:
                cli_s = time.monotonic() - dropped
            if gone_s is None and not sidecars_of(docker_client, target):
                gone_s = time.monotonic() - dropped
            time.sleep(0.05)
        print(f"\ndrop -> sidecar gone {gone_s}s, drop -> CLI exit {cli_s}s")
        # The engine ends the sidecar by itself: its keep-alive saw EOF when the stream died.
        assert gone_s is not None and gone_s <= DROP_BOUND_S, gone_s
        errout = proc.stderr.read().decode()
        lines = errout.strip().splitlines()
        assert proc.returncode == ExitCode.ENGINE_UNREACHABLE, errout
        assert len(lines) == 1 and lines[0].startswith("debugkit: error: ") and "ssh" in lines[0], errout
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def partition():
    """Drop every packet to and from the test sshd (127.0.0.1:2222) until the test ends:
    a connection that goes silent without a FIN or RST, as on a network partition."""
    if os.geteuid() != 0 or not shutil.which("iptables"):
        pytest.skip("needs root and iptables")
    rules = [["INPUT", "-i", "lo", "-p", "tcp", "--dport", "2222", "-j", "DROP"],
             ["INPUT", "-i", "lo", "-p", "tcp", "--sport", "2222", "-j", "DROP"]]
    added = []

    def cut():
        for rule in rules:
            subprocess.run(["iptables", "-I", *rule], check=True)
            added.append(rule)

    yield cut
    for rule in added:
        subprocess.run(["iptables", "-D", *rule], check=False)


def test_a_silent_partition_ends_the_sidecar_within_the_heartbeat_bound(docker_client, start_target, toolbox_image,
                                                                       ssh_env, ssh_url, partition):
    from debugkit.runtimes.docker.translate import HEARTBEAT_S, HEARTBEAT_TIMEOUT_S

    target = start_target("named-user")
    proc = subprocess.Popen(CLI + ["attach", "-H", ssh_url, target.name, "--", "sh", "-c", "echo started; sleep 300"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **ssh_env})
    try:
        assert proc.stdout.readline() == b"started\n"
        cut = time.monotonic()
        partition()
        bound = HEARTBEAT_TIMEOUT_S + DROP_BOUND_S
        gone_s = cli_s = None
        while (gone_s is None or cli_s is None) and time.monotonic() - cut < bound + 30:
            if cli_s is None and proc.poll() is not None:
                cli_s = time.monotonic() - cut
            if gone_s is None and not sidecars_of(docker_client, target):
                gone_s = time.monotonic() - cut
            time.sleep(0.2)
        print(f"\npartition -> sidecar gone {gone_s}s, CLI exit {cli_s}s")
        assert gone_s is not None and HEARTBEAT_TIMEOUT_S - HEARTBEAT_S - 1 <= gone_s <= bound, gone_s
        errout = proc.stderr.read().decode()
        assert proc.returncode == ExitCode.ENGINE_UNREACHABLE and "not responding" in errout, errout
        assert len(errout.strip().splitlines()) == 1
    finally:
        proc.kill()
        proc.wait()


def test_sigkill_of_the_cli_mid_command_leaves_no_ssh_and_no_sidecar(docker_client, start_target, toolbox_image,
                                                                    ssh_env, ssh_url):
    target = start_target("named-user")
    proc = subprocess.Popen(CLI + ["attach", "-H", ssh_url, target.name, "--", "sh", "-c", "echo started; sleep 120"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, **ssh_env})
    assert proc.stdout.readline() == b"started\n"
    assert ssh_clients(), "the session's ssh processes should be running"
    killed = time.monotonic()
    proc.kill()
    proc.wait()
    # The kernel kills its ssh processes (PR_SET_PDEATHSIG); the engine ends the sidecar.
    wait_for(lambda: not ssh_clients(), timeout=5, what="the CLI's ssh processes to die with it")
    wait_for(lambda: not sidecars_of(docker_client, target), timeout=DROP_BOUND_S,
             what=f"the sidecar to end within {DROP_BOUND_S}s of the CLI's death")
    print(f"\nSIGKILL -> sidecar gone {time.monotonic() - killed:.2f}s")


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, ExitCode.INTERRUPTED), (signal.SIGTERM, ExitCode.TERMINATED)])
def test_signals_clean_up_over_ssh(docker_client, start_target, toolbox_image, ssh_env, ssh_url, sig, code):
    target = start_target("named-user")
    proc = subprocess.Popen(CLI + ["attach", "-H", ssh_url, target.name, "--", "sh", "-c", "echo started; sleep 120"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **ssh_env})
    try:
        assert proc.stdout.readline() == b"started\n"
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == code
        assert b"Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: not sidecars_of(docker_client, target), timeout=10, what="the sidecar to be removed")


# -- refusals: one line, exit 69 (64 for a malformed address) -----------------------------

def test_an_unknown_host_key_is_refused(start_target, ssh_server, ssh_url, tmp_path):
    target = start_target("named-user")
    env = make_home(tmp_path / "fresh", ssh_server, known_hosts="")
    line = one_error_line(run_cli("attach", "-H", ssh_url, target.name, "--", "true", env=env),
                          ExitCode.ENGINE_UNREACHABLE, "Host key verification failed", "is not known",
                          "ssh-keyscan -p 2222 127.0.0.1")
    assert "StrictHostKeyChecking" not in line
    assert (tmp_path / "fresh" / ".ssh" / "known_hosts").read_text() == ""  # nothing was added


def test_on_a_terminal_ssh_asks_about_a_new_host_key_and_the_attach_goes_on(start_target, toolbox_image,
                                                                            ssh_server, ssh_url, tmp_path):
    # As with the docker CLI, ssh may ask on a terminal (no BatchMode there): the question
    # reaches the person, the answer reaches ssh, and the key is remembered.
    target = start_target("named-user")
    env = make_home(tmp_path / "fresh", ssh_server, known_hosts="")
    term = Pty(["attach", "-H", ssh_url, target.name, "--", "echo", "attached-after-yes"], env=env, controlling=True)
    try:
        term.expect(b"Are you sure you want to continue connecting", timeout=60)
        term.send("yes\n")
        term.expect(b"attached-after-yes", timeout=60)
        assert term.proc.wait(timeout=60) == 0, term.buffer.decode(errors="replace")
    finally:
        term.close()
    assert term.buffer.count(b"Are you sure") == 1, "asked more than once"
    assert "[127.0.0.1]:2222" in (tmp_path / "fresh" / ".ssh" / "known_hosts").read_text()


def test_a_changed_host_key_is_refused(start_target, ssh_server, ssh_url, tmp_path):
    target = start_target("named-user")
    other = tmp_path / "otherkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = "[127.0.0.1]:2222 " + " ".join(Path(f"{other}.pub").read_text().split()[:2]) + "\n"
    env = make_home(tmp_path / "moved", ssh_server, known_hosts=wrong)
    one_error_line(run_cli("inspect", "-H", ssh_url, target.name, env=env), ExitCode.ENGINE_UNREACHABLE,
                   "does not match", "ssh-keygen -R '[127.0.0.1]:2222'")


def test_a_key_the_server_refuses(ssh_server, ssh_env, tmp_path):
    one_error_line(run_cli("ps", "--runtime", "docker", "-H", "ssh://nobody@127.0.0.1:2222", env=ssh_env),
                   ExitCode.ENGINE_UNREACHABLE, "Permission denied (publickey)")


def test_a_bad_host_name(ssh_env):
    one_error_line(run_cli("attach", "-H", "ssh://no-such-host.invalid", "web", "--", "true", env=ssh_env),
                   ExitCode.ENGINE_UNREACHABLE, "Could not resolve hostname no-such-host.invalid")
    one_error_line(run_cli("attach", "-H", "ssh://127.0.0.1:1", "web", "--", "true", env=ssh_env),
                   ExitCode.ENGINE_UNREACHABLE, "Connection refused")


@pytest.mark.parametrize("url", ["ssh://-oProxyCommand=id", "ssh://host%20name", "ssh://a;b"])
def test_a_host_name_that_could_be_an_option_is_refused_before_ssh_runs(ssh_env, url):
    one_error_line(run_cli("attach", "-H", url, "web", "--", "true", env=ssh_env), ExitCode.INVALID_INPUT,
                   "invalid ssh host name")


# -- which engine: contexts, DOCKER_CONTEXT, DOCKER_HOST, -H --------------------------------

def test_contexts_are_followed_and_overridden_as_by_the_docker_cli(start_target, toolbox_image, ssh_env, ssh_url,
                                                                   tmp_path):
    target = start_target("named-user")
    link = tmp_path / "engine.sock"
    link.symlink_to("/var/run/docker.sock")  # the local engine under another path

    def docker(*args):
        result = subprocess.run(["docker", *args], capture_output=True, text=True,
                                env={**os.environ, **ssh_env})
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def inspect(*args, **env):
        result = run_cli("inspect", target.name, "-o", "json", *args, env={**ssh_env, **env})
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)
        return info["engine"], info["engine_source"], info["source"]

    docker("context", "create", "linked", "--docker", f"host=unix://{link}")
    docker("context", "create", "remote", "--docker", f"host={ssh_url}")
    docker("context", "use", "linked")
    assert inspect() == (f"unix://{link}", 'context "linked" (current context in ~/.docker/config.json)', "process")
    # DOCKER_CONTEXT beats `docker context use`; identity then comes from top (remote).
    assert inspect(DOCKER_CONTEXT="remote") == (ssh_url, 'context "remote" (DOCKER_CONTEXT)', "process-top")
    # --docker-context beats both, and beats DOCKER_HOST (as the docker CLI's --context).
    engine, why, _ = inspect("--docker-context", "remote", DOCKER_HOST="unix:///var/run/docker.sock")
    assert (engine, why) == (ssh_url, 'context "remote" (--docker-context)')
    # DOCKER_HOST beats DOCKER_CONTEXT and the current context; -H beats all of them.
    engine, why, _ = inspect(DOCKER_HOST="unix:///var/run/docker.sock", DOCKER_CONTEXT="remote")
    assert engine == "unix:///var/run/docker.sock" and why.startswith("DOCKER_HOST (")
    assert inspect("-H", ssh_url, DOCKER_HOST="unix:///nowhere.sock", DOCKER_CONTEXT="linked")[:2] == (
        ssh_url, "-H/--host")
    # The same rules as the docker CLI itself, checked against it.
    assert docker("context", "show") == "linked"
    # Attach follows the context too.
    docker("context", "use", "remote")
    result = run_cli("attach", target.name, "--", "sh", "-c", "exit 9", env=ssh_env)
    assert result.returncode == 9, result.stderr
    one_error_line(run_cli("attach", "-H", ssh_url, "--docker-context", "remote", target.name, "--", "true",
                           env=ssh_env), ExitCode.INVALID_INPUT, "conflicting options")
    one_error_line(run_cli("attach", target.name, "--", "true", env={**ssh_env, "DOCKER_CONTEXT": "absent"}),
                   ExitCode.INVALID_INPUT, 'Docker context "absent" (DOCKER_CONTEXT) does not exist')


def test_cp_both_ways_over_ssh(start_target, toolbox_image, ssh_env, ssh_url, tmp_path):
    target = start_target("named-user")
    secret = (Path(__file__).parents[2] / "fixtures" / "targets" / "home" / "secret.txt").read_bytes()
    result = run_cli("cp", "-H", ssh_url, f"{target.name}:/home/nonroot/secret.txt", str(tmp_path / "out.txt"),
                     env=ssh_env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_bytes() == secret  # mode 0600, the target user's own file

    payload = os.urandom(3 << 20)
    (tmp_path / "fix.bin").write_bytes(payload)
    result = run_cli("cp", "-H", ssh_url, "--write", str(tmp_path / "fix.bin"), f"{target.name}:/home/nonroot/",
                     env=ssh_env)
    assert result.returncode == 0, result.stderr
    back = run_cli("attach", "-H", ssh_url, target.name, "--", "sha256sum", "/proc/1/root/home/nonroot/fix.bin",
                   env=ssh_env)
    assert back.returncode == 0 and text(back)[0].split()[0] == hashlib.sha256(payload).hexdigest(), back.stderr


def test_port_forward_over_ssh_reaches_the_targets_localhost(start_target, toolbox_image, ssh_env, ssh_url,
                                                            docker_client):
    target = start_target("named-user")
    proc = subprocess.Popen([*CLI, "port-forward", "-H", ssh_url, target.name, ":8080"], env={**os.environ, **ssh_env},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode()  # Forwarding from 127.0.0.1:PORT -> 8080 (via ...)
        assert line.startswith("Forwarding from 127.0.0.1:"), (line, proc.stderr.read1().decode())
        # A remote engine cannot mount this machine's directory: the exec mux, not a local socket.
        assert "local socket" not in line, line
        local = int(line.split()[2].rsplit(":", 1)[1])
        for _ in range(3):  # one connection each, through one sidecar
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=30) as answer:
                assert answer.read() == b"hello from debugkit fixture (uid=65532 gid=65532)\n"
        assert len(sidecars_of(docker_client, target)) == 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == ExitCode.INTERRUPTED, proc.stderr.read().decode()
    wait_for(lambda: not sidecars_of(docker_client, target), timeout=DROP_BOUND_S, what="the relay sidecar to end")
