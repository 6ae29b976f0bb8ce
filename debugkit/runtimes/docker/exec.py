"""One sidecar, many commands, on a Docker-API engine: runbooks, interactive shells, cp.

The sidecar's main process is a keep-alive that lives exactly as long as our attach
connection keeps its stdin open, so a killed CLI takes its sidecar with it (EOF -> exit
-> auto-remove). Commands are execs in it.
"""
from __future__ import annotations

import contextlib
import select
import socket as socketlib
import time
from typing import Sequence

from debugkit.core.errors import DebugkitError
from debugkit.runtimes.base import ExecSession, Plan
from debugkit.runtimes.execution import ExecResult, StepRun
from debugkit.runtimes.terminal import STDERR_STREAM, FrameDemuxer, pump, terminal_size


class DockerExecSession(ExecSession):
    def __init__(self, runtime, plan: Plan):
        self.runtime = runtime
        self.plan = plan
        self.spec = plan.spec
        self.api = runtime.api
        self.container_id: str | None = None
        self._keepalive = None

    def __enter__(self) -> "DockerExecSession":
        with self.runtime.calls():
            self.container_id = self.runtime.create(self.plan)
            try:
                self._keepalive = self.api.attach_socket(
                    self.container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
                self.runtime.start(self.container_id)
            except BaseException:
                self.close()
                raise
        return self

    def close(self) -> None:
        if self._keepalive is not None:
            with contextlib.suppress(Exception):
                self._keepalive.close()
            self._keepalive = None
        if self.container_id:
            self.runtime.remove_container(self.container_id)
            self.container_id = None

    def _env(self) -> dict[str, str]:
        return self.spec.env_dict()

    def exec_interactive(self, argv: Sequence[str], *, stdin, stdout) -> int:
        """A TTY exec of argv; its exit code."""
        api = self.api
        with self.runtime.calls():
            exec_id = api.exec_create(self.container_id, list(argv), stdin=True, stdout=True, stderr=True,
                                      tty=True, environment=self._env())["Id"]
            sock = api.exec_start(exec_id, tty=True)

            def resize(rows, cols):
                with contextlib.suppress(Exception):
                    api.exec_resize(exec_id, height=rows, width=cols)

            resize(*terminal_size())
            pump(sock, tty_mode=True, stdin=stdin, stdout=stdout, stderr=stdout, on_resize=resize)
        code = self._exit_code(exec_id)
        if code is None:
            raise DebugkitError("the interactive shell's exit status never arrived")
        return int(code)

    def exec(self, argv, *, timeout: float, max_output: int = 1 << 20) -> ExecResult:
        step = StepRun(argv, timeout=timeout, max_output=max_output)
        with self.runtime.calls():
            exec_id = self.api.exec_create(self.container_id, step.wrapped, stdout=True, stderr=True,
                                           environment=self._env())["Id"]
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
