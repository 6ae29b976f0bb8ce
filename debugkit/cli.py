"""Click wiring only: parse, call a typed function, render, map errors to exit codes."""
from __future__ import annotations

import json
import os
import sys
import traceback

import click

from debugkit import __version__
from debugkit.errors import DebugkitError, ExitCode, Interrupted

_DEBUG = {"on": False}
OUTPUT_FORMATS = click.Choice(["text", "json", "yaml"])


def _debug_requested() -> bool:
    return _DEBUG["on"] or "--debug" in sys.argv[1:] or os.environ.get("DEBUGKIT_DEBUG") == "1"


def err(message: str) -> None:
    click.echo(f"debugkit: {message}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="debugkit")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """Debug shell-less containers (distroless, FROM scratch) with a tools sidecar.

    The sidecar shares the target's PID and network namespaces and runs as the
    target's own UID/GID with no capabilities, so it sees the target's processes,
    its localhost ports and (through /proc/1/root) its files.
    """
    _DEBUG["on"] = debug


def _target_options(func):
    func = click.option("-n", "--namespace", help="Kubernetes namespace (pod targets).")(func)
    func = click.option("-c", "--container", help="Target container in the pod.")(func)
    func = click.option("--context", help="kubeconfig context to use.")(func)
    func = click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Path to a kubeconfig file.")(func)
    return func


def _sidecar_options(func):
    from debugkit.profiles import PROFILES

    func = click.option("--user", "-u", metavar="UID[:GID]",
                        help="Run the sidecar as this numeric user instead of the target's.")(func)
    func = click.option("--image", metavar="REF", help="Sidecar image (default: the bundled toolbox).")(func)
    func = click.option("--profile", type=click.Choice(list(PROFILES)), default="restricted", show_default=True,
                        help="Security profile of the sidecar.")(func)
    func = click.option("--memory", default="256m", show_default=True,
                        help="Docker: memory limit of the sidecar ('' for none).")(func)
    func = click.option("--pids-limit", type=int, default=256, show_default=True,
                        help="Docker: process limit of the sidecar.")(func)
    func = click.option("--cpus", type=float, default=1.0, show_default=True,
                        help="Docker: CPU limit of the sidecar.")(func)
    func = click.option("--custom", type=click.Path(exists=True, dir_okay=False),
                        help="Kubernetes: partial container spec (YAML/JSON) merged last.")(func)
    func = click.option("--timeout", type=float, default=120.0, show_default=True,
                        help="Kubernetes: seconds to wait for the debug container to start.")(func)
    return func


def _options(target, command, *, namespace, container, context, kubeconfig, user, image, profile,
             memory, pids_limit, cpus, custom, timeout, stdin=False, tty=False):
    from debugkit.session import AttachOptions
    from debugkit.targets import parse_target

    return AttachOptions(
        target=parse_target(target, namespace=namespace, container=container),
        command=tuple(command), stdin=stdin, tty=tty, user=user, image=image, profile=profile,
        memory=memory, pids_limit=pids_limit, cpus=cpus, context=context, kubeconfig=kubeconfig,
        custom=custom, timeout=timeout,
    )


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("target")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-i", "--interactive", "stdin", is_flag=True, help="Keep stdin open and forward it.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a TTY for the sidecar.")
@_target_options
@_sidecar_options
def attach(target, command, stdin, tty, **kwargs):
    """Start a debug sidecar next to TARGET; run COMMAND in it, or a shell.

    \b
    TARGET is a Docker container (NAME, ID, docker://NAME) or a pod
    (pod/NAME[/CONTAINER], k8s://NAMESPACE/POD[/CONTAINER]).
    With a COMMAND (after --), its stdout and stderr are streamed and
    debugkit exits with its exit code. Without one, on a terminal, you get
    an interactive shell. The target's filesystem is at /proc/1/root
    (also $DEBUGKIT_TARGET_ROOT).
    """
    from debugkit.session import Streams, attach as run_attach
    from debugkit.signals import signals_as_exceptions

    stdin_is_tty = sys.stdin.isatty()
    if not command:
        if stdin_is_tty:
            stdin, tty = True, True
        elif not stdin:
            raise click.UsageError("no COMMAND given and stdin is not a terminal: pass `-- COMMAND` or -i")
    if tty and not stdin_is_tty:
        raise click.UsageError("-t needs a terminal on stdin (drop -t, or run from a terminal)")
    options = _options(target, command, stdin=stdin, tty=tty, **kwargs)

    def announce(spec, info, warnings):
        for warning in warnings:
            err(f"warning: {warning}")
        if spec.tty:
            # The terminal is already raw: a bare \n would not return the carriage.
            sys.stderr.write(f"debugkit: session {spec.session_id}: {spec.name} attached to {info.name} as "
                             f"{spec.uid}:{spec.gid} (from {spec.identity.source}); "
                             f"target filesystem at {spec.target_root} ($DEBUGKIT_TARGET_ROOT)\r\n")
            sys.stderr.flush()

    stdout, stderr = sys.stdout.buffer, sys.stderr.buffer
    streams = Streams(stdin=sys.stdin.buffer if stdin else None, stdout=stdout, stderr=stderr)
    from debugkit.terminal import raw_mode

    with signals_as_exceptions():
        if tty:
            with raw_mode(sys.stdin.fileno()):
                code = run_attach(options, streams, announce=announce)
        else:
            code = run_attach(options, streams, announce=announce)
    sys.exit(code)


@cli.command()
@click.argument("target")
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="text", show_default=True)
@_target_options
@click.option("--user", "-u", metavar="UID[:GID]", help="Show the result of this override.")
@click.option("--image", metavar="REF", help="Sidecar image to show in the attach command.")
@click.option("--profile", default="restricted", show_default=True, help="Profile to show.")
def inspect(target, output, namespace, container, context, kubeconfig, user, image, profile):
    """Show who TARGET runs as, where that came from, and how attach would run."""
    from debugkit.session import inspect as run_inspect

    options = _options(target, (), namespace=namespace, container=container, context=context,
                       kubeconfig=kubeconfig, user=user, image=image, profile=profile, memory="256m",
                       pids_limit=256, cpus=1.0, custom=None, timeout=120.0)
    render(run_inspect(options), output)


RUNTIMES = click.Choice(["auto", "docker", "kubernetes"])


def _per_runtime(runtime: str, *, strict: bool, call) -> list:
    """A runtime named with --runtime must work; under `auto` its failure is a warning,
    so the other runtime's answer still shows."""
    try:
        return call()
    except DebugkitError as exc:
        if strict:
            raise
        err(f"warning: {runtime}: {exc}")
        return []


def _docker_rows(*, strict: bool) -> list:
    from debugkit import lifecycle
    from debugkit.backends.docker import DockerBackend

    return _per_runtime("docker", strict=strict, call=lambda: lifecycle.docker_sessions(DockerBackend()))


def _kube_rows(*, strict: bool, kubeconfig=None, context=None, namespace=None) -> list:
    """With strict=False (runtime `auto`) a cluster that is not configured is skipped quietly
    and one that fails is a warning, so `ps` still shows the Docker side."""
    from debugkit.backends import kubernetes as kube

    if not strict and not kube.config_available(kubeconfig):
        return []
    return _per_runtime("kubernetes", strict=strict, call=lambda: kube.debug_sessions(
        kubeconfig=kubeconfig, context=context, namespace=namespace))


def _session_rows(runtime: str, *, kubeconfig=None, context=None, namespace=None) -> list:
    rows = []
    if runtime in ("auto", "docker"):
        rows += _docker_rows(strict=runtime == "docker")
    if runtime in ("auto", "kubernetes"):
        rows += _kube_rows(strict=runtime == "kubernetes", kubeconfig=kubeconfig, context=context,
                           namespace=namespace)
    return rows


def _age(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@cli.command("ps")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--runtime", type=RUNTIMES, default="auto", show_default=True)
@click.option("-n", "--namespace", help="Kubernetes namespace (default: all namespaces).")
@click.option("--context", help="kubeconfig context.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Path to a kubeconfig file.")
def ps_command(output, runtime, namespace, context, kubeconfig):
    """List debug sessions: Docker sidecars and Kubernetes debug containers."""
    rows = _session_rows(runtime, kubeconfig=kubeconfig, context=context, namespace=namespace)
    if output == "json":
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    header = f"{'RUNTIME':<11}{'SESSION':<10}{'TARGET':<32}{'USER':<13}{'PROFILE':<11}{'AGE':<6}{'STATE':<11}CLI"
    click.echo(header)
    for r in rows:
        cli_state = {True: f"alive ({r.cli_pid})", False: f"gone ({r.cli_pid})", None: "-"}[r.cli_alive]
        target = f"{r.namespace}/{r.target}" if r.namespace else r.target
        click.echo(f"{r.runtime:<11}{r.session:<10}{target[:31]:<32}{r.user:<13}{r.profile:<11}"
                   f"{_age(r.age_s):<6}{r.state:<11}{cli_state}")


@cli.command("gc")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; change nothing.")
@click.option("--older-than", default="12h", show_default=True,
              help="Also collect sidecars older than this (30m, 12h, 2d), even if their CLI lives.")
@click.option("--runtime", type=RUNTIMES, default="auto", show_default=True)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("-n", "--namespace", help="Kubernetes namespace (default: all namespaces).")
@click.option("--context", help="kubeconfig context.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Path to a kubeconfig file.")
def gc_command(dry_run, older_than, runtime, output, namespace, context, kubeconfig):
    """Remove stale Docker sidecars; report Kubernetes debug containers (they cannot be deleted)."""
    from debugkit import lifecycle
    from debugkit.audit import parse_duration

    limit = parse_duration(older_than, flag="--older-than")
    actions = []
    if runtime in ("auto", "docker"):
        from debugkit.backends.docker import DockerBackend

        actions += _per_runtime("docker", strict=runtime == "docker", call=lambda: lifecycle.collect_docker(
            DockerBackend(), older_than_s=limit, dry_run=dry_run))
    if runtime in ("auto", "kubernetes"):
        for row in _kube_rows(strict=runtime == "kubernetes", kubeconfig=kubeconfig, context=context,
                              namespace=namespace):
            actions.append({"runtime": "kubernetes", "session": row.session, "name": row.name,
                            "target": f"{row.namespace}/{row.target}", "state": row.state,
                            "reason": "ephemeral containers cannot be deleted; they end with their "
                                      "process or their pod",
                            "action": "kept (still running)" if row.state == "running" else "kept (terminated)"})
    actions += lifecycle.close_abandoned_audit_sessions(dry_run=dry_run)
    if output == "json":
        click.echo(json.dumps(actions, indent=2))
        return
    if not actions:
        click.echo("nothing to collect")
    for a in actions:
        click.echo(f"{a['action']:<22}{a['runtime']:<11}{a['session']:<10}{a['name']:<28}{a['reason']}")


@cli.command("audit")
@click.option("--since", help="Only sessions started since then: 30m, 12h, 7d or an ISO time.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def audit_command(since, output):
    """Show the audit log of debug sessions (one JSON object per session with -o json)."""
    from debugkit import audit

    sessions = audit.sessions(audit.read(), since=audit.parse_since(since) if since else None)
    if output == "json":
        click.echo(json.dumps(sessions, indent=2))
        return
    click.echo(f"{'START':<25}{'SESSION':<10}{'RUNTIME':<11}{'TARGET':<28}{'AS':<13}{'BY':<10}{'EXIT':<6}OUTCOME")
    for s in sessions:
        ident = s.get("identity") or {}
        who = f"{ident['uid']}:{ident['gid']}" if ident else "-"
        code = "-" if s.get("exit_code") is None else str(s["exit_code"])
        outcome = s.get("outcome", "running or killed")
        click.echo(f"{s.get('start', '-')[:23]:<25}{s['session']:<10}{s.get('runtime', '-'):<11}"
                   f"{str(s.get('target', '-'))[:27]:<28}{who:<13}{str(s.get('local_user', '-'))[:9]:<10}"
                   f"{code:<6}{outcome}")


def render(data: dict, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=False))
    elif output == "yaml":
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
    else:
        for key, value in data.items():
            if key == "sources":
                click.echo("sources:")
                for src in value:
                    if "error" in src:
                        click.echo(f"  {src['source']:<13} unavailable: {src['error']}")
                    else:
                        groups = ",".join(str(g) for g in src.get("groups", []))
                        notes = f"  ({'; '.join(src['notes'])})" if src.get("notes") else ""
                        click.echo(f"  {src['source']:<13} {src['uid']}:{src['gid']} groups={groups}{notes}")
                continue
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value) or "-"
            label = f"{key}:"
            click.echo(f"{label:<17}{'-' if value is None else value}")


def _register_optional_commands() -> None:
    """Command groups that live in their own modules (each imported only when present)."""
    import importlib

    for module, attr in (("debugkit.commands_toolbox", "toolbox"), ("debugkit.commands_runbook", "runbook")):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        cli.add_command(getattr(mod, attr))


_register_optional_commands()


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="debugkit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Abort:
        err("interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    except Interrupted as exc:
        _maybe_traceback()
        err(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _maybe_traceback()
        err("interrupted, cleaned up")
        sys.exit(ExitCode.INTERRUPTED)
    except DebugkitError as exc:
        _maybe_traceback()
        err(f"error: {exc}")
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(ExitCode.ERROR)
    except Exception as exc:  # a bug: one line by default, the traceback with --debug
        _maybe_traceback()
        err(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        sys.exit(ExitCode.INTERNAL)


def _maybe_traceback() -> None:
    if _debug_requested():
        traceback.print_exc()
