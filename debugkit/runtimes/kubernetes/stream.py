"""Streams to a debug container over the attach and exec subresources (channel protocol)."""
from __future__ import annotations

import contextlib
import json
import os
import select

from debugkit.core.errors import DebugkitError
from debugkit.runtimes.base import ExecSession, Plan
from debugkit.runtimes.execution import ExecResult, StepRun
from debugkit.runtimes.terminal import write_output

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4


def pump(ws, *, tty: bool, gate: bool, stdin, stdout, stderr) -> None:
    """Copy between the websocket and local streams until the container's stream ends."""
    from debugkit.runtimes.terminal import terminal_size

    if gate:
        ws.write_channel(STDIN, b"\n")
    stdin_fd = stdin.fileno() if stdin is not None else None
    if stdin_fd is None and gate:
        ws.close_channel(STDIN)  # the command sees EOF on stdin, as with docker run without -i
    last_size = None
    while ws.is_open():
        if tty:
            size = terminal_size()
            if size != last_size:
                last_size = size
                ws.write_channel(RESIZE, json.dumps({"Width": size[1], "Height": size[0]}))
        if stdin_fd is not None:
            ready, _, _ = select.select([stdin_fd], [], [], 0)
            if ready:
                data = os.read(stdin_fd, 65536)
                if data:
                    ws.write_channel(STDIN, data)
                else:
                    stdin_fd = None
                    ws.close_channel(STDIN)
        ws.update(timeout=0.05)
        for channel, stream in ((STDOUT, stdout), (STDERR, stderr)):
            data = ws.read_channel(channel)
            if data:
                write_output(stream, data if isinstance(data, bytes) else data.encode())


class KubeExecSession(ExecSession):
    """One debug container whose main process is a keep-alive; commands are execs in it."""

    def __init__(self, runtime, plan: Plan):
        self.runtime = runtime
        self.plan = plan
        self.spec = plan.spec
        self.pt = plan.facts["pod_target"]
        self._keepalive = None

    def __enter__(self) -> "KubeExecSession":
        rt, name = self.runtime, self.spec.name
        rt.launch(self.pt, self.plan.request)
        state = rt.wait_for(self.pt, name, until="running", timeout=self.plan.facts["timeout"])
        if "running" not in state:
            raise DebugkitError(f"debug container {name} ended at once: {state}")
        self._keepalive = rt.open_stream(self.pt, name, tty=False, stdin=True)
        return self

    def close(self) -> None:
        if self._keepalive is not None:
            with contextlib.suppress(Exception):
                self._keepalive.close_channel(STDIN)
                self._keepalive.close()
            self._keepalive = None

    def exec(self, argv, *, timeout: float, max_output: int = 1 << 20) -> ExecResult:
        step = StepRun(argv, timeout=timeout, max_output=max_output)
        ws = self.runtime.open_stream(self.pt, self.spec.name, tty=False, stdin=False, command=step.wrapped)
        try:
            while ws.is_open():
                if step.remaining() <= 0:
                    step.timed_out = True
                    break
                ws.update(timeout=0.2)
                for channel in (STDOUT, STDERR):
                    data = ws.read_channel(channel)
                    if data:
                        step.add(data if isinstance(data, bytes) else data.encode(), stderr=channel == STDERR)
            try:
                code = None if step.timed_out else ws.returncode
            except (ValueError, KeyError, TypeError) as exc:
                status = ws.read_channel(ERROR)
                raise DebugkitError(f"exec in debug container {self.spec.name} failed: {status or exc}") from exc
        finally:
            ws.close()
        return step.result(code)
