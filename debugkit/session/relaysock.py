"""Port-forward at kernel speed on a local Docker or Podman engine: through unix sockets
in a host directory bind-mounted into the sidecar, not through the engine's exec stream.

The sidecar (runtime.open_relay) has the session's private directory (relaydir.py) at
RELAY_MOUNT; one exec of `debugkit-helper relay --listen RELAY_MOUNT --to PORTS` listens
there on PORT.sock for each remote port, as the target's user, and for each connection
dials the target's 127.0.0.1:PORT and copies between the sockets (toolbox-image/helper/
relaysock.go). No port is published and nothing listens on any network: a relay
container with a published port would listen on its bridge address too, where every
container on that bridge could reach the target's localhost-only services.

That the engine runs on this machine is proven, not assumed: the sockets must appear in
the host directory within PROOF_SECONDS. Otherwise (an engine in a VM, a forwarded
socket) the caller falls back to the exec mux (relaymux.py) on the same sidecar.

The exec's stdin carries a random secret, and every connection starts with it and a
status byte: nothing a local client sends goes to a socket that is not the relay (a
process of the target's user could replace PORT.sock with a symlink to some host
socket). The CLI side moves the bytes in the forward's selector loop, with half-closes
passed on both ways.
"""
from __future__ import annotations

import contextlib
import hmac
import os
import selectors
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from debugkit.core.errors import DebugkitError, NothingListening, RelayEnded, TargetNotRunning
from debugkit.runtimes.base import HELPER_PATH, RELAY_MOUNT, BoundedCapture, ExecSession, helper_mismatch
from debugkit.session import relaydir

SECRET_SIZE = 16
CONNECTED = 0
NOTHING_LISTENING = 2          # the helper's exit code for relay: connection refused, unreachable
PROOF_SECONDS = 5.0            # for the sockets to appear in the host directory
BUFFER = 256 << 10
CONNECT_SECONDS = 5.0
FORCE_EXEC_ENV = "DEBUGKIT_RELAY"   # "exec": port-forward and cp through the exec stream (tests, a way out)


def wanted() -> bool:
    return os.environ.get(FORCE_EXEC_ENV, "").strip().lower() != "exec"


def socket_name(port: int) -> str:
    return f"{port}.sock"


class _Way:
    """One direction of a connection: bytes read from src, not yet all written to dst."""

    __slots__ = ("src", "dst", "pending", "eof", "shut")

    def __init__(self, src: socket.socket, dst: socket.socket):
        self.src, self.dst = src, dst
        self.pending = memoryview(b"")
        self.eof = self.shut = False


class _Bridge:
    """A local connection and its unix socket to the relay, in the selector loop."""

    def __init__(self, relay: "SocketRelay", local: socket.socket, up: socket.socket, remote: int):
        self.relay, self.local, self.up, self.remote = relay, local, up, remote
        self.proven = False
        self.preface = b""
        self.out = _Way(local, up)     # the client's bytes, to the target
        self.back = _Way(up, local)    # the target's, to the client
        self.events = {local: 0, up: 0}
        self.handlers = {local: lambda mask: self.on_event(local, mask),
                         up: lambda mask: self.on_event(up, mask)}
        self.ended = False

    def on_event(self, sock: socket.socket, mask: int) -> None:
        if self.ended:
            return
        if not self.proven:
            self._read_preface()
        else:
            if mask & selectors.EVENT_WRITE:
                self._flush(self.out if sock is self.up else self.back)
            if mask & selectors.EVENT_READ and not self.ended:
                self._read(self.out if sock is self.local else self.back)
        if not self.ended:
            self.settle()

    def _read_preface(self) -> None:
        try:
            data = self.up.recv(BUFFER)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(f"the relay's socket failed ({exc.strerror})")
            return
        if not data:
            self._fail("the relay closed it")
            return
        self.preface += data
        if len(self.preface) < SECRET_SIZE + 1:
            return
        if not hmac.compare_digest(self.preface[:SECRET_SIZE], self.relay.secret):
            self._fail("refused: the socket in the relay directory is not the relay's (it lacks the session's "
                       "secret)")
            return
        status, rest = self.preface[SECRET_SIZE], self.preface[SECRET_SIZE + 1:]
        self.preface = b""
        if status != CONNECTED:
            from debugkit.core.escape import safe

            reason = rest.decode("utf-8", "replace").strip().splitlines()
            self._fail(safe(reason[0]) if reason else f"the relay could not connect (code {status})")
            return
        self.proven = True
        if rest:  # the server spoke first, in the same read
            self.back.pending = memoryview(rest)
            self._flush(self.back)

    def _read(self, way: _Way) -> None:
        try:
            data = way.src.recv(BUFFER)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.end()  # reset: the other side is ended too
            return
        if not data:
            way.eof = True
        else:
            way.pending = memoryview(data)
        self._flush(way)

    def _flush(self, way: _Way) -> None:
        while way.pending:
            try:
                sent = way.dst.send(way.pending)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.end()
                return
            way.pending = way.pending[sent:]
        if way.eof and not way.shut:
            way.shut = True
            with contextlib.suppress(OSError):
                way.dst.shutdown(socket.SHUT_WR)
        if self.out.shut and self.back.shut:
            self.end()

    def settle(self) -> None:
        """Watch each socket for what the connection waits for: a read from a side whose
        bytes have all been passed on, a write to a side that has bytes waiting."""
        want_local = want_up = 0
        if not self.proven:
            want_up = selectors.EVENT_READ
        else:
            if not self.out.eof and not self.out.pending:
                want_local |= selectors.EVENT_READ
            if self.back.pending:
                want_local |= selectors.EVENT_WRITE
            if not self.back.eof and not self.back.pending:
                want_up |= selectors.EVENT_READ
            if self.out.pending:
                want_up |= selectors.EVENT_WRITE
        for sock, want in ((self.local, want_local), (self.up, want_up)):
            have = self.events[sock]
            if want == have:
                continue
            sel = self.relay.sel
            if not have:
                sel.register(sock, want, self.handlers[sock])
            elif not want:
                sel.unregister(sock)
            else:
                sel.modify(sock, want, self.handlers[sock])
            self.events[sock] = want

    def _fail(self, why: str) -> None:
        self.relay.log(f"connection to port {self.remote}: {why}")
        self.end()

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        for sock in (self.local, self.up):
            if self.events[sock]:
                with contextlib.suppress(KeyError, ValueError):
                    self.relay.sel.unregister(sock)
                self.events[sock] = 0
            with contextlib.suppress(OSError):
                sock.close()
        self.relay.bridges.discard(self)


class SocketRelay:
    """Connections through the relay's unix sockets; `start` returns None when the engine
    is not proven local (the caller falls back to the exec mux)."""

    via = "the debug sidecar (debugkit-helper relay, as the target's user, through a local socket)"

    def __init__(self, session: ExecSession, directory: Path, ports: list[int], *,
                 selector: selectors.BaseSelector, log: Callable[[str], None]):
        self.session = session
        self.directory = directory
        self.ports = ports
        self.sel = selector
        self.log = log
        self.secret = os.urandom(SECRET_SIZE)
        self._reach = relaydir.Reachable(directory)
        self.bridges: set[_Bridge] = set()
        self._closing = False
        self._ended: list = []
        self._errors = BoundedCapture()
        self._control_r, self._control_w = os.pipe()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.write(self._control_w, self.secret.hex().encode() + b"\n")
        self._thread = threading.Thread(target=self._run, daemon=True, name="debugkit-relay-socket")
        self._thread.start()

    @classmethod
    def start(cls, session: ExecSession, directory: Path, ports: list[int], *,
              selector: selectors.BaseSelector, log: Callable[[str], None]) -> "SocketRelay | None":
        relay = cls(session, directory, ports, selector=selector, log=log)
        if relay._proven() and relay._answers(ports[0]):
            relay.sel.register(relay._wake_r, selectors.EVENT_READ, relay._on_ended)
            return relay
        relay.close()
        return None

    def _run(self) -> None:
        argv = [HELPER_PATH, "relay", "--listen", RELAY_MOUNT, "--to", ",".join(str(p) for p in self.ports)]
        try:
            self._ended.append(self.session.exec_io(argv, stdin_fd=self._control_r, stdout=BoundedCapture(),
                                                    stderr=self._errors))
        except BaseException as exc:  # noqa: BLE001 - reported by the selector loop
            self._ended.append(exc)
        finally:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    def _proven(self) -> bool:
        """Whether every socket appeared in the host directory: the engine's bind mount is
        this very directory, so the engine runs here."""
        paths = [self.directory / socket_name(p) for p in self.ports]
        deadline = time.monotonic() + PROOF_SECONDS
        delay = 0.002
        while True:
            if all(p.is_socket() for p in paths):
                return True
            if self._ended:
                mismatch = helper_mismatch(self._ended[0] if isinstance(self._ended[0], int) else None,
                                           self._errors.getvalue())
                if mismatch is not None:
                    raise mismatch
                if isinstance(self._ended[0], BaseException) and not isinstance(self._ended[0], DebugkitError):
                    raise self._ended[0]
                return False
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _answers(self, port: int) -> bool:
        """Whether a connection through the socket reaches the relay (its secret comes
        back): a socket file that shows up on a shared filesystem (an engine in a VM) may
        not connect at all."""
        try:
            return self._preface(port) is not None
        except OSError:
            return False

    def _preface(self, port: int) -> bytes | None:
        """The secret and status (and any reason after it) one connection starts with, or
        None when it is not the relay's; OSError when it cannot connect."""
        with self._connect(port) as up:
            answer = b""
            deadline = time.monotonic() + CONNECT_SECONDS
            while len(answer) < SECRET_SIZE + 1 and time.monotonic() < deadline:
                up.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data = up.recv(4096)
                except OSError:
                    break
                if not data:
                    break
                answer += data
        if len(answer) <= SECRET_SIZE or not hmac.compare_digest(answer[:SECRET_SIZE], self.secret):
            return None
        return answer

    # -- what the forward asks ------------------------------------------------------------

    def _connect(self, port: int) -> socket.socket:
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            up.settimeout(CONNECT_SECONDS)
            up.connect(self._reach.path(socket_name(port)))
        except OSError:
            up.close()
            raise
        return up

    def adopt(self, conn: socket.socket, remote: int) -> None:
        """A new local connection: forwarded once the relay proved itself and connected."""
        try:
            up = self._connect(remote)
        except OSError as exc:
            self.log(f"connection to port {remote}: the relay's socket refused it ({exc.strerror or exc})")
            conn.close()
            return
        conn.setblocking(False)
        up.setblocking(False)
        bridge = _Bridge(self, conn, up, remote)
        self.bridges.add(bridge)
        bridge.settle()

    def check(self, port: int) -> None:
        """Nothing listening is a clear error now (86), not a line per connection later."""
        try:
            answer = self._preface(port)
        except OSError as exc:
            raise RelayEnded(f"port-forward: the relay's socket for port {port} refused a connection "
                             f"({exc.strerror or exc})") from None
        if answer is None:
            raise RelayEnded(f"port-forward: the socket for port {port} in {self.directory} did not answer as "
                             f"the relay")
        if answer[SECRET_SIZE] == NOTHING_LISTENING:
            raise NothingListening(f"nothing is listening on 127.0.0.1:{port} in the target")

    def alive(self) -> bool:
        """Whether the sidecar runs (the relay exec's own end is _on_ended's to report)."""
        return self.session.alive()

    def _on_ended(self, _mask) -> None:
        """The relay's exec ended while the forward runs: the target's death (67), or the
        relay's own (88); either way the forward ends, with one line saying which."""
        if self._closing:
            return
        self._thread.join(timeout=5)
        lost = len(self.bridges)
        if self._sidecar_gone():
            raise TargetNotRunning("the target (or its sidecar) stopped: port-forward ended")
        outcome = self._ended[0] if self._ended else None
        if isinstance(outcome, KeyboardInterrupt):
            raise outcome
        detail = self._errors.getvalue().decode(errors="replace").strip().splitlines()
        why = detail[-1].removeprefix("debugkit-helper: ") if detail else (
            str(outcome) if isinstance(outcome, BaseException) else f"exit {outcome}")
        from debugkit.core.escape import safe

        raise RelayEnded(f"port-forward: the relay in the sidecar ended ({safe(why)}); {lost} connection(s) lost")

    def _sidecar_gone(self) -> bool:
        return self.session.gone_within()

    def close(self) -> None:
        """Every connection closed, then the exec's stdin: the helper removes its sockets
        and exits."""
        self._closing = True
        for bridge in list(self.bridges):
            bridge.end()
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(self._wake_r)
        for fd in (self._control_w,):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._thread.join(timeout=5)
        for fd in (self._control_r, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._reach.close()
        self._control_r = self._control_w = self._wake_r = self._wake_w = -1

    @property
    def connections(self) -> int:
        return len(self.bridges)
