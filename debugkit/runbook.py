"""Incident runbooks: load, validate, substitute, execute, render.

A runbook is a YAML file of named steps that run one after another in **one** sidecar
(one start, then one exec per step). The format is documented in docs/runbooks.md.

Everything up to `execute` is pure (no engine, no cluster), so a bad runbook is refused
before any sidecar exists. Errors are `RunbookInvalid("FILE:LINE: what is wrong")`;
nothing here exits.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import yaml

from debugkit.errors import DebugkitError, Interrupted, InvalidInput, RunbookInvalid

MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 20            # nesting of YAML collections; the format needs 4
MAX_NODES = 20_000        # YAML nodes in one file
MAX_STEPS = 200
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 3600.0
MAX_STEP_OUTPUT = 64 * 1024   # bytes kept per stream per step (the rest is dropped, and said so)

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# `{{ NAME }}`: the one substitution syntax. Anything else (`${X}`, `{{.Go}}`) is left alone.
VAR_REF = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

TOP_KEYS = ("name", "description", "vars", "profile", "steps")
STEP_KEYS = ("name", "run", "timeout", "expect", "continue_on_failure")
EXPECT_KEYS = ("exit_code", "stdout_matches", "stdout_not_matches")
REGEX_FLAGS = re.MULTILINE


# -- the model ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Var:
    name: str
    default: str | None  # None: required, must be given with --var
    line: int


@dataclass(frozen=True)
class Expect:
    exit_codes: tuple[int, ...] = (0,)
    stdout_matches: str | None = None
    stdout_not_matches: str | None = None


@dataclass(frozen=True)
class Step:
    name: str
    run: str | tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT
    expect: Expect = Expect()
    continue_on_failure: bool = False
    line: int = 0
    run_line: int = 0

    @property
    def is_shell(self) -> bool:
        return isinstance(self.run, str)


@dataclass(frozen=True)
class Runbook:
    name: str
    description: str
    vars: dict[str, Var]
    profile: str | None
    steps: tuple[Step, ...]
    source: str
    vars_line: int = 1


# -- loading: YAML without aliases, with line numbers -----------------------------------

class _Refused(Exception):
    def __init__(self, mark, message: str):
        super().__init__(message)
        self.mark = mark
        self.message = message


_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}


class _Loader(yaml.SafeLoader):
    """yaml.safe_load's loader that refuses anchors and aliases (no alias bombs, no merge
    keys) and bounds nesting and node count. We compose nodes first to keep line numbers."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(event.start_mark, f"anchors and aliases are not allowed (found *{event.anchor})")
        if getattr(event, "anchor", None) is not None:
            raise _Refused(event.start_mark, f"anchors and aliases are not allowed (found &{event.anchor})")
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Refused(event.start_mark, f"too many YAML nodes (more than {MAX_NODES})")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node.tag not in _PLAIN_TAGS:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise _Refused(node.start_mark, f"the YAML tag {tag} is not allowed")
        return node


def _line(node_or_mark) -> int:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return (mark.line + 1) if mark is not None else 1


class _Checker:
    """Walks the composed node tree; every complaint carries FILE:LINE."""

    def __init__(self, source: str, loader: _Loader):
        self.source = source
        self.loader = loader

    def fail(self, node_or_line, message: str):
        line = node_or_line if isinstance(node_or_line, int) else _line(node_or_line)
        raise RunbookInvalid(f"{self.source}:{line}: {message}")

    def scalar(self, node, what: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
            self.fail(node, f"{what} must be a single value, not {kind}")
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.fail(node, f"{what}: {getattr(exc, 'problem', None) or exc}")

    def string(self, node, what: str, *, allow_empty: bool = False) -> str:
        value = self.scalar(node, what)
        if not isinstance(value, str):
            self.fail(node, f"{what} must be a string, not {_describe(value)}")
        if not allow_empty and not value.strip():
            self.fail(node, f"{what} must not be empty")
        return value

    def mapping(self, node, what: str, where: str, allowed: Sequence[str], required: Sequence[str] = ()) -> dict:
        """`what` names the mapping ("step 2"), `where` places a key in it ("in step 2")."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping (key: value)")
        found: dict[str, tuple] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, f"a key {where}")
            if not isinstance(key, str):
                self.fail(key_node, f"keys {where} must be strings, not {_describe(key)}")
            if key in found:
                self.fail(key_node, f"duplicate key {key!r} {where}")
            if key not in allowed:
                self.fail(key_node, f"unknown key {key!r} {where} (expected one of: {', '.join(allowed)})")
            found[key] = (key_node, value_node)
        for key in required:
            if key not in found:
                self.fail(node, f"missing required key {key!r} {where}")
        return found


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    return type(value).__name__


def load_text(text: str | bytes, source: str) -> Runbook:
    """Parse and validate a runbook's text. Raises RunbookInvalid; starts nothing."""
    if isinstance(text, bytes):
        if len(text) > MAX_FILE_BYTES:
            raise RunbookInvalid(f"{source}: the file is {len(text)} bytes; a runbook may be at most "
                                 f"{MAX_FILE_BYTES} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RunbookInvalid(f"{source}: not UTF-8 text (byte {exc.start})") from None
    elif len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise RunbookInvalid(f"{source}: a runbook may be at most {MAX_FILE_BYTES} bytes")
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except _Refused as exc:
            raise RunbookInvalid(f"{source}:{_line(exc.mark)}: {exc.message}") from None
        except yaml.MarkedYAMLError as exc:
            raise RunbookInvalid(f"{source}:{_yaml_problem(exc)}") from None
        except yaml.YAMLError as exc:
            raise RunbookInvalid(f"{source}:1: invalid YAML: {exc}") from None
        if root is None:
            raise RunbookInvalid(f"{source}:1: the runbook is empty")
        return _build(_Checker(source, loader), root)
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """`LINE: invalid YAML: problem (context)` from PyYAML's marks."""
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "cannot parse"
    context = exc.context if exc.problem else None
    if context and context.startswith("expected"):  # "expected a single document in the stream"
        problem = f"{context}, {problem}"
    elif context and exc.context_mark is not None and exc.context_mark is not mark:
        problem = f"{problem} ({context} started on line {_line(exc.context_mark)})"
    return f"{_line(mark)}: invalid YAML: {problem}"


def _build(c: _Checker, root) -> Runbook:
    top = c.mapping(root, "the runbook", "at the top level", TOP_KEYS, required=("name", "steps"))
    name = c.string(top["name"][1], "name")
    description = c.string(top["description"][1], "description", allow_empty=True) if "description" in top else ""

    profile = None
    if "profile" in top:
        from debugkit.profiles import PROFILES

        profile = c.string(top["profile"][1], "profile")
        if profile not in PROFILES:
            c.fail(top["profile"][1], f"unknown profile {profile!r} (expected one of: {', '.join(PROFILES)})")

    variables: dict[str, Var] = {}
    vars_line = _line(root)
    if "vars" in top:
        key_node, vars_node = top["vars"]
        vars_line = _line(key_node)
        if not (isinstance(vars_node, yaml.ScalarNode) and c.scalar(vars_node, "vars") is None):
            if not isinstance(vars_node, yaml.MappingNode):
                c.fail(vars_node, "vars must be a mapping of NAME: default")
            for var_key, var_value in vars_node.value:
                var_name = c.scalar(var_key, "a variable name")
                if not isinstance(var_name, str) or not NAME_RE.match(var_name):
                    c.fail(var_key, f"variable name {var_name!r} must match [A-Za-z_][A-Za-z0-9_]*")
                if var_name in variables:
                    c.fail(var_key, f"duplicate variable {var_name!r}")
                default = c.scalar(var_value, f"the default of variable {var_name}")
                if default is not None and (not isinstance(default, (str, int, float, bool))):
                    c.fail(var_value, f"the default of variable {var_name} must be a string, number or "
                                      f"boolean, not {_describe(default)}")
                variables[var_name] = Var(var_name, None if default is None else _as_text(default), _line(var_key))

    steps_node = top["steps"][1]
    if not isinstance(steps_node, yaml.SequenceNode) or not steps_node.value:
        c.fail(steps_node, "steps must be a non-empty list of steps")
    if len(steps_node.value) > MAX_STEPS:
        c.fail(steps_node, f"too many steps ({len(steps_node.value)}; at most {MAX_STEPS})")
    steps: list[Step] = []
    seen: dict[str, int] = {}
    for index, step_node in enumerate(steps_node.value, start=1):
        step = _build_step(c, step_node, index, variables)
        if step.name in seen:
            c.fail(step_node, f"step {index}: the name {step.name!r} is already used by step {seen[step.name]}")
        seen[step.name] = index
        steps.append(step)
    return Runbook(name=name, description=description.strip(), vars=variables, profile=profile,
                   steps=tuple(steps), source=c.source, vars_line=vars_line)


def _build_step(c: _Checker, node, index: int, variables: dict[str, Var]) -> Step:
    where = f"step {index}"
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:  # name first, so later errors can say which step
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == "name":
                if isinstance(value_node, yaml.ScalarNode) and value_node.value.strip():
                    where = f"step {index} ({value_node.value.strip()!r})"
    keys = c.mapping(node, where, f"in {where}", STEP_KEYS, required=("name", "run"))
    name = c.string(keys["name"][1], f"{where}: name").strip()

    run_node = keys["run"][1]
    run: str | tuple[str, ...]
    if isinstance(run_node, yaml.SequenceNode):
        if not run_node.value:
            c.fail(run_node, f"{where}: run must not be an empty list")
        argv = []
        for item in run_node.value:
            value = c.scalar(item, f"{where}: each element of run")
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                c.fail(item, f"{where}: each element of run must be a string or a number, not {_describe(value)}")
            argv.append(_as_text(value))
        if not argv[0]:
            c.fail(run_node, f"{where}: the command (first element of run) must not be empty")
        run = tuple(argv)
        texts = [(text, item) for text, item in zip(argv, run_node.value)]
    else:
        run = c.string(run_node, f"{where}: run (a shell script string or a list used as argv)")
        texts = [(run, run_node)]
        quoted = _quoted_references(run)
        if quoted:
            c.fail(run_node, f"{where}: {{{{ {quoted[0]} }}}} is inside quotes in run; write it bare: values "
                             f"are shell-quoted when substituted")
    for text, text_node in texts:
        for ref in VAR_REF.findall(text):
            if ref not in variables:
                c.fail(text_node, f"{where}: run uses {{{{ {ref} }}}}, which is not declared in vars")

    timeout = DEFAULT_TIMEOUT
    if "timeout" in keys:
        value_node = keys["timeout"][1]
        value = c.scalar(value_node, f"{where}: timeout")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value <= MAX_TIMEOUT) \
                or value != value:
            c.fail(value_node, f"{where}: timeout must be a number of seconds greater than 0 and at most "
                               f"{MAX_TIMEOUT:g}, not {value_node.value!r}")
        timeout = float(value)

    expect = Expect()
    if "expect" in keys:
        expect = _build_expect(c, keys["expect"][1], where)

    continue_on_failure = False
    if "continue_on_failure" in keys:
        value_node = keys["continue_on_failure"][1]
        value = c.scalar(value_node, f"{where}: continue_on_failure")
        if not isinstance(value, bool):
            c.fail(value_node, f"{where}: continue_on_failure must be true or false, not {_describe(value)}")
        continue_on_failure = value
    return Step(name=name, run=run, timeout=timeout, expect=expect, continue_on_failure=continue_on_failure,
                line=_line(node), run_line=_line(run_node))


def _build_expect(c: _Checker, node, where: str) -> Expect:
    keys = c.mapping(node, f"{where}: expect", f"in the expect of {where}", EXPECT_KEYS)
    exit_codes: tuple[int, ...] = (0,)
    if "exit_code" in keys:
        value_node = keys["exit_code"][1]
        items = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        if not items:
            c.fail(value_node, f"{where}: expect.exit_code must not be an empty list")
        codes = []
        for item in items:
            value = c.scalar(item, f"{where}: expect.exit_code")
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
                c.fail(item, f"{where}: expect.exit_code must be an integer from 0 to 255 or a list of them, "
                             f"not {_describe(value)}")
            codes.append(value)
        exit_codes = tuple(dict.fromkeys(codes))
    patterns = {}
    for key in ("stdout_matches", "stdout_not_matches"):
        if key in keys:
            value_node = keys[key][1]
            pattern = c.string(value_node, f"{where}: expect.{key}")
            try:
                re.compile(pattern, REGEX_FLAGS)
            except re.error as exc:
                c.fail(value_node, f"{where}: expect.{key} is not a valid regular expression: {exc}")
            patterns[key] = pattern
    return Expect(exit_codes=exit_codes, **patterns)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _quoted_references(script: str) -> list[str]:
    """Names of `{{ VAR }}` references that sit inside '...' or "..." in a shell script.
    Substitution shell-quotes the value, so inside quotes it would be quoted twice
    (and `'{{ X }}'` would even unquote it). Conservative: also flags "$( {{ X }} )"."""
    found, state, i, n = [], None, 0, len(script)
    while i < n:
        match = VAR_REF.match(script, i)
        if match:
            if state:
                found.append(match.group(1))
            i = match.end()
            continue
        ch = script[i]
        if state == "'":
            if ch == "'":
                state = None
        elif ch == "\\":
            i += 1
        elif ch == '"':
            state = None if state == '"' else '"'
        elif state is None and ch == "'":
            state = "'"
        elif state is None and ch == "#" and (i == 0 or script[i - 1] in " \t\n;&|()"):
            newline = script.find("\n", i)
            i = n if newline < 0 else newline
            continue
        i += 1
    return found


# -- finding runbooks ------------------------------------------------------------------------

def bundled_dir() -> Path:
    return Path(__file__).resolve().parent / "runbooks"


def bundled_names() -> list[str]:
    return sorted(p.stem for p in bundled_dir().glob("*.yaml"))


def resolve(ref: str) -> Path:
    """FILE (an existing path, or anything that looks like one) or the NAME of a bundled runbook."""
    path = Path(ref)
    looks_like_path = os.sep in ref or "/" in ref or ref.endswith((".yaml", ".yml"))
    if path.is_file() or looks_like_path:
        if not path.exists():
            raise InvalidInput(f"runbook file {ref} does not exist")
        if not path.is_file():
            raise InvalidInput(f"runbook {ref} is not a regular file")
        return path
    if NAME_RE.match(ref.replace("-", "_")):
        candidate = bundled_dir() / f"{ref}.yaml"
        if candidate.is_file():
            return candidate
    raise InvalidInput(f"no runbook file {ref!r} and no bundled runbook of that name",
                       hint="bundled: " + ", ".join(bundled_names()))


def display_name(path: Path) -> str:
    """Bundled runbooks are named by name; files as the user gave them."""
    try:
        if path.resolve().parent == bundled_dir():
            return f"{path.stem} (bundled)"
    except OSError:
        pass
    return str(path)


def load_file(ref: str) -> Runbook:
    path = resolve(ref)
    source = path.stem if path.resolve().parent == bundled_dir() else ref
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise RunbookInvalid(f"{source}: the file is {size} bytes; a runbook may be at most "
                                     f"{MAX_FILE_BYTES} bytes")
            data = handle.read(MAX_FILE_BYTES + 1)  # a FIFO or /proc file lies about its size
    except OSError as exc:
        raise InvalidInput(f"cannot read runbook {ref}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise RunbookInvalid(f"{source}: the file is larger than the {MAX_FILE_BYTES}-byte limit for a runbook")
    return load_text(data, source)


def bundled() -> list[Runbook]:
    return [load_file(name) for name in bundled_names()]


# -- variables ---------------------------------------------------------------------------------

def parse_var_args(pairs: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not NAME_RE.match(key):
            raise InvalidInput(f"--var {pair!r}: expected KEY=VALUE with KEY matching [A-Za-z_][A-Za-z0-9_]*")
        values[key] = value
    return values


def bind(runbook: Runbook, overrides: dict[str, str]) -> dict[str, str]:
    """Defaults merged with --var values; refuses undeclared and missing ones."""
    for key in overrides:
        if key not in runbook.vars:
            declared = ", ".join(runbook.vars) or "none"
            raise RunbookInvalid(f"{runbook.source}:{runbook.vars_line}: --var {key} is not declared in the "
                                 f"runbook's vars (declared: {declared})")
    values = {}
    for name, var in runbook.vars.items():
        value = overrides.get(name, var.default)
        if value is None:
            raise RunbookInvalid(f"{runbook.source}:{var.line}: variable {name} has no default: "
                                 f"pass --var {name}=VALUE")
        values[name] = value
    return values


def command_for(step: Step, values: dict[str, str]) -> list[str]:
    """The argv a step runs: a string becomes `sh -c SCRIPT` with every value shell-quoted;
    a list is used as argv with values substituted verbatim (no shell ever sees them)."""
    if isinstance(step.run, str):
        script = VAR_REF.sub(lambda m: shlex.quote(values[m.group(1)]), step.run)
        return ["sh", "-c", script]
    return [VAR_REF.sub(lambda m: values[m.group(1)], arg) for arg in step.run]


# -- execution ------------------------------------------------------------------------------------

@dataclass
class StepResult:
    name: str
    argv: list[str]
    status: str  # passed | failed | skipped
    reason: str = ""
    exit_code: int | None = None
    timed_out: bool = False
    duration: float = 0.0
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    continue_on_failure: bool = False

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_dict(self) -> dict:
        return {
            "name": self.name, "argv": self.argv, "status": self.status, "passed": self.passed,
            "reason": self.reason, "exit_code": self.exit_code, "timed_out": self.timed_out,
            "duration": round(self.duration, 3), "continue_on_failure": self.continue_on_failure,
            "stdout": self.stdout, "stderr": self.stderr, "output_truncated": self.truncated,
        }


@dataclass
class Report:
    runbook: Runbook
    values: dict[str, str]
    facts: dict = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    started_at: str = ""
    duration: float = 0.0
    aborted: str = ""

    @property
    def passed(self) -> bool:
        """True only if every step not marked continue_on_failure passed (and none was skipped)."""
        if self.aborted:
            return False
        return all(s.passed or s.continue_on_failure for s in self.steps) and \
            len(self.steps) == len(self.runbook.steps)

    def totals(self) -> dict:
        counts = {"steps": len(self.runbook.steps), "passed": 0, "failed": 0, "failed_allowed": 0, "skipped": 0}
        for s in self.steps:
            if s.status == "passed":
                counts["passed"] += 1
            elif s.status == "skipped":
                counts["skipped"] += 1
            elif s.continue_on_failure:
                counts["failed_allowed"] += 1
            else:
                counts["failed"] += 1
        return counts

    def as_dict(self) -> dict:
        rb = self.runbook
        return {
            "runbook": {"name": rb.name, "description": rb.description, "source": rb.source},
            **self.facts,
            "vars": dict(self.values),
            "started_at": self.started_at,
            "duration": round(self.duration, 3),
            "passed": self.passed,
            "status": "passed" if self.passed else "failed",
            "aborted": self.aborted or None,
            "totals": self.totals(),
            "steps": [s.as_dict() for s in self.steps],
        }


def verdict(step: Step, result) -> tuple[bool, str]:
    """Whether an ExecResult meets the step's expectations, and if not, why not."""
    if result.timed_out:
        return False, f"timed out after {step.timeout:g}s"
    if result.exit_code not in step.expect.exit_codes:
        wanted = " or ".join(str(c) for c in step.expect.exit_codes)
        why = f"exit code {result.exit_code}, expected {wanted}"
        if result.exit_code == 127:
            why += " (command not found in the sidecar image?)"
        elif result.exit_code == 126:
            why += " (command not executable)"
        return False, why
    stdout = _decode(result.stdout)
    if step.expect.stdout_matches is not None and not re.search(step.expect.stdout_matches, stdout, REGEX_FLAGS):
        return False, f"stdout does not match /{step.expect.stdout_matches}/"
    if step.expect.stdout_not_matches is not None:
        match = re.search(step.expect.stdout_not_matches, stdout, REGEX_FLAGS)
        if match:
            return False, f"stdout matches /{step.expect.stdout_not_matches}/: {match.group(0)[:200]!r}"
    return True, ""


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def session_facts(session) -> dict:
    """Target, identity, image and profile, from what the backend's exec session exposes:
    `.spec` (the SidecarSpec) and `.target` (Docker) or `.pt` (a Kubernetes pod target)."""
    spec = getattr(session, "spec", None)
    target = getattr(session, "target", None)
    pod = getattr(session, "pt", None)
    if target is not None:
        where = getattr(target, "name", None) or str(target)
    elif pod is not None:
        where = f"{pod.namespace}/{pod.pod_name}/{pod.container}"
    else:
        where = None
    facts: dict = {"target": where}
    if spec is not None:
        identity = getattr(spec, "identity", None)
        facts.update({
            "runtime": dict(getattr(spec, "labels", ())).get("io.debugkit.runtime"),
            "identity": {"uid": spec.uid, "gid": spec.gid,
                         "source": "profile (root)" if spec.run_as_root else getattr(identity, "source", None)},
            "image": spec.image,
            "profile": spec.profile,
            "session": spec.session_id,
        })
    return facts


def execute(runbook: Runbook, values: dict[str, str], session, *,
            on_step: Callable[[StepResult], None] | None = None,
            max_output: int = MAX_STEP_OUTPUT) -> Report:
    """Run every step in the open session, in order. A failed step stops the runbook unless
    it has continue_on_failure; the steps after a stop are reported as skipped."""
    report = Report(runbook=runbook, values=dict(values), facts=session_facts(session),
                    started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    started = time.monotonic()
    stop_reason = ""
    for step in runbook.steps:
        argv = command_for(step, values)
        if stop_reason:
            result = StepResult(step.name, argv, "skipped", stop_reason, continue_on_failure=step.continue_on_failure)
        else:
            try:
                outcome = session.exec(argv, timeout=step.timeout, max_output=max_output)
            except Interrupted:  # SIGTERM/SIGHUP: stop now, the caller cleans up and exits 128+N
                raise
            except DebugkitError as exc:  # the sidecar or the engine went away
                report.aborted = f"step {step.name!r}: {exc}"
                result = StepResult(step.name, argv, "failed", f"could not run: {exc}",
                                    continue_on_failure=step.continue_on_failure)
                stop_reason = "not run: the runbook was aborted"
            else:
                ok, reason = verdict(step, outcome)
                result = StepResult(
                    step.name, argv, "passed" if ok else "failed", reason, exit_code=outcome.exit_code,
                    timed_out=outcome.timed_out, duration=outcome.duration, stdout=_decode(outcome.stdout),
                    stderr=_decode(outcome.stderr), truncated=outcome.truncated,
                    continue_on_failure=step.continue_on_failure,
                )
                if not ok and not step.continue_on_failure:
                    stop_reason = f"not run: step {step.name!r} failed"
        report.steps.append(result)
        if on_step:
            on_step(result)
    report.duration = time.monotonic() - started
    return report


# -- rendering ------------------------------------------------------------------------------------

MARK = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}


def _status_word(result: StepResult) -> str:
    if result.status == "failed" and result.continue_on_failure:
        return "FAIL (allowed)"
    return MARK[result.status]


def _cmd(argv: list[str]) -> str:
    if len(argv) == 3 and argv[:2] == ["sh", "-c"]:
        return argv[2]
    return " ".join(shlex.quote(a) for a in argv)


def header_lines(report: Report) -> list[str]:
    f = report.facts
    ident = f.get("identity") or {}
    who = f"{ident.get('uid')}:{ident.get('gid')} (from {ident.get('source')})" if ident else "-"
    lines = [f"runbook {report.runbook.name}: {len(report.runbook.steps)} steps against {f.get('target') or '-'}",
             f"  as {who}, image {f.get('image') or '-'}, profile {f.get('profile') or '-'}"]
    if report.values:
        lines.append("  vars: " + " ".join(f"{k}={shlex.quote(v)}" for k, v in report.values.items()))
    return lines


def step_text(result: StepResult, index: int) -> str:
    head = f"[{index}] {_status_word(result):<14} {result.name}"
    if result.status != "skipped":
        head += f"  ({result.duration:.2f}s, exit {result.exit_code if not result.timed_out else 'timeout'})"
    lines = [head]
    if result.reason:
        lines.append(f"    reason: {result.reason}")
    if result.status != "skipped":
        for label, body in (("", result.stdout), ("stderr: ", result.stderr)):
            for line in body.rstrip("\n").splitlines():
                lines.append(f"    {label}{line}")
        if result.truncated:
            lines.append(f"    (output truncated at {MAX_STEP_OUTPUT} bytes per stream)")
    return "\n".join(lines)


def summary_line(report: Report) -> str:
    t = report.totals()
    parts = [f"{t['passed']} passed", f"{t['failed']} failed"]
    if t["failed_allowed"]:
        parts.append(f"{t['failed_allowed']} failed (allowed)")
    if t["skipped"]:
        parts.append(f"{t['skipped']} skipped")
    verdict_word = "PASSED" if report.passed else "FAILED"
    line = f"{verdict_word}: {', '.join(parts)} of {t['steps']} steps in {report.duration:.2f}s"
    if report.aborted:
        line += f" (aborted: {report.aborted})"
    return line


def render_text(report: Report) -> str:
    body = header_lines(report) + [step_text(s, i) for i, s in enumerate(report.steps, 1)] + [summary_line(report)]
    return "\n".join(body) + "\n"


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}\n{text.rstrip(chr(10))}\n{ticks}"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    f = report.facts
    ident = f.get("identity") or {}
    rb = report.runbook
    out = [f"# Runbook `{rb.name}`: {'PASSED' if report.passed else 'FAILED'}", ""]
    if rb.description:
        out += [rb.description, ""]
    out += [
        f"- **Target:** `{f.get('target')}` ({f.get('runtime') or '-'})",
        f"- **Identity:** {ident.get('uid')}:{ident.get('gid')} (from {ident.get('source')})" if ident
        else "- **Identity:** -",
        f"- **Image:** `{f.get('image')}`, profile `{f.get('profile')}`, session `{f.get('session')}`",
        f"- **Started:** {report.started_at}, took {report.duration:.2f}s",
        f"- **Source:** `{rb.source}`",
    ]
    if report.values:
        out.append("- **Vars:** " + ", ".join(f"`{k}={v}`" for k, v in report.values.items()))
    out += ["", f"**{summary_line(report)}**", "",
            "| # | step | result | exit | time | reason |", "|--:|------|--------|-----:|-----:|--------|"]
    for i, s in enumerate(report.steps, 1):
        exit_text = "timeout" if s.timed_out else ("-" if s.exit_code is None else str(s.exit_code))
        time_text = "-" if s.status == "skipped" else f"{s.duration:.2f}s"
        out.append(f"| {i} | {_md_cell(s.name)} | {_status_word(s)} | {exit_text} | {time_text} | "
                   f"{_md_cell(s.reason) or ''} |")
    for i, s in enumerate(report.steps, 1):
        out += ["", f"## {i}. {s.name}: {_status_word(s)}", "", _fence(f"$ {_cmd(s.argv)}")]
        if s.reason:
            out += ["", f"Reason: {s.reason}"]
        if s.status == "skipped":
            continue
        if s.stdout.strip():
            out += ["", "stdout:", "", _fence(s.stdout)]
        if s.stderr.strip():
            out += ["", "stderr:", "", _fence(s.stderr)]
        if s.truncated:
            out += ["", f"_(output truncated at {MAX_STEP_OUTPUT} bytes per stream)_"]
    return "\n".join(out) + "\n"


def render_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2) + "\n"


RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}


def report_format_for(path: str) -> str:
    """--report PATH: JSON for *.json, Markdown otherwise."""
    return "json" if path.lower().endswith(".json") else "markdown"


def check_report_path(path: str) -> None:
    """Refuse a --report PATH that cannot be written before anything starts."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise InvalidInput(f"--report {path} is a directory")
    if not directory.is_dir():
        raise InvalidInput(f"--report {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InvalidInput(f"--report {path}: directory {directory} is not writable")


def write_atomically(path: str, content: str) -> None:
    """Write to a temporary file next to PATH, then rename it over PATH: a reader sees the
    old file or the whole new one, never half of it."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise InvalidInput(f"cannot write the report to {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def describe(runbook: Runbook) -> Iterator[str]:
    """The lines `runbook validate` prints for a valid runbook."""
    count = len(runbook.steps)
    yield f"{runbook.source}: valid runbook {runbook.name!r}, {count} step{'s' if count != 1 else ''}"
    for name, var in runbook.vars.items():
        default = "(required)" if var.default is None else f"= {var.default!r}"
        yield f"  var {name} {default}"
    for step in runbook.steps:
        kind = "sh -c" if step.is_shell else "argv"
        extra = ", continue_on_failure" if step.continue_on_failure else ""
        yield f"  step {step.name!r} ({kind}, timeout {step.timeout:g}s{extra})"
