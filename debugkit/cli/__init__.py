"""The command line: click wiring only. Parse, call the session layer, render, and turn
exceptions into exit codes here, at the top, and nowhere else.

Every command module imports only click at load time, so `debugkit --help` stays light;
the work is imported inside the command functions.
"""
from __future__ import annotations

import atexit
import gc
import os
import sys

import click

from debugkit import __version__
from debugkit.cli.attach import attach, inspect
from debugkit.cli.common import err
from debugkit.cli.completion import answer_shell, completing, completion as completion_command
from debugkit.cli.config import config_group
from debugkit.cli.doctor import doctor
from debugkit.cli.runbook import runbook
from debugkit.cli.sessions import audit_command, gc_command, ps_command, replay_command
from debugkit.cli.toolbox import toolbox
from debugkit.cli.transfer import cp, port_forward
from debugkit.core.errors import DebugkitError, ExitCode, Interrupted, OutputClosed, Signalled

_DEBUG = {"on": False}

# At exit the interpreter collects garbage over every object still alive (all of click's
# and debugkit's modules and data): 10-15 ms of CPU, more than a tenth of a whole attach,
# spent finding nothing a command still needs. Freezing them first (atexit runs before
# those collections; handlers run last-registered first, so the ssh dialer's cleanup
# comes before this) leaves the collections nothing to walk. Module teardown, and with it
# the release of what only modules reference, is unchanged.
atexit.register(gc.freeze)


def _debug_requested() -> bool:
    return _DEBUG["on"] or "--debug" in sys.argv[1:] or os.environ.get("DEBUGKIT_DEBUG") == "1"


class _Commands(click.Group):
    """The command group, with two of click's own reactions replaced by debugkit's: a
    broken pipe is exit 141, quietly (click would exit 1), and Ctrl-C or SIGINT, once
    every cleanup has run, is one line and 130 (click would print an empty line first
    and lose the cleanup's word)."""

    def make_context(self, *args, **kwargs):
        try:  # `debugkit --help | head -1` writes here
            return super().make_context(*args, **kwargs)
        except BrokenPipeError as exc:
            raise OutputClosed("output closed by its reader") from exc

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise OutputClosed("output closed by its reader") from exc
        except KeyboardInterrupt:
            _end_echoed_line()
            raise Interrupted("interrupted, cleaned up") from None


def _end_echoed_line() -> None:
    """A terminal echoed ^C where its cursor was: our line starts on a line of its own."""
    try:
        if sys.stderr.isatty():
            sys.stderr.write("\n")
    except (OSError, ValueError, AttributeError):
        pass


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="debugkit")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors, and what was negotiated with the engine.")
@click.option("--config", "config_file", metavar="FILE", envvar="DEBUGKIT_CONFIG",
              help="Configuration file (default: $XDG_CONFIG_HOME/debugkit/config.yaml).")
def cli(debug: bool, config_file: str | None) -> None:
    """Debug shell-less containers (distroless, FROM scratch) with a tools sidecar.

    The sidecar shares the target's PID and network namespaces and runs as the
    target's own UID/GID with no capabilities, so it sees the target's processes,
    its localhost ports and (through /proc/1/root) its files.
    """
    _DEBUG["on"] = debug
    if _debug_requested():
        from debugkit.core import debuglog

        debuglog.enable()  # notes such as the Engine API version negotiated
    if config_file is not None:
        from debugkit.session import config

        config.use(config_file)


for _command in (attach, inspect, cp, port_forward, ps_command, gc_command, audit_command, replay_command, runbook,
                 toolbox, config_group, completion_command, doctor):
    cli.add_command(_command)


def _closed_streams() -> None:
    """A closed stdin reads as empty; a closed stdout cannot take our output."""
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
        raise OutputClosed("stdout is closed: there is nowhere to write the output")


def _flush_stdout() -> None:
    if sys.stdout is not None and not sys.stdout.closed:
        sys.stdout.flush()


def _quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None, *, prog_name: str = "debugkit") -> None:
    if completing():  # the shell asks for completions (_DEBUGKIT_COMPLETE): answer, never complain
        sys.exit(answer_shell(cli))
    try:
        _closed_streams()
        # A command returns its exit code (None: 0); only this function exits.
        try:
            code = cli.main(args=argv, prog_name=prog_name, standalone_mode=False)
        finally:
            # Here, not at the interpreter's exit: a reader that left (`ps | head -0`)
            # is then a BrokenPipeError that becomes 141, like any other write's.
            _flush_stdout()
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
            try:  # `debugkit` or `debugkit runbook` alone: the help, as click shows it
                click.echo(exc.ctx.get_help())
                _flush_stdout()
            except BrokenPipeError:
                _quiet_stdout()
                sys.exit(ExitCode.BROKEN_PIPE)
            sys.exit(ExitCode.USAGE)
        where = f"{exc.ctx.command_path} --help" if exc.ctx is not None else "debugkit --help"
        err(f"error: {exc.format_message()} (see {where})")
        sys.exit(ExitCode.USAGE)
    except click.ClickException as exc:
        err(f"error: {exc.format_message()}")
        sys.exit(ExitCode.USAGE if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Abort:
        err("interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    except (Interrupted, Signalled) as exc:
        _maybe_traceback()
        err(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _maybe_traceback()
        err("interrupted, cleaned up")
        sys.exit(ExitCode.INTERRUPTED)
    except (OutputClosed, BrokenPipeError) as exc:
        # Like other CLIs under `| head`: no message for a reader that left on purpose.
        _quiet_stdout()
        if isinstance(exc, OutputClosed) and "stdout is closed" in str(exc):
            err(str(exc))
        sys.exit(ExitCode.BROKEN_PIPE)
    except DebugkitError as exc:
        _maybe_traceback()
        err(f"error: {exc}")
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug: one line by default, the traceback with --debug
        _maybe_traceback()
        err(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        sys.exit(ExitCode.INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)


def _maybe_traceback() -> None:
    if _debug_requested():
        import traceback  # only then: it imports linecache and tokenize (5-8 ms on every command)

        traceback.print_exc()
