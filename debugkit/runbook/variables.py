"""Runbook variables: --var parsing, binding defaults, and safe substitution into argv.

`{{ NAME }}` is the one substitution syntax. A value is data: wherever it lands in text a
shell will parse (a string `run`, or the script of `sh -c` in a list `run`) it is
shell-quoted; everywhere else it is one argv element, verbatim.
"""
from __future__ import annotations

import posixpath
import shlex
from typing import Sequence

from debugkit.core.errors import InvalidInput, RunbookInvalid
from debugkit.runbook.model import NAME_RE, VAR_REF, Runbook, Step

SHELLS = {"sh", "bash", "ash", "dash", "zsh", "ksh", "mksh", "busybox"}


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
    """The argv a step runs. A string becomes `sh -c SCRIPT` with every value shell-quoted.
    A list is argv with values substituted verbatim, except in the script of a shell's
    `-c` (`[sh, -c, "echo {{ X }}"]`), where they are shell-quoted as in the string form:
    a value never reaches a shell as code."""
    def quoted(text: str) -> str:
        return VAR_REF.sub(lambda m: shlex.quote(values[m.group(1)]), text)

    def verbatim(text: str) -> str:
        return VAR_REF.sub(lambda m: values[m.group(1)], text)

    if isinstance(step.run, str):
        return ["sh", "-c", quoted(step.run)]
    script = shell_script_index(step.run)
    return [quoted(arg) if i == script else verbatim(arg) for i, arg in enumerate(step.run)]


def shell_script_index(argv) -> int | None:
    """The index of the script a shell runs with -c in argv (`sh -c S`, `bash -euc S`,
    `busybox sh -c S`, `timeout 5 sh -c S`), or None when no shell gets a script."""
    for i, arg in enumerate(argv):
        name = posixpath.basename(arg)
        if name not in SHELLS:
            continue
        j = i + 1
        if name == "busybox" and j < len(argv) and posixpath.basename(argv[j]) in SHELLS:
            j += 1
        script = False
        while j < len(argv) and argv[j].startswith(("-", "+")) and argv[j] not in ("-", "+"):
            option = argv[j]
            j += 1
            if option == "--":
                break
            if option in ("-o", "+o", "-O", "+O", "--rcfile", "--init-file"):
                j += 1  # these take an argument
            elif not option.startswith("--") and "c" in option[1:]:
                script = True
        if script and j < len(argv):
            return j
    return None


def quoted_references(script: str) -> list[str]:
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
