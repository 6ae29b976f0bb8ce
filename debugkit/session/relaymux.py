"""Port-forward through the sidecar: every local connection over one exec of
`debugkit-helper relay --mux` (toolbox-image/helper/mux.go describes the frames).

One exec for the whole forward, not one per connection: a connection costs a frame,
not an exec (tens of milliseconds, and a process and its threads against the
sidecar's pids limit), so a thousand connections can be open at once. The exec's
output is parsed in the thread that pumps it (FrameReader: bounded, as everything from
a sidecar is hostile) and handed to the forward's selector loop, which owns the local
sockets; frames to the helper go out through a socket pair that the exec reads as its
stdin. Flow control is per connection: each side sends at most WINDOW bytes ahead of
what the other has written to its own end, so a slow client holds back only its own
connection and memory stays bounded.
"""
from __future__ import annotations

import collections
import contextlib
import errno
import os
import selectors
import socket
import struct
import threading
import time
from typing import Callable

from debugkit.core.errors import DebugkitError, NothingListening, TargetNotRunning
from debugkit.runtimes.base import HELPER_PATH, BoundedCapture, ExecSession, helper_mismatch

OPEN, OPENED, FAILED, DATA, EOF, CLOSE, WINDOW = range(1, 8)
HEADER = struct.Struct(">BII")
MAX_DATA = 64 << 10
MAX_CONTROL = 4 << 10
WINDOW_SIZE = 256 << 10
GRANT_AT = WINDOW_SIZE // 4   # written bytes that are granted back in one WINDOW frame
NOTHING_LISTENING = 2         # a FAILED frame's code (the helper's exit code for relay)
PROBE_SECONDS = 3


class MuxBroken(DebugkitError):
    """The helper's frames are not what it writes: the forward cannot go on."""


class FrameReader:
    """The exec's stdout: frames, checked and handed over in batches (`deliver`)."""

    def __init__(self, deliver: Callable[[list], None]):
        self._deliver = deliver
        self._buf = bytearray()

    def write(self, data) -> int:
        self._buf += data
        frames, pos, buf = [], 0, self._buf
        while len(buf) - pos >= HEADER.size:
            kind, stream, size = HEADER.unpack_from(buf, pos)
            if not OPENED <= kind <= WINDOW or size > (MAX_DATA if kind == DATA else MAX_CONTROL):
                raise MuxBroken(f"port-forward: the sidecar's relay sent a frame it never writes (type {kind}, "
                                f"{size} bytes)")
            end = pos + HEADER.size + size
            if end > len(buf):
                break
            frames.append((kind, stream, bytes(buf[pos + HEADER.size:end])))
            pos = end
        del buf[:pos]
        if frames:
            self._deliver(frames)
        return len(data)

    def flush(self) -> None:
        pass


class _Stream:
    __slots__ = ("id", "conn", "remote", "open", "credit", "allowed", "inbuf", "unacked", "local_eof",
                 "remote_eof", "shut", "remote_closed", "events", "handler")

    def __init__(self, stream_id: int, conn: socket.socket | None, remote: int):
        self.id, self.conn, self.remote = stream_id, conn, remote
        self.open = False
        self.credit = WINDOW_SIZE    # bytes we may send to the helper
        self.allowed = WINDOW_SIZE   # bytes the helper may send us before our next grant
        self.inbuf = bytearray()     # from the helper, not yet written to the local socket
        self.unacked = 0             # written locally, not yet granted back
        self.local_eof = self.remote_eof = self.shut = self.remote_closed = False
        self.events = 0
        self.handler: Callable[[int], None] | None = None   # the selector's callback for conn


class MuxRelay:
    """Connections through the sidecar: one `relay --mux` exec for all of them."""

    via = "the debug sidecar (debugkit-helper relay, as the target's user)"

    def __init__(self, session: ExecSession, *, selector: selectors.BaseSelector, log: Callable[[str], None]):
        self.session = session
        self.sel = selector
        self.log = log
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._lock = threading.Lock()
        self._inbox: collections.deque = collections.deque()
        self._streams: dict[int, _Stream] = {}
        self._next_id = 0
        self._probes: dict[int, tuple | None] = {}
        self._restarts: list[float] = []
        self._closing = False
        self.sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self._start_exec()

    # -- the exec, in its own thread ---------------------------------------------------------

    def _start_exec(self) -> None:
        self._ours, theirs = socket.socketpair()
        self._ours.setblocking(False)
        self._out = bytearray()
        self._writing = False
        self._ended: list = []       # the exec's end: [exit code or exception]
        self._errors = BoundedCapture()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(theirs, self._ended, self._errors), daemon=True,
                                        name="debugkit-relay")
        self._thread.start()

    def _run(self, theirs: socket.socket, ended: list, errors: BoundedCapture) -> None:
        try:
            code = self.session.exec_io([HELPER_PATH, "relay", "--mux"], stdin_fd=theirs.fileno(),
                                        stdout=FrameReader(self._deliver), stderr=errors)
            ended.append(code)
        except BaseException as exc:  # noqa: BLE001 - reported by the selector loop
            ended.append(exc)
        finally:
            theirs.close()
            self._wake()

    def _deliver(self, frames: list) -> None:
        with self._lock:
            self._inbox.extend(frames)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    # -- the selector loop's side ------------------------------------------------------------

    def _on_wake(self, _mask) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 4096):
                pass
        with self._lock:
            frames, self._inbox = self._inbox, collections.deque()
        for kind, stream_id, payload in frames:
            self._frame(kind, stream_id, payload)
        if self._ended and not self._inbox and not self._closing:
            self._thread.join(timeout=5)
            if self._may_restart():
                return
            self._raise_ended()

    def _may_restart(self) -> bool:
        """The relay exec ended while the sidecar runs (an engine's transient exec failure,
        say): its connections are lost, the next ones get a new exec. Not for an exec that
        ended at once (a new one would too), nor when the sidecar is going (the target's
        death: the engine may still say it runs for a moment); at most 3 a minute."""
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < 60]
        if len(self._restarts) >= 3 or isinstance(self._ended[0], (KeyboardInterrupt, MuxBroken)) \
                or now - self._started < 2 or self._sidecar_gone():
            return False
        self._restarts.append(now)
        lost = len(self._streams)
        why = self._why_ended()
        for stream in list(self._streams.values()):
            self._teardown(stream, tell=False)
        for probe in self._probes:
            self._probes[probe] = (FAILED, bytes([1]) + b"the relay ended")
        if self._writing:
            self.sel.unregister(self._ours)
        self._ours.close()
        self.log(f"the relay in the sidecar ended ({why}); {lost} connection(s) lost, starting it again")
        self._start_exec()
        return True

    def _sidecar_gone(self) -> bool:
        return self.session.gone_within()

    def _why_ended(self) -> str:
        outcome = self._ended[0]
        if isinstance(outcome, BaseException):
            return str(outcome) or type(outcome).__name__
        detail = self._errors.getvalue().decode(errors="replace").strip().splitlines()
        return detail[-1].removeprefix("debugkit-helper: ") if detail else f"exit {outcome}"

    def _raise_ended(self) -> None:
        outcome = self._ended[0]
        if isinstance(outcome, KeyboardInterrupt):
            raise outcome
        if self._sidecar_gone():
            # Whatever the exec's stream said last (an engine's message about a stopped
            # container is not a frame), the sidecar is gone: that is the news.
            raise TargetNotRunning("the target (or its sidecar) stopped: port-forward ended")
        if isinstance(outcome, DebugkitError):
            raise outcome
        mismatch = helper_mismatch(outcome, self._errors.getvalue())
        if mismatch is not None:
            raise mismatch
        raise DebugkitError(f"port-forward: the relay in the sidecar ended ({self._why_ended()})")

    def _frame(self, kind: int, stream_id: int, payload: bytes) -> None:
        if stream_id in self._probes:
            self._probes[stream_id] = (kind, payload)
            if kind == OPENED:
                self._send(CLOSE, stream_id)
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # over on our side already: what was in flight is dropped
        if kind == OPENED:
            stream.open = True
        elif kind == FAILED:
            message = payload[1:].decode("utf-8", "replace").removeprefix("debugkit-helper: ")
            self.log(f"connection to port {stream.remote}: {message}")
            self._teardown(stream, tell=False)
            return
        elif kind == DATA:
            if len(payload) > stream.allowed:
                self._teardown(stream, tell=True)  # more than we granted: not the helper we know
                return
            stream.allowed -= len(payload)
            stream.inbuf += payload
        elif kind == EOF:
            stream.remote_eof = True
        elif kind == CLOSE:
            stream.remote_closed = True
        elif kind == WINDOW:
            if len(payload) != 4:
                raise MuxBroken("port-forward: the sidecar's relay sent a malformed window")
            stream.credit = min(stream.credit + struct.unpack(">I", payload)[0], 1 << 30)
        self._settle(stream)

    def adopt(self, conn: socket.socket, remote: int) -> None:
        """A new local connection: forwarded once the helper has dialled the target's port."""
        conn.setblocking(False)
        stream = _Stream(self._new_id(), conn, remote)
        stream.handler = lambda mask, s=stream: self.on_event(s, mask)
        self._streams[stream.id] = stream
        self._send(OPEN, stream.id, struct.pack(">H", remote))

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _settle(self, stream: _Stream) -> None:
        """Write what can be written, end what is over, and watch the socket for the rest."""
        if stream.inbuf:
            self._write_local(stream)
            if stream.conn is None:
                return
        if not stream.inbuf:
            if stream.remote_closed:
                self._teardown(stream, tell=False)
                return
            if stream.remote_eof and not stream.shut:
                stream.shut = True
                with contextlib.suppress(OSError):
                    stream.conn.shutdown(socket.SHUT_WR)
            if stream.shut and stream.local_eof:
                self._teardown(stream, tell=False)  # both ways done: the helper ends it too
                return
        want = 0
        if stream.open and stream.credit > 0 and not stream.local_eof:
            want |= selectors.EVENT_READ
        if stream.inbuf:
            want |= selectors.EVENT_WRITE
        if want != stream.events:
            if not stream.events:
                self.sel.register(stream.conn, want, stream.handler)
            elif not want:
                self.sel.unregister(stream.conn)
            else:
                self.sel.modify(stream.conn, want, stream.handler)
            stream.events = want

    def on_event(self, stream: _Stream, mask: int) -> None:
        if stream.conn is None:
            return  # ended by an earlier event of the same batch
        if mask & selectors.EVENT_READ:
            self._read_local(stream)
        if stream.conn is not None:
            self._settle(stream)

    def _read_local(self, stream: _Stream) -> None:
        try:
            data = stream.conn.recv(min(stream.credit, MAX_DATA))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._teardown(stream, tell=True)  # reset by the local client
            return
        if data:
            stream.credit -= len(data)
            self._send(DATA, stream.id, data)
        else:
            stream.local_eof = True
            self._send(EOF, stream.id)

    def _write_local(self, stream: _Stream) -> None:
        try:
            sent = stream.conn.send(stream.inbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._teardown(stream, tell=True)  # the local client went away: not an error
            return
        del stream.inbuf[:sent]
        stream.unacked += sent
        if stream.unacked >= GRANT_AT or (stream.unacked and not stream.inbuf and stream.allowed < GRANT_AT):
            self._send(WINDOW, stream.id, struct.pack(">I", stream.unacked))
            stream.allowed += stream.unacked
            stream.unacked = 0

    def _teardown(self, stream: _Stream, *, tell: bool) -> None:
        if stream.conn is not None:
            if stream.events:
                # (A signal may have cut a registration short: the state may be half-made
                # when close() ends everything.)
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(stream.conn)
                stream.events = 0
            stream.conn.close()
            stream.conn = None
        self._streams.pop(stream.id, None)
        if tell:
            self._send(CLOSE, stream.id)

    # -- frames to the helper -----------------------------------------------------------------

    def _send(self, kind: int, stream_id: int, payload: bytes = b"") -> None:
        self._out += HEADER.pack(kind, stream_id, len(payload))
        self._out += payload
        self._on_writable(0)

    def _on_writable(self, _mask) -> None:
        while self._out:
            try:
                sent = self._ours.send(self._out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                    self._out.clear()  # the exec has ended: its end says why
                    break
                raise
            del self._out[:sent]
        if bool(self._out) != self._writing:
            self._writing = bool(self._out)
            if self._writing:
                self.sel.register(self._ours, selectors.EVENT_WRITE, self._on_writable)
            else:
                self.sel.unregister(self._ours)

    # -- what the forward asks --------------------------------------------------------------

    def check(self, port: int) -> None:
        """Nothing listening is a clear error now (86), not a line per connection later."""
        probe = self._new_id()
        self._probes[probe] = None
        self._send(OPEN, probe, struct.pack(">H", port))
        deadline = time.monotonic() + PROBE_SECONDS
        try:
            while self._probes[probe] is None and (left := deadline - time.monotonic()) > 0:
                for key, mask in self.sel.select(left):
                    key.data(mask)
        finally:
            answer = self._probes.pop(probe)
        if answer is not None and answer[0] == FAILED and answer[1][:1] == bytes([NOTHING_LISTENING]):
            raise NothingListening(f"nothing is listening on 127.0.0.1:{port} in the target")

    def alive(self) -> bool:
        return self._thread.is_alive() and self.session.alive()

    def close(self) -> None:
        """Every local connection closed, the exec's stdin too (the helper ends at its EOF)."""
        self._closing = True
        for stream in list(self._streams.values()):
            with contextlib.suppress(OSError):
                self._teardown(stream, tell=False)
        for fd_or_sock in (self._ours, self._wake_r):
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(fd_or_sock)
        self._ours.close()
        self._thread.join(timeout=5)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def connections(self) -> int:
        return len(self._streams)
