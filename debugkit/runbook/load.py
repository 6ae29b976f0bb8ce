"""Loading runbooks: hardened YAML with FILE:LINE errors, and finding them by name or path.

Everything here is pure but for reading the file, so a bad runbook is refused before any
sidecar exists. Errors are `RunbookInvalid("FILE:LINE: what is wrong")`; nothing exits.

A bare NAME is a bundled runbook or one in a configured search path; a file in the
working directory is never picked up by its bare name (it would silently shadow the
bundled one). Files are given as paths: `./checks.yaml`, `dir/x`, or any `*.yaml`.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from debugkit.core.errors import InvalidInput, RunbookInvalid
from debugkit.core.yamlsafe import Document, decode, describe, line_of
from debugkit.runbook.model import (DEFAULT_TIMEOUT, EXPECT_KEYS, MAX_FILE_BYTES, MAX_STEPS, MAX_TIMEOUT, NAME_RE,
                                    STEP_KEYS, TOP_KEYS, VAR_REF, Expect, Runbook, Step, Var)
from debugkit.runbook.patterns import PatternError, compile_pattern
from debugkit.runbook.variables import quoted_references, shell_script_index


def load_text(text: str | bytes, source: str, *, path: str = "") -> Runbook:
    """Parse and validate a runbook's text. Raises RunbookInvalid; starts nothing."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    if len(data) > MAX_FILE_BYTES:
        raise RunbookInvalid(f"{source}: the file is {len(data)} bytes; a runbook may be at most "
                             f"{MAX_FILE_BYTES} bytes")
    text = decode(data, source, max_bytes=MAX_FILE_BYTES, fail=RunbookInvalid)
    with Document(text, source, fail=RunbookInvalid) as doc:
        if doc.root is None:
            raise RunbookInvalid(f"{source}:1: the runbook is empty")
        return _build(doc, doc.root, sha256=hashlib.sha256(data).hexdigest(), path=path or source)


def _build(c: Document, root, *, sha256: str, path: str) -> Runbook:
    top = c.mapping(root, "the runbook", "at the top level", TOP_KEYS, required=("name", "steps"))
    name = c.string(top["name"][1], "name")
    description = c.string(top["description"][1], "description", allow_empty=True) if "description" in top else ""

    profile = None
    if "profile" in top:
        from debugkit.core.profiles import PROFILES

        profile = c.string(top["profile"][1], "profile")
        if profile not in PROFILES:
            c.fail(top["profile"][1], f"unknown profile {profile!r} (expected one of: {', '.join(PROFILES)})")

    variables: dict[str, Var] = {}
    vars_line = line_of(root)
    if "vars" in top:
        key_node, vars_node = top["vars"]
        vars_line = line_of(key_node)
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
                                      f"boolean, not {describe(default)}")
                variables[var_name] = Var(var_name, None if default is None else _as_text(default), line_of(var_key))

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
                   steps=tuple(steps), source=c.source, vars_line=vars_line, sha256=sha256, path=path)


def _build_step(c: Document, node, index: int, variables: dict[str, Var]) -> Step:
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
                c.fail(item, f"{where}: each element of run must be a string or a number, not {describe(value)}")
            argv.append(_as_text(value))
        if not argv[0]:
            c.fail(run_node, f"{where}: the command (first element of run) must not be empty")
        run = tuple(argv)
        texts = [(text, item) for text, item in zip(argv, run_node.value)]
        script = shell_script_index(run)
        quoted = quoted_references(run[script]) if script is not None else []
        if quoted:
            c.fail(run_node.value[script], f"{where}: {{{{ {quoted[0]} }}}} is inside quotes in the shell script of "
                                           f"run; write it bare: values are shell-quoted when substituted")
    else:
        run = c.string(run_node, f"{where}: run (a shell script string or a list used as argv)")
        texts = [(run, run_node)]
        quoted = quoted_references(run)
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
            c.fail(value_node, f"{where}: continue_on_failure must be true or false, not {describe(value)}")
        continue_on_failure = value
    return Step(name=name, run=run, timeout=timeout, expect=expect, continue_on_failure=continue_on_failure,
                line=line_of(node), run_line=line_of(run_node))


def _build_expect(c: Document, node, where: str) -> Expect:
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
                             f"not {describe(value)}")
            codes.append(value)
        exit_codes = tuple(dict.fromkeys(codes))
    patterns = {}
    for key in ("stdout_matches", "stdout_not_matches"):
        if key in keys:
            value_node = keys[key][1]
            pattern = c.string(value_node, f"{where}: expect.{key}")
            try:
                compile_pattern(pattern)
            except PatternError as exc:
                c.fail(value_node, f"{where}: expect.{key} is not a valid regular expression: {exc}")
            patterns[key] = pattern
    return Expect(exit_codes=exit_codes, **patterns)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- finding runbooks ------------------------------------------------------------------------

def bundled_dir() -> Path:
    return Path(__file__).resolve().parent / "bundled"


def bundled_names() -> list[str]:
    return sorted(p.stem for p in bundled_dir().glob("*.yaml"))


def looks_like_path(ref: str) -> bool:
    return os.sep in ref or "/" in ref or ref.endswith((".yaml", ".yml"))


def search_path_entries(search_paths: Iterable[str]) -> dict[str, Path]:
    """NAME -> file for every *.yaml in the configured directories (first directory wins)."""
    found: dict[str, Path] = {}
    for directory in search_paths:
        try:
            entries = sorted(Path(directory).glob("*.y*ml"))
        except OSError:
            continue
        for path in entries:
            if path.suffix in (".yaml", ".yml") and path.is_file():
                found.setdefault(path.stem, path)
    return found


def resolve(ref: str, *, search_paths: Iterable[str] = ()) -> Path:
    """A path (`./x.yaml`, `dir/x`, `x.yaml`) or the NAME of a bundled or configured runbook."""
    if not ref:
        raise InvalidInput("no runbook given: a bundled NAME or a path such as ./checks.yaml")
    if looks_like_path(ref):
        path = Path(ref)
        if not path.exists():
            raise InvalidInput(f"runbook file {ref} does not exist")
        if not path.is_file():
            raise InvalidInput(f"runbook {ref} is not a regular file")
        return path
    if NAME_RE.match(ref.replace("-", "_")):
        candidate = bundled_dir() / f"{ref}.yaml"
        if candidate.is_file():
            return candidate
        configured = search_path_entries(search_paths).get(ref)
        if configured is not None:
            return configured
    hint = "bundled: " + ", ".join(bundled_names())
    if Path(ref).is_file():
        hint += f"; to run the file {ref} in this directory, give its path: ./{ref}"
    raise InvalidInput(f"no bundled or configured runbook named {ref!r}", hint=hint)


def is_bundled(path: Path) -> bool:
    try:
        return path.resolve().parent == bundled_dir()
    except OSError:
        return False


def load_file(ref: str, *, search_paths: Iterable[str] = ()) -> Runbook:
    path = resolve(ref, search_paths=search_paths)
    source = path.stem if is_bundled(path) else ref
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
    shown = f"{path.stem} (bundled)" if is_bundled(path) else str(path.resolve())
    return load_text(data, source, path=shown)


def bundled() -> list[Runbook]:
    return [load_file(name) for name in bundled_names()]
