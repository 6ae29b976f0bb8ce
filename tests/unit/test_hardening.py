"""Regression tests for the hostile-input review's findings that need no engine."""
from __future__ import annotations

import os
import stat
import time

import pytest

from debugkit.core import identity as ident
from debugkit.core import userdb
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


@pytest.mark.parametrize("custom,field", [
    ({"command": ["sleep", "3600"]}, "'command'"),
    ({"args": ["3600"]}, "'args'"),
    ({"image": "busybox"}, "'image'"),
    ({"name": "debugkit-other"}, "'name'"),
    ({"lifecycle": {"preStop": {"exec": {"command": ["sleep", "3600"]}}}}, "'lifecycle'"),
    ({"stdin": True}, "'stdin'"),
    ({"stdinOnce": False}, "'stdinOnce'"),
    ({"env": [{"name": "DEBUGKIT_KEEP_ALIVE", "value": "99999"}]}, "DEBUGKIT_KEEP_ALIVE"),
    ({"env": [{"name": "DEBUGKIT_REUSE", "value": "x"}]}, "DEBUGKIT_REUSE"),
])
def test_custom_cannot_change_what_the_debug_container_runs_or_how_long_it_lives(custom, field):
    # Issue 27, item 18: a patch with command: [sleep, "3600"] ran despite --keep-alive 0.
    with pytest.raises(InvalidInput, match=f"--custom may not set .*{field}"):
        ephemeral_container(spec(), target_container="app", custom=custom)


def test_custom_env_is_added_to_debugkits_own_not_put_in_their_place():
    c = ephemeral_container(spec(), target_container="app", custom={"env": [{"name": "A", "value": "1"}]})
    names = [e["name"] for e in c["env"]]
    assert names[-1] == "A" and "DEBUGKIT_SESSION" in names


def test_custom_may_repeat_what_the_profile_sets_and_shape_the_rest():
    c = ephemeral_container(spec(), target_container="app", custom={
        "securityContext": {"runAsUser": 65532, "readOnlyRootFilesystem": False}, "env": [{"name": "A", "value": "1"}]})
    assert c["securityContext"]["runAsUser"] == 65532 and c["securityContext"]["readOnlyRootFilesystem"] is False


def test_audit_records_the_merged_security_context():
    from debugkit.core.options import sidecar_options
    from debugkit.core.targets import PodRef
    from debugkit.runtimes.base import Draft, Located, SidecarImage
    from debugkit.runtimes.kubernetes.identity import PodIdentity, PodTarget
    from debugkit.runtimes.kubernetes.planning import KubernetesPlanning

    custom = {"securityContext": {"readOnlyRootFilesystem": False}}
    pt = PodTarget("ns", "p", "app", {"metadata": {"name": "p", "uid": "u"}, "status": {},
                                      "spec": {"containers": [{"name": "app", "image": "img"}]}})
    target = ResolvedTarget("kubernetes", "ns/p/app", "u", "img")
    options = sidecar_options(target=PodRef("p", "app", "ns", runtime="kubernetes"), custom=custom)
    draft = Draft(located=Located(target, PodIdentity(None, pt)), spec=spec(), mode="command", options=options,
                  image=SidecarImage("debugkit/toolbox:0.1.0", helper=True, default_command=("sh",)),
                  keep_alive=600.0, reuse_key="k", reuse=None, local_user="me")
    built = KubernetesPlanning().translate(draft)  # the runtime's own translation, as a plan gets it
    container = built.request
    plan = Plan(runtime="kubernetes", mode="command", target=target, spec=built.spec, request=container,
                security_context=built.security_context)
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

def test_non_ascii_digits_in_a_passwd_are_read_as_the_runtimes_read_them():
    # runc's parser takes a field strconv.Atoi cannot read as 0, and no runtime reads '²' as a number.
    db = userdb.from_text("odd:x:\u00b2:1::/:/bin/sh\nok:x:7:7::/:/bin/sh\n")
    assert (ident.runtime_user("odd", db).uid, ident.runtime_user("ok", db).uid) == (0, 7)
    with pytest.raises(ident.IdentityUnresolved):
        ident.runtime_user("\u00b2", db)


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

@pytest.mark.parametrize("argv", [["toolbox", "ref"], ["runbook", "list"], ["config", "view"], ["--help"],
                                  ["attach", "--help"], ["--version"], ["completion", "bash"], [], ["runbook"],
                                  ["audit"]], ids=lambda a: " ".join(a) or "no arguments")
def test_a_closed_pipe_is_141_for_every_command(argv, tmp_path):
    """The pipe's reader is gone before debugkit writes (as after `| head -0`): 141,
    quietly, where click used to exit 1."""
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)
    nowhere = "unix:///nonexistent/engine.sock"  # no engine is asked anything
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


# == Round 2 (issue 27), no engine needed: the real CLI, table-driven ===========================================
#
# Each case: the exact exit code, one line on stderr with no traceback, nothing left behind
# in the case's directory or in TMPDIR. {D} is the case's directory, {E} a loopback "engine"
# that answers every request the way the case says (HTML, JSON nested without end, ...).

import hashlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

DEEP_JSON = "[" * 100_000 + "]" * 100_000
AUDIT_ERROR, INPUT, UNREACHABLE = 73, 64, 69


def context_meta(name: str) -> str:
    return f"docker/contexts/meta/{hashlib.sha256(name.encode()).hexdigest()}/meta.json"


CLI_CASES = [
    # 12. the audit log is refused when it is not a regular file, and never hangs or floods
    ("audit log a FIFO", ["audit"], {"DEBUGKIT_AUDIT_LOG": "{D}/fifo"}, {"fifo": ("fifo",)}, AUDIT_ERROR),
    ("audit log /dev/zero", ["audit"], {"DEBUGKIT_AUDIT_LOG": "/dev/zero"}, {}, AUDIT_ERROR),
    ("audit log /dev/null", ["audit"], {"DEBUGKIT_AUDIT_LOG": "/dev/null"}, {}, AUDIT_ERROR),
    ("audit log a directory", ["audit"], {"DEBUGKIT_AUDIT_LOG": "{D}"}, {}, AUDIT_ERROR),
    ("audit log a symlink", ["audit"], {"DEBUGKIT_AUDIT_LOG": "{D}/link"},
     {"real.jsonl": "", "link": ("symlink", "real.jsonl")}, AUDIT_ERROR),
    # 10. deeply nested JSON is a malformed line, counted once, not a RecursionError
    ("audit log nested JSON", ["audit", "-o", "json"], {"DEBUGKIT_AUDIT_LOG": "{D}/a.jsonl"},
     {"a.jsonl": DEEP_JSON + "\n"}, 0),
    ("audit log a 2 MiB line", ["audit", "-o", "json"], {"DEBUGKIT_AUDIT_LOG": "{D}/a.jsonl"},
     {"a.jsonl": "x" * (2 << 20) + "\n"}, 0),
    ("docker context meta.json nested", ["attach", "web", "--", "true"],
     {"DOCKER_CONFIG": "{D}/docker", "DOCKER_CONTEXT": "deep"}, {context_meta("deep"): DEEP_JSON}, INPUT),
    ("docker context meta.json HTML", ["attach", "web", "--", "true"],
     {"DOCKER_CONFIG": "{D}/docker", "DOCKER_CONTEXT": "web"}, {context_meta("web"): "<html><body>hi</body></html>"},
     INPUT),
    ("docker context meta.json a FIFO", ["attach", "web", "--", "true"],
     {"DOCKER_CONFIG": "{D}/docker", "DOCKER_CONTEXT": "fifo"}, {context_meta("fifo"): ("fifo",)}, INPUT),
    # 10. an engine that answers with what the Engine API never sends: one line naming it
    ("engine answers HTML", ["attach", "web", "--", "true"], {"DOCKER_HOST": "{E}/html"}, {}, UNREACHABLE),
    ("engine answers nested JSON", ["attach", "web", "--", "true"], {"DOCKER_HOST": "{E}/deep"}, {}, UNREACHABLE),
    ("engine answers a list", ["attach", "web", "--", "true"], {"DOCKER_HOST": "{E}/list"}, {}, UNREACHABLE),
    ("engine answers wrong types", ["attach", "web", "--", "true"], {"DOCKER_HOST": "{E}/types"}, {}, UNREACHABLE),
    ("engine answers a text Pid", ["attach", "web", "--", "true"], {"DOCKER_HOST": "{E}/pid-text"}, {},
     UNREACHABLE),
    ("engine answers without an Id", ["attach", "web", "--", "true"], {"DOCKER_HOST": "{E}/no-id"}, {},
     UNREACHABLE),
    ("engine answers 70 MiB", ["attach", "web", "--", "true"], {"DOCKER_HOST": "{E}/huge"}, {}, UNREACHABLE),
    ("engine error body HTML", ["attach", "web", "--", "true"], {"DOCKER_HOST": "{E}/error-html"}, {},
     UNREACHABLE),
]


class FakeEngine(ThreadingHTTPServer):
    """A loopback peer at tcp://127.0.0.1:PORT: /_ping answers OK (except for `html`), and
    the container inspect answers as the DOCKER_HOST's first path segment says. It
    records nothing and changes nothing: it only lets the client meet a hostile answer."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), EngineHandler)


class EngineHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, code: int, body: bytes, kind: str = "application/json"):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # the client stopped reading at its bound

    def do_GET(self):  # noqa: N802
        mode = self.server.mode
        if mode == "html":  # a web server at that address: every path is a page
            return self._send(200, b"<!DOCTYPE html><html><body>hello</body></html>", "text/html")
        if self.path.endswith("/_ping"):
            self.send_response(200)
            for header, value in (("Api-Version", "1.47"), ("Server", "Docker/29.0.0 (linux)"),
                                  ("Content-Length", "2")):
                self.send_header(header, value)
            self.end_headers()
            self.wfile.write(b"OK")
            return
        if self.path.endswith("/version"):
            return self._send(200, json.dumps({"ApiVersion": "1.47", "MinAPIVersion": "1.24",
                                               "Version": "29.0.0"}).encode())
        answers = {
            "deep": (200, DEEP_JSON.encode()),
            "list": (200, b'[{"Id": "x"}]'),
            "types": (200, json.dumps({"Id": "x", "State": "running", "Config": []}).encode()),
            "pid-text": (200, json.dumps({"Id": "x", "State": {"Running": True, "Pid": "one"}, "Config": {},
                                          "HostConfig": {}}).encode()),
            "no-id": (200, json.dumps({"State": {"Running": True}}).encode()),
            "huge": (200, b" " * (70 << 20)),
            "error-html": (500, b"<html><body>502 Bad Gateway</body></html>"),
        }
        code, body = answers.get(mode, (404, b"{}"))
        self._send(code, body)


@pytest.fixture
def fake_engines():
    """One fake engine per mode (the mode cannot travel in a tcp:// DOCKER_HOST)."""
    servers = {}

    def start(mode: str) -> str:
        server = FakeEngine()
        server.mode = mode
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[mode] = server
        return f"tcp://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers.values():
        server.shutdown()
        server.server_close()


def materialize(directory, files: dict) -> None:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, tuple) and content[0] == "symlink":
            path.symlink_to(directory / content[1])
        elif isinstance(content, tuple) and content[0] == "fifo":
            os.mkfifo(path)
        else:
            path.write_text(content)


def snapshot(directory) -> dict:
    return {str(p.relative_to(directory)): (os.lstat(p).st_mode, os.lstat(p).st_size, os.lstat(p).st_mtime_ns)
            for p in sorted(directory.rglob("*"))}


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_input_without_an_engine(case, tmp_path, fake_engines):
    _name, argv, env, files, expected = case
    work = tmp_path / "case"
    work.mkdir()
    materialize(work, files)
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()

    def fill(text: str) -> str:
        text = text.replace("{D}", str(work))
        if text.startswith("{E}/"):
            text = fake_engines(text[4:])
        return text

    full_env = {**os.environ, "TMPDIR": str(private_tmp), "XDG_STATE_HOME": str(tmp_path / "state"),
                **{k: fill(v) for k, v in env.items()}}
    before = snapshot(work)
    result = subprocess.run([sys.executable, "-m", "debugkit", *[fill(a) for a in argv]], env=full_env, cwd=work,
                            capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == expected, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("debugkit: "), stderr
    if expected == 0:
        assert "skipped 1 malformed line" in lines[0] and json.loads(result.stdout) == []
    else:
        assert result.stdout == b""
    assert snapshot(work) == before
    assert list(private_tmp.iterdir()) == []


def test_an_engine_that_answers_html_is_named_with_what_it_sent(fake_engines):
    host = fake_engines("html")
    result = subprocess.run([sys.executable, "-m", "debugkit", "attach", "web", "--", "true"],
                            env={**os.environ, "DOCKER_HOST": host}, capture_output=True, timeout=60)
    assert result.returncode == UNREACHABLE
    (line,) = result.stderr.decode().splitlines()
    assert f"the Docker engine at {host} answered GET /" in line and "HTML, not JSON" in line, line


# -- 6. the audit log's user is the real UID's, never $USER ---------------------------------------------------

def test_the_audit_record_names_the_real_uid_and_sudo_user_not_user(tmp_path):
    import pwd

    log = tmp_path / "audit.jsonl"
    env = {**os.environ, "DEBUGKIT_AUDIT_LOG": str(log), "USER": "mallory", "LOGNAME": "mallory",
           "SUDO_USER": "alice"}
    result = subprocess.run([sys.executable, "-m", "debugkit", "attach", "dockr://web", "--", "true"], env=env,
                            capture_output=True, timeout=60)
    assert result.returncode == INPUT
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = str(os.getuid())
    assert (record["event"], record["local_user"], record["local_uid"], record["sudo_user"]) == \
        ("refused", name, os.getuid(), "alice")
    if name != "mallory":
        assert "mallory" not in log.read_text()


# -- 10. ENOSPC on the audit log or a report is exit 73, not an internal error ------------------------------

def test_enospc_on_the_audit_log_is_audit_unwritable(tmp_path, monkeypatch):
    import errno

    monkeypatch.setenv("DEBUGKIT_AUDIT_LOG", str(tmp_path / "audit.jsonl"))

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit.os, "write", full)
    with pytest.raises(audit.AuditUnwritable, match="No space left on device") as raised:
        audit.append({"event": "start", "session": "s"})
    assert raised.value.exit_code == AUDIT_ERROR


def test_enospc_while_writing_a_report_is_exit_73_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    import errno

    from debugkit.core.errors import CannotWrite

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report.os, "fsync", full)
    with pytest.raises(CannotWrite, match="No space left on device") as raised:
        report.write_atomically(str(tmp_path / "r.md"), "content")
    assert raised.value.exit_code == AUDIT_ERROR and list(tmp_path.iterdir()) == []


# -- 12. the state directory is 0700, whichever command makes it first ------------------------------------------

def test_the_state_directory_is_created_0700_by_a_toolbox_build_log_and_by_the_audit_log(tmp_path, monkeypatch):
    from debugkit.toolbox import progress

    old = os.umask(0o022)
    try:
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "by-build"))
        log, path, problem = progress._open_log(progress.build_log_path("full"))
        log.close()
        assert problem is None and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "by-audit"))
        monkeypatch.delenv("DEBUGKIT_AUDIT_LOG", raising=False)
        audit.append({"event": "start", "session": "s"})
        assert stat.S_IMODE(os.stat(tmp_path / "by-audit" / "debugkit").st_mode) == 0o700
        # One an older debugkit made 0755 is narrowed.
        (tmp_path / "old" / "debugkit").mkdir(parents=True, mode=0o755)
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "old"))
        audit.append({"event": "start", "session": "s"})
        assert stat.S_IMODE(os.stat(tmp_path / "old" / "debugkit").st_mode) == 0o700
    finally:
        os.umask(old)
