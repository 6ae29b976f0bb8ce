"""One command in an already started sidecar: what Docker and Kubernetes execs share.

Each step runs under `timeout -s KILL N` inside the sidecar (coreutils or busybox), so
a runaway command dies where it runs; the caller's own deadline, a little later, is
only the backstop. Output is kept up to a cap per stream, and the result says whether
anything was cut.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

# How much later than the in-sidecar timeout our own deadline falls.
BACKSTOP_SECONDS = 5


@dataclass
class ExecResult:
    argv: tuple[str, ...]
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    duration: float
    timed_out: bool = False
    truncated: bool = False


class StepRun:
    """The bookkeeping of one exec: the wrapped argv, deadlines, capped output, verdict."""

    def __init__(self, argv, *, timeout: float, max_output: int):
        self.argv = tuple(argv)
        # Whole seconds: busybox's timeout takes no fractions.
        self.seconds = max(1, math.ceil(timeout))
        self.wrapped = ["timeout", "-s", "KILL", str(self.seconds), *self.argv]
        self.max_output = max_output
        self.started = time.monotonic()
        self.deadline = self.started + self.seconds + BACKSTOP_SECONDS
        self.out = bytearray()
        self.err = bytearray()
        self.truncated = False
        self.timed_out = False

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def collect(self, read) -> None:
        """Take the output until it ends or the deadline passes (then timed_out).
        `read(timeout)` returns [(is_stderr, data), ...] (empty when nothing came in
        time) or None once the output has ended."""
        while True:
            remaining = self.remaining()
            if remaining <= 0:
                self.timed_out = True
                return
            chunks = read(remaining)
            if chunks is None:
                return
            for is_stderr, data in chunks:
                self.add(data, stderr=is_stderr)

    def add(self, data: bytes, *, stderr: bool) -> None:
        buf = self.err if stderr else self.out
        room = self.max_output - len(buf)
        if len(data) > room:
            self.truncated = True
        buf += data[:max(room, 0)]

    def result(self, exit_code: int | None) -> ExecResult:
        duration = time.monotonic() - self.started
        # `timeout -s KILL` reports 137 (124 for TERM) when it had to kill the command.
        if exit_code in (124, 137) and duration >= self.seconds - 0.2:
            self.timed_out = True
        return ExecResult(self.argv, None if self.timed_out else exit_code, bytes(self.out), bytes(self.err),
                          duration, timed_out=self.timed_out, truncated=self.truncated)


class BoundedCapture:
    """A stream's output kept in bounded memory: the first `limit` bytes and the last
    `limit` bytes (what a helper says first, and its final error line), whatever a
    flood (a compromised target writing into the helper's stderr) would amount to."""

    def __init__(self, limit: int = 256 << 10):
        self.limit = limit
        self._head = bytearray()
        self._tail = bytearray()
        self.dropped = 0

    def write(self, data) -> int:
        data = bytes(data)
        count = len(data)
        room = self.limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data:
            self._tail += data
            excess = len(self._tail) - self.limit
            if excess > 0:
                del self._tail[:excess]
                self.dropped += excess
        return count

    def flush(self) -> None:
        pass

    def getvalue(self) -> bytes:
        if not self._tail:
            return bytes(self._head)
        cut = b"\n" if self.dropped else b""
        return bytes(self._head) + cut + bytes(self._tail)
