"""cp on a local engine: the archive through a unix socket in the session's relay
directory (relaydir.py, mounted in the sidecar at RELAY_MOUNT), not the exec stream.

debugkit listens on a socket of its own there (0666: the helper runs as the target's UID;
only the operator can get past the directory's 0700 parents), and runs `debugkit-helper
tar-out --connect RELAY_MOUNT/NAME ...` (or tar-in): the helper still opens every file as
the target's user, connects, and writes a secret it read from its stdin first; then the
archive flows over that connection, out or in. A connection that does not start with the
secret (a process of the target's user that got there first) is dropped, and the next one
awaited. The exec stream carries only the helper's warnings and exit code. A helper that
cannot reach the socket (the engine does not see this machine's directory after all)
exits 7 and the caller uses the exec stream instead.
"""
from __future__ import annotations

import contextlib
import hmac
import os
import socket
import threading
from pathlib import Path

from debugkit.runtimes.base import HELPER_PATH, RELAY_MOUNT, BoundedCapture, ExecSession
from debugkit.session import relaydir

SECRET_SIZE = 16
NO_SOCKET = 7           # tar-out/tar-in --connect: the socket could not be reached
CHUNK = 1 << 20
PROOF_SECONDS = 5.0     # for a connection, once accepted, to show the secret


def _proven(conn: socket.socket, secret: bytes) -> bool:
    conn.settimeout(PROOF_SECONDS)
    got = b""
    try:
        while len(got) < SECRET_SIZE:
            chunk = conn.recv(SECRET_SIZE - len(got))
            if not chunk:
                return False
            got += chunk
    except OSError:
        return False
    return hmac.compare_digest(got, secret)


class _Listening:
    """A socket of ours in the relay directory, its secret, and the exec that connects."""

    def __init__(self, directory: Path):
        self.name = f"cp-{os.urandom(6).hex()}.sock"
        self.path = directory / self.name
        self.mount_path = f"{RELAY_MOUNT}/{self.name}"
        self.directory = directory
        self.secret = os.urandom(SECRET_SIZE)
        self.listener: socket.socket | None = None
        self.control_r = -1

    def __enter__(self) -> "_Listening | None":
        reach = relaydir.Reachable(self.directory)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(reach.path(self.name))
            os.chmod(self.path, 0o666)  # the helper runs as the target's UID; see the module's docstring
        except OSError:
            listener.close()
            return None  # the exec stream then
        finally:
            reach.close()
        listener.listen(8)
        listener.settimeout(0.05)
        self.listener = listener
        return self

    def __exit__(self, *exc) -> None:
        if self.listener is not None:
            self.listener.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def run(self, session: ExecSession, argv: list[str], errors: BoundedCapture):
        """The exec, in a thread: the secret on its stdin, its end in the list returned."""
        control_r, control_w = os.pipe()
        os.write(control_w, self.secret.hex().encode() + b"\n")
        os.close(control_w)  # the helper reads one line
        self.control_r = control_r
        outcome: list = []

        def run() -> None:
            try:
                outcome.append(session.exec_io(argv, stdin_fd=control_r, stdout=BoundedCapture(), stderr=errors))
            except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                outcome.append(exc)

        worker = threading.Thread(target=run, daemon=True, name="debugkit-cp-socket")
        worker.start()
        return worker, outcome

    def accept(self, worker: threading.Thread) -> socket.socket | None:
        """The helper's connection, once it showed the secret; None when the exec ended
        without one."""
        while True:
            # Checked before the accept: a helper that has connected, written a small
            # archive and exited is still in the backlog.
            ended = not worker.is_alive()
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, socket.timeout, BlockingIOError):
                if ended:
                    return None
                continue
            if _proven(conn, self.secret):
                return conn
            conn.close()

    def end(self, worker: threading.Thread, finished: bool) -> None:
        """Stop listening; wait for the exec (briefly after an interruption: the session's
        close ends it)."""
        self.listener.close()
        worker.join(None if finished else 5)
        if not worker.is_alive():
            os.close(self.control_r)


def _result(outcome: list, connected: bool) -> int | None:
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    if result == NO_SOCKET and not connected:
        return None
    return result


def tar_out(session: ExecSession, directory: Path, args: list[str], sink, errors: BoundedCapture) -> int | None:
    """Run tar-out ARGS with its archive into `sink` through a socket in `directory`; its
    exit code, or None when it could not reach the socket (nothing was written to sink)."""
    def receive(conn: socket.socket, _worker) -> None:
        while data := conn.recv(CHUNK):
            sink.write(data)
        # Our end closes on return: the helper stops at its next write.

    return _through_socket(session, directory, "tar-out", args, errors, receive)


def tar_in(session: ExecSession, directory: Path, args: list[str], produce, errors: BoundedCapture) -> int | None:
    """Run tar-in ARGS with the archive `produce(fileobj)` writes, through a socket in
    `directory`; its exit code, or None when it could not reach the socket (nothing was
    produced). `produce` handles its own errors, as the exec stream's writer does."""
    def send(conn: socket.socket, worker) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            with conn.makefile("wb", buffering=CHUNK) as sink:
                produce(sink)
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)  # the end of the archive; the helper finishes
        worker.join()

    return _through_socket(session, directory, "tar-in", args, errors, send)


def _through_socket(session: ExecSession, directory: Path, command: str, args: list[str], errors: BoundedCapture,
                    move) -> int | None:
    """Run the helper's `command --connect SOCKET ARGS`, and `move(connection, worker)`
    the archive over the connection it makes; its exit code, or None when it could not
    reach the socket."""
    with _Listening(directory) as listening:
        if listening is None:
            return None
        worker, outcome = listening.run(session, [HELPER_PATH, command, "--connect", listening.mount_path, *args],
                                        errors)
        finished = False
        connected = False
        try:
            conn = listening.accept(worker)
            if conn is not None:
                connected = True
                with conn:
                    conn.settimeout(None)
                    move(conn, worker)
            finished = True
        finally:
            listening.end(worker, finished)
    return _result(outcome, connected)
