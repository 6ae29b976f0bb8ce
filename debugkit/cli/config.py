"""`debugkit config view|path`: the effective defaults and where each one came from."""
from __future__ import annotations

import json

import click

from debugkit.cli.common import complete_context, runtime_names


@click.group("config")
def config_group() -> None:
    """Show the configuration file's location and the defaults in effect."""


@config_group.command("path")
def path() -> None:
    """Print where the configuration file is read from (whether it exists or not)."""
    from debugkit.session import config

    click.echo(str(config.current().path))


@config_group.command("view")
@click.option("--runtime", type=runtime_names(), default=None,
              help="Show the values as this runtime would get them.")
@click.option("--context", "kube_context", metavar="NAME", help="Show the values for this kube context.",
              shell_complete=complete_context)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def view(runtime, kube_context, output) -> None:
    """Every default in effect (environment > file > built-in) and where it came from."""
    from debugkit.core.escape import safe
    from debugkit.session import config

    cfg = config.current()
    keys = ("image", "profile", "memory", "pids_limit", "cpus", "timeout", "keep_alive", "namespace", "require_reason",
            "record")
    rows = {}
    for key in keys:
        setting = cfg.effective(key, runtime=runtime, kube_context=kube_context)
        rows[key] = {"value": setting.value or None, "source": setting.source}
    rows["runbook_paths"] = {"value": list(cfg.runbook_paths), "source": str(cfg.path) if cfg.runbook_paths else
                             "built-in"}
    if output == "json":
        click.echo(json.dumps({"file": str(cfg.path), "exists": cfg.exists, "values": rows}, indent=2))
        return
    click.echo(f"file: {safe(cfg.path)}{'' if cfg.exists else ' (does not exist: built-in defaults)'}")
    for key, row in rows.items():
        value = row["value"]
        shown = ", ".join(value) if isinstance(value, list) else (value or "-")
        click.echo(f"{key:<14} {safe(shown):<34} {safe(row['source'])}")
