"""Runbooks without an engine: loading, validation errors, substitution, verdicts,
execution order against a fake session, rendering, and atomic report writing."""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from debugkit.core.errors import DebugkitError, ExitCode, InvalidInput, RunbookInvalid
from debugkit.runbook import execute, model, render, report, variables
from debugkit.runbook import load as loader
from debugkit.runtimes.execution import ExecResult

GOOD = textwrap.dedent("""\
    name: sample
    description: |
      A sample runbook.
    vars:
      PORT: 8080
      FLAG: true
      HOST: null
    profile: restricted
    steps:
      - name: first
        run: echo {{ HOST }}:{{PORT}}
      - name: second
        run: [printf, "%s", "{{ HOST }}"]
        timeout: 2.5
        expect:
          exit_code: [0, 1]
          stdout_matches: '^ok$'
          stdout_not_matches: 'ERROR'
        continue_on_failure: true
    """)


def load(text: str, source: str = "rb.yaml") -> model.Runbook:
    return loader.load_text(text, source)


def test_a_valid_runbook_loads_with_its_defaults():
    book = load(GOOD)
    assert (book.name, book.description, book.profile) == ("sample", "A sample runbook.", "restricted")
    assert {k: v.default for k, v in book.vars.items()} == {"PORT": "8080", "FLAG": "true", "HOST": None}
    first, second = book.steps
    assert first.run == "echo {{ HOST }}:{{PORT}}" and first.is_shell
    assert (first.timeout, first.expect, first.continue_on_failure) == (model.DEFAULT_TIMEOUT, model.Expect(), False)
    assert second.run == ("printf", "%s", "{{ HOST }}") and not second.is_shell
    assert second.timeout == 2.5 and second.continue_on_failure
    assert second.expect == model.Expect((0, 1), "^ok$", "ERROR")
    assert (first.line, second.line, second.run_line) == (10, 12, 13)


STEP = "name: x\nsteps:\n  - name: a\n    run: 'true'\n"

# Each malformed runbook and the exact message it gets (FILE:LINE: what is wrong).
MALFORMED = [
    ("unknown top-level key", "name: x\nstpes: []\nsteps:\n  - {name: a, run: 'true'}\n",
     "rb.yaml:2: unknown key 'stpes' at the top level "
     "(expected one of: name, description, vars, profile, steps)"),
    ("unknown step key", STEP + "    timout: 5\n",
     "rb.yaml:5: unknown key 'timout' in step 1 ('a') "
     "(expected one of: name, run, timeout, expect, continue_on_failure)"),
    ("unknown expect key", STEP + "    expect: {stdout_contains: x}\n",
     "rb.yaml:5: unknown key 'stdout_contains' in the expect of step 1 ('a') "
     "(expected one of: exit_code, stdout_matches, stdout_not_matches)"),
    ("YAML syntax", "name: x\nsteps:\n  - name: a\n    run: [unclosed\n",
     "rb.yaml:5: invalid YAML: expected ',' or ']', but got '<stream end>' "
     "(while parsing a flow sequence started on line 4)"),
    ("bad indentation", "name: x\nsteps:\n  - name: a\n   run: b: c\n",
     "rb.yaml:4: invalid YAML: expected <block end>, but found '<block mapping start>' "
     "(while parsing a block collection started on line 3)"),
    ("alias bomb", 'a: &a ["lol","lol","lol"]\nb: &b [*a,*a,*a]\nc: [*b,*b,*b]\nname: x\nsteps: []\n',
     "rb.yaml:1: anchors and aliases are not allowed (found &a)"),
    ("alias without anchor", "name: x\nsteps: *nothing\n",
     "rb.yaml:2: anchors and aliases are not allowed (found *nothing)"),
    ("merge key", "name: x\nbase: &b {timeout: 1}\nsteps:\n  - {<<: *b, name: a, run: 'true'}\n",
     "rb.yaml:2: anchors and aliases are not allowed (found &b)"),
    ("python tag", "name: !!python/object/apply:os.system ['echo hi']\nsteps: []\n",
     "rb.yaml:1: the YAML tag !!python/object/apply:os.system is not allowed"),
    ("deep nesting", "name: x\nsteps: " + "[" * 100 + "]" * 100 + "\n",
     "rb.yaml:2: nested more than 20 levels deep"),
    ("two documents", "name: x\nsteps: [{name: a, run: 'true'}]\n---\nname: y\n",
     "rb.yaml:3: invalid YAML: expected a single document in the stream, but found another document"),
    ("empty file", "", "rb.yaml:1: the runbook is empty"),
    ("not a mapping", "- a\n- b\n", "rb.yaml:1: the runbook must be a mapping (key: value)"),
    ("missing steps", "name: x\ndescription: nothing to do\n",
     "rb.yaml:1: missing required key 'steps' at the top level"),
    ("empty steps", "name: x\nsteps: []\n", "rb.yaml:2: steps must be a non-empty list of steps"),
    ("missing run", "name: x\nsteps:\n  - name: a\n",
     "rb.yaml:3: missing required key 'run' in step 1 ('a')"),
    ("duplicate key", "name: x\nname: y\nsteps:\n  - {name: a, run: 'true'}\n",
     "rb.yaml:2: duplicate key 'name' at the top level"),
    ("duplicate step name", STEP + "  - name: a\n    run: 'false'\n",
     "rb.yaml:5: step 2: the name 'a' is already used by step 1"),
    ("bad regex", STEP + "    expect:\n      stdout_matches: '[unclosed'\n",
     "rb.yaml:6: step 1 ('a'): expect.stdout_matches is not a valid regular expression: "
     "missing ]: [unclosed (RE2 syntax: no backreferences or lookaround)"),
    ("backtracking regex feature", STEP + "    expect:\n      stdout_matches: '(a)\\1'\n",
     "rb.yaml:6: step 1 ('a'): expect.stdout_matches is not a valid regular expression: "
     "invalid escape sequence: \\1 (RE2 syntax: no backreferences or lookaround)"),
    ("negative timeout", STEP + "    timeout: -1\n",
     "rb.yaml:5: step 1 ('a'): timeout must be a number of seconds greater than 0 and at most 3600, not '-1'"),
    ("timeout too long", STEP + "    timeout: 86400\n",
     "rb.yaml:5: step 1 ('a'): timeout must be a number of seconds greater than 0 and at most 3600, not '86400'"),
    ("timeout not a number", STEP + "    timeout: soon\n",
     "rb.yaml:5: step 1 ('a'): timeout must be a number of seconds greater than 0 and at most 3600, not 'soon'"),
    ("exit_code not an int", STEP + "    expect: {exit_code: [0, yes]}\n",
     "rb.yaml:5: step 1 ('a'): expect.exit_code must be an integer from 0 to 255 or a list of them, "
     "not a boolean (true)"),
    ("continue_on_failure not a bool", STEP + "    continue_on_failure: 'yes'\n",
     "rb.yaml:5: step 1 ('a'): continue_on_failure must be true or false, not a string ('yes')"),
    ("run is a mapping", "name: x\nsteps:\n  - name: a\n    run: {sh: x}\n",
     "rb.yaml:4: step 1 ('a'): run (a shell script string or a list used as argv) must be a single value, "
     "not a mapping"),
    ("empty argv", "name: x\nsteps:\n  - name: a\n    run: []\n",
     "rb.yaml:4: step 1 ('a'): run must not be an empty list"),
    ("undeclared variable", "name: x\nsteps:\n  - name: a\n    run: echo {{ HOST }}\n",
     "rb.yaml:4: step 1 ('a'): run uses {{ HOST }}, which is not declared in vars"),
    ("variable inside quotes", "name: x\nvars: {HOST: a}\nsteps:\n  - name: a\n    run: echo \"{{ HOST }}\"\n",
     "rb.yaml:5: step 1 ('a'): {{ HOST }} is inside quotes in run; write it bare: "
     "values are shell-quoted when substituted"),
    ("variable default is a list", "name: x\nvars:\n  A: [1, 2]\nsteps: [{name: a, run: 'true'}]\n",
     "rb.yaml:3: the default of variable A must be a single value, not a list"),
    ("bad variable name", "name: x\nvars:\n  1A: b\nsteps: [{name: a, run: 'true'}]\n",
     "rb.yaml:3: variable name '1A' must match [A-Za-z_][A-Za-z0-9_]*"),
    ("unknown profile", "name: x\nprofile: root\nsteps: [{name: a, run: 'true'}]\n",
     "rb.yaml:2: unknown profile 'root' (expected one of: restricted, netadmin, ptrace, node, sysadmin)"),
]


@pytest.mark.parametrize("text,message", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_runbooks_are_refused_with_file_and_line(text, message):
    with pytest.raises(RunbookInvalid) as info:
        load(text)
    assert str(info.value) == message
    assert info.value.exit_code == ExitCode.FILE_INVALID == 65


def test_billion_laughs_is_refused_quickly():
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    with pytest.raises(RunbookInvalid, match=r"^bomb.yaml:1: anchors and aliases are not allowed \(found &l0\)$"):
        loader.load_text("\n".join(lines) + "\nname: x\nsteps: []\n", "bomb.yaml")


def test_file_size_limit(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(STEP + "# " + "x" * model.MAX_FILE_BYTES + "\n")
    size = big.stat().st_size
    with pytest.raises(RunbookInvalid) as info:
        loader.load_file(str(big))
    assert str(info.value) == f"{big}: the file is {size} bytes; a runbook may be at most 262144 bytes"
    just_fits = tmp_path / "fits.yaml"
    just_fits.write_text(STEP + "#" * (model.MAX_FILE_BYTES - len(STEP) - 1) + "\n")
    assert just_fits.stat().st_size == model.MAX_FILE_BYTES
    assert loader.load_file(str(just_fits)).name == "x"


def test_not_utf8_and_missing_files(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: caf\xe9\nsteps: []\n")
    with pytest.raises(RunbookInvalid, match=r"latin1.yaml: not UTF-8 text \(byte 9\)$"):
        loader.load_file(str(bad))
    with pytest.raises(InvalidInput, match="does not exist"):
        loader.load_file(str(tmp_path / "nope.yaml"))
    with pytest.raises(InvalidInput, match="no bundled or configured runbook named") as info:
        loader.load_file("no-such-runbook")
    assert "http-health" in str(info.value)


# -- variables and substitution ---------------------------------------------------------------

def test_bind_merges_defaults_and_refuses_undeclared_or_missing():
    book = load(GOOD)
    assert variables.bind(book, {"HOST": "db"}) == {"PORT": "8080", "FLAG": "true", "HOST": "db"}
    with pytest.raises(RunbookInvalid) as info:
        variables.bind(book, {"HOST": "db", "NOPE": "1"})
    assert str(info.value) == "rb.yaml:4: --var NOPE is not declared in the runbook's vars (declared: PORT, FLAG, HOST)"
    with pytest.raises(RunbookInvalid) as info:
        variables.bind(book, {})
    assert str(info.value) == "rb.yaml:7: variable HOST has no default: pass --var HOST=VALUE"


def test_parse_var_args():
    assert variables.parse_var_args(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    for bad in ("A", "=1", "1A=2", "A B=1"):
        with pytest.raises(InvalidInput):
            variables.parse_var_args([bad])


EVIL = "x'; touch /tmp/pwned; echo \"$(id)\" `id` $HOME ${PATH} | & > /tmp/out * ? \n\\ 'y"


def test_values_are_shell_quoted_in_strings_and_verbatim_in_argv(tmp_path):
    book = load(GOOD)
    values = variables.bind(book, {"HOST": EVIL})
    shell = variables.command_for(book.steps[0], values)
    assert shell[:2] == ["sh", "-c"]
    # Run the substituted script in a real local shell: the value comes out unchanged, nothing runs.
    out = subprocess.run(shell, capture_output=True, text=True, cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    assert out.returncode == 0 and out.stdout == f"{EVIL}:8080\n"
    assert not Path("/tmp/pwned").exists() and not (tmp_path / "pwned").exists()
    assert variables.command_for(book.steps[1], values) == ["printf", "%s", EVIL]


def test_quoted_reference_scanner():
    assert variables.quoted_references("echo {{ A }} '{{ B }}' \"x {{ C }}\" {{D}}") == ["B", "C"]
    assert variables.quoted_references("echo \\'{{ A }} # don't {{ B }}\necho {{ C }}") == []
    assert variables.quoted_references("echo 'it''s' {{ A }}") == []
    # Unknown brace syntax is left alone.
    assert model.VAR_REF.findall("${HOME} {{.State}} {{ X }} {{Y}}") == ["X", "Y"]


# -- verdicts and execution -----------------------------------------------------------------

def result(code=0, out=b"", err=b"", timed_out=False, duration=0.1):
    return ExecResult(("x",), None if timed_out else code, out, err, duration, timed_out=timed_out)


def test_verdicts():
    step = load(GOOD).steps[1]  # exit 0 or 1, stdout ^ok$, not ERROR
    assert execute.verdict(step, result(0, b"ok\n")) == (True, "")
    assert execute.verdict(step, result(1, b"first\nok\n")) == (True, "")
    assert execute.verdict(step, result(2, b"ok")) == (False, "exit code 2, expected 0 or 1")
    assert execute.verdict(step, result(0, b"nope")) == (False, "stdout does not match /^ok$/")
    assert execute.verdict(step, result(0, b"ok\nERROR: x")) == (False, "stdout matches /ERROR/: 'ERROR'")
    assert execute.verdict(step, result(timed_out=True)) == (False, "timed out after 2.5s")
    plain = load(GOOD).steps[0]
    assert execute.verdict(plain, result(127)) == (False, "exit code 127, expected 0 (command not found in the sidecar image?)")


def fake_plan():
    from debugkit.core.identity import Identity
    from debugkit.core.spec import base_spec
    from debugkit.runtimes.base import Plan, ResolvedTarget

    spec = base_spec(image="img:1", identity=Identity(uid=1, gid=1, source="flag"), target_name="t",
                     target_id="id", runtime="docker", cli_pid=1, cli_host="h", local_user="u")
    return Plan(runtime="docker", mode="exec", target=ResolvedTarget("docker", "t", "id", "app:1"), spec=spec,
                request={})


class FakeSession:
    """An exec session whose steps return scripted outcomes (a fake for pure logic)."""

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.calls = []
        self.plan = fake_plan()

    def exec(self, argv, *, timeout, max_output):
        self.calls.append((list(argv), timeout, max_output))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


FOUR = textwrap.dedent("""\
    name: four
    steps:
      - {name: one, run: 'true'}
      - {name: two, run: 'false', continue_on_failure: true}
      - {name: three, run: 'false', timeout: 7}
      - {name: four, run: 'true'}
    """)


def test_execute_continues_after_allowed_failures_and_stops_at_the_first_real_one():
    book = load(FOUR)
    session = FakeSession([result(0), result(1), result(1)])
    seen = []
    report = execute.execute(book, {}, session, on_step=seen.append)
    assert [s.status for s in report.steps] == ["passed", "failed", "failed", "skipped"]
    assert seen == report.steps
    assert [c[1:] for c in session.calls] == [(30.0, model.MAX_STEP_OUTPUT), (30.0, model.MAX_STEP_OUTPUT),
                                              (7.0, model.MAX_STEP_OUTPUT)]
    assert report.steps[3].reason == "not run: step 'three' failed"
    assert not report.passed
    assert report.totals() == {"steps": 4, "passed": 1, "failed": 1, "failed_allowed": 1, "skipped": 1}


def test_allowed_failures_alone_still_pass():
    book = load(FOUR.replace("run: 'false', timeout: 7", "run: 'true'"))
    report = execute.execute(book, {}, FakeSession([result(0), result(3), result(0), result(0)]))
    assert report.passed and report.totals()["failed_allowed"] == 1


def test_an_engine_error_aborts_the_runbook():
    book = load(FOUR)
    report = execute.execute(book, {}, FakeSession([result(0), DebugkitError("sidecar vanished")]))
    assert [s.status for s in report.steps] == ["passed", "failed", "skipped", "skipped"]
    assert report.aborted == "step 'two': sidecar vanished" and not report.passed


def test_reports_render_in_three_formats(tmp_path):
    book = load(GOOD)
    session = FakeSession([result(0, b"db:8080\n", b"a warning\n"), result(0, b"```fenced```\nok\n")])
    report = execute.execute(book, variables.bind(book, {"HOST": "db"}), session)
    data = json.loads(render.render_json(report))
    assert data["passed"] is True and data["status"] == "passed" and data["vars"]["HOST"] == "db"
    assert [s["name"] for s in data["steps"]] == ["first", "second"]
    first = data["steps"][0]
    assert first["argv"] == ["sh", "-c", "echo db:8080"] and first["stdout"] == "db:8080\n"
    assert first["stderr"] == "a warning\n" and first["exit_code"] == 0 and first["passed"] is True
    md = render.render_markdown(report)
    assert md.startswith("# Runbook `sample`: PASSED")
    assert "| 1 | first | PASS | 0 |" in md and "````\n```fenced```\nok\n````" in md
    text = render.render_text(report)
    assert "[1] PASS" in text and "    db:8080" in text and text.rstrip().endswith("of 2 steps in 0.00s")


def test_write_atomically_replaces_whole_files_and_leaves_no_temp(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    report.write_atomically(str(path), "new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]

    with pytest.raises(TypeError):
        report.write_atomically(str(path), object())  # fails mid-write
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    with pytest.raises(InvalidInput, match="missing-dir does not exist"):
        report.write_atomically(str(tmp_path / "missing-dir" / "r.md"), "x")
    assert report.report_format_for("a.JSON") == "json" and report.report_format_for("a.md") == "markdown"


# -- the bundled runbooks ---------------------------------------------------------------------

def test_bundled_runbooks_are_valid_and_described():
    names = loader.bundled_names()
    assert names == ["dns", "http-health", "node", "processes", "sockets", "tls"]
    for book in loader.bundled():
        assert book.description and book.steps, book.source
        assert book.source in names
    tls = loader.load_file("tls")
    assert tls.vars["HOST"].default is None and tls.vars["PORT"].default == "443"


def test_plan_facts_name_the_target_identity_and_profile():
    from debugkit.core.identity import Identity
    from debugkit.core.profiles import apply_profile
    from debugkit.core.spec import base_spec
    from debugkit.runtimes.base import Plan, ResolvedTarget

    spec = base_spec(image="img:1", identity=Identity(uid=65532, gid=65532, source="process"), target_name="web",
                     target_id="abc", runtime="docker", cli_pid=1, cli_host="h", local_user="u")
    target = ResolvedTarget(runtime="docker", name="web", id="abc", image="app:1")
    facts = execute.plan_facts(Plan(runtime="docker", mode="exec", target=target,
                                    spec=apply_profile(spec, "restricted"), request={}))
    assert facts == {"target": "web", "runtime": "docker", "identity": {"uid": 65532, "gid": 65532,
                     "source": "process"}, "image": "img:1", "profile": "restricted", "session": spec.session_id}
    pod = ResolvedTarget(runtime="kubernetes", name="shop/web-1/app", id="u", image="app:1", namespace="shop")
    kube = execute.plan_facts(Plan(runtime="kubernetes", mode="exec", target=pod,
                                   spec=apply_profile(spec, "ptrace"), request={}))
    assert kube["target"] == "shop/web-1/app" and kube["identity"]["uid"] == 0
    assert kube["identity"]["source"] == "profile (root)" and kube["profile"] == "ptrace"


def test_a_signal_during_a_step_is_not_swallowed():
    from debugkit.core.errors import Interrupted

    book = load(FOUR)
    with pytest.raises(Interrupted):
        execute.execute(book, {}, FakeSession([result(0), Interrupted("received SIGTERM", signum=15)]))


def test_report_path_is_checked_before_anything_starts(tmp_path):
    report.check_report_path(str(tmp_path / "r.json"))
    report.check_report_path("relative.md")
    with pytest.raises(InvalidInput, match="does not exist"):
        report.check_report_path(str(tmp_path / "nope" / "r.json"))
    with pytest.raises(InvalidInput, match="is a directory"):
        report.check_report_path(str(tmp_path))
