"""`kubectl debugkit ...`: debugkit as a kubectl plugin (the console script kubectl-debugkit).

kubectl runs `kubectl-debugkit` with every argument that follows the plugin's name,
as typed, so kubectl's habit of global flags before the subcommand reaches us too:

    kubectl debugkit -n shop --context prod attach web -- ss -ltn

Two things differ from `debugkit`, and only here:

1. --context, --kubeconfig, -n/--namespace and --as/--as-group/--as-uid written before the subcommand (or between
   a group and its subcommand: `runbook -n shop run dns web`) are moved to just after
   the subcommand, which takes them. A flag the subcommand has no use for is refused.
   Written after the subcommand, they are the subcommand's own, as usual (and win).
2. A bare TARGET is a pod: `kubectl debugkit attach web` is `debugkit attach pod/web`
   (`cp web:/x .` is `cp pod/web:/x .`). Anything with a kind or a scheme (deploy/api,
   k8s://ns/web, docker://web) means what it always means.

Both are done here, over the click commands, so no command changes for the plugin.
"""
from __future__ import annotations

import functools
import sys

import click

PROG = "kubectl debugkit"
# Flag as kubectl spells it -> (the click parameter name, the long form the subcommands take).
HOISTED = {
    "-n": ("namespace", "--namespace"),
    "--namespace": ("namespace", "--namespace"),
    "--context": ("kube_context", "--context"),
    "--kubeconfig": ("kubeconfig", "--kubeconfig"),
    "--as": ("kube_as", "--as"),
    "--as-group": ("kube_as_groups", "--as-group"),
    "--as-uid": ("kube_as_uid", "--as-uid"),
}
PLUGIN_HELP = """

As a kubectl plugin (kubectl debugkit), a bare TARGET is a pod: `kubectl debugkit attach
web` is `pod/web`, and kubectl's -n/--namespace, --context, --kubeconfig, --as, --as-group
and --as-uid may come before the subcommand."""


class PluginUsage(click.UsageError):
    pass


def _split_hoisted(token: str, following: str | None) -> tuple[str, str, int] | None:
    """(flag, value, tokens used) when `token` is one of the hoisted flags, else None.
    Takes `-n shop`, `-nshop`, `-n=shop`, `--namespace shop`, `--namespace=shop`."""
    if token.startswith("--"):
        name, eq, value = token.partition("=")
        if name not in HOISTED:
            return None
        if eq:
            return name, value, 1
    elif token.startswith("-n") and token != "-n":
        return "-n", token[2:].removeprefix("="), 1
    elif token == "-n":
        name = "-n"
    else:
        return None
    if following is None:
        raise PluginUsage(f"option {token} requires an argument")
    return name, following, 2


def _takes_value(group: click.Command, token: str) -> bool | None:
    """True/False when `token` is an option of `group`, None when it is not."""
    name = token.partition("=")[0] if token.startswith("--") else token
    for param in group.params:  # not get_params(): it would fix the help option's names
        if isinstance(param, click.Option) and (name in param.opts or name in param.secondary_opts):
            return not (param.is_flag or param.count) and "=" not in token
    return None


def hoist(argv: list[str], root: click.Group) -> list[str]:
    """argv with kubectl-style global flags moved to just after the (sub)command that
    takes them. Unchanged when there is no such flag or no command to move them to (click
    then reports what is wrong)."""
    hoisted: list[tuple[str, str]] = []
    out: list[str] = []
    group: click.Command = root
    i = 0
    command = None
    while i < len(argv):
        token = argv[i]
        if token == "--":
            break
        found = _split_hoisted(token, argv[i + 1] if i + 1 < len(argv) else None)
        if found is not None:
            flag, value, used = found
            hoisted.append((flag, value))
            i += used
            continue
        if token.startswith("-") and token != "-":
            takes = _takes_value(group, token)
            if takes and i + 1 < len(argv):
                out += argv[i:i + 2]
                i += 2
            else:
                out.append(token)
                i += 1
            continue
        sub = group.commands.get(token) if isinstance(group, click.Group) else None
        if sub is None:
            break
        out.append(token)
        i += 1
        if isinstance(sub, click.Group):
            group = sub
            continue
        command = sub
        break
    if not hoisted:
        return list(argv)
    if command is None:
        # Only root options (`-n shop --help`): without a subcommand the flags mean nothing.
        # An unknown word instead: unchanged, and click says what is wrong.
        return out if i >= len(argv) else list(argv)
    takes = {p.name for p in command.params}
    moved: list[str] = []
    for flag, value in hoisted:
        param, long = HOISTED[flag]
        if param not in takes:
            path = " ".join(t for t in out if not t.startswith("-"))
            raise PluginUsage(f"{flag} does not apply to `{PROG} {path}`")
        moved.append(f"{long}={value}")
    return out + moved + list(argv[i:])


# -- a bare TARGET is a pod -----------------------------------------------------------------------

def pod_default(ref):
    """`web` -> `pod/web`; anything with a kind or a scheme (a slash) is left as it is."""
    if isinstance(ref, str) and ref and "/" not in ref:
        return f"pod/{ref}"
    return ref


def _endpoint_default(text):
    """cp's TARGET:PATH with a bare TARGET -> pod/TARGET:PATH; local paths unchanged."""
    if not isinstance(text, str) or not text:
        return text
    from debugkit.session.copy import parse_endpoint  # the rule cp itself applies

    try:
        endpoint = parse_endpoint(text)
    except Exception:  # noqa: BLE001 - cp reports it
        return text
    if endpoint.target is None or "/" in endpoint.target:
        return text
    return f"pod/{text}"


def _wrap(command: click.Command) -> None:
    names = {p.name for p in command.params}
    original = command.callback
    if original is None:
        return
    if "target" in names:
        def callback(*args, **kwargs):
            # With -l or --filter there is no TARGET: attach takes that word as the command.
            if kwargs.get("selector") is None and not kwargs.get("filters"):
                kwargs["target"] = pod_default(kwargs.get("target"))
            return original(*args, **kwargs)
    elif {"src", "dst"} <= names:
        def callback(*args, **kwargs):
            kwargs["src"] = _endpoint_default(kwargs.get("src"))
            kwargs["dst"] = _endpoint_default(kwargs.get("dst"))
            return original(*args, **kwargs)
    else:
        return
    command.callback = functools.update_wrapper(callback, original)


def plugin_mode(root: click.Group) -> None:
    """Make this process's command tree the plugin's: bare targets are pods."""
    def walk(cmd: click.Command) -> None:
        if isinstance(cmd, click.Group):
            for sub in cmd.commands.values():
                walk(sub)
        else:
            _wrap(cmd)
    walk(root)
    import inspect

    root.help = inspect.cleandoc(root.help or "") + PLUGIN_HELP


def main(argv: list[str] | None = None) -> None:
    from debugkit.cli import cli, err
    from debugkit.cli import main as cli_main
    from debugkit.core.errors import ExitCode

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        args = hoist(args, cli)
    except PluginUsage as exc:
        err(f"error: {exc.format_message()} (see {PROG} --help)")
        sys.exit(ExitCode.USAGE)
    plugin_mode(cli)
    cli_main(args, prog_name=PROG)


if __name__ == "__main__":
    main()
