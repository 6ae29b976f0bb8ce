"""`debugkit port-forward TARGET [LOCAL:]REMOTE ...`: local ports to the target's localhost.

Each local connection gets its own relay to `127.0.0.1:REMOTE` inside the target's network
namespace, so a port the target binds only on localhost is reachable:

- through the sidecar: an exec of `debugkit-helper relay PORT` as the target's own user
  (Docker, Podman, and Kubernetes when the portforward subresource is not allowed). EOF
  from the local client is passed on as a half-close.
- Kubernetes, when RBAC allows it: the pod's portforward subresource, one websocket per
  connection. That protocol has no half-close: a client's EOF is not passed on (the
  connection ends when the server closes it or the client closes it entirely).
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import select
import socket
import threading
from dataclasses import dataclass
from typing import Callable

from debugkit.core.errors import InvalidInput, NothingListening, OutputClosed, PortUnavailable, TargetNotRunning
from debugkit.core.escape import safe
from debugkit.runtimes.base import HELPER_PATH, ExecSession

PROBE_SECONDS = 3
RELAY_NOTHING_LISTENING = 2   # debugkit-helper relay's exit code


@dataclass(frozen=True)
class Mapping:
    local: int
    remote: int


def parse_mappings(specs) -> list[Mapping]:
    """`8080` (same port), `9000:8080`, `:8080` (any free local port), as kubectl takes them."""
    out = []
    for spec in specs:
        match = re.fullmatch(r"(?:([0-9]*):)?([0-9]+)", spec, re.ASCII)
        if not match:
            raise InvalidInput(f"invalid port mapping {spec!r}: use REMOTE, LOCAL:REMOTE or :REMOTE")
        remote = int(match.group(2))
        local_text = match.group(1)
        local = remote if local_text is None else (int(local_text) if local_text else 0)
        for port, what in ((remote, "remote"), (local, "local")):
            if not (0 if what == "local" else 1) <= port <= 65535:
                raise InvalidInput(f"invalid {what} port in {spec!r}: from 1 to 65535")
        out.append(Mapping(local, remote))
    if not out:
        raise InvalidInput("port-forward needs at least one port: REMOTE or LOCAL:REMOTE")
    return out


def check_address(address: str) -> str | None:
    """--address: an IP address or `localhost`, as kubectl takes it; a warning (to print)
    when it is not a loopback address. An empty one is refused, not bound: bind() takes ""
    for every interface, which would expose a target's 127.0.0.1-only service to the
    network without anybody having asked for it."""
    import ipaddress

    if address == "localhost":
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise InvalidInput(f"--address must be an IP address or localhost, not {safe(repr(address))}") from None
    if ip.is_loopback:
        return None
    where = "every interface" if ip.is_unspecified else f"{ip}"
    return (f"listening on {where}, not only on loopback: anyone who can reach this machine there can reach the "
            f"target's forwarded ports")


class SocketWriter:
    """A connected socket where a pump expects a binary stream. A client that went away
    (reset, or closed) is a closed output (OutputClosed), not a failure of the relay."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def write(self, data: bytes) -> int:
        try:
            self._sock.sendall(data)
        except ConnectionError as exc:
            raise BrokenPipeError(str(exc)) from None
        return len(data)

    def flush(self) -> None:
        pass


class ExecRelay:
    """Connections through the sidecar: one relay exec each."""

    via = "the debug sidecar (debugkit-helper relay, as the target's user)"

    def __init__(self, session: ExecSession):
        self.session = session

    def check(self, port: int) -> None:
        """Nothing listening is a clear error now, not a hang at the first connection."""
        result = self.session.exec([HELPER_PATH, "relay", "--probe", str(port)], timeout=PROBE_SECONDS,
                                   max_output=4096)
        if result.exit_code == RELAY_NOTHING_LISTENING:
            raise NothingListening(f"nothing is listening on 127.0.0.1:{port} in the target")

    def serve(self, conn: socket.socket, port: int) -> str | None:
        """Relay one connection; a message when it could not be relayed."""
        errors = io.BytesIO()
        code = self.session.exec_io([HELPER_PATH, "relay", str(port)], stdin_fd=conn.fileno(),
                                    stdout=SocketWriter(conn), stderr=errors)
        if code == RELAY_NOTHING_LISTENING:
            return f"nothing is listening on 127.0.0.1:{port} in the target"
        if code != 0:
            return errors.getvalue().decode(errors="replace").strip() or f"relay exit {code}"
        return None

    def alive(self) -> bool:
        return self.session.alive()


class Forwarder:
    def __init__(self, relay, mappings: list[Mapping], *, address: str, log: Callable[[str], None]):
        self.relay = relay
        self.mappings = mappings
        self.address = address
        self.log = log
        self.listeners: list[tuple[socket.socket, Mapping]] = []
        self._stop_r, self._stop_w = os.pipe()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.connections = 0

    def bind(self) -> list[tuple[str, int, int]]:
        """Listen on every local port before anything is forwarded; (address, local, remote)."""
        bound = []
        for mapping in self.mappings:
            family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.address, mapping.local))
            except OSError as exc:
                sock.close()
                self.close()
                if exc.errno == errno.EADDRINUSE:
                    raise PortUnavailable(f"local port {mapping.local} on {self.address} is already in use") from None
                raise InvalidInput(f"cannot listen on {self.address}:{mapping.local}: {exc.strerror}") from None
            sock.listen(128)
            self.listeners.append((sock, mapping))
            host = f"[{self.address}]" if ":" in self.address else self.address
            bound.append((host, sock.getsockname()[1], mapping.remote))
        return bound

    def serve_forever(self, *, watch_every: float = 1.0) -> None:
        """Accept until stop() or the target's death (TargetNotRunning)."""
        by_fd = {sock.fileno(): (sock, mapping) for sock, mapping in self.listeners}
        while True:
            readable, _, _ = select.select(list(by_fd) + [self._stop_r], [], [], watch_every)
            if self._stop_r in readable:
                return
            if not readable and not self.relay.alive():
                self._stopping = True
                raise TargetNotRunning("the target (or its sidecar) stopped: port-forward ended")
            for fd in readable:
                sock, mapping = by_fd[fd]
                try:
                    conn, _peer = sock.accept()
                except OSError:
                    continue
                self.connections += 1
                worker = threading.Thread(target=self._one, args=(conn, mapping), daemon=True,
                                          name=f"debugkit-forward-{mapping.local}")
                worker.start()
                self._threads = [t for t in self._threads if t.is_alive()] + [worker]

    def _one(self, conn: socket.socket, mapping: Mapping) -> None:
        try:
            problem = self.relay.serve(conn, mapping.remote)
            if problem:
                self.log(f"connection to port {mapping.remote}: {problem}")
        except (OutputClosed, ConnectionError):
            pass  # the local client went away first: nothing to report
        except Exception as exc:  # noqa: BLE001 - one connection's failure is logged, the others go on
            if not self._stopping:
                self.log(f"connection to port {mapping.remote} failed: {exc}")
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)
            conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")

    def close(self) -> None:
        self._stopping = True
        for sock, _mapping in self.listeners:
            with contextlib.suppress(OSError):
                sock.close()
        self.listeners = []
        for fd in (self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._stop_r = self._stop_w = -1
