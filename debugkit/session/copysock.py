"""cp out on a local engine: the archive through a unix socket in the session's relay
directory (relaydir.py, mounted in the sidecar at RELAY_MOUNT), not the exec stream.

debugkit listens on a socket of its own there (0666: the helper runs as the target's UID;
only the operator can get past the directory's 0700 parents), and runs `debugkit-helper
tar-out --connect RELAY_MOUNT/NAME ...`: the helper still opens every file as the target's
user, and writes the archive to the socket after a secret it read from its stdin. A
connection that does not start with the secret (a process of the target's user that got
there first) is dropped, and the next one awaited. The exec stream carries only the
helper's warnings and exit code. A helper that cannot reach the socket (the engine does
not see this machine's directory after all) exits 7 and the caller copies through the
exec stream instead.
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
NO_SOCKET = 7           # tar-out --connect: the socket could not be reached
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


def tar_out(session: ExecSession, directory: Path, args: list[str], sink, errors: BoundedCapture) -> int | None:
    """Run tar-out ARGS with its archive into `sink` through a socket in `directory`; its
    exit code, or None when it could not reach the socket (nothing was written to sink)."""
    name = f"cp-{os.urandom(6).hex()}.sock"
    path = directory / name
    reach = relaydir.Reachable(directory)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(reach.path(name))
        os.chmod(path, 0o666)  # the helper runs as the target's UID; see the module's docstring
    except OSError:
        listener.close()
        return None  # the exec stream then
    finally:
        reach.close()
    listener.listen(8)
    listener.settimeout(0.05)
    secret = os.urandom(SECRET_SIZE)
    control_r, control_w = os.pipe()
    os.write(control_w, secret.hex().encode() + b"\n")
    os.close(control_w)  # tar-out reads one line
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(session.exec_io([HELPER_PATH, "tar-out", "--connect", f"{RELAY_MOUNT}/{name}", *args],
                                           stdin_fd=control_r, stdout=BoundedCapture(), stderr=errors))
        except BaseException as exc:  # noqa: BLE001 - raised below, in the caller's thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True, name="debugkit-cp-socket")
    worker.start()
    connected = False
    finished = False
    try:
        while not connected:
            # Checked before the accept: a helper that has connected, written a small
            # archive and exited is still in the backlog.
            ended = not worker.is_alive()
            try:
                conn, _ = listener.accept()
            except (TimeoutError, socket.timeout, BlockingIOError):
                if ended:
                    break
                continue
            if not _proven(conn, secret):
                conn.close()
                continue
            connected = True
            with conn:
                conn.settimeout(None)
                while data := conn.recv(CHUNK):
                    sink.write(data)
        finished = True
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            path.unlink()
        # Our end closed, the helper stops at its next write; an interruption leaves the
        # exec to the session's close.
        worker.join(None if finished else 5)
        if not worker.is_alive():
            os.close(control_r)
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    if result == NO_SOCKET and not connected:
        return None
    return result
