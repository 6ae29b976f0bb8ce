"""Commands in a debug container over the exec subresource (the channel protocol).

Every command, scripted or interactive, is an exec: its exit status arrives in-stream on
the error channel (v5/v4), so nothing waits for the kubelet to publish a terminated
state. stdin is forwarded and half-closed (v5) on EOF; a terminal is resized on SIGWINCH.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading

from debugkit.core.errors import CommandNotExecutable, CommandNotFound, DebugkitError
from debugkit.runtimes.base import ExecSession, Plan
from debugkit.runtimes.execution import ExecResult, StepRun
from debugkit.runtimes.terminal import read_input, terminal_size, wait_readable, write_output

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
RESIZE_POLL = 0.25  # seconds between terminal size checks when no SIGWINCH comes
# A streamed exec's processes carry DEBUGKIT_EXEC=<session>.<random> in their environment,
# as on Docker: closing an exec's stream does not end its process (the kubelet and the
# runtime leave it running), so an interrupted cp or port-forward kills them by marker.
EXEC_MARKER = "DEBUGKIT_EXEC"


class ContainerNotReady(DebugkitError):
    """The kubelet does not know the debug container (yet, or any more)."""


def exit_code_of(ws, *, what: str) -> int:
    """The exit code the exec's Status carries; the shell's 127/126 when the runtime could not
    start the command; an error for anything else (a stopped container, say)."""
    from debugkit.runtimes.kubernetes.websocket import container_not_found

    code = ws.exit_code()
    if code is not None:
        return code
    status = ws.status()
    failure = ws.exec_failure_code()
    message = str((status or {}).get("message") or "the stream ended without an exit status")
    if failure == 127:
        raise CommandNotFound(f"{what}: command not found in the debug container ({_runc_words(message)})")
    if failure == 126:
        raise CommandNotExecutable(f"{what}: command cannot be executed in the debug container "
                                   f"({_runc_words(message)})")
    # containerd's "task ... not found": the container's process has ended (its keep-alive
    # expired between the plan and the exec): as good as not running.
    if container_not_found(status) or "stopped state" in message or \
            ("task " in message and "not found" in message):
        raise ContainerNotReady(f"{what}: the debug container is not running ({_runc_words(message)})")
    raise DebugkitError(f"{what}: {_runc_words(message)}")


def drain_and_close(ws, *, wait: float) -> None:
    """Read a stream whose output nobody wants to its end (or its first 5 s of silence), then close it."""
    try:
        while ws.recv(5) is not None:
            pass
    except EOFError:
        pass
    finally:
        ws.close(wait=wait)


def _runc_words(message: str) -> str:
    """The useful end of a kubelet/runc error: 'exec: "x": executable file not found in $PATH'."""
    for marker in ("exec: ", "unable to upgrade connection: "):
        if marker in message:
            return marker + message.rsplit(marker, 1)[1].removesuffix(": unknown")
    return message.removeprefix("Internal error occurred: ")


def pump(ws, *, stdin_fd: int | None, stdout, stderr, tty: bool) -> None:
    """Copy between an exec stream and local streams until the command's stream ends."""
    wake_r, wake_w = os.pipe()
    previous = None
    if tty and threading.current_thread() is threading.main_thread():
        os.set_blocking(wake_w, False)

        def on_winch(_signum, _frame):
            with contextlib.suppress(OSError):
                os.write(wake_w, b"w")

        previous = signal.signal(signal.SIGWINCH, on_winch)
    last_size = terminal_size() if tty else None
    if tty:
        ws.resize(*last_size)
    try:
        while True:
            while True:  # what the stream already holds (TLS buffers it where select cannot see)
                try:
                    item = ws.recv(0)
                except EOFError:
                    return
                if item is None:
                    break
                channel, data = item
                write_output(stderr if channel == STDERR else stdout, data)
            watch = [ws.fileno(), wake_r] + ([stdin_fd] if stdin_fd is not None else [])
            # A terminal's size changes with SIGWINCH, which only a controlling terminal
            # delivers: a short timeout also notices a change without one.
            readable = wait_readable(watch, RESIZE_POLL if tty else None)
            if wake_r in readable:
                os.read(wake_r, 1024)
            if tty:
                size = terminal_size()
                if size != last_size:
                    last_size = size
                    ws.resize(*size)
            if stdin_fd is not None and stdin_fd in readable:
                data = read_input(stdin_fd)
                if data:
                    ws.send(STDIN, data)
                else:
                    stdin_fd = None
                    ws.close_channel(STDIN)  # v5: the command sees EOF; v4 cannot say it
    finally:
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
        os.close(wake_r)
        os.close(wake_w)


class KubeExecSession(ExecSession):
    """Commands in one debug container (started, or reused) for a runbook, cp or forward.

    A holder exec (`cat` under the reaper, its stdin open) counts as a connection to the
    keep-alive for the whole session, so a container started with --keep-alive 0 lives
    exactly as long as the session, and a killed CLI closes it (stdin EOF)."""

    def __init__(self, runtime, plan: Plan):
        self.runtime = runtime
        self.plan = plan
        self.spec = plan.spec
        self._holder = None
        self.container: str | None = None
        self._running: set[str] = set()   # markers of the streamed execs that have not ended
        self._steps = None                 # runtimes.steps.HelperSteps: a runbook's steps over one exec

    def __enter__(self) -> "KubeExecSession":
        # The holder's exec is the new container's readiness probe (start.ensure_container).
        self.container, self._holder = self.runtime.ensure_container(
            self.plan, open_first=lambda name: self.runtime.exec(self.plan, name, ["cat"], stdin=True, tty=False))
        return self

    def close(self) -> None:
        if self._steps is not None:
            self._steps.close()
            self._steps = None
        if self._running and self.container is not None:
            running = sorted(self._running)
            self._stop_marked(running[0] if len(running) == 1 else f"{self.spec.session_id}.")
        self._running.clear()
        if self._holder is not None:
            with contextlib.suppress(Exception):
                self._holder.close_channel(STDIN)
                self._holder.close(wait=0.5)
            self._holder = None

    def alive(self) -> bool:
        """The debug container runs (it ends with the target, whose PID namespace it shares).
        An API hiccup is not its death; a missing pod is."""
        from debugkit.core.errors import TargetNotFound

        try:
            state = self.runtime.waiting_state(self.plan.details.pod_target, self.container)
        except TargetNotFound:
            return False
        except DebugkitError:
            return True
        # The API reports `running` about a second after the container runs: until then
        # it says `waiting`, which is not an end either.
        return "terminated" not in state

    def exec_io(self, argv, *, stdin_fd: int | None, stdout, stderr) -> int:
        tag = f"{self.spec.session_id}.{secrets.token_hex(6)}"
        ws = self.runtime.exec(self.plan, self.container, ["env", f"{EXEC_MARKER}={tag}", *argv],
                               stdin=stdin_fd is not None, tty=False)
        self._running.add(tag)
        try:
            pump(ws, stdin_fd=stdin_fd, stdout=stdout, stderr=stderr, tty=False)
            code = exit_code_of(ws, what=argv[0])
            self._running.discard(tag)  # it ended by itself; otherwise close() ends it
            return code
        finally:
            ws.close(wait=0.2)

    def _stop_marked(self, marker: str) -> None:
        """SIGKILL the processes of execs whose stream was abandoned (Ctrl-C, an error), found
        by their marker: never a target process (none carries it). Bounded (about 3 s)."""
        from debugkit.runtimes.docker.translate import STOP_EXECS

        with contextlib.suppress(Exception):
            command = ["sh", "-c", STOP_EXECS, "debugkit-stop", marker]
            if getattr(self.plan.details, "as_process", False):  # root without CAP_KILL: as the execs' user
                from debugkit.runtimes.kubernetes.translate import as_target

                command = as_target(command, helper=self.plan.helper)
            ws = self.runtime.stream(self.plan.details.pod_target, self.container, command, stdin=False, tty=False)
            drain_and_close(ws, wait=0.2)

    def exec(self, argv, *, timeout: float, max_output: int = 1 << 20) -> ExecResult:
        if self.plan.helper:
            # Every step over one exec of the helper's `steps` (runtimes/steps.py).
            if self._steps is None:
                from debugkit.runtimes.steps import HelperSteps

                self._steps = HelperSteps(self._open_steps, fallback=self._exec_once)
            return self._steps.run(argv, timeout=timeout, max_output=max_output)
        return self._exec_once(argv, timeout=timeout, max_output=max_output)

    def _open_steps(self) -> "_StepChannel":
        from debugkit.runtimes.base import HELPER_PATH

        return _StepChannel(self.runtime.exec(self.plan, self.container, [HELPER_PATH, "steps"], stdin=True,
                                              tty=False))

    def _exec_once(self, argv, *, timeout: float, max_output: int) -> ExecResult:
        """One step as one exec, under `timeout -s KILL` (a debug container without the helper)."""
        step = StepRun(argv, timeout=timeout, max_output=max_output)
        ws = self.runtime.exec(self.plan, self.container, step.wrapped, stdin=False, tty=False)

        def read(timeout: float):
            try:
                item = ws.recv(min(timeout, 0.5))
            except EOFError:
                return None
            return [] if item is None else [(item[0] == STDERR, item[1])]

        try:
            step.collect(read)
            code = None if step.timed_out else _step_code(ws)
        finally:
            ws.close(wait=0.2)
        return step.result(code)


class _StepChannel:
    """The stream of one `debugkit-helper steps` exec (runtimes.steps.StepChannel)."""

    def __init__(self, ws):
        self._ws = ws

    def send(self, data: bytes) -> None:
        try:
            self._ws.send(STDIN, data)
        except OSError as exc:
            raise DebugkitError(f"runbook: cannot send a step to the debug container's helper: {exc}") from None

    def read(self, timeout: float):
        try:
            item = self._ws.recv(min(timeout, 0.5))
        except EOFError:
            return None
        if item is None or item[0] not in (STDOUT, STDERR):
            return []
        return [(item[0] == STDERR, item[1])]

    def ended(self, stderr: bytes) -> None:
        from debugkit.runtimes.base import helper_mismatch

        mismatch = helper_mismatch(exit_code_of(self._ws, what="debugkit-helper steps"), stderr)
        if mismatch is not None:
            raise mismatch

    def close(self, *, wait: bool = False) -> None:
        with contextlib.suppress(Exception):
            self._ws.close_channel(STDIN)  # EOF: the helper winds down a step that still runs, and exits
        with contextlib.suppress(Exception):
            self._ws.close(wait=0.2)


def _step_code(ws) -> int:
    try:
        return exit_code_of(ws, what="runbook step")
    except (CommandNotFound, CommandNotExecutable) as exc:
        return exc.exit_code  # a step's verdict says "command not found" from 127

