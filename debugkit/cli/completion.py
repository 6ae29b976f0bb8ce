"""Shell completion: `debugkit completion bash|zsh|fish` and the callbacks the options use.

click's own machinery does the work: the script a shell sources calls debugkit back with
_DEBUGKIT_COMPLETE=<shell>_complete, and click asks the parameter under the cursor for
its completions. This module is imported with the CLI, so it imports nothing but click
at load time; the lookups (session/complete.py) are imported when a TAB asks for them.
Every callback completes nothing rather than fail or print: whatever goes wrong.
"""
from __future__ import annotations

import os

import click

SHELLS = ("bash", "zsh", "fish")
PROG = "debugkit"
COMPLETE_VAR = "_DEBUGKIT_COMPLETE"

# click's bash script, but for three things: bash splits COMP_WORDS at ':' and '=' (its
# COMP_WORDBREAKS), which would cut `podman://web` or `--namespace=shop` into pieces, so the
# whole line up to the cursor (COMP_LINE, COMP_POINT) goes along and the answers are
# trimmed to the part of the word bash replaces (see DebugkitBash); and the answers are
# read line by line into quoted words, never through an unquoted $value that bash would
# split and glob-expand (a kube context named `*` must not complete to the files here).
_SOURCE_BASH = """\
%(complete_func)s() {
    local response type value

    response=$(env COMP_WORDS="${COMP_WORDS[*]}" COMP_CWORD=$COMP_CWORD \
COMP_LINE="${COMP_LINE:0:$COMP_POINT}" COMP_WORDBREAKS="$COMP_WORDBREAKS" \
%(complete_var)s=bash_complete $1 2>/dev/null)

    while IFS=',' read -r type value; do
        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            COMPREPLY+=("$value")
        fi
    done <<< "$response"

    return 0
}

%(complete_func)s_setup() {
    complete -o nosort -F %(complete_func)s %(prog_name)s
}

%(complete_func)s_setup;
"""


def _bash_class():
    from click.shell_completion import BashComplete, split_arg_string

    class DebugkitBash(BashComplete):
        """Bash with the whole line: `podman://web` stays one word."""

        source_template = _SOURCE_BASH
        _cut = ""

        def get_completion_args(self):
            line = os.environ.get("COMP_LINE")
            if line is None:  # called the way click's own script calls
                return super().get_completion_args()
            words = split_arg_string(line)
            incomplete = "" if not line or line[-1].isspace() or not words else words.pop()
            # Bash replaces only the text after the last word-break character of the word.
            breaks = os.environ.get("COMP_WORDBREAKS", "\"'><=;|&(:")
            cut = max((incomplete.rfind(ch) for ch in breaks if not ch.isspace()), default=-1)
            self._cut = incomplete[:cut + 1]
            return words[1:], incomplete

        def format_completion(self, item):
            value = item.value
            if self._cut and isinstance(value, str) and value.startswith(self._cut):
                value = value[len(self._cut):]
            if item.type == "plain":
                value = bash_escape(value)  # bash inserts the word as it is: `*` must arrive as `\\*`
            return f"{item.type},{value}"

    return DebugkitBash


# What a word may hold unescaped on a bash command line (and still mean itself).
_BASH_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/:@%+-,")


def bash_escape(value: str) -> str:
    """value as bash must see it typed: every character but the plain ones after a backslash."""
    return "".join(ch if ch in _BASH_PLAIN else f"\\{ch}" for ch in value)


def register_shells() -> None:
    from click.shell_completion import add_completion_class

    add_completion_class(_bash_class(), "bash")


def answer_shell(cli: click.Command) -> int:
    """Answer the shell (the process exits after this). Nothing may reach the terminal
    but the answer: stderr goes to /dev/null, and a failure answers nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        pass
    try:
        register_shells()
        cli.main(args=[], prog_name=PROG, complete_var=COMPLETE_VAR, standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - complete nothing, say nothing
        return 1
    return 0


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    bash:  eval "$(debugkit completion bash)"           (in ~/.bashrc)
    zsh:   eval "$(debugkit completion zsh)"            (in ~/.zshrc, after compinit)
    fish:  debugkit completion fish > ~/.config/fish/completions/debugkit.fish

    It completes running containers (podman://NAME when Podman is set up), pod/, deploy/,
    sts/, ds/, rs/ and job/ names, namespaces (-n), kube contexts, runbooks and
    profiles. Every lookup gives up after a second; a failure completes nothing.
    """
    from click.shell_completion import get_completion_class

    register_shells()
    root = click.get_current_context().find_root().command
    script = get_completion_class(shell)(root, {}, PROG, COMPLETE_VAR).source()
    click.echo(script, nl=not script.endswith("\n"))


# -- the callbacks (click's `shell_complete=`) -------------------------------------------------

def _typed(ctx: click.Context) -> dict:
    """The values typed so far on this command and the groups above it."""
    found: dict = {}
    while ctx is not None:
        for key, value in ctx.params.items():
            if value is not None:
                found.setdefault(key, value)
        ctx = ctx.parent
    config_file = found.get("config_file")
    if config_file:
        from debugkit.session import config

        config.use(config_file)
    return found


def _connection(ctx: click.Context):
    """Where the flags typed so far point: the kube context, the Docker engine."""
    from debugkit.core.options import Connection

    typed = _typed(ctx)
    return Connection(docker_host=typed.get("docker_host"), docker_context=typed.get("docker_context"),
                      kube_context=typed.get("kube_context"), kubeconfig=typed.get("kubeconfig"))


def _quietly(lookup) -> list:
    try:
        from click.shell_completion import CompletionItem

        from debugkit.session.complete import presentable

        return [CompletionItem(value) for value in presentable(lookup())]
    except Exception:  # noqa: BLE001 - complete nothing rather than fail
        return []


def complete_target(ctx, param, incomplete):
    """TARGET: containers, podman://, pod/, workloads, k8s://."""
    def lookup():
        from debugkit.session import complete

        return complete.targets(incomplete, namespace=_typed(ctx).get("namespace"), connection=_connection(ctx))
    return _quietly(lookup)


def complete_namespace(ctx, param, incomplete):
    def lookup():
        from debugkit.session import complete

        return complete.namespaces(incomplete, connection=_connection(ctx))
    return _quietly(lookup)


def complete_context(ctx, param, incomplete):
    def lookup():
        from debugkit.session import complete

        return complete.contexts(incomplete, connection=_connection(ctx))
    return _quietly(lookup)


def complete_container(ctx, param, incomplete):
    """-c: the containers of the pod named by the TARGET typed before it."""
    def lookup():
        from debugkit.session import complete

        typed = _typed(ctx)
        target = typed.get("target")
        if not isinstance(target, str):
            # click parses nothing positional when the line ends in an option still
            # waiting for its value (`pod/web -c <TAB>`): find the pod in the words.
            from click.shell_completion import split_arg_string

            from debugkit.core.targets import names_a_pod

            words = split_arg_string(os.environ.get("COMP_LINE") or os.environ.get("COMP_WORDS", ""))
            target = next((w for w in words if names_a_pod(w)), None)
        if target is None:
            return []
        return complete.containers(target, incomplete, namespace=typed.get("namespace"), connection=_connection(ctx))
    return _quietly(lookup)


def complete_profile(ctx, param, incomplete):
    def lookup():
        from debugkit.core.profiles import PROFILE_NAMES

        return [p for p in PROFILE_NAMES if p.startswith(incomplete)]
    return _quietly(lookup)


def complete_runbook(ctx, param, incomplete):
    """NAME|PATH: bundled and configured names; a path completes as a file."""
    try:
        from click.shell_completion import CompletionItem

        from debugkit.runbook.load import looks_like_path
        from debugkit.session import complete

        if incomplete and (looks_like_path(incomplete) or incomplete.startswith(("~", "."))):
            return [CompletionItem(incomplete, type="file")]
        _typed(ctx)
        return [CompletionItem(name) for name in complete.presentable(complete.runbooks(incomplete))]
    except Exception:  # noqa: BLE001
        return []


def complete_file(ctx, param, incomplete):
    """A path: the shell completes it."""
    try:
        from click.shell_completion import CompletionItem

        return [CompletionItem(incomplete, type="file")]
    except Exception:  # noqa: BLE001
        return []


def completing() -> bool:
    return bool(os.environ.get(COMPLETE_VAR))
