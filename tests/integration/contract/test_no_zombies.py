"""Nothing left behind inside the target (issue 16), on every runtime.

The target's PID 1 is a Go server that never calls wait(): whatever the debugger leaves in
the shared PID namespace and reparents to it stays there as a zombie for good. Each story
counts, from the host, every process below the target's PID 1 before and after, and every
`sleep` left anywhere in the target's PID namespace (the sidecars included).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import Pty, wait_for
from tests.integration.contract.targets import describe, in_namespace_named, under

BACKGROUND_JOBS = "sleep 100 & sleep 300 & echo started"
SETTLE_S = 20   # a killed CLI's sidecar winds down within this (docs/reliability.md)


def assert_nothing_left(target, before: dict, *, timeout: float = 5) -> None:
    """No process below PID 1 that was not there before (zombie or alive), and no sleep left
    in its namespace. Waits a little: a tree being ended is gone within its grace."""
    def clean():
        return set(under(target.host_pid)) <= set(before) and not in_namespace_named(target.host_pid, "sleep")

    try:
        wait_for(clean, timeout=timeout, what="the target's namespace to be clean")
    except AssertionError:
        now = under(target.host_pid)
        new = {pid: info for pid, info in now.items() if pid not in before}
        raise AssertionError(f"left under the target's PID 1: {describe(new)}; sleeps in its namespace: "
                             f"{in_namespace_named(target.host_pid, 'sleep')}") from None
    zombies = {pid: info for pid, info in under(target.host_pid).items() if info[0] == "Z"}
    assert set(zombies) <= set(before), describe(zombies)


def test_background_jobs_of_a_command_are_ended_and_reaped(target):
    before = under(target.host_pid)
    result = target.attach("sh", "-c", BACKGROUND_JOBS)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"started\n"
    assert_nothing_left(target, before)


def test_an_interactive_shell_that_leaves_background_jobs(target):
    before = under(target.host_pid)
    term = Pty(["attach", target.ref], env=target.env)
    try:
        term.expect(b"$ ", timeout=60)
        term.send("sleep 200 & sleep 201 & echo jobs-$((40+2))\n")
        term.expect(b"jobs-42")
        term.send("exit\n")
        assert term.proc.wait(timeout=60) == 0, term.buffer[-2000:]
    finally:
        term.close()
    assert_nothing_left(target, before)


@pytest.fixture(params=["one-shot", "kept-alive"])
def lifetime(request, runtime) -> list[str]:
    """A sidecar that ends with the session, or one kept alive for later sessions (which
    outlives the CLI, so something else must end what the CLI was running)."""
    if request.param == "kept-alive":
        return ["--keep-alive", "5m"]
    return ["--keep-alive", "0"] if runtime == "kubernetes" else []


def ended_or_idle(target, lifetime):
    """The sidecar is gone (one-shot) or still there, idle, for the next session."""
    if "5m" in lifetime:
        assert len(target.sidecars()) == 1
    else:
        wait_for(lambda: target.sidecars() == [], timeout=SETTLE_S, what=f"the sidecar of {target.ref} to end")


def test_an_interactive_shell_whose_cli_is_killed_leaves_nothing(target, lifetime):
    """A TTY never tells its shell that the client went away: the session's keep-alive
    (on our attach) or a guard (on an exec's stdin we hold) ends it."""
    before = under(target.host_pid)
    term = Pty(["attach", target.ref, *lifetime], env=target.env)
    try:
        term.expect(b"$ ", timeout=60)
        term.send("sleep 203 & echo job-$((40+2))\n")
        term.expect(b"job-42")
        os.killpg(term.proc.pid, signal.SIGKILL)
        term.proc.wait(timeout=10)
    finally:
        term.close()
    assert_nothing_left(target, before, timeout=SETTLE_S)
    ended_or_idle(target, lifetime)


RUNBOOK_VARS = {
    "dns": ("--var", "NAMES=localhost"),
    "http-health": ("--var", "PORT=8080"),
    "processes": (),
    "sockets": (),
    "tls": ("--var", "HOST=127.0.0.1", "--var", "PORT=8080"),
}


@pytest.fixture(params=["full", "slim"])
def toolbox_variant(request, runtime, toolbox_everywhere):
    if request.param == "full":
        return ()
    slim = f"{toolbox_everywhere}-slim"
    if runtime == "kubernetes":
        request.getfixturevalue("k8s_cluster").load_image(slim)
    return ("--image", slim)


def test_bundled_runbooks_leave_nothing_in_either_toolbox(target, toolbox_variant):
    before = under(target.host_pid)
    for name, variables in RUNBOOK_VARS.items():
        result = target.cli("runbook", "run", name, target.ref, *variables, *toolbox_variant, "-o", "json")
        # 1: a step failed (tls against a plain HTTP port does; the slim toolbox lacks some tools).
        assert result.returncode in (0, 1), (name, result.stderr)
    assert_nothing_left(target, before)


def test_a_cli_killed_mid_command_leaves_nothing_behind(target, lifetime):
    before = under(target.host_pid)
    cli = subprocess.Popen([sys.executable, "-m", "debugkit", "attach", target.ref, *lifetime, "--", "sh", "-c",
                            f"{BACKGROUND_JOBS}; sleep 250"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                           env={**os.environ, **target.env})
    try:
        assert cli.stdout.readline() == b"started\n", cli.stderr.read1(4096) if cli.poll() is not None else ""
        wait_for(lambda: len(in_namespace_named(target.host_pid, "sleep")) == 3, timeout=10,
                 what="the command's three sleeps")
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait(timeout=10)
    finally:
        if cli.poll() is None:
            cli.kill()
        cli.stdout.close()
        cli.stderr.close()
    # No CLI is left to clean up: the sidecar ends the tree on its own.
    assert_nothing_left(target, before, timeout=SETTLE_S)
    ended_or_idle(target, lifetime)
