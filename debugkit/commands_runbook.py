"""`debugkit runbook run|list|validate`: click wiring over debugkit.runbook.

Registered by debugkit/cli.py when this module exists. The runbook is loaded, validated
and its variables bound before anything talks to an engine, so an invalid runbook
(exit 65) never starts a sidecar. A runbook whose steps failed prints its report and
exits 1; debugkit's own failures keep their exit codes (see the README).
"""
from __future__ import annotations

import json
import sys

import click

from debugkit.profiles import PROFILES

OUTPUTS = click.Choice(["text", "markdown", "json"])


@click.group("runbook")
def runbook() -> None:
    """Scripted incident checks: YAML steps run in one sidecar, with a report.

    \b
    debugkit runbook list
    debugkit runbook run http-health web --var PORT=8080 --var URL_PATH=/healthz
    debugkit runbook run ./checks.yaml web -o markdown --report incident.json
    debugkit runbook validate ./checks.yaml
    """


@runbook.command("run")
@click.argument("runbook_ref", metavar="FILE|NAME")
@click.argument("target")
@click.option("--var", "var_pairs", multiple=True, metavar="KEY=VALUE",
              help="Set a variable declared in the runbook's vars (repeatable).")
@click.option("-o", "--output", type=OUTPUTS, default="text", show_default=True,
              help="Format printed on stdout (text is printed step by step as it runs).")
@click.option("--report", "report_path", metavar="PATH",
              help="Also write the report to PATH (JSON if it ends in .json, else Markdown), atomically.")
@click.option("-n", "--namespace", help="Kubernetes namespace (pod targets).")
@click.option("-c", "--container", help="Target container in the pod.")
@click.option("--context", help="kubeconfig context to use.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Path to a kubeconfig file.")
@click.option("--user", "-u", metavar="UID[:GID]", help="Run the sidecar as this numeric user instead of the target's.")
@click.option("--image", metavar="REF", help="Sidecar image (default: the bundled toolbox).")
@click.option("--profile", type=click.Choice(list(PROFILES)), default=None,
              help="Security profile (default: the runbook's `profile`, else restricted).")
def run(runbook_ref, target, var_pairs, output, report_path, namespace, container, context, kubeconfig,
        user, image, profile):
    """Run the runbook FILE (or bundled NAME) against TARGET in one sidecar.

    Exit status: 0 if every step not marked continue_on_failure passed, 1 if one
    failed (the report says which and why), 65 if the runbook is invalid.
    """
    from debugkit import runbook as rb
    from debugkit.session import AttachOptions, open_exec_session
    from debugkit.signals import signals_as_exceptions
    from debugkit.targets import parse_target

    # Everything that can be refused is refused here, before any engine is contacted.
    book = rb.load_file(runbook_ref)
    values = rb.bind(book, rb.parse_var_args(var_pairs))
    if report_path:
        rb.check_report_path(report_path)
    options = AttachOptions(
        target=parse_target(target, namespace=namespace, container=container),
        user=user, image=image, profile=profile or book.profile or "restricted",
        context=context, kubeconfig=kubeconfig,
    )

    live = output == "text"  # text is printed step by step; markdown and json at the end
    shown = []

    def on_step(result):
        shown.append(result)
        if live:
            click.echo(rb.step_text(result, len(shown)))

    with signals_as_exceptions():
        with open_exec_session(options) as session:
            if live:
                for line in rb.header_lines(rb.Report(book, values, facts=rb.session_facts(session))):
                    click.echo(line)
            report = rb.execute(book, values, session, on_step=on_step)
    if live:
        click.echo(rb.summary_line(report))
    else:
        click.echo(rb.RENDERERS[output](report), nl=False)
    if report_path:
        rb.write_atomically(report_path, rb.RENDERERS[rb.report_format_for(report_path)](report))
    sys.exit(0 if report.passed else 1)


@runbook.command("list")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_(output):
    """Show the bundled runbooks with their descriptions and variables."""
    from debugkit import runbook as rb

    books = rb.bundled()
    if output == "json":
        click.echo(json.dumps([{"name": b.source, "title": b.name, "description": b.description,
                                "vars": {k: v.default for k, v in b.vars.items()},
                                "steps": [s.name for s in b.steps]} for b in books], indent=2))
        return
    import textwrap

    width = max((len(b.source) for b in books), default=0)
    for b in books:
        about = " ".join(b.description.split()) or "-"
        click.echo(textwrap.fill(about, width=100, initial_indent=f"{b.source:<{width}}  ",
                                 subsequent_indent=" " * (width + 2)))
        if b.vars:
            shown = " ".join(f"{k}={'(required)' if v.default is None else v.default}" for k, v in b.vars.items())
            click.echo(f"{'':<{width}}  vars: {shown}")



@runbook.command("validate")
@click.argument("runbook_ref", metavar="FILE|NAME")
def validate(runbook_ref):
    """Check a runbook (syntax, keys, types, regexes, variables) without running it."""
    from debugkit import runbook as rb

    for line in rb.describe(rb.load_file(runbook_ref)):
        click.echo(line)
