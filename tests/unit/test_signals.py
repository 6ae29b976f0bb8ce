"""SIGTERM and SIGHUP become an exception that no `except Exception` can swallow."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from debugkit.core.errors import ExitCode, Signalled
from debugkit.session.signals import signals_as_exceptions


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, ExitCode.TERMINATED), (signal.SIGHUP, ExitCode.HANGUP)])
def test_a_signal_passes_through_a_broad_except(signum, code):
    swallowed = False
    with pytest.raises(Signalled) as caught:
        with signals_as_exceptions():
            try:
                os.kill(os.getpid(), signum)
                for _ in range(1000):  # the handler runs between bytecodes of the main thread
                    pass
            except Exception:  # noqa: BLE001 - what a library or a best-effort cleanup does
                swallowed = True
    assert not swallowed
    assert caught.value.exit_code == code and caught.value.signum == signum
    assert str(caught.value) == f"received {signal.Signals(signum).name}, cleaned up"


def test_the_previous_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with signals_as_exceptions():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_cli_exits_128_plus_the_signal_with_one_line():
    # A command that a SIGTERM interrupts inside a broad except, as the CLI runs it.
    code = textwrap.dedent("""
        import os, signal, sys
        import click
        from debugkit import cli
        from debugkit.session.signals import signals_as_exceptions

        @cli.cli.command("sigtest", hidden=True)
        def sigtest():
            with signals_as_exceptions():
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    for _ in range(1000):
                        pass
                except Exception:
                    print("swallowed")
                print("ran on")

        cli.main(["sigtest"])
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == ExitCode.TERMINATED, result.stderr
    assert result.stdout == ""
    assert result.stderr == "debugkit: received SIGTERM, cleaned up\n"


INHERITED = textwrap.dedent("""
    import os, signal, sys, time
    from debugkit import cli
    from debugkit.session.signals import signals_as_exceptions

    @cli.cli.command("sigwait", hidden=True)
    def sigwait():
        with signals_as_exceptions():
            print("ready", flush=True)
            time.sleep(60)
        print("ran on")

    cli.main(["sigwait"])
""")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, ExitCode.INTERRUPTED), (signal.SIGTERM, ExitCode.TERMINATED),
                                          (signal.SIGHUP, ExitCode.HANGUP)])
def test_an_inherited_ignore_does_not_keep_a_session_running(signum, code):
    """A background job of a script starts with SIGINT ignored, nohup ignores SIGHUP: a
    session still ends on them, as kubectl does, with its usual code and one line."""
    def ignore_all():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)

    proc = subprocess.Popen([sys.executable, "-c", INHERITED], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=ignore_all)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signum)
        assert proc.wait(timeout=20) == code
    finally:
        proc.kill()
        proc.wait()
    assert proc.stdout.read() == ""
    assert len(proc.stderr.read().splitlines()) == 1


def test_an_inherited_ignore_comes_back_after_the_session():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with signals_as_exceptions():
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
