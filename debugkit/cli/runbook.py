"""`debugkit runbook run|list|validate`.

The runbook is loaded, validated and its variables bound before anything talks to an
engine, so an invalid runbook (exit 65) never starts a sidecar. A runbook whose steps
failed prints its report and exits 1; debugkit's own failures keep their exit codes.

Privilege comes only from the person: a runbook may declare `profile: ptrace`, but
anything above `restricted` runs only when the same `--profile` is typed.
"""
from __future__ import annotations

import contextlib
import json
import os

import click

from debugkit.cli.common import (PROFILE_NAMES, check_copy_scope, complete_runbook, complete_target, copy_options,
                                 reason_option, record_options, sidecar_flags, target_options)
from debugkit.cli.contexts import all_contexts_option
from debugkit.cli.fleet import fleet_options

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


def granted_profile(book, flag: str | None) -> str:
    """The profile a run uses. A runbook's own `profile` is a request: above `restricted`
    it must be confirmed by the same --profile on the command line."""
    from debugkit.core.errors import RunbookInvalid

    wanted = book.profile or "restricted"
    if flag is None:
        if wanted != "restricted":
            raise RunbookInvalid(
                f"{book.source}: the runbook asks for profile {wanted!r}, which grants more than restricted; "
                f"run it with --profile {wanted} to allow that")
        return "restricted"
    if wanted != "restricted" and flag != wanted:
        raise RunbookInvalid(f"{book.source}: the runbook asks for profile {wanted!r} but --profile is {flag!r}; "
                             f"pass --profile {wanted} to run it as written")
    return flag


@runbook.command("run")
@click.argument("runbook_ref", metavar="NAME|PATH", shell_complete=complete_runbook)
@click.argument("target", required=False, shell_complete=complete_target)
@click.option("--var", "var_pairs", multiple=True, metavar="KEY=VALUE",
              help="Set a variable declared in the runbook's vars (repeatable).")
@click.option("-o", "--output", type=OUTPUTS, default="text", show_default=True,
              help="Format printed on stdout (text is printed step by step as it runs).")
@click.option("--report", "report_path", metavar="PATH",
              help="Also write the report to PATH (JSON if it ends in .json, else Markdown), atomically.")
@target_options
@click.option("--user", "-u", metavar="UID[:GID]", help="Run the sidecar as this numeric user instead of the target's.")
@click.option("--image", metavar="REF", help="Sidecar image (default: the bundled toolbox).")
@click.option("--profile", type=click.Choice(PROFILE_NAMES), default=None,
              help="Security profile. A runbook that asks for more than restricted runs only with this flag.")
@fleet_options
@all_contexts_option
@copy_options
@reason_option
@record_options
def run(runbook_ref, target, var_pairs, output, report_path, profile, selector, all_namespaces, nodes, filters,
        filter_runtime, parallel, fail_fast, all_contexts, copy, copy_writable, same_node, **kwargs):
    """Run the runbook NAME (bundled or configured) or PATH against TARGET in one sidecar.

    Exit status: 0 if every step not marked continue_on_failure passed, 1 if one
    failed (the report says which and why), 65 if the runbook is invalid.

    \b
    TARGET may name many (deploy/NAME, compose/PROJECT, or -l SELECTOR, --filter
    label=K=V instead of a TARGET): the runbook runs on each, --parallel N at a time,
    and --report writes one fleet report (a summary table, then each target's steps).
    --context a,b,c or --all-contexts: in each of those clusters too.
    node/NAME with --profile node: the bundled `node` runbook checks a node's health.
    --copy runs it against a held copy of TARGET (one that is not running, too): its
    steps may run `target start` to start the original program.
    """
    from debugkit import runtimes
    from debugkit.cli.fleet import parse_parallel
    from debugkit.core.targets import parse_many
    from debugkit.runbook import execute, load, render, report, variables
    from debugkit.session import config, flow, recording
    from debugkit.session.signals import signals_as_exceptions

    parallel = parse_parallel(parallel)
    if target is None and selector is None and not filters:
        raise click.UsageError("no TARGET given (or -l SELECTOR, or --filter label=K=V)")
    many = parse_many(target, runtimes.syntax(), namespace=kwargs.get("namespace"),
                      container=kwargs.get("container"), selector=selector, all_namespaces=all_namespaces, nodes=nodes,
                      filters=tuple(filters), filter_runtime=filter_runtime)
    flags = sidecar_flags(target if many is None else str(many), profile=profile, **kwargs)
    # Everything that can be refused is refused here, before any engine is contacted.
    with flow.refusals_audited(flags):
        book = load.load_file(runbook_ref, search_paths=config.current().runbook_paths)
        values = variables.bind(book, variables.parse_var_args(var_pairs))
        if book.profile not in (None, "restricted"):
            flags = flags.evolve(profile=granted_profile(book, profile))
        if report_path is not None:
            report.check_report_path(report_path)

    from debugkit.cli.contexts import requested, runbook_contexts

    names = requested(kwargs, all_contexts)
    if copy:
        check_copy_scope(many, names)
    if names is not None:
        return runbook_contexts(target, many, names, book, values, output=output, report_path=report_path,
                                parallel=parallel, fail_fast=fail_fast, profile=flags.profile, **kwargs)
    if many is not None and not copy:  # (--copy takes one pod of a workload: session/heldcopy.py)
        from debugkit.cli.fleet import runbook_many

        return runbook_many(many, book, values, output=output, report_path=report_path, parallel=parallel,
                            fail_fast=fail_fast, profile=flags.profile, **kwargs)
    live = output == "text"  # text is printed step by step; markdown and json at the end
    shown = []

    def on_step(result):
        shown.append(result)
        if live:
            click.echo(render.step_text(result, len(shown)))

    from debugkit.session import heldcopy

    choice = heldcopy.CopyChoice(copy=copy, writable=copy_writable, same_node=same_node)
    with signals_as_exceptions(), contextlib.ExitStack() as stack:
        runtime = None
        if heldcopy.wanted(flags, choice):
            runtime, flags, _held = stack.enter_context(heldcopy.held(flags, choice))
        with flow.exec_session(flags, record={"runbook": book.path, "runbook_sha256": book.sha256},
                               runtime=runtime) as session:
            if live:
                for line in render.header_lines(execute.Report(book, values,
                                                               facts=execute.plan_facts(session.plan))):
                    click.echo(line)
            result = execute.execute(book, values, session, on_step=on_step)
            recording.keep_report(session, result.as_dict())
    if live:
        click.echo(render.summary_line(result))
    else:
        click.echo(render.RENDERERS[output](result), nl=False)
    if report_path:
        report.write_atomically(report_path, render.RENDERERS[report.report_format_for(report_path)](result))
    return 0 if result.passed else 1


@runbook.command("list")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_(output):
    """Show the bundled runbooks and those in the configured runbook_paths, with their
    descriptions, variables and profiles."""
    from debugkit.core.errors import DebugkitError
    from debugkit.core.escape import safe
    from debugkit.runbook import load
    from debugkit.session import config

    entries = [(book, "bundled", None) for book in load.bundled()]
    bundled = {book.source for book, _o, _e in entries}
    for name, path in load.search_path_entries(config.current().runbook_paths).items():
        if name in bundled:
            entries.append((None, str(path), f"hidden: the bundled {name!r} wins for the bare name; run ./PATH"))
            continue
        try:
            entries.append((load.load_file(str(path)), str(path), None))
        except DebugkitError as exc:
            entries.append((None, str(path), f"invalid: {exc}"))
    if output == "json":
        click.echo(json.dumps([
            {"name": b.source if b.path.endswith("(bundled)") else os.path.splitext(os.path.basename(origin))[0],
             "origin": origin, "title": b.name, "description": b.description, "profile": b.profile or "restricted",
             "file": b.path, "sha256": b.sha256, "vars": {k: v.default for k, v in b.vars.items()},
             "steps": [s.name for s in b.steps]} if b is not None else {"origin": origin, "problem": problem}
            for b, origin, problem in entries], indent=2))
        return
    import textwrap

    names = [os.path.splitext(os.path.basename(o))[0] if b is None or o != "bundled" else b.source
             for b, o, _p in entries]
    width = max((len(n) for n in names), default=0)
    for name, (b, origin, problem) in zip(names, entries):
        if b is None:
            click.echo(safe(f"{name:<{width}}  {origin}: {problem}"))
            continue
        about = " ".join(b.description.split()) or "-"
        click.echo(textwrap.fill(safe(about), width=100, initial_indent=f"{safe(name):<{width}}  ",
                                 subsequent_indent=" " * (width + 2)))
        where = "" if origin == "bundled" else f"  ({origin})"
        click.echo(safe(f"{'':<{width}}  profile: {b.profile or 'restricted'}{where}"))
        if b.vars:
            shown = " ".join(f"{k}={'(required)' if v.default is None else v.default}" for k, v in b.vars.items())
            click.echo(safe(f"{'':<{width}}  vars: {shown}"))


@runbook.command("validate")
@click.argument("runbook_ref", metavar="NAME|PATH", shell_complete=complete_runbook)
def validate(runbook_ref):
    """Check a runbook (syntax, keys, types, regexes, variables) without running it."""
    from debugkit.core.escape import safe
    from debugkit.runbook import load, render

    for line in render.describe(load.load_file(runbook_ref)):
        click.echo(safe(line))
