"""`debugkit attach` and `debugkit inspect`."""
from __future__ import annotations

import sys

import click

from debugkit.cli.common import (OUTPUT_FORMATS, check_copy_scope, complete_file, complete_profile, complete_target,
                                 copy_options, err, reason_option, record_options, render, sidecar_flags,
                                 sidecar_options, target_options)
from debugkit.cli.contexts import all_contexts_option
from debugkit.cli.fleet import fleet_options


class CommandAfterDashes(click.Command):
    """Remembers how many words came after `--`: with -l or --filter there is no TARGET,
    and only what follows `--` may be the command (a word before it is a TARGET, and
    a TARGET with -l or --filter is refused, not quietly run as a command)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["debugkit.after_dashes"] = len(args) - args.index("--") - 1 if "--" in args else 0
        return super().parse_args(ctx, args)


def words_before_dashes(target, command) -> tuple[str, ...]:
    """The positional words typed before `--` (TARGET and the command's first words)."""
    words = ((target,) if target is not None else ()) + tuple(command)
    after = click.get_current_context().meta.get("debugkit.after_dashes", 0)
    return words[:len(words) - after]


@click.command(cls=CommandAfterDashes, context_settings={"ignore_unknown_options": False})
@click.argument("target", required=False, shell_complete=complete_target)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-i", "--interactive", "stdin", is_flag=True, help="Keep stdin open and forward it.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a TTY for the sidecar.")
@click.option("--target-env", is_flag=True,
              help="Run with the target process's environment and PATH (from /proc/1/environ).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Many targets: plain lines, or one JSON object per target.")
@copy_options
@target_options
@fleet_options
@all_contexts_option
@sidecar_options
@reason_option
@record_options
def attach(target, command, stdin, tty, output, selector, all_namespaces, nodes, filters, filter_runtime, parallel,
           fail_fast, all_contexts, copy, copy_writable, same_node, **kwargs):
    """Start a debug sidecar next to TARGET; run COMMAND in it, or a shell.

    \b
    TARGET is a Docker container (NAME, ID, docker://NAME), a Podman container
    (podman://NAME) or a pod (pod/NAME[/CONTAINER], k8s://NAMESPACE/POD[/CONTAINER]).
    A target that is not running (exited, restarting, crash-looping): --copy
    holds a copy of it with its program not started; `target start` in the
    sidecar runs it. image/REF (podman://image/REF) does the same for an image.
    With a COMMAND (after --), its stdout and stderr are streamed and
    debugkit exits with its exit code. Without one, on a terminal, you get
    an interactive shell. The target's filesystem is at /proc/1/root
    (also $DEBUGKIT_TARGET_ROOT).

    \b
    Many targets at once, in parallel, each with its own line and exit code:
      deploy/NAME sts/NAME ds/NAME rs/NAME job/NAME   (Kubernetes workloads)
      -l SELECTOR [-A]                                (pods by label, no TARGET)
      -l SELECTOR --nodes --profile node              (nodes by label: a pod on each)
      --filter label=K=V [--runtime podman]           (Docker, Podman)
      compose/PROJECT[/SERVICE], podman://compose/... (Compose labels)
    --parallel N at a time (default 8); --fail-fast starts no new target after a
    failure. Exit status: 0 if every target passed, 1 if one failed, or debugkit's
    own error code when no target could be reached. -o json: one object per target.

    \b
    Several clusters at once, a command in each (lines and JSON name the context):
      --context a,b,c     --all-contexts
    A cluster that fails is reported once with its reason; the others go on.
    node/NAME: a pod on that node with its processes, network and / at /host; only with
    --profile node (read-only, no added capability) or --profile sysadmin typed.
    """
    from debugkit import runtimes
    from debugkit.cli.fleet import parse_parallel
    from debugkit.core.errors import InvalidInput
    from debugkit.core.targets import parse_many

    parallel = parse_parallel(parallel)
    if selector is not None or filters:
        # No TARGET with -l or --filter: the command is what follows `--`.
        stray = words_before_dashes(target, command)
        if stray:
            raise InvalidInput(f"a TARGET ({stray[0]!r}) together with {'-l' if selector is not None else '--filter'}"
                               f": give one of them, and the command after --")
        command = ((target,) if target is not None else ()) + tuple(command)
        target = None
    elif target is None:
        raise click.UsageError("no TARGET given (or -l SELECTOR, or --filter label=K=V)")
    many = parse_many(target, runtimes.syntax(), namespace=kwargs.get("namespace"),
                      container=kwargs.get("container"), selector=selector, all_namespaces=all_namespaces, nodes=nodes,
                      filters=tuple(filters), filter_runtime=filter_runtime)
    from debugkit.cli.contexts import attach_contexts, requested

    names = requested(kwargs, all_contexts)
    if copy:
        check_copy_scope(many, names)
    if names is not None:
        return attach_contexts(target, many, names, tuple(command), stdin=stdin, tty=tty, output=output,
                               parallel=parallel, fail_fast=fail_fast, **kwargs)
    if many is not None and not copy:  # (--copy takes one pod of a workload: session/heldcopy.py)
        from debugkit.cli.fleet import attach_many

        return attach_many(many, tuple(command), stdin=stdin, tty=tty, output=output, parallel=parallel,
                           fail_fast=fail_fast, **kwargs)
    from debugkit.core.escape import safe
    from debugkit.runtimes.base import Streams, raw_mode
    from debugkit.session import flow, heldcopy
    from debugkit.session.signals import signals_as_exceptions

    stdin_is_tty = sys.stdin.isatty()
    if not command:
        if stdin_is_tty:
            stdin, tty = True, True
        elif not stdin:
            raise click.UsageError("no COMMAND given and stdin is not a terminal: pass `-- COMMAND` or -i")
    if tty and not stdin_is_tty:
        raise click.UsageError("-t needs a terminal on stdin (drop -t, or run from a terminal)")
    flags = sidecar_flags(target, command, stdin=stdin, tty=tty, **kwargs)

    def announce(plan):
        for warning in plan.warnings:
            err(f"warning: {warning}")
        spec = plan.spec
        if spec.tty:
            # The terminal is already raw: a bare \n would not return the carriage.
            sys.stderr.write(f"debugkit: session {spec.session_id}: {spec.name} attached to "
                             f"{safe(plan.target.name)} as {spec.uid}:{spec.gid} (from {spec.identity.source}); "
                             f"target filesystem at {spec.target_root} ($DEBUGKIT_TARGET_ROOT)\r\n")
            sys.stderr.flush()

    streams = Streams(stdin=sys.stdin.buffer if stdin else None, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer)
    choice = heldcopy.CopyChoice(copy=copy, writable=copy_writable, same_node=same_node)
    with signals_as_exceptions():
        if heldcopy.wanted(flags, choice):
            # The copy is made before the terminal goes raw: its messages end their lines.
            with heldcopy.held(flags, choice) as (runtime, copy_flags, held_copy):
                err(f"held copy {held_copy.name} of {held_copy.original}"
                    f"{' (reused)' if held_copy.reused else ''}: `target start` runs its program")
                if tty:
                    with raw_mode(sys.stdin.fileno()):
                        return flow.attach(copy_flags, streams, announce=announce, runtime=runtime)
                return flow.attach(copy_flags, streams, announce=announce, runtime=runtime)
        if tty:
            with raw_mode(sys.stdin.fileno()):
                return flow.attach(flags, streams, announce=announce)
        return flow.attach(flags, streams, announce=announce)


@click.command()
@click.argument("target", shell_complete=complete_target)
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="text", show_default=True)
@target_options
@click.option("--user", "-u", metavar="UID[:GID]", help="Show the result of this override.")
@click.option("--image", metavar="REF", help="Sidecar image to show in the attach command.")
@click.option("--profile", default=None, help="Profile to show (default: restricted).",
              shell_complete=complete_profile)
@click.option("--custom", metavar="FILE", help="Kubernetes: the partial container spec to show merged.",
              shell_complete=complete_file)
@all_contexts_option
def inspect(target, output, all_contexts, **kwargs):
    """Show who TARGET runs as, where that came from, and how attach would run.
    --context a,b,c or --all-contexts: in each of those clusters, one record each."""
    from debugkit.cli.contexts import inspect_contexts, requested
    from debugkit.session import flow

    names = requested(kwargs, all_contexts)
    if names is not None:
        return inspect_contexts(target, names, output, kwargs)
    render(flow.inspect(sidecar_flags(target, **kwargs)), output)
