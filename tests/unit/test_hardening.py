"""Regression tests for the hostile-input review's findings that need no engine."""
from __future__ import annotations

import os
import stat
import time

import pytest

from debugkit.core import identity as ident
from debugkit.core.errors import InvalidInput
from debugkit.core.escape import safe, safe_data
from debugkit.core.identity import Identity
from debugkit.core.profiles import apply_profile
from debugkit.core.spec import base_spec
from debugkit.runbook import execute, report, variables
from debugkit.runbook import load as loader
from debugkit.runtimes.base import Plan, ResolvedTarget
from debugkit.runtimes.execution import ExecResult
from debugkit.runtimes.kubernetes.translate import ephemeral_container
from debugkit.session import audit
from debugkit.session.flow import privileges

TARGET = Identity(uid=65532, gid=65532, groups=(65532,), source="image-config")


def spec(profile="restricted"):
    s = base_spec(image="debugkit/toolbox:0.1.0", identity=TARGET, target_name="ns/pod/app", target_id="uid",
                  runtime="kubernetes", cli_pid=1, cli_host="h", local_user="me", session_id="abcd1234")
    return apply_profile(s, profile)


# -- 3. --custom may shape the container but not raise its privileges ---------------------------

@pytest.mark.parametrize("custom", [
    {"securityContext": {"privileged": True}},
    {"securityContext": {"runAsUser": 0}},
    {"securityContext": {"runAsNonRoot": False}},
    {"securityContext": {"allowPrivilegeEscalation": True}},
    {"securityContext": {"capabilities": {"add": ["SYS_ADMIN"], "drop": ["ALL"]}}},
    {"securityContext": {"seccompProfile": {"type": "Unconfined"}}},
])
def test_custom_cannot_raise_privileges(custom):
    with pytest.raises(InvalidInput, match="--custom may not change securityContext"):
        ephemeral_container(spec(), target_container="app", custom=custom)


def test_custom_may_repeat_what_the_profile_sets_and_shape_the_rest():
    c = ephemeral_container(spec(), target_container="app", custom={
        "securityContext": {"runAsUser": 65532, "readOnlyRootFilesystem": False}, "env": [{"name": "A", "value": "1"}]})
    assert c["securityContext"]["runAsUser"] == 65532 and c["securityContext"]["readOnlyRootFilesystem"] is False


def test_audit_records_the_merged_security_context():
    container = ephemeral_container(spec(), target_container="app",
                                    custom={"securityContext": {"readOnlyRootFilesystem": False}})
    plan = Plan(runtime="kubernetes", mode="command", target=ResolvedTarget("kubernetes", "ns/p/app", "u", "img"),
                spec=spec(), request=container)
    recorded = privileges(plan)
    assert recorded["security_context"] == container["securityContext"]
    assert recorded["security_context"]["readOnlyRootFilesystem"] is False
    assert privileges(Plan(runtime="kubernetes", mode="command", target=plan.target, spec=spec("ptrace"),
                           request={}))["cap_add"] == ["SYS_PTRACE"]


# -- 4. variables never reach a shell as code --------------------------------------------------

@pytest.mark.parametrize("argv,script_at", [
    (("sh", "-c", "echo {{ PORT }}"), 2),
    (("/bin/bash", "-euc", "echo {{ PORT }}"), 2),
    (("busybox", "sh", "-c", "echo {{ PORT }}"), 3),
    (("timeout", "5", "sh", "-o", "pipefail", "-c", "echo {{ PORT }}", "x", "{{ PORT }}"), 6),
    (("printf", "%s", "{{ PORT }}"), None),
    (("sh", "script.sh", "{{ PORT }}"), None),
])
def test_the_script_of_a_shell_is_found(argv, script_at):
    assert variables.shell_script_index(argv) == script_at


def test_list_form_shell_scripts_get_quoted_values_and_plain_args_do_not():
    book = loader.load_text("name: x\nvars: {PORT: '1'}\nsteps:\n"
                            "  - {name: a, run: [sh, -c, 'echo {{ PORT }}', sh, '{{ PORT }}']}\n"
                            "  - {name: b, run: [printf, '%s', '{{ PORT }}']}\n", "x.yaml")
    hostile = "$(touch /tmp/pwned)"
    shell, plain = (variables.command_for(step, {"PORT": hostile}) for step in book.steps)
    assert shell == ["sh", "-c", "echo '$(touch /tmp/pwned)'", "sh", hostile]
    assert plain == ["printf", "%s", hostile]


def test_a_quoted_reference_in_a_list_form_script_is_refused():
    with pytest.raises(Exception, match=r"x.yaml:4: step 1 \('a'\): \{\{ PORT \}\} is inside quotes in the shell"):
        loader.load_text("name: x\nvars: {PORT: '1'}\nsteps:\n  - {name: a, run: [sh, -c, 'echo \"{{ PORT }}\"']}\n",
                         "x.yaml")


# -- 6. reports honour the umask and keep an existing file's mode ------------------------------

def test_a_new_report_honours_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        report.write_atomically(str(tmp_path / "r.md"), "secret")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "r.md").st_mode) == 0o600


def test_an_existing_report_keeps_its_mode(tmp_path):
    path = tmp_path / "r.md"
    path.write_text("old")
    os.chmod(path, 0o600)
    old = os.umask(0o022)
    try:
        report.write_atomically(str(path), "new")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and path.read_text() == "new"


# -- 7. text from a target is escaped ------------------------------------------------------------

def test_escape_sequences_become_visible():
    assert safe("\x1b[2J\x1b]0;pwned\x07bob") == "\\x1b[2J\\x1b]0;pwned\\x07bob"
    assert safe("ok\u202etxt.exe") == "ok\\u202etxt.exe"
    assert safe("naïve café") == "naïve café"
    assert safe_data({"user": ["\x1b[31mred"], "n": 1}) == {"user": ["\\x1b[31mred"], "n": 1}


# -- 10. a damaged audit log never stops audit or gc ----------------------------------------------

def test_malformed_audit_lines_are_skipped_and_counted(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv("DEBUGKIT_AUDIT_LOG", str(path))
    audit.append({"event": "start", "session": "s1", "target": "web"})
    with open(path, "a") as fh:
        fh.write('[1, 2]\n{"event": "start", "session": "s2"}\n{"event": "end", "session": "s1", "ts": "yesterday"}\n'
                 'not json\n\n{"event": "end", "session": 3, "ts": "2026-01-01T00:00:00+00:00"}\n')
    audit.append({"event": "end", "session": "s1", "exit_code": 0})
    log = audit.read()
    assert log.skipped == 5
    (s1,) = audit.sessions(log)
    assert (s1["session"], s1["exit_code"], s1["target"]) == ("s1", 0, "web")


# -- 11. silent surprises ------------------------------------------------------------------------------

def test_non_ascii_digits_in_a_passwd_are_not_ids():
    passwd = ident.parse_passwd("odd:x:\u00b2:1::/:/bin/sh\nok:x:7:7::/:/bin/sh\n")
    assert list(passwd) == ["ok"]
    with pytest.raises(ident.IdentityUnresolved):
        ident.resolve_configured_user("\u00b2", passwd=passwd, groups={})


# -- 12. a pathological expectation cannot stall the CLI -----------------------------------------------

def test_catastrophic_backtracking_is_linear_with_re2():
    book = loader.load_text("name: x\nsteps:\n  - name: a\n    run: 'true'\n    expect:\n"
                            "      stdout_matches: '^(a+)+$'\n", "x.yaml")
    started = time.monotonic()
    ok, reason = execute.verdict(book.steps[0], ExecResult(("true",), 0, b"a" * 31 + b"b", b"", 0.1))
    assert time.monotonic() - started < 1.0
    assert not ok and "does not match" in reason


# -- issue 27, 3.1: what a helper says is hostile too: a runbook's output is shown, not obeyed --

def test_a_runbook_steps_output_cannot_drive_the_terminal():
    from debugkit.runbook import render
    from debugkit.runbook.execute import StepResult

    result = StepResult(name="x", argv=["sh", "-c", "true"], status="failed", reason="stdout matches /a/: '\x1b]0;t'",
                        exit_code=1, stdout="ok\x1b[2J\x1b]0;owned\x07\r\n\tindented\n", stderr="\x9b31m")
    text = render.step_text(result, 1)
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "ok\\x1b[2J\\x1b]0;owned\\x07" in text and "\tindented" in text and "\\x9b31m" in text
    md = render.render_markdown(execute.Report(loader.load_text("name: x\nsteps:\n  - name: a\n    run: 'true'\n", "x"),
                                               {}, steps=[result]))
    assert "\x1b" not in md and "\x07" not in md and "\r" not in md


# -- issue 27, 3.11: every command exits 141 when its reader is gone --------------------------

@pytest.mark.parametrize("argv", [["ps"], ["runbook", "list"], ["config", "view"], ["--help"],
                                  ["attach", "--help"], ["--version"], ["completion", "bash"], [], ["runbook"],
                                  ["audit"]], ids=lambda a: " ".join(a) or "no arguments")
def test_a_closed_pipe_is_141_for_every_command(argv, tmp_path):
    """The pipe's reader is gone before debugkit writes (as after `| head -0`): 141,
    quietly, where click used to exit 1."""
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)
    nowhere = "unix:///nonexistent/engine.sock"  # ps warns about each runtime, and prints its table
    env = {**os.environ, "DOCKER_HOST": nowhere, "CONTAINER_HOST": nowhere, "KUBECONFIG": str(tmp_path / "no-kube"),
           "DEBUGKIT_AUDIT_LOG": str(tmp_path / "a"), "XDG_CONFIG_HOME": str(tmp_path)}
    (tmp_path / "a").write_text('{"event": "start", "session": "s1", "ts": "2026-01-01T00:00:00Z"}\n')
    try:
        result = subprocess.run([sys.executable, "-m", "debugkit", *argv], stdout=write_end, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=env, timeout=60)
    finally:
        os.close(write_end)
    stderr = result.stderr.decode()
    assert result.returncode == 141, stderr
    assert "Traceback" not in stderr and "rror" not in stderr.replace("docker", ""), stderr


# -- issue 27, 3.2, 3.5, 3.16: bad input refused before any engine is contacted ----------------
# (id, argv with {D} = the case's directory; files to make there; exit code). DOCKER_HOST
# points nowhere: a case that reached for an engine would exit 69, not its own code.
NO_ENGINE_CASES = [
    ("address empty", ["port-forward", "web", "8080", "--address", ""], {}, 64),
    ("address a name", ["port-forward", "web", "8080", "--address", "example.com"], {}, 64),
    ("address with an escape", ["port-forward", "web", "8080", "--address", "\x1b[2J"], {}, 64),
    ("cp out onto /dev/null", ["cp", "web:/etc/hosts", "/dev/null"], {}, 87),
    ("cp out onto /dev/null, --force", ["cp", "--force", "web:/etc/hosts", "/dev/null"], {}, 87),
    ("cp out onto a fifo, --force", ["cp", "--force", "web:/etc/hosts", "{D}/fifo"], {"fifo": "fifo"}, 87),
    ("cp out into a directory's fifo", ["cp", "--force", "web:/etc/fifo", "{D}"], {"fifo": "fifo"}, 87),
    ("cp in /dev/zero", ["cp", "--write", "/dev/zero", "web:/tmp/x"], {}, 87),
    ("cp in a fifo", ["cp", "--write", "{D}/fifo", "web:/tmp/x"], {"fifo": "fifo"}, 87),
    ("cp in a missing file", ["cp", "--write", "{D}/absent", "web:/tmp/x"], {}, 81),
    ("cp out to a file with a slash", ["cp", "web:/etc/hosts", "{D}/flink/"], {"file": "x", "flink": "->file"}, 84),
    ("cp in a file with a slash", ["cp", "--write", "{D}/flink/", "web:/tmp/"], {"file": "x", "flink": "->file"}, 84),
]


@pytest.mark.parametrize("case", NO_ENGINE_CASES, ids=[c[0] for c in NO_ENGINE_CASES])
def test_bad_transfer_input_is_one_line_and_its_code(case, tmp_path):
    import subprocess
    import sys

    _name, argv, files, expected = case
    work = tmp_path / "case"
    work.mkdir()
    for name, content in files.items():
        if content == "fifo":
            os.mkfifo(work / name)
        elif content.startswith("->"):
            (work / name).symlink_to(content[2:])
        else:
            (work / name).write_text(content)
    before = sorted((p.name, p.lstat().st_mode, p.lstat().st_mtime_ns) for p in work.iterdir())
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock", "TMPDIR": str(private_tmp),
           "DEBUGKIT_AUDIT_LOG": str(tmp_path / "audit.jsonl")}
    result = subprocess.run([sys.executable, "-m", "debugkit", *[a.replace("{D}", str(work)) for a in argv]],
                            capture_output=True, stdin=subprocess.DEVNULL, env=env, cwd=work, timeout=60)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == expected, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("debugkit: error: ") and "\x1b" not in stderr, stderr
    assert result.stdout == b""
    assert sorted((p.name, p.lstat().st_mode, p.lstat().st_mtime_ns) for p in work.iterdir()) == before
    assert list(private_tmp.iterdir()) == []
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
