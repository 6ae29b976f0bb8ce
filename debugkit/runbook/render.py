"""Rendering a runbook report as text (live), Markdown or JSON, and describing a runbook."""
from __future__ import annotations

import json
import re
import shlex
from typing import Iterator

from debugkit.core.escape import safe
from debugkit.runbook.execute import Report, StepResult
from debugkit.runbook.model import MAX_STEP_OUTPUT, Runbook


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
        lines.append(f"    reason: {safe(result.reason)}")
    if result.status != "skipped":
        # The target's output: escape sequences in it are shown, never sent to the terminal.
        for label, body in (("", result.stdout), ("stderr: ", result.stderr)):
            for line in body.rstrip("\n").splitlines():
                lines.append(f"    {label}{safe(line, keep_newlines=True)}")
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
    text = safe(text.replace("\r\n", "\n"), keep_newlines=True)  # a report is read on a terminal too
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}\n{text.rstrip(chr(10))}\n{ticks}"


def _md_cell(text: str) -> str:
    return safe(text.replace("|", "\\|").replace("\n", " "))


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
        f"- **Source:** `{rb.path or rb.source}`" + (f" (sha256 `{rb.sha256}`)" if rb.sha256 else ""),
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
            out += ["", f"Reason: {safe(s.reason)}"]
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


def describe(runbook: Runbook) -> Iterator[str]:
    """The lines `runbook validate` prints for a valid runbook."""
    count = len(runbook.steps)
    yield f"{runbook.source}: valid runbook {runbook.name!r}, {count} step{'s' if count != 1 else ''}"
    yield f"  profile {runbook.profile or 'restricted'}" + (
        f" (asks for more than restricted: runs only with --profile {runbook.profile})"
        if runbook.profile not in (None, "restricted") else "")
    if runbook.sha256:
        yield f"  file {runbook.path} sha256 {runbook.sha256}"
    for name, var in runbook.vars.items():
        default = "(required)" if var.default is None else f"= {var.default!r}"
        yield f"  var {name} {default}"
    for step in runbook.steps:
        kind = "sh -c" if step.is_shell else "argv"
        extra = ", continue_on_failure" if step.continue_on_failure else ""
        yield f"  step {step.name!r} ({kind}, timeout {step.timeout:g}s{extra})"


# -- a runbook over many targets ------------------------------------------------------------------------

def fleet_summary_rows(entries: list[dict]) -> list[str]:
    """entries: {"target", "status", "error", "report" (a Report or None), "duration_s"}."""
    rows = ["| target | result | steps passed | failed | time | note |", "|--------|--------|-----:|-----:|-----:|------|"]
    for e in entries:
        report = e.get("report")
        totals = report.totals() if report is not None else {}
        note = (e.get("error") or {}).get("message", "")
        label = (f"[{e['context']}] " if e.get("context") else "") + e["target"]
        rows.append(f"| {_md_cell(label)} | {e['status'].upper()} | {totals.get('passed', '-')} | "
                    f"{totals.get('failed', '-')} | {e.get('duration_s', 0):.2f}s | {_md_cell(note)} |")
    return rows


def render_fleet_markdown(runbook: Runbook, entries: list[dict]) -> str:
    passed = sum(1 for e in entries if e["status"] == "passed")
    out = [f"# Runbook `{runbook.name}` over {len(entries)} targets: {passed} passed", ""]
    if runbook.description:
        out += [runbook.description, ""]
    out += [f"- **Source:** `{runbook.path or runbook.source}`" + (f" (sha256 `{runbook.sha256}`)" if runbook.sha256
                                                                    else ""), ""]
    out += fleet_summary_rows(entries)
    for e in entries:
        where = f"[{e['context']}] " if e.get("context") else ""
        out += ["", f"## {where}{e['target']}: {e['status'].upper()}", ""]
        if e.get("error"):
            verb = "Cut short" if e.get("report") is not None else "Not run"
            out += [f"{verb}: {e['error']['message']} (exit {e['error']['exit_code']})", ""]
        if e.get("report") is not None:
            body = render_markdown(e["report"])
            body = body[body.index("- **Target:**"):]  # without its title and the runbook's description
            out.append(body.replace("\n## ", "\n### ").rstrip("\n"))
        elif not e.get("error"):
            out.append("Not started (--fail-fast after a failure, or an interruption).")
    return "\n".join(out) + "\n"


def render_fleet_json(runbook: Runbook, entries: list[dict]) -> str:
    return json.dumps({
        "runbook": {"name": runbook.name, "source": runbook.source, "file": runbook.path, "sha256": runbook.sha256},
        "targets": len(entries),
        "passed": sum(1 for e in entries if e["status"] == "passed"),
        "results": [{**({"context": e["context"]} if e.get("context") else {}),
                     "target": e["target"], "namespace": e.get("namespace"), "container": e.get("container"),
                     "status": e["status"], "duration_s": round(e.get("duration_s", 0), 3), "error": e.get("error"),
                     "report": e["report"].as_dict() if e.get("report") is not None else None}
                    for e in entries],
    }, indent=2) + "\n"


FLEET_RENDERERS = {"markdown": render_fleet_markdown, "json": render_fleet_json}
