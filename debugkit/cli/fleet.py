"""Fleet output: one live line per target on a terminal, prefixed lines otherwise, or JSON.

Shared by `attach MANY -- CMD` and `runbook run RUNBOOK MANY`.
"""
from __future__ import annotations

import json
import sys
import threading
import time

import click

from debugkit.cli.common import err

SYMBOL = {"pending": "…", "running": "▶", "passed": "✔", "failed": "✘", "error": "!", "interrupted": "■",
          "not started": "-"}


def fleet_options(func):
    func = click.option("-l", "--selector", metavar="SELECTOR",
                        help="Kubernetes: every running pod matching this label selector.")(func)
    func = click.option("-A", "--all-namespaces", is_flag=True, help="With -l: in every namespace.")(func)
    func = click.option("--filter", "filters", multiple=True, metavar="label=K[=V]",
                        help="Docker/Podman: every running container with this label (repeatable).")(func)
    func = click.option("--parallel", type=click.IntRange(1, 64), default=8, show_default=True,
                        help="Targets at a time, when the target names many.")(func)
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

            self.live = Live(self._table(), console=Console(), refresh_per_second=8, transient=False)
            self.live.start()

    def _table(self):
        from rich.table import Table

        from debugkit.core.escape import safe

        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        for column in ("", "target", "status", "exit", "time"):
            table.add_column(column)
        for o in self.outcomes:
            code = "-" if o.exit_code is None else str(o.exit_code)
            note = f" {safe(o.error['message'])[:60]}" if o.error else ""
            table.add_row(SYMBOL.get(o.status, "?"), safe(o.target), o.status + note, code,
                          f"{o.duration_s:.1f}s" if o.duration_s else "")
        return table

    def changed(self, outcome) -> None:
        from debugkit.core.escape import safe

        with self._lock:
            if self.live is not None:
                self.live.update(self._table())
                return
            if self.output != "text" or outcome.status in ("pending", "running"):
                return
            prefix = safe(outcome.target)
            for line in outcome.stdout.splitlines():
                click.echo(f"{prefix}: {line}")
            for line in outcome.stderr.splitlines():
                click.echo(f"{prefix}: [stderr] {line}")
            if outcome.error:
                click.echo(f"{prefix}: error ({outcome.error['exit_code']}): {safe(outcome.error['message'])}")
            else:
                click.echo(f"{prefix}: {outcome.status}, exit {outcome.exit_code} ({outcome.duration_s:.2f}s)")

    def finish(self, outcomes) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.stop()
            from debugkit.core.escape import safe

            for o in outcomes:
                if o.status in ("failed", "error") and (o.stdout or o.stderr):
                    click.echo(f"--- {safe(o.target)} ---")
                    if o.stdout:
                        click.echo(o.stdout.rstrip("\n"))
                    if o.stderr:
                        click.echo(o.stderr.rstrip("\n"), err=True)
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
    raise InvalidInput(f"an interactive shell needs one target, and {many} matches {len(members)}: "
                       f"{shown or 'nothing'}; pick one, e.g. debugkit attach {safe(str(members[0].ref)) if members else 'TARGET'}")


def _runner(many, kwargs):
    """(shared runtime, members, skipped, cancel) for a reference that names many."""
    from debugkit.cli.common import raw_options
    from debugkit.session import fleet, flow

    base = raw_options(str(many), **kwargs)
    with flow.refusals_audited(base):
        runtime = fleet.runtime_for(many, base["connection"])
        members, skipped = fleet.expand(many, runtime)
    opened: list = []
    created: list[str] = []

    def on_created(plan, container_id):
        flow.record_created(plan, container_id)
        created.append(container_id)

    runtime.on_created = on_created
    runtime.on_stream = opened.append

    def cancel() -> None:
        for stream in list(opened):
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - it may be closed already
                pass
        for container_id in list(created):
            runtime.stop_container(container_id, graceful=True)

    return base, runtime, members, skipped, cancel


def attach_many(many, command, *, stdin, tty, output, parallel, fail_fast, **kwargs) -> int:
    from debugkit.core.errors import InvalidInput
    from debugkit.runtimes.base import Streams
    from debugkit.session import fleet, flow
    from debugkit.session.signals import signals_as_exceptions

    base, runtime, members, skipped, cancel = _runner(many, kwargs)
    if not command or tty or stdin:
        if not command or tty:
            _refused_interactive(many, members)
        raise InvalidInput("-i cannot feed one stdin to many targets")
    display = Display(output=output, what=f"attach {many}")
    runner = fleet.Fleet(members, parallel=parallel, fail_fast=fail_fast, on_change=display.changed)

    def work(member, outcome):
        out, errors = fleet.Capture(), fleet.Capture()
        raw = {**base, "target": str(member.ref), "namespace": None, "container": None, "command": command}
        try:
            outcome.exit_code = flow.attach(raw, Streams(stdin=None, stdout=out, stderr=errors), runtime=runtime)
            outcome.status = "passed" if outcome.exit_code == 0 else "failed"
        finally:
            outcome.stdout, outcome.stderr = out.text(), errors.text()
            outcome.truncated = out.truncated or errors.truncated

    runner.prepare()
    display.start(runner.outcomes, skipped)
    try:
        with signals_as_exceptions():
            outcomes = runner.run(work, cancel=cancel)
    finally:
        display.finish(runner.outcomes)
    return fleet.exit_status(outcomes)


def runbook_many(many, book, values, *, output, report_path, parallel, fail_fast, profile, **kwargs) -> int:
    """A runbook on every target, one sidecar each, and one report over the fleet."""
    from debugkit.runbook import execute, render, report
    from debugkit.session import fleet, flow
    from debugkit.session.signals import signals_as_exceptions

    base, runtime, members, skipped, cancel = _runner(many, {**kwargs, "profile": profile})
    display = Display(output="text" if output == "text" else "quiet", what=f"runbook {book.source} over {many}")
    runner = fleet.Fleet(members, parallel=parallel, fail_fast=fail_fast, on_change=display.changed)
    record = {"runbook": book.path, "runbook_sha256": book.sha256}

    def work(member, outcome):
        raw = {**base, "target": str(member.ref), "namespace": None, "container": None}
        with flow.exec_session(raw, record=record, runtime=runtime) as session:
            outcome.report = execute.execute(book, values, session)
        outcome.exit_code = 0 if outcome.report.passed else 1
        outcome.status = "passed" if outcome.report.passed else "failed"
        outcome.stdout = render.render_text(outcome.report) if display.terminal else ""

    runner.prepare()
    display.start(runner.outcomes, skipped)
    interrupted = None
    try:
        with signals_as_exceptions():
            runner.run(work, cancel=cancel)
    except BaseException as exc:  # Ctrl-C/SIGTERM: report what finished, then exit 130/143
        interrupted = exc
    finally:
        display.finish(runner.outcomes)
    entries = [{"target": o.target, "namespace": o.namespace, "container": o.container, "status": o.status,
                "duration_s": o.duration_s, "error": o.error, "report": o.report} for o in runner.outcomes]
    if output in render.FLEET_RENDERERS:
        click.echo(render.FLEET_RENDERERS[output](book, entries), nl=False)
    if report_path:
        kind = report.report_format_for(report_path)
        report.write_atomically(report_path, render.FLEET_RENDERERS[kind](book, entries))
    if interrupted is not None:
        raise interrupted
    return fleet.exit_status(runner.outcomes)
