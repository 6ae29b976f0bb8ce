"""Running a runbook in one open sidecar: one exec per step, a verdict for each, a report.

A failed step stops the runbook unless it has continue_on_failure; the steps after a stop
are reported as skipped. A signal during a step ends the run (the caller cleans up).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from debugkit.core.errors import DebugkitError, Interrupted
from debugkit.runbook.model import MAX_STEP_OUTPUT, Runbook, Step
from debugkit.runbook.patterns import search
from debugkit.runbook.variables import command_for
from debugkit.runtimes.base import ExecSession, Plan


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
            "runbook": {"name": rb.name, "description": rb.description, "source": rb.source, "file": rb.path,
                        "sha256": rb.sha256},
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
    if step.expect.stdout_matches is not None and search(step.expect.stdout_matches, stdout) is None:
        return False, f"stdout does not match /{step.expect.stdout_matches}/"
    if step.expect.stdout_not_matches is not None:
        found = search(step.expect.stdout_not_matches, stdout)
        if found is not None:
            return False, f"stdout matches /{step.expect.stdout_not_matches}/: {found[:200]!r}"
    return True, ""


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def plan_facts(plan: Plan) -> dict:
    """Target, runtime, identity, image, profile and session of the sidecar a runbook runs in."""
    spec = plan.spec
    return {
        "target": plan.target.name,
        "runtime": plan.runtime,
        "identity": {"uid": spec.uid, "gid": spec.gid,
                     "source": "profile (root)" if spec.run_as_root else spec.identity.source},
        "image": spec.image,
        "profile": spec.profile,
        "session": spec.session_id,
    }


def execute(runbook: Runbook, values: dict[str, str], session: ExecSession, *,
            on_step: Callable[[StepResult], None] | None = None,
            max_output: int = MAX_STEP_OUTPUT) -> Report:
    """Run every step in the open session, in order. A failed step stops the runbook unless
    it has continue_on_failure; the steps after a stop are reported as skipped."""
    report = Report(runbook=runbook, values=dict(values), facts=plan_facts(session.plan),
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
            except Interrupted:  # a fleet's Ctrl-C or SIGTERM: stop now, the caller cleans up and exits 128+N
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
