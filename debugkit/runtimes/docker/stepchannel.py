"""The streams a runbook's steps travel over on a Docker-API engine (runtimes.steps.StepChannel):
the attach stream of a sidecar whose main process is `debugkit-helper steps` (a local
engine), or one exec of it in a keep-alive sidecar (a remote engine, whose attach stream
carries the heartbeat). Both carry the engine's multiplexed frames; the helper's own
frames inside them are checked by runtimes.steps."""
from __future__ import annotations

import contextlib
import socket as socketlib
import time

from debugkit.core.errors import DebugkitError, TargetNotRunning
from debugkit.runtimes.terminal import STDERR_STREAM, FrameDemuxer, wait_readable

# How long a normal end waits for the helper to exit after our EOF.
END_WAIT_SECONDS = 1.0


def close_stream(sock, *, wait: bool) -> None:
    """Close a stream; `wait`: half-close first and read to its end (the helper saw EOF and
    exited), END_WAIT_SECONDS at most."""
    if wait:
        with contextlib.suppress(OSError, ValueError):
            sock.shutdown(socketlib.SHUT_WR)
            deadline = time.monotonic() + END_WAIT_SECONDS
            while (left := deadline - time.monotonic()) > 0 and wait_readable([sock], left):
                if not sock.recv(65536):
                    break
    with contextlib.suppress(OSError):
        sock.close()


class ExecStepChannel:
    """The stream of one `debugkit-helper steps` exec (runtimes.steps.StepChannel)."""

    def __init__(self, session, exec_id: str, sock):
        self._session = session
        self._exec_id = exec_id
        self._sock = sock
        self._demux = FrameDemuxer()
        self._watch = [sock] + ([session._keepalive] if session._keepalive is not None else [])

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self._session._raise_if_lost(self._sock, self._session._keepalive)
            raise DebugkitError(f"runbook: cannot send a step to the sidecar's helper: {exc}") from None

    def read(self, timeout: float):
        readable = wait_readable(self._watch, timeout)
        if self._sock not in readable:
            if readable and self._session._keepalive_closed():
                self._session._sidecar_ended(self._sock, self._exec_id)
                raise TargetNotRunning("the sidecar ended while a step ran (did the target stop?)")
            return []
        try:
            data = self._sock.recv(65536)
        except (ConnectionResetError, socketlib.timeout):
            data = b""
        if not data:
            self._session._raise_if_lost(self._sock, self._session._keepalive)
            return None
        return [(stream == STDERR_STREAM, payload) for stream, payload in self._demux.feed(data)]

    def ended(self, stderr: bytes) -> None:
        from debugkit.runtimes.base import helper_mismatch

        session = self._session
        if session._keepalive is not None and session._keepalive_closed():
            raise TargetNotRunning("the sidecar ended while a step ran (did the target stop?)")
        mismatch = helper_mismatch(session._exit_code(self._exec_id), stderr)
        if mismatch is not None:
            raise mismatch

    def close(self, *, wait: bool = False) -> None:
        # EOF on its stdin: the helper winds down a step that still runs, and exits.
        close_stream(self._sock, wait=wait)
        self._session._running.pop(self._exec_id, None)


class AttachStepChannel:
    """The attach stream of a sidecar whose main process is `debugkit-helper steps`
    (runtimes.steps.StepChannel): its EOF is the sidecar's end."""

    def __init__(self, session, sock):
        self._session = session
        self._sock = sock
        self._demux = FrameDemuxer()

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError:
            self._session._raise_if_lost(self._sock)
            raise TargetNotRunning("the sidecar ended while a step ran (did the target stop?)") from None

    def read(self, timeout: float):
        if not wait_readable([self._sock], timeout):
            return []
        try:
            data = self._sock.recv(65536)
        except (ConnectionResetError, socketlib.timeout):
            data = b""
        if not data:
            self._session._raise_if_lost(self._sock)
            return None
        return [(stream == STDERR_STREAM, payload) for stream, payload in self._demux.feed(data)]

    def ended(self, stderr: bytes) -> None:
        raise TargetNotRunning("the sidecar ended while a step ran (did the target stop?)")

    def close(self, *, wait: bool = False) -> None:
        # EOF on the main process's stdin: `steps` winds down a step that still runs and
        # exits, and so does the sidecar.
        close_stream(self._sock, wait=wait)
