"""`debugkit port-forward TARGET [LOCAL:]REMOTE ...`: local ports to the target's localhost.

Each local connection reaches `127.0.0.1:REMOTE` inside the target's network namespace,
so a port the target binds only on localhost is reachable:

- through the sidecar: every connection over one exec of `debugkit-helper relay --mux`,
  as the target's own user (Docker, Podman, and Kubernetes when the portforward
  subresource is not allowed); see relaymux.py. Half-closes pass both ways.
- Kubernetes, when RBAC allows it: the pod's portforward subresource, one websocket per
  connection. That protocol has no half-close: a client's EOF is not passed on (the
  connection ends when the server closes it or the client closes it entirely).

One selector loop (epoll) accepts connections and, through the sidecar, moves their
bytes: no select() and its 1024-descriptor limit, and no thread per connection.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import selectors
import socket
import threading
from dataclasses import dataclass
from typing import Callable

from debugkit.core.errors import InvalidInput, OutputClosed, PortUnavailable, TargetNotRunning
from debugkit.core.escape import safe

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


class Forwarder:
    """The local listeners and the loop that serves them. A relay either adopts each
    connection into the loop (MuxRelay) or serves it in a thread of its own (the pod's
    portforward subresource: one websocket per connection)."""

    def __init__(self, relay, mappings: list[Mapping], *, address: str, log: Callable[[str], None]):
        self.relay = relay
        self.mappings = mappings
        self.address = address
        self.log = log
        self.listeners: list[tuple[socket.socket, Mapping]] = []
        self.selector = selectors.DefaultSelector()
        self._stop_r, self._stop_w = os.pipe()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.connections = 0
        raise_open_files_limit()

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
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
            self.listeners.append((sock, mapping))
            host = f"[{self.address}]" if ":" in self.address else self.address
            bound.append((host, sock.getsockname()[1], mapping.remote))
        return bound

    def serve_forever(self, *, watch_every: float = 1.0) -> None:
        """Accept (and, through the sidecar, relay) until stop() or the target's death
        (TargetNotRunning)."""
        for sock, mapping in self.listeners:
            self.selector.register(sock, selectors.EVENT_READ, lambda _mask, s=sock, m=mapping: self._accept(s, m))
        self.selector.register(self._stop_r, selectors.EVENT_READ, self._stopped)
        while not self._stopping:
            events = self.selector.select(watch_every)
            for key, mask in events:
                key.data(mask)
                if self._stopping:
                    return
            if not events and not self.relay.alive():
                self._stopping = True
                raise TargetNotRunning("the target (or its sidecar) stopped: port-forward ended")

    def _stopped(self, _mask) -> None:
        self._stopping = True

    def _accept(self, sock: socket.socket, mapping: Mapping) -> None:
        for _ in range(256):  # what is waiting, a bounded batch at a time
            try:
                conn, _peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    self.log(f"connection to port {mapping.remote} refused here: too many open files")
                return
            self.connections += 1
            adopt = getattr(self.relay, "adopt", None)
            if adopt is not None:
                adopt(conn, mapping.remote)
                continue
            conn.setblocking(True)
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
        if self._stop_r < 0:
            return  # closed already
        self._stopping = True
        closer = getattr(self.relay, "close", None)
        try:
            if closer is not None:
                closer()
        finally:
            self._close_own()

    def _close_own(self) -> None:
        for sock, _mapping in self.listeners:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(sock)
            with contextlib.suppress(OSError):
                sock.close()
        self.listeners = []
        for fd in (self._stop_r, self._stop_w):
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._stop_r = self._stop_w = -1
        self.selector.close()


def raise_open_files_limit() -> None:
    """Every connection is a descriptor: the soft limit up to the hard one, as Go's
    runtime does for kubectl (1024 is the usual soft limit, 1000 connections need more)."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 1 << 20
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
