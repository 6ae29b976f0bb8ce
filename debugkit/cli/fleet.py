"""Fleet output: one live line per target on a terminal, prefixed lines otherwise, or JSON.

Shared by `attach MANY -- CMD` and `runbook run RUNBOOK MANY`. A target's output is
printed, prefixed with its name, when it is done (its stdout on stdout, the rest on
stderr); on a terminal a table below it shows every target's state and clock.
"""
from __future__ import annotations

import json
import sys
import threading
import time

import click

from debugkit.cli.common import err, runtime_names

SYMBOL = {"pending": "…", "running": "▶", "passed": "✔", "failed": "✘", "error": "!", "interrupted": "■",
          "not started": "-"}
MAX_PARALLEL = 64
STYLE = {"passed": "green", "failed": "red", "error": "red", "interrupted": "yellow", "running": "cyan"}


def _with_label_sets():
    from debugkit import runtimes

    return runtimes.with_label_sets()


def fleet_options(func):
    func = click.option("-l", "--selector", metavar="SELECTOR",
                        help="Kubernetes: every running pod matching this label selector.")(func)
    func = click.option("-A", "--all-namespaces", is_flag=True, help="With -l: in every namespace.")(func)
    func = click.option("--nodes", is_flag=True,
                        help="With -l: the Kubernetes nodes whose labels match (a node debugging pod on each; "
                             "needs --profile node or sysadmin).")(func)
    func = click.option("--filter", "filters", multiple=True, metavar="label=K[=V]",
                        help="Docker/Podman: every running container with this label (repeatable).")(func)
    func = click.option("--runtime", "filter_runtime", type=runtime_names(where=_with_label_sets), default=None,
                        help="With --filter: the engine to look in (default: docker).")(func)
    func = click.option("--parallel", default="8", show_default=True, metavar="N",
                        help=f"Targets at a time (1 to {MAX_PARALLEL}), when the target names many.")(func)
    func = click.option("--fail-fast", is_flag=True, help="Start no new target after the first failure.")(func)
    return func


class Display:
    """Follows a fleet's outcomes as they change; thread-safe."""

    def __init__(self, *, output: str, what: str):
        self.output = output
        self.what = what
        self.live = None
        self.outcomes = []
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self.terminal = output == "text" and sys.stdout.isatty()

    def start(self, outcomes, skipped) -> None:
        from debugkit.core.escape import safe

        self.outcomes = outcomes
        for name, why in skipped:
            err(f"skipped {safe(name)}: {safe(why)}")
        if self.terminal:
            from rich.console import Console
            from rich.live import Live

            # The table is rebuilt at every refresh (__rich__), so running targets' clocks tick.
            self.live = Live(self, console=Console(), refresh_per_second=4, transient=False)
            self.live.start()

    def __rich__(self):
        from rich.table import Table
        from rich.text import Text

        from debugkit.core.escape import safe

        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        for column in ("", "target", "status", "exit", "time"):
            table.add_column(column)
        for o in list(self.outcomes):
            code = "-" if o.exit_code is None else str(o.exit_code)
            status = Text(o.status, style=STYLE.get(o.status, ""))
            if o.error:
                status.append(f" {safe(o.error['message'])[:80]}")
            elapsed = o.elapsed()
            table.add_row(SYMBOL.get(o.status, "?"), Text(safe(o.label)), status, code,
                          f"{elapsed:.1f}s" if o.started is not None else "")
        return table

    def _lines(self, outcome) -> list[tuple[str, bool]]:
        """(line, goes to stdout) of a finished target: its output, prefixed, then its status."""
        from debugkit.core.escape import safe

        prefix = safe(outcome.label)
        lines = [(f"{prefix}: {line}", True) for line in outcome.stdout.splitlines()]
        lines += [(f"{prefix}: [stderr] {line}", False) for line in outcome.stderr.splitlines()]
        if outcome.error:
            lines.append((f"{prefix}: {outcome.status} ({outcome.error['exit_code']}): "
                          f"{safe(outcome.error['message'])}", False))
        else:
            code = "" if outcome.exit_code is None else f", exit {outcome.exit_code}"
            lines.append((f"{prefix}: {outcome.status}{code} ({outcome.duration_s:.2f}s)", False))
        if outcome.truncated:
            lines.append((f"{prefix}: (output truncated at {64 * 1024} bytes per stream)", False))
        return lines

    def changed(self, outcome) -> None:
        if self.output != "text" or outcome.status in ("pending", "running"):
            return  # a live table shows it at its next refresh
        with self._lock:
            if self.live is not None:
                from rich.text import Text

                for line, _out in self._lines(outcome):
                    self.live.console.print(Text(line), soft_wrap=True, highlight=False)
                self.live.refresh()
                return
            for line, out in self._lines(outcome):
                click.echo(line, err=not out)

    def finish(self, outcomes) -> None:
        with self._lock:
            if self.live is not None:
                self.live.refresh()
                self.live.stop()
                self.live = None
                if self.output == "text":
                    for o in outcomes:  # cut short by Ctrl-C: they had no line yet
                        if o.status in ("interrupted", "not started") and o.started is not None:
                            for line, out in self._lines(o):
                                click.echo(line, err=not out)
        if self.output == "json":
            click.echo(json.dumps([o.as_dict() for o in outcomes], indent=2))
        counts: dict[str, int] = {}
        for o in outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in counts.items())
        err(f"{self.what}: {len(outcomes)} target(s): {summary} in {time.monotonic() - self._started:.1f}s")


def _refused_interactive(many, members) -> None:
    from debugkit.core.errors import InvalidInput
    from debugkit.core.escape import safe

    shown = ", ".join(safe(m.label) for m in members[:10]) + (" ..." if len(members) > 10 else "")
    example = safe(str(members[0].ref))
    raise InvalidInput(f"an interactive shell needs one target, and {many} matches {len(members)}: {shown}; "
                       f"pick one, e.g. debugkit attach {example}, or run a command on all of them after --")


def parse_parallel(value) -> int:
    """--parallel: a whole number of targets at a time, 1 to MAX_PARALLEL (64 otherwise)."""
    from debugkit.core.errors import InvalidInput

    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_PARALLEL:
        raise InvalidInput(f"invalid --parallel {value!r}: a whole number of targets from 1 to {MAX_PARALLEL}")
    return int(text)


def _runner(many, kwargs):
    """(options, shared runtime, members, skipped, cleanup) for a reference that names many."""
    from debugkit.cli.common import sidecar_flags
    from debugkit.core.options import check_node_flags
    from debugkit.session import fleet, flow

    base = sidecar_flags(str(many), **kwargs)
    with flow.refusals_audited(base):
        # A flag the runtime does not take, and a missing --reason, are refused once, before
        # anything is listed.
        flow.check_flags(many.runtime, base)
        flow.check_reason(base)
        check_node_flags(many, base)  # -l ... --nodes: refused once, before any node is listed
        runtime = fleet.runtime_for(many, base.connection)
        members, skipped = fleet.expand(many, runtime)
        fleet.require_members(many, members, skipped)
    cleanup = fleet.Cleanup(runtime, record_created=flow.record_created)
    return base, runtime, members, skipped, cleanup


def attach_many(many, command, *, stdin, tty, output, parallel, fail_fast, **kwargs) -> int:
    from debugkit.core.errors import InvalidInput
    from debugkit.session import fleet
    from debugkit.session.signals import signals_as_exceptions

    base, runtime, members, skipped, cleanup = _runner(many, kwargs)
    runtime.concurrency = min(parallel, len(members))
    if not command or tty:
        _refused_interactive(many, members)
    if stdin:
        raise InvalidInput("-i cannot feed one stdin to many targets")
    display = Display(output=output, what=f"attach {many}")
    runner = fleet.Fleet(members, parallel=parallel, fail_fast=fail_fast, on_change=display.changed)

    def work(member, outcome):
        # A pod's reference carries its namespace; a node's does not (it is where its pod goes).
        flags = base.evolve(target=str(member.ref), namespace=getattr(member.ref, "namespace", None), container=None,
                            command=command)
        attach_member(flags, runtime, outcome, runner)

    runner.prepare()
    display.start(runner.outcomes, skipped)
    try:
        with signals_as_exceptions():
            outcomes = runner.run(work, cancel=cleanup.cancel, done=cleanup.forget,
                                  review=lambda m, o: fleet.explain_failure(runtime, m, o))
    finally:
        display.finish(runner.outcomes)
    return fleet.exit_status(outcomes)


def runbook_many(many, book, values, *, output, report_path, parallel, fail_fast, profile, **kwargs) -> int:
    """A runbook on every target, one sidecar each, and one report over the fleet."""
    from debugkit.session import fleet
    from debugkit.session.signals import signals_as_exceptions

    base, runtime, members, skipped, cleanup = _runner(many, {**kwargs, "profile": profile})
    runtime.concurrency = min(parallel, len(members))
    display = Display(output="text" if output == "text" else "quiet", what=f"runbook {book.source} over {many}")
    runner = fleet.Fleet(members, parallel=parallel, fail_fast=fail_fast, on_change=display.changed)
    def work(member, outcome):
        flags = base.evolve(target=str(member.ref), namespace=getattr(member.ref, "namespace", None), container=None)
        runbook_member(book, values, flags, runtime, outcome, output=output)

    runner.prepare()
    display.start(runner.outcomes, skipped)
    interrupted = None
    try:
        with signals_as_exceptions():
            runner.run(work, cancel=cleanup.cancel, done=cleanup.forget,
                       review=lambda m, o: fleet.explain_failure(runtime, m, o))
    except BaseException as exc:  # Ctrl-C/SIGTERM: report what finished, then exit 130/143
        interrupted = exc
    finally:
        display.finish(runner.outcomes)
    entries = [{"target": o.target, "namespace": o.namespace, "container": o.container, "status": o.status,
                "duration_s": o.duration_s, "error": o.error, "report": o.report} for o in runner.outcomes]
    return runbook_fleet_end(book, entries, runner.outcomes, output=output, report_path=report_path,
                             interrupted=interrupted)


def attach_member(flags, runtime, outcome, runner) -> None:
    """One member of an attach over many targets (or clusters): its command's code, its output
    captured for the fleet's display. The fleet says why a target went away itself, with its own
    names (fleet.explain_failure); a command the fleet stopped is audited as interrupted."""
    from debugkit.runtimes.base import Streams
    from debugkit.session import fleet, flow

    out, errors = fleet.Capture(), fleet.Capture()
    try:
        outcome.exit_code = flow.attach(flags, Streams(stdin=None, stdout=out, stderr=errors), runtime=runtime,
                                        explain_gone=False, interruption=runner.interruption)
        outcome.status = "passed" if outcome.exit_code == 0 else "failed"
    finally:
        outcome.stdout, outcome.stderr = out.text(), errors.text()
        outcome.truncated = out.truncated or errors.truncated


def runbook_member(book, values, flags, runtime, outcome, *, output: str) -> None:
    """One member of a runbook over many targets (or clusters): its report, judged as one run's."""
    from debugkit.runbook import execute, render
    from debugkit.session import flow, recording

    with flow.exec_session(flags, record={"runbook": book.path, "runbook_sha256": book.sha256},
                           runtime=runtime) as session:
        outcome.report = execute.execute(book, values, session)
        recording.keep_report(session, outcome.report.as_dict())
    outcome.exit_code = 0 if outcome.report.passed else 1
    outcome.status = "passed" if outcome.report.passed else "failed"
    if output == "text":
        outcome.stdout = render.render_text(outcome.report)


def runbook_fleet_end(book, entries: list[dict], outcomes, *, output: str, report_path, interrupted) -> int:
    """A runbook over many targets (or clusters) ends alike: the fleet report on stdout and in
    --report, then the interruption if there was one, else the fleet's exit status."""
    from debugkit.runbook import render, report
    from debugkit.session import fleet

    if output in render.FLEET_RENDERERS:
        click.echo(render.FLEET_RENDERERS[output](book, entries), nl=False)
    if report_path:
        kind = report.report_format_for(report_path)
        report.write_atomically(report_path, render.FLEET_RENDERERS[kind](book, entries))
    if interrupted is not None:
        raise interrupted
    return fleet.exit_status(outcomes)
