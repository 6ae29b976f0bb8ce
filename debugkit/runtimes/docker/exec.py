"""One sidecar, many commands, on a Docker-API engine: runbooks, interactive shells, cp,
port-forward, scripted commands on remote engines, and commands in a kept-alive
(--keep-alive) sidecar.

A session's sidecar has a keep-alive as its main process that lives exactly as long as
our attach connection keeps its stdin open, so a killed CLI (or a dropped ssh connection)
takes its sidecar with it (EOF -> exit -> auto-remove). A kept-alive sidecar outlives the
CLI until it has been idle for its --keep-alive. Commands are execs, under the reaper
when the image has it (`reap --hold`: when the keep-alive stops, it asks them to end
first, and they end and reap their trees).

Two things the engine does not do for us, and what we do instead:
- When a sidecar that shares the target's PID namespace ends while an exec runs, the
  runtime kills the exec's processes but the engine (Docker 20.10 with containerd 1.6)
  never closes the exec's stream nor records its exit. So every wait on an exec stream
  also watches the keep-alive stream: if that closes, the sidecar is gone.
- For the same reason, ending the sidecar is not how a running exec is stopped: on an
  error or a signal the exec's processes are killed first (they carry a marker in their
  environment, DEBUGKIT_EXEC=<random tag>, and only processes with that marker are
  signalled), so the engine sees them exit and closes their streams, and nothing is left
  waiting on the engine's side (on an ssh engine: a `docker system dial-stdio`).
"""
from __future__ import annotations

import contextlib
import os
import socket as socketlib
import threading
import time
from typing import Sequence

from debugkit.core.errors import DebugkitError, EngineUnreachable, TargetNotRunning
from debugkit.runtimes.base import ExecSession, Plan, RelayUnavailable
from debugkit.runtimes.docker import translate
from debugkit.runtimes.docker.engine_errors import EngineError
from debugkit.runtimes.docker.errors import start_error
from debugkit.runtimes.execution import ExecResult, StepRun
from debugkit.runtimes.terminal import (STDERR_STREAM, FdReader, FrameDemuxer, pump, terminal_size, wait_readable,
                                       write_output)

EXEC_MARKER = "DEBUGKIT_EXEC"
KILLED_WITH_SIDECAR = 137  # the runtime kills a sidecar's execs with SIGKILL


class SidecarGone(DebugkitError):
    """The sidecar to exec into is no longer running (a kept-alive one that expired)."""


class DockerExecSession(ExecSession):
    def __init__(self, runtime, plan: Plan, *, container: str | None = None, steps_main: bool = False,
                 relay_dir: str | None = None):
        """`container`: exec into that running sidecar instead of starting one (it is then
        neither started nor removed here). `steps_main`: a runbook's sidecar whose main
        process is `debugkit-helper steps` on our attach (plan.details.steps_request):
        `exec` runs every step over the attach stream, without an exec. `relay_dir`: a host
        directory mounted at RELAY_MOUNT (port-forward through unix sockets)."""
        self.runtime = runtime
        self.plan = plan
        self.spec = plan.spec
        self.api = runtime.api
        self.container_id: str | None = container
        self.name = container or plan.spec.name
        self._owned = container is None
        self._keepalive = None
        # exec ID -> marker of each exec that runs now (port-forward runs many at once)
        self._running: dict[str, str] = {}
        self.finished = False   # the work ended normally: see close()
        self.lost = False       # the engine could not be reached
        self._heartbeat = None
        self._guards: list = []  # the streams of guards started for -i/-t execs (see _start)
        self._steps = None       # runtimes.steps.HelperSteps: a runbook's steps over one exec
        self._steps_main = steps_main and container is None
        self._relay_dir = relay_dir if container is None else None

    def __enter__(self) -> "DockerExecSession":
        if not self._owned:
            return self
        request = self.plan.details.steps_request if self._steps_main else None
        if self._relay_dir is not None:
            request = translate.with_relay_mount(self.plan.request, self._relay_dir)
        with self.runtime.calls():
            try:
                self.container_id = self.runtime.create(self.plan, request=request)
            except EngineError as exc:
                if self._relay_dir is None:
                    raise
                raise RelayUnavailable(f"the engine refused the relay's directory: {exc.explanation}") from exc
            try:
                self._keepalive = self.runtime.attach(self.container_id, stdin=True)
                self.runtime.start(self.container_id)
            except BaseException:
                self.close()
                raise
        interval = self.plan.details.heartbeat_s
        if interval:
            self._heartbeat = _Heartbeat(self._keepalive, interval)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.finished = exc_type is None
        # The engine cannot be reached: one attempt to remove the sidecar (it ends by
        # itself anyway, execs first, when its keep-alive sees EOF), no more waiting.
        self.lost = exc_type is not None and issubclass(exc_type, EngineUnreachable)
        self.close()

    def close(self) -> None:
        if self._steps is not None:
            # After a normal end, wait (briefly) for the steps exec to end: then nothing
            # holds the keep-alive, which stops at once instead of winding commands down.
            self._steps.close(wait=self.finished)
            self._steps = None
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        running = list(self._running.values())
        if running and self.container_id and not self.lost:
            # One exec: its own marker; several: every exec of this session (the prefix).
            self._kill_marked(running[0] if len(running) == 1 else f"{self.spec.session_id}.")
        self._running.clear()
        for guard in self._guards:
            with contextlib.suppress(Exception):
                guard.close()  # stdin EOF: the guard exits (its command has ended by now)
        self._guards = []
        if not self._owned:
            return
        if self._keepalive is not None:
            with contextlib.suppress(Exception):
                self._keepalive.close()  # stdin EOF: the keep-alive ends its commands and exits
            self._keepalive = None
        if self.container_id:
            # Closing the keep-alive stream ends the sidecar (EOF -> exit -> auto-remove).
            # After a normal end on a remote engine that is all: the same mechanism a
            # dropped connection relies on, without a removal round trip. Otherwise
            # (errors, signals, a local engine) stop it at once, gracefully when the
            # helper's keep-alive runs it (it winds its commands down first).
            if self._steps_main and self.finished:
                # Its main process ended at our attach's EOF (waited for above): the
                # engine removes it; a removal now only makes sure.
                self.runtime.remove_container(self.container_id)
            elif self.finished and self.api.local and self.plan.helper and \
                    self.runtime.removed_by_itself(self.container_id):
                pass  # its keep-alive exited at our attach's EOF, and the engine removed it
            elif not (self.finished and not self.api.local):
                if self.lost:
                    self.runtime.remove_container(self.container_id)
                else:
                    self.runtime.stop_container(self.container_id, graceful=self.plan.helper)
            self.container_id = None
        with contextlib.suppress(Exception):
            self.api.release()

    def alive(self) -> bool:
        from debugkit.runtimes.docker.engine import EngineError

        try:
            return bool((self.api.inspect_container(self.container_id).get("State") or {}).get("Running"))
        except (EngineError, OSError):
            return False

    def _kill_marked(self, tag: str) -> None:
        self.runtime.stop_execs(self.container_id, tag)

    def _env(self, tag: str | None = None) -> dict[str, str]:
        env = self.spec.env_dict()
        if tag is not None:
            env[EXEC_MARKER] = tag
        return env

    def _start(self, argv: Sequence[str], *, stdin: bool, tty: bool, ends_at_eof: bool = False):
        """Create and start an exec of argv (under the reaper when the sidecar has it),
        marked; (exec ID, its stream). `ends_at_eof`: argv reads our stdin and ends at
        its EOF by itself (helper steps), so it needs no guard."""
        from debugkit.runtimes.docker.engine import EngineError

        tag = f"{self.spec.session_id}.{os.urandom(6).hex()}"  # secrets.token_hex, lighter
        helper = self.plan.helper
        # What ends the command if this CLI is killed: a command that reads none of our
        # stdin watches its exec's stdin (the engine closes it when our connection drops);
        # one that does, in a kept-alive sidecar that outlives us, holds a guard. In our
        # own session sidecar its keep-alive, on our attach, already does that.
        watch = helper and not stdin and not tty
        guard = self._start_guard() if helper and not watch and not ends_at_eof and not self._owned else None
        command = translate.exec_command(self.name, argv, helper=helper, watch_stdin=watch, guard=guard,
                                         mark=f"{EXEC_MARKER}={tag}")
        exec_id = None
        with self.runtime.calls():
            try:
                exec_id = self.api.exec_create(self.container_id, command, stdin=stdin or watch, stdout=True,
                                               stderr=True, tty=tty, environment=self._env(tag))["Id"]
                self._running[exec_id] = tag
                return exec_id, self.api.exec_start(exec_id, tty=tty)
            except EngineError as exc:
                self._running.pop(exec_id, None)
                if not self._owned and exc.status_code in (404, 409):
                    raise SidecarGone(f"sidecar {self.name} is not running: {exc.explanation}") from None
                # The sidecar ended before the command could start (the target stopped,
                # the engine restarted): the same errors a sidecar's start gets.
                raise start_error(exc.explanation) from exc

    def _start_guard(self) -> str:
        """A guard keep-alive in the sidecar on an exec's stdin that we hold until close()."""
        from debugkit.runtimes.base import guard_command, guard_name

        name = guard_name(self.name, self.spec.session_id)
        with self.runtime.calls():
            exec_id = self.api.exec_create(self.container_id, guard_command(name), stdin=True, stdout=False,
                                           stderr=False, environment=self._env(f"{self.spec.session_id}.guard"))["Id"]
            self._guards.append(self.api.exec_start(exec_id, tty=False))
        return name

    def exec_interactive(self, argv: Sequence[str], *, stdin, stdout) -> int:
        """A TTY exec of argv; its exit code."""
        api = self.api
        exec_id, sock = self._start(argv, stdin=True, tty=True)
        with contextlib.closing(sock):
            with self.runtime.calls():
                def resize(rows, cols):
                    with contextlib.suppress(Exception):
                        api.exec_resize(exec_id, height=rows, width=cols)

                resize(*terminal_size())
                ended = pump(sock, tty_mode=True, stdin=stdin, stdout=stdout, stderr=stdout, on_resize=resize,
                             until_closed=self._keepalive)
            code = self._exit_code(exec_id, stream=sock) if ended else self._sidecar_ended(sock, exec_id)
        if code is None:
            raise DebugkitError("the interactive shell's exit status never arrived")
        self._running.pop(exec_id, None)
        return int(code)

    def exec_streamed(self, argv: Sequence[str], *, stdin, stdout, stderr) -> int:
        """A scripted command as an exec (no TTY): stdout and stderr kept apart, stdin
        forwarded when given, and its exit code. A command the image cannot run is the
        same error as when it is a sidecar's main process (127 / 126)."""
        exec_id, sock = self._start(argv, stdin=stdin is not None, tty=False)
        out = _StartFailureCatcher(stdout)
        with contextlib.closing(sock):
            with self.runtime.calls():
                ended = pump(sock, tty_mode=False, stdin=stdin, stdout=out, stderr=stderr,
                             until_closed=self._keepalive)
            code = self._exit_code(exec_id, stream=sock) if ended else self._sidecar_ended(sock, exec_id)
        if code is None:
            raise DebugkitError("the command's exit status never arrived")
        self._running.pop(exec_id, None)
        if out.held is not None:
            if code in (126, 127):
                raise start_error(out.held.decode("utf-8", "replace").strip())
            out.release()
        return int(code)

    def exec_io(self, argv, *, stdin_fd: int | None, stdout, stderr) -> int:
        return self.exec_streamed(argv, stdin=FdReader(stdin_fd) if stdin_fd is not None else None,
                                  stdout=stdout, stderr=stderr)

    def exec(self, argv, *, timeout: float, max_output: int = 1 << 20) -> ExecResult:
        if self.plan.helper:
            # Every step over one exec of the helper's `steps` (runtimes/steps.py).
            if self._steps is None:
                from debugkit.runtimes.steps import HelperSteps

                self._steps = HelperSteps(self._open_steps, fallback=None if self._steps_main else self._exec_once)
            return self._steps.run(argv, timeout=timeout, max_output=max_output)
        return self._exec_once(argv, timeout=timeout, max_output=max_output)

    def _open_steps(self):
        from debugkit.runtimes.base import HELPER_PATH
        from debugkit.runtimes.docker.stepchannel import AttachStepChannel, ExecStepChannel

        if self._steps_main:
            if self._keepalive is None:
                raise DebugkitError("runbook: the sidecar's helper stopped answering: no further step can run")
            attach, self._keepalive = self._keepalive, None  # the channel owns it from now on
            return AttachStepChannel(self, attach)
        exec_id, sock = self._start([HELPER_PATH, "steps"], stdin=True, tty=False, ends_at_eof=True)
        return ExecStepChannel(self, exec_id, sock)

    def _exec_once(self, argv, *, timeout: float, max_output: int) -> ExecResult:
        """One step as one exec, under `timeout -s KILL` (a sidecar without the helper)."""
        step = StepRun(argv, timeout=timeout, max_output=max_output)
        exec_id, sock = self._start(step.wrapped, stdin=False, tty=False)
        demux = FrameDemuxer()
        watch = [sock] + ([self._keepalive] if self._keepalive is not None else [])

        def read(timeout: float):
            readable = wait_readable(watch, timeout)
            if sock not in readable:
                if readable and self._keepalive_closed():
                    self._sidecar_ended(sock, exec_id)
                    raise TargetNotRunning("the sidecar ended while a step ran (did the target stop?)")
                return []
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, socketlib.timeout):
                data = b""
            return [(stream == STDERR_STREAM, payload) for stream, payload in demux.feed(data)] if data else None

        try:
            step.collect(read)
            result = step.result(None if step.timed_out else self._exit_code(exec_id, stream=sock))
            if not step.timed_out:
                self._running.pop(exec_id, None)
            return result
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def _keepalive_closed(self) -> bool:
        try:
            self._keepalive.setblocking(False)
            return not self._keepalive.recv(65536)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def _sidecar_ended(self, stream, exec_id: str) -> int:
        """The keep-alive closed under a running exec: a dropped connection (an error of
        its own), or the sidecar ended (target stopped, gc): then the runtime killed the
        exec with it, and the engine will never report its status."""
        self._raise_if_lost(self._keepalive, stream)
        self._running.pop(exec_id, None)
        return KILLED_WITH_SIDECAR

    def _raise_if_lost(self, *streams) -> None:
        for stream in streams:
            reason = stream.transport_failure() if stream is not None else None
            if reason:
                raise self.runtime.lost_connection(reason)

    def _exit_code(self, exec_id: str, *, stream=None) -> int | None:
        """The exit code once the engine has seen the exec end (a moment after its stream).
        If the engine still says it runs, the stream may have ended because its connection
        dropped (an ssh engine): that is an error of its own, not a missing exit status."""
        from debugkit.runtimes.docker.engine import EngineNotFound

        with self.runtime.calls():
            for attempt in range(300):
                try:
                    info = self.api.exec_inspect(exec_id)
                except EngineNotFound:
                    info = None  # the sidecar (and its execs) are gone
                if info is not None and not info.get("Running"):
                    return info.get("ExitCode")
                if attempt == 0 and stream is not None:
                    self._raise_if_lost(stream, self._keepalive)
                if info is None:
                    return None
                time.sleep(0.01)
        return None


class _Heartbeat:
    """One byte on the keep-alive stream every `interval` seconds (remote engines): the
    keep-alive ends the sidecar when they stop arriving (translate.main_command)."""

    def __init__(self, sock, interval: float):
        self._sock = sock
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="debugkit-heartbeat")
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._sock.sendall(b".")
            except (OSError, ValueError):
                return  # the stream is closed: nothing left to keep alive

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)


class _StartFailureCatcher:
    """Holds back the first output of an exec if it is the runtime's own start failure
    ("OCI runtime exec failed: ... executable file not found"), so that it can become
    the same one-line error a sidecar's main process gets; anything else passes."""

    MARK = b"OCI runtime exec failed"

    def __init__(self, stream):
        self.stream = stream
        self.held: bytes | None = None
        self._first = True

    def write(self, data: bytes) -> None:
        if self._first:
            self._first = False
            if data.startswith(self.MARK):
                self.held = bytes(data)
                return
        if self.held is not None:
            self.release()
        write_output(self.stream, data)

    def flush(self) -> None:
        pass

    def release(self) -> None:
        held, self.held = self.held, None
        if held:
            write_output(self.stream, held)
