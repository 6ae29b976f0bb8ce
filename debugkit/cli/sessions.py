"""`debugkit ps`, `debugkit gc` and `debugkit audit`: sessions on every runtime."""
from __future__ import annotations

import json

import click

from debugkit.cli.common import RUNTIME_CHOICE, age, complete_namespace, connection, err, kube_options
from debugkit.cli.contexts import all_contexts_option


def _cluster_options(func):
    func = click.option("--runtime", type=RUNTIME_CHOICE, default="auto", show_default=True)(func)
    func = click.option("-n", "--namespace", help="Kubernetes namespace (default: all namespaces).",
                        shell_complete=complete_namespace)(func)
    return kube_options(func)


def _warn(message: str) -> None:
    err(f"warning: {message}")


@click.command("ps")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_cluster_options
@all_contexts_option
def ps_command(output, runtime, namespace, all_contexts, **where):
    """List debug sessions: Docker and Podman sidecars, Kubernetes debug containers and node
    debugging pods. --context a,b,c or --all-contexts: in each of those clusters."""
    from debugkit.session import contexts, lifecycle

    names = contexts.requested(where.get("kube_context"), all_contexts)
    if names is not None:
        return ps_contexts(names, output=output, choice=runtime, namespace=namespace, where=where)

    failed: list = []  # under --runtime auto: the runtimes that failed, raised once the others' rows show
    rows = lifecycle.sessions(runtime, connection=connection(**where), namespace=namespace, failed=failed)
    if failed and not rows:
        lifecycle.raise_failed(failed)  # no table: an empty one would read as "no sessions"
    render_rows(rows, output)
    lifecycle.raise_failed(failed)


def render_rows(rows, output: str, *, contexts: bool = False) -> None:
    """ps's table (with a CONTEXT column when several contexts were asked) or JSON."""
    from debugkit.core.escape import safe

    if output == "json":
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    context_header = f"{'CONTEXT':<20}" if contexts else ""
    click.echo(f"{context_header}{'RUNTIME':<11}{'SESSION':<10}{'TARGET':<32}{'USER':<13}{'PROFILE':<11}{'AGE':<6}"
               f"{'STATE':<11}{'REUSE':<12}{'CLI':<16}REASON")
    for r in rows:
        cli_state = {True: f"alive ({r.cli_pid})", False: f"gone ({r.cli_pid})", None: "-"}[r.cli_alive]
        target = safe(f"{r.namespace}/{r.target}" if r.namespace else r.target)
        # The reason is read back from a label or the pod spec: anyone with access may have set it.
        reason = safe(r.reason)[:60] if r.reason else "-"
        context = f"{safe(r.context or '-')[:19]:<20}" if contexts else ""
        click.echo(f"{context}{r.runtime:<11}{safe(r.session):<10}{target[:31]:<32}{safe(r.user):<13}"
                   f"{safe(r.profile):<11}{age(r.age_s):<6}{safe(r.state):<11}{reuse_column(r):<12}{cli_state:<16}"
                   f"{reason}")


def ps_contexts(names, *, output: str, choice: str, namespace, where: dict) -> None:
    """ps in every context, side by side: each row names its context; a context that
    fails is said once on stderr, after the others' rows, and the command fails with it."""
    import dataclasses

    from debugkit import runtimes
    from debugkit.session import contexts, lifecycle

    chosen = runtimes.with_contexts() if choice == "auto" else (choice,)
    for name in chosen:
        contexts.check_runtime(name, "--context with several names" if names != contexts.ALL else "--all-contexts")
    base = connection(**{**where, "kube_context": None})
    rows, failed = [], []
    for name in chosen:
        found = contexts.fan_out(contexts.resolve(names, base, name), lambda context, name=name: lifecycle.sessions(
            name, connection=contexts.connection_for(base, context), namespace=namespace))
        for result in found:
            if result.error is not None:
                failed.append((f"context {result.context}", result.error))
                continue
            rows += [dataclasses.replace(row, context=result.context) for row in result.value]
    if failed and not rows:
        lifecycle.raise_failed(failed)
    render_rows(rows, output, contexts=True)
    lifecycle.raise_failed(failed)


def reuse_column(row) -> str:
    """`-` for a one-shot sidecar; for a reusable one, busy or how long it has been idle."""
    if not row.reusable:
        return "-"
    if row.idle_s is None:
        return "idle ?"
    return "busy" if row.idle_s == 0 else f"idle {age(row.idle_s)}"


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; change nothing.")
@click.option("--older-than", default="12h", show_default=True,
              help="Also collect sidecars older than this (30m, 12h, 2d), even if their CLI lives.")
@click.option("--all", "by_label", is_flag=True,
              help="Collect every stale container labelled io.debugkit.managed, even without an audit record "
                   "of debugkit creating it.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_cluster_options
def gc_command(dry_run, older_than, by_label, output, runtime, namespace, **where):
    """Remove stale sidecars; report Kubernetes debug containers (they cannot be deleted)."""
    from debugkit.core.escape import safe
    from debugkit.session import lifecycle
    from debugkit.session.audit import parse_duration

    limit = parse_duration(older_than, flag="--older-than")
    failed: list = []
    actions = lifecycle.collect(runtime, connection=connection(**where), namespace=namespace,
                                older_than_s=limit, dry_run=dry_run, warn=_warn, by_label=by_label, failed=failed)
    if failed and not actions:
        lifecycle.raise_failed(failed)
    if output == "json":
        click.echo(json.dumps(actions, indent=2))
    else:
        if not actions:
            click.echo("nothing to collect")
        for a in actions:
            click.echo(f"{a['action']:<22}{a['runtime'] or '-':<11}{safe(a['session']):<10}{safe(a['name']):<28}"
                       f"{safe(a['reason'])}")
    lifecycle.raise_failed(failed)


@click.group("audit", invoke_without_command=True)
@click.option("--since", help="Only sessions started since then: 30m, 12h, 7d or an ISO time.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def audit_command(ctx, since, output):
    """Show the audit log of debug sessions (one JSON object per session with -o json).

    \b
    debugkit audit --since 12h                 who debugged what, as whom, why, with what result
    debugkit audit show SESSION                one session's record, its reason and recording
    debugkit audit export SESSION --html FILE  a self-contained page with the recording's player
    debugkit audit verify                      check the log's hash chain and the recordings
    """
    if ctx.invoked_subcommand is not None:
        return
    from debugkit.core.escape import safe
    from debugkit.session import audit

    cutoff = audit.parse_since(since) if since is not None else None
    log = audit.read()
    if log.skipped:
        _warn(f"skipped {log.skipped} malformed line(s) in the audit log {audit.audit_path()}")
    sessions = audit.sessions(log, since=cutoff)
    if output == "json":
        click.echo(json.dumps(sessions, indent=2))
        return
    click.echo(f"{'START':<25}{'SESSION':<10}{'RUNTIME':<11}{'TARGET':<28}{'AS':<13}{'BY':<10}{'EXIT':<6}"
               f"{'OUTCOME':<18}REASON")
    for s in sessions:
        ident = s.get("identity") or {}
        who = f"{ident.get('uid')}:{ident.get('gid')}" if ident else "-"
        code = "-" if s.get("exit_code") is None else str(s["exit_code"])
        outcome = s.get("outcome", "running or killed") + (" ●rec" if s.get("recording") else "")
        click.echo(safe(f"{str(s.get('start', '-'))[:23]:<25}{s['session']:<10}{str(s.get('runtime', '-')):<11}"
                        f"{str(s.get('target', '-'))[:27]:<28}{who:<13}{str(s.get('local_user', '-'))[:9]:<10}"
                        f"{code:<6}{outcome:<18}{str(s.get('reason') or '-')[:60]}"))


@audit_command.command("show")
@click.argument("session")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def audit_show(session, output):
    """Print one session's record: who, when, target, identity, profile, reason, result, recording."""
    from debugkit.cli.common import render
    from debugkit.session import audit

    entry = audit.find_session(audit.read(), session)
    if output == "json":
        click.echo(json.dumps(entry, indent=2))
        return
    render(entry, "text")


@audit_command.command("export")
@click.argument("session")
@click.option("--html", "html_path", required=True, metavar="FILE",
              help="Write one self-contained page (the record, the recording in its player, a runbook's report).")
def audit_export(session, html_path):
    """Write a session's record and recording as one page that opens offline."""
    from debugkit.core.escape import safe
    from debugkit.session import audit, export

    entry = audit.find_session(audit.read(), session)
    path = export.write(entry, html_path)
    err(f"wrote {safe(path)} (session {safe(entry['session'])}; mode 0600: it holds the recording)")


@audit_command.command("verify")
@click.option("--no-recordings", is_flag=True, help="Check the chain only, not the recordings' hashes.")
def audit_verify(no_recordings):
    """Check the audit log's hash chain and every recording's SHA-256.

    Exit 0 when everything holds; 1 naming the first bad record (edited, deleted, reordered,
    or a recording that changed). What this proves and does not: docs/security.md.
    """
    import sys

    from debugkit.core.escape import safe
    from debugkit.session import audit, auditchain

    path = audit.audit_path()
    try:
        verdict = auditchain.verify(path, check_recordings=not no_recordings)
    except FileNotFoundError:
        err(f"no audit log at {safe(path)}: nothing to verify")
        sys.exit(1)
    except OSError as exc:
        raise audit.AuditUnreadable(f"cannot read the audit log {path}: {exc.strerror or exc}") from None
    for note in verdict.notes:
        _warn(note)
    if not verdict.ok:
        err(f"the audit log {safe(path)} fails verification at {safe(verdict.problems[0].describe())}")
        sys.exit(1)
    older = f"; the first {verdict.unchained} predate the chain and are not covered" if verdict.unchained else ""
    recordings = "" if no_recordings else f"; {verdict.recordings} recording(s) and report(s) match their SHA-256"
    click.echo(safe(f"{path}: {verdict.records} record(s), chain intact{older}{recordings}"))


@click.command("replay")
@click.argument("session")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(0.01, 1000),
              help="Play this many times faster.")
@click.option("--idle-limit", type=click.FloatRange(0, 86400), default=None, metavar="SECONDS",
              help="Cut every pause to at most this long.")
def replay_command(session, speed, idle_limit):
    """Play a recorded session in the terminal with its timing (after checking its SHA-256)."""
    from debugkit.core.escape import safe
    from debugkit.runtimes.base import terminal_size
    from debugkit.session import audit, replay
    from debugkit.session.signals import signals_as_exceptions

    import sys

    entry = audit.find_session(audit.read(), session)
    recording = replay.open_recording(entry)
    if not recording.sealed:
        _warn(f"the recording of session {safe(entry['session'])} was never sealed (the CLI ended before the "
              f"session's end record): its SHA-256 cannot be checked")
    term = recording.header.get("term") or {}
    rows, cols = terminal_size()
    if sys.stdout.isatty() and (term.get("cols"), term.get("rows")) != (cols, rows):
        _warn(f"recorded at {safe(term.get('cols'))}x{safe(term.get('rows'))}; this terminal is {cols}x{rows}")
    try:
        with signals_as_exceptions():
            status = replay.play(recording, sys.stdout.buffer, speed=speed, idle_limit=idle_limit)
    finally:
        if sys.stdout.isatty():
            sys.stdout.buffer.write(b"\x1b[0m\x1b[?25h")  # attributes reset, cursor shown: whatever was cut off
            sys.stdout.flush()
    err(f"end of session {safe(entry['session'])}" + ("" if status is None else f" (exit status {status})"))
