"""The runbook model: plain, frozen data that the loader produces and the executor runs.

A runbook is a YAML file of named steps that run one after another in **one** sidecar
(one start, then one exec per step). The format is documented in docs/runbooks.md.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_FILE_BYTES = 256 * 1024
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
    sha256: str = ""            # of the file's bytes, for reports and the audit log
    path: str = ""              # the file that was run (resolved), or the bundled name
