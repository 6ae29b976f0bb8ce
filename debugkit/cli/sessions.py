"""`debugkit ps`, `debugkit gc` and `debugkit audit`: sessions on every runtime."""
from __future__ import annotations

import json

import click

from debugkit.cli.common import RUNTIME_CHOICE, age, complete_namespace, connection, err, kube_options


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
def ps_command(output, runtime, namespace, **where):
    """List debug sessions: Docker and Podman sidecars, Kubernetes debug containers."""
    from debugkit.core.escape import safe
    from debugkit.session import lifecycle

    failed: list = []  # under --runtime auto: the runtimes that failed, raised once the others' rows show
    rows = lifecycle.sessions(runtime, connection=connection(**where), namespace=namespace, failed=failed)
    if failed and not rows:
        lifecycle.raise_failed(failed)  # no table: an empty one would read as "no sessions"
    if output == "json":
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        lifecycle.raise_failed(failed)
        return
    click.echo(f"{'RUNTIME':<11}{'SESSION':<10}{'TARGET':<32}{'USER':<13}{'PROFILE':<11}{'AGE':<6}{'STATE':<11}"
               f"{'REUSE':<12}CLI")
    for r in rows:
        cli_state = {True: f"alive ({r.cli_pid})", False: f"gone ({r.cli_pid})", None: "-"}[r.cli_alive]
        target = safe(f"{r.namespace}/{r.target}" if r.namespace else r.target)
        click.echo(f"{r.runtime:<11}{safe(r.session):<10}{target[:31]:<32}{safe(r.user):<13}{safe(r.profile):<11}"
                   f"{age(r.age_s):<6}{safe(r.state):<11}{reuse_column(r):<12}{cli_state}")
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


@click.command("audit")
@click.option("--since", help="Only sessions started since then: 30m, 12h, 7d or an ISO time.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def audit_command(since, output):
    """Show the audit log of debug sessions (one JSON object per session with -o json)."""
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
    click.echo(f"{'START':<25}{'SESSION':<10}{'RUNTIME':<11}{'TARGET':<28}{'AS':<13}{'BY':<10}{'EXIT':<6}OUTCOME")
    for s in sessions:
        ident = s.get("identity") or {}
        who = f"{ident.get('uid')}:{ident.get('gid')}" if ident else "-"
        code = "-" if s.get("exit_code") is None else str(s["exit_code"])
        outcome = s.get("outcome", "running or killed")
        click.echo(safe(f"{str(s.get('start', '-'))[:23]:<25}{s['session']:<10}{str(s.get('runtime', '-')):<11}"
                        f"{str(s.get('target', '-'))[:27]:<28}{who:<13}{str(s.get('local_user', '-'))[:9]:<10}"
                        f"{code:<6}{outcome}"))
