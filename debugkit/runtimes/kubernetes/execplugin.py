"""Running a kubeconfig ``exec`` credential plugin the way client-go does, within bounds.

As client-go: the plugin's stderr reaches the user as it is written (a device code, a
"open this URL" line); with ``interactiveMode`` ``IfAvailable`` or ``Always`` and a terminal
on stdin it gets that terminal, and ``KUBERNETES_EXEC_INFO`` says ``interactive: true``;
``Always`` without a terminal is an error; ``Never`` never gets stdin.

Bounds client-go does not have (a plugin can be anything a kubeconfig names):
- stdout (the ExecCredential) is read up to MAX_STDOUT, stderr up to MAX_STDERR; past
  either, the plugin is ended;
- a time limit: ``timeout`` (120 s by default; doctor passes its own 5 s), raised to
  INTERACTIVE_TIMEOUT while a login is in progress: the plugin has the terminal, or it has
  written to a terminal (a device-code prompt), as a person then has to act;
- the plugin runs in a process group of its own. Past a limit the whole group is ended
  (SIGTERM, SIGKILL after KILL_GRACE), and so is anything of it still holding our pipes
  after the plugin itself exited: nothing it started is left running.
While an interactive plugin runs, its process group is the terminal's foreground group (as
a shell does for a job), so it can read the terminal and Ctrl-C reaches it; the terminal
is handed back afterwards.
"""
from __future__ import annotations

import os
import signal
import sys
import time

DEFAULT_TIMEOUT = 120.0
INTERACTIVE_TIMEOUT = 900.0   # a device code is typically valid for 15 minutes
MAX_STDOUT = 1 << 20
MAX_STDERR = 1 << 20
KILL_GRACE = 1.0
LINGER = 1.0                  # how long a finished plugin's leftovers may hold our pipes
TAIL = 4096


class PluginFailed(Exception):
    """Why the plugin gave no usable output: a one-line reason, without its stdout."""


class Outcome:
    __slots__ = ("stdout", "stderr_tail", "returncode")

    def __init__(self, stdout: bytes, stderr_tail: bytes, returncode: int):
        self.stdout, self.stderr_tail, self.returncode = stdout, stderr_tail, returncode

    def last_stderr_line(self) -> str:
        lines = self.stderr_tail.decode("utf-8", "replace").strip().splitlines()
        return lines[-1].strip()[:300] if lines else ""


def terminal_available(fd: int = 0) -> bool:
    """stdin is a terminal and this process is in its foreground (a background job would
    be stopped when its plugin reads the terminal)."""
    try:
        return os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


def interactive(mode: str, *, allowed: bool, where: str) -> bool:
    """client-go's isInteractive. Raises PluginFailed for Always without a terminal."""
    if mode == "Never":
        return False
    available = allowed and terminal_available()
    if mode == "Always" and not available:
        why = "standard input is not a terminal" if allowed and not os.isatty(0) else \
            "this command cannot give it the terminal"
        raise PluginFailed(f"{where} needs an interactive terminal (interactiveMode: Always), but {why}")
    return available


def run(argv: list[str], env: dict, *, interactive_session: bool, timeout: float | None = DEFAULT_TIMEOUT,
        stderr=None) -> Outcome:
    """Run the plugin; stderr chunks go to ``stderr`` (a binary file, flushed; None: kept
    only for messages). Raises OSError from exec (not found, not executable) and
    PluginFailed past a bound."""
    import selectors
    import subprocess

    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    proc = subprocess.Popen(argv, env=env, stdin=None if interactive_session else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True, **group)
    handed = _hand_terminal(proc.pid) if interactive_session else False
    started = time.monotonic()
    login = interactive_session
    shown_on_tty = stderr is not None and _isatty(stderr)
    out, tail = bytearray(), bytearray()
    err_total = 0
    problem = None
    exited_at = None
    sel = selectors.DefaultSelector()
    try:
        for pipe in (proc.stdout, proc.stderr):
            os.set_blocking(pipe.fileno(), False)
            sel.register(pipe, selectors.EVENT_READ)
        while sel.get_map():
            limit = INTERACTIVE_TIMEOUT if login else timeout
            now = time.monotonic()
            if limit is not None and now - started > limit:
                problem = (f"did not finish within {limit:g} s" if not login else
                           f"did not finish the login within {limit:g} s")
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > LINGER:
                break  # the plugin is done; what it left behind still holds a pipe
            wait = 0.2 if exited_at is not None else 0.5
            for key, _ in sel.select(wait):
                try:
                    chunk = os.read(key.fileobj.fileno(), 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                if key.fileobj is proc.stdout:
                    out += chunk
                    if len(out) > MAX_STDOUT:
                        problem = f"printed more than {MAX_STDOUT >> 20} MiB on stdout"
                else:
                    err_total += len(chunk)
                    tail += chunk
                    del tail[:-TAIL]
                    if err_total > MAX_STDERR:
                        problem = f"printed more than {MAX_STDERR >> 20} MiB on stderr"
                    elif stderr is not None:
                        _forward(stderr, chunk)
                        login = login or shown_on_tty
                if problem:
                    break
            if problem:
                break
    finally:
        sel.close()
        _end_group(proc, force=problem is not None)
        if handed:
            _take_terminal_back()
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
    if problem:
        raise PluginFailed(problem)
    return Outcome(bytes(out), bytes(tail), proc.returncode)


def _isatty(stream) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False


def _forward(stream, chunk: bytes) -> None:
    try:
        stream.write(chunk)
        stream.flush()
    except (OSError, ValueError):
        pass  # our stderr is gone: the plugin's words cannot be shown, its credential still counts


def _end_group(proc, *, force: bool) -> None:
    """Reap the plugin; end its process group when a bound was passed or when members of
    it outlive it (they would otherwise run on unseen)."""
    pgid = proc.pid
    if force or proc.poll() is None:
        _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=KILL_GRACE)
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
            pass
    if proc.poll() is None:
        _signal_group(pgid, signal.SIGKILL)
        proc.wait()
    if _group_alive(pgid):
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.02)
        _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _hand_terminal(pgid: int) -> bool:
    """Make the plugin's group the terminal's foreground group; wake it if it already
    tried to read and was stopped for it."""
    try:
        os.tcsetpgrp(0, pgid)
    except OSError:
        return False
    _signal_group(pgid, signal.SIGCONT)
    return True


def _take_terminal_back() -> None:
    """Our group is in the background now: tcsetpgrp would stop us with SIGTTOU unless
    it is blocked while we ask."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        os.tcsetpgrp(0, os.getpgrp())
    except OSError:
        pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
