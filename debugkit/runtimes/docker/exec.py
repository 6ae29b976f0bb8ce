"""One sidecar, many commands, on a Docker-API engine: runbooks, interactive shells, cp,
port-forward, and commands in a kept-alive (--keep-alive) sidecar.

A session's sidecar has a keep-alive as its main process that lives exactly as long as
our attach connection keeps its stdin open, so a killed CLI takes its sidecar with it
(EOF -> exit -> auto-remove). A kept-alive sidecar outlives the CLI until it has been
idle for its --keep-alive. Commands are execs, under the reaper when the image has it.
"""
from __future__ import annotations

import contextlib
import select
import socket as socketlib
import time
from typing import Sequence

from debugkit.core.errors import DebugkitError
from debugkit.runtimes.base import ExecSession, Plan, Streams
from debugkit.runtimes.docker import translate
from debugkit.runtimes.execution import ExecResult, StepRun
from debugkit.runtimes.terminal import STDERR_STREAM, FrameDemuxer, pump, terminal_size


class SidecarGone(DebugkitError):
    """The sidecar to exec into is no longer running (a kept-alive one that expired)."""


class DockerExecSession(ExecSession):
    def __init__(self, runtime, plan: Plan, *, container: str | None = None):
        """`container`: exec into that running sidecar instead of starting one (it is then
        neither started nor removed here)."""
        self.runtime = runtime
        self.plan = plan
        self.spec = plan.spec
        self.api = runtime.api
        self.container_id: str | None = container
        self.name = container or plan.spec.name
        self._owned = container is None
        self._keepalive = None

    def __enter__(self) -> "DockerExecSession":
        if not self._owned:
            return self
        with self.runtime.calls():
            self.container_id = self.runtime.create(self.plan)
            try:
                self._keepalive = self.runtime.attach(self.container_id, stdin=True)
                self.runtime.start(self.container_id)
            except BaseException:
                self.close()
                raise
        return self

    def close(self) -> None:
        if not self._owned:
            return
        if self._keepalive is not None:
            with contextlib.suppress(Exception):
                self._keepalive.close()  # stdin EOF: the keep-alive ends its commands and exits
            self._keepalive = None
        if self.container_id:
            self.runtime.stop_container(self.container_id, graceful=self.plan.facts["helper"])
            self.container_id = None

    def alive(self) -> bool:
        from debugkit.runtimes.docker.engine import EngineError

        try:
            return bool((self.api.inspect_container(self.container_id).get("State") or {}).get("Running"))
        except (EngineError, OSError):
            return False

    def _env(self) -> dict[str, str]:
        return self.spec.env_dict()

    def _argv(self, argv: Sequence[str]) -> list[str]:
        return translate.exec_command(self.name, argv, helper=self.plan.facts["helper"])

    def _create(self, argv, *, stdin: bool, tty: bool) -> str:
        from debugkit.runtimes.docker.engine import EngineError

        try:
            return self.api.exec_create(self.container_id, self._argv(argv), stdin=stdin, stdout=True, stderr=True,
                                        tty=tty, environment=self._env())["Id"]
        except EngineError as exc:
            if exc.status_code in (404, 409):
                raise SidecarGone(f"sidecar {self.name} is not running: {exc.explanation}") from None
            raise

    def exec_interactive(self, argv: Sequence[str], *, stdin, stdout) -> int:
        """A TTY exec of argv; its exit code."""
        api = self.api
        with self.runtime.calls():
            exec_id = self._create(argv, stdin=True, tty=True)
            sock = api.exec_start(exec_id, tty=True)

            def resize(rows, cols):
                with contextlib.suppress(Exception):
                    api.exec_resize(exec_id, height=rows, width=cols)

            resize(*terminal_size())
            pump(sock, tty_mode=True, stdin=stdin, stdout=stdout, stderr=stdout, on_resize=resize)
        return self._final_code(exec_id, what="the interactive shell")

    def exec_streaming(self, argv: Sequence[str], streams: Streams) -> int:
        """A scripted command as an exec: stdout and stderr apart, stdin when given."""
        with self.runtime.calls():
            exec_id = self._create(argv, stdin=streams.stdin is not None and self.spec.stdin, tty=False)
            sock = self.api.exec_start(exec_id)
            pump(sock, tty_mode=False, stdin=streams.stdin if self.spec.stdin else None,
                 stdout=streams.stdout, stderr=streams.stderr)
        return self._final_code(exec_id, what="the command")

    def exec_io(self, argv, *, stdin_fd: int | None, stdout, stderr) -> int:
        from debugkit.runtimes.terminal import FdReader

        with self.runtime.calls():
            exec_id = self._create(argv, stdin=stdin_fd is not None, tty=False)
            sock = self.api.exec_start(exec_id)
            try:
                pump(sock, tty_mode=False, stdin=FdReader(stdin_fd) if stdin_fd is not None else None,
                     stdout=stdout, stderr=stderr)
            finally:
                with contextlib.suppress(OSError):
                    sock.close()
        return self._final_code(exec_id, what=argv[0])

    def _final_code(self, exec_id: str, *, what: str) -> int:
        code = self._exit_code(exec_id)
        if code is None:
            raise DebugkitError(f"{what}'s exit status never arrived")
        return int(code)

    def exec(self, argv, *, timeout: float, max_output: int = 1 << 20) -> ExecResult:
        step = StepRun(argv, timeout=timeout, max_output=max_output)
        with self.runtime.calls():
            exec_id = self._create(step.wrapped, stdin=False, tty=False)
            sock = self.api.exec_start(exec_id)
        demux = FrameDemuxer()
        try:
            while True:
                remaining = step.remaining()
                if remaining <= 0:
                    step.timed_out = True
                    break
                readable, _, _ = select.select([sock], [], [], remaining)
                if not readable:
                    continue
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, socketlib.timeout):
                    data = b""
                if not data:
                    break
                for stream, payload in demux.feed(data):
                    step.add(payload, stderr=stream == STDERR_STREAM)
        finally:
            with contextlib.suppress(OSError):
                sock.close()
        return step.result(None if step.timed_out else self._exit_code(exec_id))

    def _exit_code(self, exec_id: str) -> int | None:
        """The exit code once the engine has seen the exec end (a moment after its stream)."""
        with self.runtime.calls():
            for _ in range(300):
                info = self.api.exec_inspect(exec_id)
                if not info.get("Running"):
                    return info.get("ExitCode")
                time.sleep(0.01)
        return None
