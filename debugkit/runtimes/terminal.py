"""Moving bytes between the local terminal and a sidecar's attach socket.

One poll loop (no limit on descriptor numbers, which a port-forward with a thousand
connections passes, as select() has; and, unlike epoll, fine with a regular file or
/dev/null as stdin) serves both directions: the local stdin (raw mode when it is a TTY)
goes to the sidecar, and the sidecar's output comes back, demultiplexed into stdout
and stderr when the sidecar has no TTY. SIGWINCH is turned into a resize callback
through a self-pipe so the loop never blocks a signal handler.
"""
from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import struct
from typing import BinaryIO, Callable, Iterator

from debugkit.core.errors import OutputClosed

STDOUT_STREAM, STDERR_STREAM = 1, 2
RESIZE_POLL = 0.25  # seconds between terminal size checks when no SIGWINCH comes


class FrameDemuxer:
    """Docker's multiplexed attach stream: 8-byte header (stream, 0, 0, 0, size BE) + payload."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        self._buffer += data
        while len(self._buffer) >= 8:
            stream, size = self._buffer[0], struct.unpack(">I", self._buffer[4:8])[0]
            if len(self._buffer) < 8 + size:
                break
            payload = bytes(self._buffer[8:8 + size])
            del self._buffer[:8 + size]
            yield stream, payload


class FdReader:
    """A bare file descriptor where pump() expects a stream with fileno()."""

    def __init__(self, fd: int):
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


def read_input(fd: int) -> bytes:
    """The next chunk of our stdin; b"" at its end, which for a socket is also its peer's reset."""
    try:
        return os.read(fd, 65536)
    except ConnectionResetError:
        return b""


def terminal_size() -> tuple[int, int]:
    """(rows, columns) of the terminal on stdin or stdout; 24x80 when there is none."""
    for fd in (0, 1, 2):
        try:
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
        except OSError:
            continue
    return 24, 80


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Put a TTY in raw mode for the session and always restore it."""
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def raw_socket(sock) -> socket.socket:
    """docker-py hands back a SocketIO around the real socket; we want the socket."""
    return getattr(sock, "_sock", sock)


def pump(
    sock: socket.socket,
    *,
    tty_mode: bool,
    stdin: BinaryIO | None,
    stdout: BinaryIO,
    stderr: BinaryIO,
    on_resize: Callable[[int, int], None] | None = None,
    until_closed=None,
) -> bool:
    """Copy until the sidecar closes its side of the stream: True. `until_closed`, a
    socket that never carries data (an exec session's keep-alive stream), ends the copy
    too when it closes: False (the sidecar ended under the stream)."""
    sock = raw_socket(sock)
    sock.setblocking(True)
    demux = None if tty_mode else FrameDemuxer()
    stdin_fd = stdin.fileno() if stdin is not None else None
    wake_r, wake_w = os.pipe()
    previous_winch = None
    if on_resize is not None and threading_main():
        os.set_blocking(wake_w, False)

        def _winch(_signum, _frame):
            with contextlib.suppress(OSError):
                os.write(wake_w, b"w")

        previous_winch = signal.signal(signal.SIGWINCH, _winch)
    watch = selectors.PollSelector()
    try:
        last_size = terminal_size() if on_resize is not None else None
        watch.register(sock, selectors.EVENT_READ)
        watch.register(wake_r, selectors.EVENT_READ)
        if stdin_fd is not None:
            watch.register(stdin_fd, selectors.EVENT_READ)
        if until_closed is not None:
            watch.register(until_closed, selectors.EVENT_READ)
        while True:
            # SIGWINCH needs a controlling terminal; a short timeout notices a resize without one.
            events = watch.select(RESIZE_POLL if on_resize is not None else None)
            readable = {key.fileobj for key, _mask in events}
            if until_closed is not None and until_closed in readable and not _drain(until_closed):
                return False
            if wake_r in readable:
                os.read(wake_r, 1024)
            if on_resize is not None:
                size = terminal_size()
                if size != last_size:
                    last_size = size
                    on_resize(*size)
            if stdin_fd is not None and stdin_fd in readable:
                data = read_input(stdin_fd)
                if data:
                    sock.sendall(data)
                else:
                    # Half-close: the sidecar's stdin sees EOF, its output keeps coming.
                    watch.unregister(stdin_fd)
                    stdin_fd = None
                    if not tty_mode:
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_WR)
            if sock in readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    return True
                if demux is None:
                    write_output(stdout, data)
                else:
                    for stream, payload in demux.feed(data):
                        write_output(stderr if stream == STDERR_STREAM else stdout, payload)
    finally:
        watch.close()
        if previous_winch is not None:
            signal.signal(signal.SIGWINCH, previous_winch)
        os.close(wake_r)
        os.close(wake_w)


def wait_readable(fds, timeout: float | None) -> set:
    """Which of fds (descriptors or objects with fileno()) can be read within timeout:
    select() without its limit of descriptor numbers below 1024."""
    with selectors.PollSelector() as watch:
        for fd in fds:
            watch.register(fd, selectors.EVENT_READ)
        return {key.fileobj for key, _mask in watch.select(timeout)}


def _drain(sock) -> bool:
    """Read and drop what a watched socket carries; False once it is closed."""
    try:
        sock.setblocking(False)
        return bool(sock.recv(65536))
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        return False


def write_output(stream: BinaryIO, data: bytes) -> None:
    """Write and flush to a local stream. A reader that went away (`| head`) is not the
    engine's fault: it is OutputClosed (exit 141), never "engine unreachable"."""
    try:
        stream.write(data)
        stream.flush()
    except BrokenPipeError as exc:
        raise OutputClosed("output closed by its reader") from exc
    except ValueError as exc:  # write to a closed file object
        raise OutputClosed("output closed") from exc


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
