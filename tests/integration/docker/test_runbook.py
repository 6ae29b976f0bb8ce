"""Runbooks end-to-end: the real CLI, one real sidecar per runbook, real distroless targets.

Generic behaviour (pass, allowed and real failures, timeouts, inert variables) uses plain
sh/coreutils steps; the bundled runbooks are run with the toolbox image they are written for.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import labels_for_test, leaked_sidecars, run_cli, text, wait_for

pytestmark = pytest.mark.docker


def write(tmp_path, body: str, name: str = "rb.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def sidecar_events(client, target: str, since: float) -> list[str]:
    """The engine's container events for sidecars of `target` since `since` (create, start, exec_create...)."""
    until = time.time() + 1
    events = client.events(since=int(since), until=int(until) + 1, decode=True,
                           filters={"type": "container", "label": [f"io.debugkit.target={target}"]})
    return [e.get("Action") or e.get("status", "") for e in events]


def run_json(*args, **kwargs):
    result = run_cli(*args, "-o", "json", timeout=180, **kwargs)
    out, errout = text(result)
    try:
        return result, json.loads(out)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON report (exit {result.returncode}): {out!r} {errout!r}") from None


PASSING = """\
    name: passing
    description: three plain checks
    vars:
      GREETING: hello
    steps:
      - name: identity
        run: grep -E '^Uid:' /proc/self/status
        expect:
          stdout_matches: '^Uid:\\s+65532\\s'
      - name: the target is PID 1
        run: [cat, /proc/1/cmdline]
        expect:
          stdout_matches: '^/server'
      - name: greeting
        run: echo {{ GREETING }} from $(cat /proc/1/comm)
        expect:
          stdout_matches: '^hello world from server$'
          stdout_not_matches: 'error'
    """


def test_a_passing_runbook_runs_every_step_in_one_sidecar(start_target, toolbox_image, docker_client, tmp_path):
    target = start_target("named-user")
    path = write(tmp_path, PASSING)
    since = time.time()
    result, report = run_json("runbook", "run", path, target.name, "--var", "GREETING=hello world",
                               "--report", str(tmp_path / "out.md"))
    assert result.returncode == 0, report
    assert report["passed"] is True and report["status"] == "passed"
    assert report["totals"] == {"steps": 3, "passed": 3, "failed": 0, "failed_allowed": 0, "skipped": 0}
    assert report["target"] == target.name and report["runtime"] == "docker"
    assert report["identity"] == {"uid": 65532, "gid": 65532, "source": "process"}
    assert report["image"] == toolbox_image and report["profile"] == "restricted"
    steps = report["steps"]
    assert [s["status"] for s in steps] == ["passed"] * 3
    assert steps[2]["stdout"] == "hello world from server\n"
    assert steps[2]["argv"] == ["sh", "-c", "echo 'hello world' from $(cat /proc/1/comm)"]
    assert all(s["exit_code"] == 0 and 0 < s["duration"] < 30 for s in steps)

    # One sidecar for the whole runbook: one create, one start, and no exec at all: on a
    # local engine the sidecar's main process is debugkit-helper steps, on our attach.
    actions = wait_for(lambda: (lambda a: a if a.count("destroy") == 1 else None)(
        sidecar_events(docker_client, target.name, since)), timeout=30, what="the sidecar's events")
    assert actions.count("create") == 1 and actions.count("start") == 1, actions
    assert sum(a.startswith("exec_create") for a in actions) == 0, actions

    markdown = (tmp_path / "out.md").read_text()
    assert markdown.startswith("# Runbook `passing`: PASSED")
    assert "| 3 | greeting | PASS | 0 |" in markdown
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


FAILING = """\
    name: failing
    steps:
      - name: fine
        run: 'true'
      - name: allowed to fail
        run: echo partial; exit 3
        continue_on_failure: true
      - name: wrong output
        run: echo status=500
        expect:
          stdout_matches: 'status=2\\d\\d'
      - name: never reached
        run: echo SHOULD-NOT-RUN
    """


def test_allowed_failure_passes_and_a_real_failure_stops_with_exit_1(start_target, toolbox_image, tmp_path):
    target = start_target("named-user")
    path = write(tmp_path, FAILING)
    report_path = tmp_path / "report.json"
    result, report = run_json("runbook", "run", path, target.name, "--report", str(report_path))
    assert result.returncode == ExitCode.ERROR == 1
    assert report["passed"] is False
    assert [s["status"] for s in report["steps"]] == ["passed", "failed", "failed", "skipped"]
    allowed, wrong, never = report["steps"][1:]
    assert (allowed["exit_code"], allowed["continue_on_failure"], allowed["stdout"]) == (3, True, "partial\n")
    assert allowed["reason"] == "exit code 3, expected 0"
    assert wrong["reason"] == "stdout does not match /status=2\\d\\d/" and wrong["exit_code"] == 0
    assert never["reason"] == "not run: step 'wrong output' failed" and never["stdout"] == ""
    assert report["totals"] == {"steps": 4, "passed": 1, "failed": 1, "failed_allowed": 1, "skipped": 1}
    assert json.loads(report_path.read_text()) == report

    # Without the real failure, the allowed one alone still passes (exit 0), in text mode.
    only_allowed = write(tmp_path, FAILING.split("      - name: wrong output")[0], "allowed.yaml")
    result = run_cli("runbook", "run", only_allowed, target.name, timeout=180)
    out, errout = text(result)
    assert result.returncode == 0, out + errout
    assert "[2] FAIL (allowed) allowed to fail" in out
    assert out.rstrip().splitlines()[-1].startswith("PASSED: 1 passed, 0 failed, 1 failed (allowed) of 2 steps")


def test_a_step_that_hangs_is_killed_at_its_timeout(start_target, toolbox_image, tmp_path):
    target = start_target("named-user")
    path = write(tmp_path, """\
        name: hangs
        steps:
          - name: sleeps too long
            run: echo started; sleep 120
            timeout: 2
          - name: after
            run: 'true'
        """)
    started = time.monotonic()
    result, report = run_json("runbook", "run", path, target.name)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    hung = report["steps"][0]
    assert hung["timed_out"] is True and hung["exit_code"] is None and hung["passed"] is False
    assert hung["reason"] == "timed out after 2s"
    assert hung["stdout"] == "started\n"
    assert 1.5 <= hung["duration"] < 10, hung
    assert report["steps"][1]["status"] == "skipped"
    assert elapsed < 60


def test_step_output_is_capped(start_target, toolbox_image, tmp_path):
    target = start_target("named-user")
    path = write(tmp_path, """\
        name: loud
        steps:
          - name: 200 kB on each stream
            run: head -c 200000 /dev/zero | tr '\\0' a; head -c 200000 /dev/zero | tr '\\0' b >&2
            expect:
              stdout_matches: '^a+$'
        """)
    result, report = run_json("runbook", "run", path, target.name)
    assert result.returncode == 0, report
    step = report["steps"][0]
    assert step["output_truncated"] is True
    assert step["stdout"] == "a" * 65536 and step["stderr"] == "b" * 65536


LEFTOVERS = """\
    name: leftovers
    steps:
      - name: leaves a process behind
        run: sleep 31337 >/dev/null 2>&1 & echo started
      - name: leaves one and times out
        run: sleep 31338 >/dev/null 2>&1 & (trap '' TERM; exec sleep 31339) & echo started; sleep 120
        timeout: 2
        continue_on_failure: true
      - name: nothing of them is left
        run: ps -eo args= | grep -cE '^sleep 3133[789]$' || true
        expect:
          stdout_matches: '^0$'
      - name: 64 MiB of output
        run: head -c 67108864 /dev/zero | tr '\\0' a; echo done >&2
        expect:
          stdout_matches: '^a+$'
      - name: still answers after the flood
        run: echo alive
        expect:
          stdout_matches: '^alive$'
    """


def test_batched_steps_are_isolated_timed_out_and_capped(start_target, toolbox_image, docker_client, tmp_path):
    """All the steps run in the sidecar's main process, debugkit-helper steps: each step's leftovers
    (one that ignores SIGTERM too) are ended before the next step starts, a timed-out step
    leaves the batch working, and a step's flood of output is cut at the cap without
    holding up the step (the rest is read and dropped in the sidecar)."""
    target = start_target("named-user")
    path = write(tmp_path, LEFTOVERS)
    since = time.time()
    result, report = run_json("runbook", "run", path, target.name)
    assert result.returncode == 0, report
    left, timed_out, nothing_left, flood, alive = report["steps"]
    assert left["status"] == "passed" and left["stdout"] == "started\n"
    assert timed_out["timed_out"] is True and timed_out["exit_code"] is None
    assert timed_out["status"] == "failed" and timed_out["stdout"] == "started\n"
    assert 1.5 <= timed_out["duration"] < 10, timed_out
    assert nothing_left["status"] == "passed", nothing_left
    assert flood["status"] == "passed" and flood["output_truncated"] is True
    assert flood["stdout"] == "a" * 65536 and flood["stderr"] == "done\n"
    assert alive["status"] == "passed"
    actions = wait_for(lambda: (lambda a: a if a.count("destroy") == 1 else None)(
        sidecar_events(docker_client, target.name, since)), timeout=30, what="the sidecar's events")
    assert sum(a.startswith("exec_create") for a in actions) == 0, actions


def test_sigterm_during_a_step_removes_the_sidecar_and_exits_143(start_target, toolbox_image, docker_client,
                                                                 tmp_path):
    target = start_target("named-user")
    path = write(tmp_path, """\
        name: long
        steps:
          - name: waits
            run: sleep 120
            timeout: 300
        """)
    proc = subprocess.Popen([sys.executable, "-m", "debugkit", "runbook", "run", path, target.name],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ})
    try:
        sidecar = wait_for(lambda: leaked_sidecars(docker_client, **{"io.debugkit.target-id": target.id}),
                           timeout=60, what="the runbook's sidecar")[0]
        wait_for(lambda: b"sleep 120" in subprocess.run(["docker", "top", sidecar.id], capture_output=True).stdout,
                 timeout=30, what="the step to run")
        proc.send_signal(signal.SIGTERM)
        out, errout = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, errout
    assert b"SIGTERM" in errout
    wait_for(lambda: not leaked_sidecars(docker_client, **{"io.debugkit.target-id": target.id}),
             timeout=30, what="the sidecar to be removed")


EVIL = "x'; touch /tmp/pwned; echo INJECTED \"$(touch /tmp/pwned2)\" `touch /tmp/pwned3` $HOME && | > * \\ 'y"


def test_variables_with_shell_metacharacters_stay_inert(start_target, toolbox_image, tmp_path):
    target = start_target("named-user")
    path = write(tmp_path, """\
        name: inert
        vars:
          V: harmless
        steps:
          - name: in a shell string
            run: printf '%s\\n' {{ V }}
          - name: in argv
            run: [printf, '%s\\n', '{{ V }}']
          - name: in argv given to sh
            run: [sh, -c, 'printf "%s\\n" "$1"', sh, '{{V}}']
          - name: nothing was executed
            run: ls -A /tmp; echo END
            expect:
              stdout_matches: '^END$'
              stdout_not_matches: 'pwned'
        """)
    result, report = run_json("runbook", "run", path, target.name, "--var", f"V={EVIL}")
    assert result.returncode == 0, report
    steps = report["steps"]
    assert [s["stdout"] for s in steps[:3]] == [EVIL + "\n"] * 3
    assert "INJECTED" not in steps[3]["stdout"] and report["passed"] is True
    assert report["vars"] == {"V": EVIL}


# Each malformed runbook and its exact error. DOCKER_HOST points nowhere: exit 65 (not 69)
# proves the runbook is refused before debugkit talks to any engine.
MALFORMED = {
    "unknown key": ("name: x\nsteps:\n  - name: a\n    run: 'true'\n    timout: 5\n",
                    "{f}:5: unknown key 'timout' in step 1 ('a') "
                    "(expected one of: name, run, timeout, expect, continue_on_failure)"),
    "bad YAML syntax": ("name: x\nsteps:\n  - name: a\n    run: [unclosed\n",
                        "{f}:5: invalid YAML: expected ',' or ']', but got '<stream end>' "
                        "(while parsing a flow sequence started on line 4)"),
    "alias bomb": ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
                   "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                   "d: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\nname: x\nsteps: [{name: a, run: 'true'}]\n",
                   "{f}:1: anchors and aliases are not allowed (found &a)"),
    "file too large": ("name: x\nsteps: [{name: a, run: 'true'}]\n# " + "x" * 300_000 + "\n",
                       "{f}: the file is 300043 bytes; a runbook may be at most 262144 bytes"),
    "missing steps": ("name: x\ndescription: nothing to do\n",
                      "{f}:1: missing required key 'steps' at the top level"),
    "bad regex": ("name: x\nsteps:\n  - name: a\n    run: 'true'\n    expect:\n      stdout_matches: '(open'\n",
                  "{f}:6: step 1 ('a'): expect.stdout_matches is not a valid regular expression: "
                  "missing ): (open (RE2 syntax: no backreferences or lookaround)"),
    "bad timeout": ("name: x\nsteps:\n  - name: a\n    run: 'true'\n    timeout: 0\n",
                    "{f}:5: step 1 ('a'): timeout must be a number of seconds greater than 0 and at most 3600, "
                    "not '0'"),
    "undeclared --var": ("name: x\nvars:\n  PORT: 8080\nsteps: [{name: a, run: 'true'}]\n",
                         "{f}:2: --var HOST is not declared in the runbook's vars (declared: PORT)"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_runbooks_exit_65_with_their_exact_error_and_start_nothing(case, start_target, docker_client,
                                                                            tmp_path):
    body, expected = MALFORMED[case]
    path = write(tmp_path, "", f"{case.replace(' ', '-').replace('--', '')}.yaml")
    (tmp_path / path).write_text(body)
    if case == "file too large":
        assert (tmp_path / path).stat().st_size == 300043
    message = expected.format(f=path)
    target = start_target("named-user")
    since = time.time()
    for env in ({"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, {}):
        result = run_cli("runbook", "run", path, target.name, "--var", "HOST=db", env=env, timeout=60)
        out, errout = text(result)
        assert result.returncode == ExitCode.FILE_INVALID == 65, errout
        assert errout == f"debugkit: error: {message}\n"
        assert out == ""
    if case != "undeclared --var":
        validated = run_cli("runbook", "validate", path, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
        assert (validated.returncode, text(validated)[1]) == (65, f"debugkit: error: {message}\n")
    assert sidecar_events(docker_client, target.name, since) == []  # no sidecar was ever created


def test_validate_and_list(tmp_path):
    path = write(tmp_path, PASSING)
    result = run_cli("runbook", "validate", path, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    out, errout = text(result)
    assert result.returncode == 0, errout
    assert out.splitlines()[0] == f"{path}: valid runbook 'passing', 3 steps"
    listed = run_cli("runbook", "list")
    out = text(listed)[0]
    assert listed.returncode == 0
    for name in ("http-health", "dns", "tls", "processes", "sockets", "node"):
        assert any(line.startswith(name + " ") for line in out.splitlines()), out
    data = json.loads(run_cli("runbook", "list", "-o", "json").stdout)
    assert {d["name"] for d in data} == {"http-health", "dns", "tls", "processes", "sockets", "node"}


# -- the bundled runbooks, with the toolbox, against a distroless target ---------------------------

def test_bundled_http_health(start_target, toolbox_image):
    target = start_target("named-user")
    result, report = run_json("runbook", "run", "http-health", target.name, "--var", "URL_PATH=/healthz",
                              "--image", toolbox_image)
    assert result.returncode == 0, report
    status = report["steps"][1]["stdout"]
    assert "GET http://127.0.0.1:8080/healthz" in status
    assert "status=200 connect=" in status and " total=" in status
    assert "HTTP/1.1 200 OK" in report["steps"][2]["stdout"]

    result, report = run_json("runbook", "run", "http-health", target.name, "--var", "EXPECT_STATUS=204",
                              "--image", toolbox_image)
    assert result.returncode == 1
    assert "expected status 204, got 200" in report["steps"][1]["stdout"]

    result, report = run_json("runbook", "run", "http-health", target.name, "--var", "PORT=9",
                              "--image", toolbox_image)
    assert result.returncode == 1 and report["steps"][0]["status"] == "failed"


def test_bundled_processes_and_sockets(start_target, toolbox_image):
    target = start_target("named-user")
    result, report = run_json("runbook", "run", "processes", target.name, "--image", toolbox_image)
    assert result.returncode == 0, report
    tree, status, limits, files, zombies = (s["stdout"] for s in report["steps"])
    assert "/server" in tree
    assert zombies.startswith("zombies: 0\n"), zombies
    assert "Name:\tserver" in status and "Uid:\t65532" in status
    assert "Max open files" in limits
    assert "open file descriptors: " in files and "socket" in files

    result, report = run_json("runbook", "run", "sockets", target.name, "--image", toolbox_image)
    assert result.returncode == 0, report
    assert "8080" in report["steps"][0]["stdout"] and "LISTEN" in report["steps"][0]["stdout"]


def test_bundled_dns(start_target, toolbox_image):
    target = start_target("named-user")
    result, report = run_json("runbook", "run", "dns", target.name, "--var", "NAMES=localhost",
                              "--image", toolbox_image)
    assert result.returncode == 0, report
    by_name = {s["name"]: s for s in report["steps"]}
    assert "nameserver" in by_name["resolv.conf of the target"]["stdout"]
    assert "localhost" in by_name["hosts file of the target"]["stdout"]
    assert by_name["names resolve"]["stdout"].startswith("OK   localhost -> 127.0.0.1")

    result, report = run_json("runbook", "run", "dns", target.name, "--var", "NAMES=localhost,nothing.invalid",
                              "--image", toolbox_image)
    assert result.returncode == 1
    assert "FAIL nothing.invalid does not resolve" in report["steps"][-1]["stdout"]

    missing = run_cli("runbook", "run", "dns", target.name)
    assert missing.returncode == 65
    assert text(missing)[1] == "debugkit: error: dns:7: variable NAMES has no default: pass --var NAMES=VALUE\n"


@pytest.fixture
def tls_dependency(docker_client, toolbox_image):
    """A TLS server on the default bridge with a self-signed certificate valid for 10 days."""
    name = f"dk-test-tls-{uuid.uuid4().hex[:8]}"
    script = ("cd /tmp && openssl req -x509 -newkey rsa:2048 -nodes -keyout k -out c -days 10 "
              "-subj /CN=dep.test -addext subjectAltName=DNS:dep.test 2>/dev/null && echo READY && "
              "exec openssl s_server -accept 8443 -cert c -key k -www -quiet")
    ctr = docker_client.containers.run(toolbox_image, ["sh", "-c", script], name=name, detach=True,
                                       labels=labels_for_test())
    try:
        wait_for(lambda: b"READY" in ctr.logs(), timeout=60, what="the TLS server")
        ctr.reload()
        # The per-network address: API 1.52 (Docker 29) no longer repeats it at the top level.
        yield ctr.attrs["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    finally:
        ctr.remove(force=True)


def test_bundled_tls(start_target, toolbox_image, tls_dependency):
    target = start_target("named-user")
    common = ("runbook", "run", "tls", target.name, "--image", toolbox_image, "--var", f"HOST={tls_dependency}",
              "--var", "PORT=8443", "--var", "SERVERNAME=dep.test")
    # Wait until the server accepts connections (its key is generated first).
    result, report = wait_for(lambda: (lambda r: r if r[1]["steps"][0]["passed"] else None)(run_json(*common)),
                              timeout=60, what="the TLS handshake")
    handshake, cert, expiry, verify = report["steps"]
    assert "CONNECTION ESTABLISHED" in handshake["stdout"] and "Protocol version: TLSv1" in handshake["stdout"]
    assert "subject=CN = dep.test" in cert["stdout"] and "issuer=CN = dep.test" in cert["stdout"]
    assert "DNS:dep.test" in cert["stdout"]
    assert any(line in cert["stdout"].splitlines() for line in ("days_to_expiry=9", "days_to_expiry=10"))
    # 10 days left is within the default WARN_DAYS=14: the runbook fails there.
    assert result.returncode == 1 and expiry["status"] == "failed" and verify["status"] == "skipped"

    result, report = run_json(*common, "--var", "WARN_DAYS=5")
    assert result.returncode == 1
    assert [s["status"] for s in report["steps"]] == ["passed", "passed", "passed", "failed"]
    assert "self-signed certificate" in report["steps"][3]["stdout"]


def test_steps_over_one_exec_as_on_a_remote_engine(start_target, toolbox_image, docker_client):
    """Where the sidecar's attach carries a heartbeat (remote engines), the steps run over
    one exec of debugkit-helper steps in the keep-alive sidecar: the same isolation,
    timeouts and caps, and one exec for all of them."""
    from debugkit.core.options import Connection, Flags
    from debugkit.session import flow

    target = start_target("named-user")
    since = time.time()
    flags = Flags(target=target.name, connection=Connection())
    with flow.exec_session(flags, mode="cp") as session:   # open_exec: the keep-alive sidecar, not open_steps
        first = session.exec(["sh", "-c", "sleep 31340 >/dev/null 2>&1 & echo started"], timeout=10)
        hung = session.exec(["sh", "-c", "echo before; sleep 120"], timeout=1)
        left = session.exec(["sh", "-c", "ps -eo args= | grep -cx 'sleep 31340' || true"], timeout=10)
        flood = session.exec(["sh", "-c", "head -c 33554432 /dev/zero"], timeout=30, max_output=1000)
        missing = session.exec(["no-such-command-here"], timeout=10)
    assert (first.exit_code, first.stdout) == (0, b"started\n")
    assert hung.timed_out and hung.exit_code is None and hung.stdout == b"before\n"
    assert left.stdout == b"0\n"
    assert flood.exit_code == 0 and flood.truncated and flood.stdout == b"\0" * 1000
    assert missing.exit_code == 127
    actions = wait_for(lambda: (lambda a: a if a.count("destroy") == 1 else None)(
        sidecar_events(docker_client, target.name, since)), timeout=30, what="the sidecar's events")
    assert sum(a.startswith("exec_create") for a in actions) == 1, actions
