"""Exec credential plugins as client-go runs them, within bounds (runtimes/kubernetes/
execplugin.py): an interactive login on a real pseudo-terminal; stdout and stderr floods, a
plugin that never ends, and what a plugin leaves running, each ended with its process group;
doctor's 5 s. The API server is a loopback fake that records what arrived."""
from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from debugkit.runtimes.kubernetes import execplugin
from debugkit.runtimes.kubernetes.credentials import Credentials, ExecPluginError
from debugkit.runtimes.kubernetes.kubeconfig import ClusterAuth, ExecConfig
from tests.helpers import Pty, run_cli, text, wait_for
from tests.unit.test_kube_client import FakeAPI, pki, server_tls  # noqa: F401 - pki is a fixture

CREDENTIAL = '{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", ' \
             '"status": {"token": "tok-from-login"}}'


def plugin(tmp_path: Path, body: str, name: str = "plugin") -> str:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\nimport os, sys, json, time, subprocess\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is not running
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


def auth_for(command: str, mode: str = "IfAvailable", server: str = "https://127.0.0.1:1") -> ClusterAuth:
    return ClusterAuth(server=server, source="kc", user="u", cluster="c",
                       exec_config=ExecConfig(command=command, interactive_mode=mode, source="kc"))


def kubeconfig(tmp_path: Path, server: str, ca: str, command: str, mode: str = "IfAvailable") -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Config
        current-context: c
        clusters:
        - name: k
          cluster:
            server: {server}
            certificate-authority: {ca}
        users:
        - name: u
          user:
            exec:
              apiVersion: client.authentication.k8s.io/v1
              command: {command}
              interactiveMode: {mode}
        contexts:
        - name: c
          context:
            cluster: k
            user: u
        """))
    return str(path)


@pytest.fixture
def tls_api(pki):  # noqa: F811 - the fixture imported above
    server = FakeAPI(tls=server_tls(pki))
    yield server
    server.stop()


# -- an interactive login ------------------------------------------------------------------------------

DEVICE_CODE = textwrap.dedent("""\
    info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
    with open(os.environ["PLUGIN_RECORD"], "w") as fh:
        json.dump({"interactive": info["spec"]["interactive"], "stdin_tty": os.isatty(0)}, fh)
    sys.stderr.write("To sign in, open https://login.example/device and enter the code WXYZ-1234, "
                     "then press Enter here.\\n")
    sys.stderr.flush()
    line = sys.stdin.readline()
    if line.strip() != "":
        sys.exit(3)
    print(json.dumps(CREDENTIAL))
""")


def test_a_device_code_prompt_reaches_the_user_and_the_login_completes(tmp_path, tls_api, pki):  # noqa: F811
    record = tmp_path / "record.json"
    command = plugin(tmp_path, f"CREDENTIAL = {json.loads(CREDENTIAL)!r}\n" + DEVICE_CODE)
    config = kubeconfig(tmp_path, tls_api.url, str(pki / "ca.crt"), command)
    term = Pty(["inspect", "pod/web", "-n", "default", "--kubeconfig", config], controlling=True,
               env={"PLUGIN_RECORD": str(record), "HOME": str(tmp_path)})
    try:
        term.expect(b"enter the code WXYZ-1234, then press Enter here.", timeout=30)
        assert not tls_api.requests, "a request went out before the login was done"
        term.send("\r")
        term.expect(b"not found", timeout=30)
        code = term.proc.wait(timeout=30)
        assert code == 66, term.buffer.decode(errors="replace")
    finally:
        term.close()
    assert json.loads(record.read_text()) == {"interactive": True, "stdin_tty": True}
    (request,) = [r for r in tls_api.requests if r["path"].endswith("/pods/web")]
    assert request["headers"]["Authorization"] == "Bearer tok-from-login"


def test_without_a_terminal_the_plugin_gets_no_stdin_and_interactive_false(tmp_path):
    record = tmp_path / "record.json"
    command = plugin(tmp_path, f"CREDENTIAL = {json.loads(CREDENTIAL)!r}\n" + DEVICE_CODE)
    os.environ["PLUGIN_RECORD"] = str(record)
    try:
        creds = Credentials(auth_for(command), plugin_stderr=False)
        assert creds.authorization() == "Bearer tok-from-login"  # stdin is /dev/null: readline() is ""
    finally:
        del os.environ["PLUGIN_RECORD"]
    assert json.loads(record.read_text()) == {"interactive": False, "stdin_tty": False}


def test_always_without_a_terminal_is_refused_before_the_plugin_runs(tmp_path):
    marker = tmp_path / "ran"
    command = plugin(tmp_path, f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(ExecPluginError, match=r"needs an interactive terminal \(interactiveMode: Always\), but "
                                               "standard input is not a terminal"):
        Credentials(auth_for(command, mode="Always")).authorization()
    assert not marker.exists()


# -- bounds ---------------------------------------------------------------------------------------------

def _started(tmp_path: Path) -> int:
    return wait_for(lambda: (tmp_path / "child.pid").exists() and int((tmp_path / "child.pid").read_text() or 0),
                    timeout=10, what="the plugin's child")


LEAVES_A_CHILD = textwrap.dedent("""\
    child = subprocess.Popen(["sleep", "1000"])
    open({pidfile!r}, "w").write(str(child.pid))
""")


@pytest.mark.parametrize("flood, problem", [
    ("sys.stdout.buffer.write(b'x' * (8 << 20)); sys.stdout.flush(); time.sleep(1000)", "printed more than 1 MiB on stdout"),
    ("while True: sys.stderr.buffer.write(b'y' * 65536)", "printed more than 1 MiB on stderr"),
])
def test_a_flood_is_bounded_and_ends_the_whole_process_group(tmp_path, flood, problem):
    command = plugin(tmp_path, LEAVES_A_CHILD.format(pidfile=str(tmp_path / "child.pid")) + flood + "\n")
    started = time.monotonic()
    with pytest.raises(execplugin.PluginFailed, match=problem):
        execplugin.run([command], dict(os.environ), interactive_session=False, timeout=60, stderr=None)
    assert time.monotonic() - started < 20
    child = _started(tmp_path)
    wait_for(lambda: not alive(child), timeout=5, what="the plugin's child to be ended")


def test_a_plugin_that_never_ends_is_ended_with_its_children_at_the_time_limit(tmp_path):
    command = plugin(tmp_path, LEAVES_A_CHILD.format(pidfile=str(tmp_path / "child.pid")) + "time.sleep(1000)\n")
    started = time.monotonic()
    with pytest.raises(execplugin.PluginFailed, match="did not finish within 1 s"):
        execplugin.run([command], dict(os.environ), interactive_session=False, timeout=1, stderr=None)
    assert 1 <= time.monotonic() - started < 5
    wait_for(lambda: not alive(_started(tmp_path)), timeout=5, what="the plugin's child to be ended")


def test_what_a_finished_plugin_leaves_holding_its_pipes_is_ended_not_waited_for(tmp_path):
    command = plugin(tmp_path, LEAVES_A_CHILD.format(pidfile=str(tmp_path / "child.pid")) +
                     f"print(json.dumps({json.loads(CREDENTIAL)!r}))\n")
    started = time.monotonic()
    outcome = execplugin.run([command], dict(os.environ), interactive_session=False, timeout=60, stderr=None)
    assert outcome.returncode == 0 and b"tok-from-login" in outcome.stdout
    assert time.monotonic() - started < 10
    wait_for(lambda: not alive(_started(tmp_path)), timeout=5, what="the leftover child to be ended")


def test_stderr_is_shown_as_written_and_its_last_line_explains_a_failure(tmp_path):
    command = plugin(tmp_path, "sys.stderr.write('step 1\\nlogin refused by the identity provider\\n'); sys.exit(4)\n")
    shown = tmp_path / "stderr"
    with open(shown, "wb") as sink:
        creds = Credentials(auth_for(command), plugin_stderr=sink)
        with pytest.raises(ExecPluginError, match="exited with status 4: login refused by the identity provider"):
            creds.authorization()
    assert shown.read_bytes() == b"step 1\nlogin refused by the identity provider\n"


def test_doctor_keeps_its_5_s_with_a_hung_plugin_and_leaves_no_child(tmp_path, tls_api, pki):  # noqa: F811
    pidfile = tmp_path / "child.pid"
    command = plugin(tmp_path, LEAVES_A_CHILD.format(pidfile=str(pidfile)) + "time.sleep(1000)\n")
    config = kubeconfig(tmp_path, tls_api.url, str(pki / "ca.crt"), command)
    started = time.monotonic()
    result = run_cli("doctor", "--kubeconfig", config, "-o", "json", timeout=120,
                     env={"HOME": str(tmp_path), "DOCKER_HOST": "unix:///nonexistent.sock",
                          "CONTAINER_HOST": "unix:///nonexistent.sock"})
    elapsed = time.monotonic() - started
    out, errout = text(result)
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["kube-api"]["status"] == "fail", checks
    assert "did not finish within 5 s" in checks["kube-api"]["detail"], checks["kube-api"]
    assert elapsed < 30, f"doctor took {elapsed:.1f} s with a hung plugin"
    wait_for(lambda: not alive(int(pidfile.read_text())), timeout=5, what="the plugin's child to be ended")
