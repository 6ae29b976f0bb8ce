"""A runbook's steps over one exec: the client of `debugkit-helper steps` (helper protocol 6).

An exec costs the engine 45-55 ms (runc exec on Docker, more on Kubernetes), and a runbook
used to pay one per step. A runtime's ExecSession opens one exec of the helper's `steps`
command (the first time `exec` is asked to run a step) and sends it one step at a time;
the helper runs each with its timeout, isolated as the reaper isolates a command, and
sends back its stdout, its stderr and its end in frames. The CLI still judges every step
and decides whether to send the next, so expectations, continue_on_failure and the
report are exactly as with one exec per step.

The helper runs as the target's user, which the target shares: every byte it sends is
treated as hostile. Frames have a fixed small maximum, their types and order are
checked, the end record is bounded and typed, each stream's output is kept up to the
step's cap whatever the helper claims, and the step's deadline (its timeout and a
backstop) holds whether or not the helper answers.

A runtime supplies the transport (a StepChannel): send bytes to the exec's stdin, read
what its stdout and stderr carry, close it.
"""
from __future__ import annotations

import json
import struct
from typing import Callable, Protocol, Sequence

from debugkit.core.errors import DebugkitError, ImageMissing
from debugkit.runtimes.execution import BACKSTOP_SECONDS, BoundedCapture, ExecResult, StepRun

# Frame types (toolbox-image/helper/steps.go).
RUN, OUT, ERR, END = b"R"[0], b"O"[0], b"E"[0], b"X"[0]
HEADER = struct.Struct(">BI")
MAX_CHUNK = 32 << 10   # the helper sends output in frames of at most this
MAX_END = 4 << 10      # an END record is a few dozen bytes
MAX_PENDING = HEADER.size + MAX_CHUNK


class StepsBroken(DebugkitError):
    """The sidecar's helper broke the steps protocol (a frame it never sends): not to be trusted further."""


class StepChannel(Protocol):
    def send(self, data: bytes) -> None:
        """Write to the exec's stdin."""

    def read(self, timeout: float) -> list[tuple[bool, bytes]] | None:
        """What arrived within `timeout` as (is_stderr, data) pairs ([] for nothing yet),
        or None once the exec's output has ended."""

    def ended(self, stderr: bytes) -> None:
        """The exec's output ended in the middle of a step: raise the error that fits (the
        sidecar stopped, the helper does not know `steps`), if there is one."""

    def close(self, *, wait: bool = False) -> None:
        """End the exec: its stdin reaches EOF, which the helper takes as the end.
        `wait`: until the exec has ended (bounded), when the channel can tell."""


def request(argv: Sequence[str], *, timeout: float, max_output: int) -> bytes:
    body = json.dumps({"argv": list(argv), "timeout": float(timeout), "max_output": int(max_output)}).encode()
    return HEADER.pack(RUN, len(body)) + body


class FrameParser:
    """The helper's frames out of the bytes of its stdout, bounded and checked."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER.size:
            kind, size = HEADER.unpack_from(self._buffer)
            if kind not in (OUT, ERR, END):
                raise StepsBroken(f"runbook: the sidecar's helper sent a frame it never sends (type {kind})")
            if size > (MAX_END if kind == END else MAX_CHUNK):
                raise StepsBroken(f"runbook: the sidecar's helper sent a frame of {size} bytes")
            if len(self._buffer) < HEADER.size + size:
                break
            frames.append((kind, bytes(self._buffer[HEADER.size:HEADER.size + size])))
            del self._buffer[:HEADER.size + size]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buffer)


def end_record(payload: bytes) -> tuple[int, bool, bool]:
    """(exit code, timed out, truncated) from an END frame, or StepsBroken."""
    try:
        record = json.loads(payload)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise StepsBroken("runbook: the sidecar's helper sent a malformed step end")
    code, timed_out, truncated = record.get("exit"), record.get("timed_out"), record.get("truncated")
    if type(code) is not int or not 0 <= code <= 255 or type(timed_out) is not bool or type(truncated) is not bool:
        raise StepsBroken("runbook: the sidecar's helper sent a malformed step end")
    return code, timed_out, truncated


class HelperSteps:
    """Steps over one open `debugkit-helper steps` exec. `run` is ExecSession.exec's
    contract: a step that outlives its deadline comes back timed out whatever the helper
    does (the exec is then closed: the next step gets a new one)."""

    def __init__(self, open_channel: Callable[[], StepChannel], *,
                 fallback: Callable[..., ExecResult] | None = None):
        """`open_channel` starts the exec. `fallback(argv, timeout=, max_output=)` runs a
        step as an exec of its own: used from then on when the helper does not know
        `steps` (an older toolbox in a debug container: it keeps working, one exec a step)."""
        self._open = open_channel
        self._fallback = fallback
        self._helper_too_old = False
        self._channel: StepChannel | None = None
        self._stderr = BoundedCapture(4 << 10)

    def run(self, argv: Sequence[str], *, timeout: float, max_output: int) -> ExecResult:
        if self._helper_too_old:
            return self._fallback(argv, timeout=timeout, max_output=max_output)
        try:
            return self._run(argv, timeout=timeout, max_output=max_output)
        except ImageMissing:  # channel.ended: the helper refused `steps`
            if self._fallback is None:
                raise
            self._helper_too_old = True
            return self._fallback(argv, timeout=timeout, max_output=max_output)

    def _run(self, argv: Sequence[str], *, timeout: float, max_output: int) -> ExecResult:
        if self._channel is None:
            self._channel = self._open()
            self._stderr = BoundedCapture(4 << 10)
        step = StepRun(argv, timeout=timeout, max_output=max_output)
        # The helper kills at the timeout itself (fractions are fine); our deadline, a
        # backstop later, is for a helper that never answers.
        step.deadline = step.started + float(timeout) + BACKSTOP_SECONDS
        channel = self._channel
        try:
            channel.send(request(argv, timeout=timeout, max_output=max_output))
            ended = self._collect(step, channel)
        except BaseException:
            self.close()
            raise
        if ended is None:  # no answer by the deadline: this helper is not asked again
            self.close()
            step.timed_out = True
            return step.result(None)
        code, timed_out, truncated = ended
        step.truncated = step.truncated or truncated
        step.timed_out = timed_out
        return step.result(code)

    def _collect(self, step: StepRun, channel: StepChannel) -> tuple[int, bool, bool] | None:
        parser = FrameParser()
        while True:
            remaining = step.remaining()
            if remaining <= 0:
                return None
            chunks = channel.read(remaining)
            if chunks is None:
                channel.ended(self._stderr.getvalue())
                raise DebugkitError("runbook: the sidecar's helper ended in the middle of a step")
            for is_stderr, data in chunks:
                if is_stderr:
                    self._stderr.write(data)
                    continue
                frames = parser.feed(data)
                for i, (kind, payload) in enumerate(frames):
                    if kind == END:
                        if parser.pending or i != len(frames) - 1:
                            raise StepsBroken("runbook: the sidecar's helper sent output after a step's end")
                        return end_record(payload)
                    step.add(payload, stderr=kind == ERR)

    def close(self, *, wait: bool = False) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close(wait=wait)
