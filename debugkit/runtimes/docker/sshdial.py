"""Engine connections over ssh, as the docker CLI makes them: one
`ssh ... -- HOST docker system dial-stdio` process per HTTP connection and per hijacked
stream, speaking the Engine API over its stdin and stdout.

Each connection is a `socket.socketpair()`: one end becomes the ssh process's stdin and
stdout, the other is handed to the HTTP and hijack code as a real socket (select, recv,
shutdown(SHUT_WR) all work as on a unix socket). The system's ssh is used, so keys,
agents, ~/.ssh/config and known_hosts work as they do for `ssh HOST`.

No ssh process outlives its connection, whatever the path:
- closing the socket (its last reference, http.client's makefile included) terminates
  and reaps its ssh process (SIGTERM, SIGKILL after 2 s);
- every ssh still running when the interpreter exits is terminated and reaped (atexit:
  normal exit, sys.exit, an exception, and SIGTERM/SIGHUP/Ctrl-C, which the CLI turns
  into exceptions);
- if debugkit itself is SIGKILLed, the kernel kills its ssh processes (PR_SET_PDEATHSIG),
  as the docker CLI's commandconn does.
ssh runs in a session of its own, so a Ctrl-C at the terminal reaches debugkit (which
cleans up over the connection) and not ssh.

On a terminal (stdin is one, and debugkit is in its foreground), ssh may ask what it
needs, as with the docker CLI: a new host key to confirm, a key's passphrase. It then runs
without BatchMode, in debugkit's process group (so that it can open the terminal), with
SIGINT, SIGQUIT, SIGTSTP and SIGHUP ignored (OpenSSH keeps an ignored signal ignored), so
that Ctrl-C still reaches debugkit alone. The first connection is made on its own; the
ones started ahead wait until it has answered, so that two questions never share the
terminal. Without a terminal, BatchMode stays: ssh never waits for an answer nobody can
give. Imported only for ssh:// engines.
"""
from __future__ import annotations

import atexit
import collections
import contextlib
import os
import re
import signal
import socket
import subprocess
import threading

from debugkit.runtimes.docker.engine import SSHConnectionError

_live: set["SSHProcess"] = set()
_live_lock = threading.Lock()
STOP_GRACE_S = 2.0


class SSHProcess:
    """One ssh process serving one connection; stop() ends and reaps it (idempotent)."""

    def __init__(self, proc: subprocess.Popen, dialer: "SSHDialer"):
        self.proc = proc
        self.dialer = dialer
        self.stderr = b""
        self.returncode: int | None = None
        self.terminated = False   # we signalled it while it was still serving
        self._stopped = False
        self._lock = threading.Lock()
        with _live_lock:
            _live.add(self)

    def stop(self, *, ending: bool = False) -> None:
        """Reap the process; signal it first unless it is `ending` on its own (its end of
        the socketpair is closed), in which case it gets STOP_GRACE_S to do so."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            proc = self.proc
            try:
                if ending and proc.poll() is None:
                    proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
            if proc.poll() is None:
                self.terminated = True
                try:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                except ProcessLookupError:
                    proc.wait()
            self.returncode = proc.returncode
            if proc.stderr is not None:
                try:
                    os.set_blocking(proc.stderr.fileno(), False)
                    self.stderr = proc.stderr.read(65536) or b""
                except (OSError, ValueError, TypeError):
                    pass
                proc.stderr.close()
            with _live_lock:
                _live.discard(self)
        self.dialer._ended(self)

    def failure(self) -> str | None:
        """ssh's reason for ending, if it ended on its own with an error."""
        if not self._stopped or self.terminated or self.returncode == 0:
            return None
        text = self.stderr.decode("utf-8", "replace")
        lines = [line.strip() for line in text.replace("\r", "\n").splitlines()
                 if line.strip() and not line.startswith("Killed by signal")]
        if not lines:
            return f"ssh exited with status {self.returncode}"
        return explain(lines, self.dialer.where)


class SSHSocket(socket.socket):
    """Our end of the socketpair; closing it ends its ssh process."""

    __slots__ = ("_ssh",)

    def recv(self, *args):
        data = super().recv(*args)
        if data:
            self._answered()
        return data

    def recv_into(self, *args):
        count = super().recv_into(*args)
        if count:
            self._answered()
        return count

    def _answered(self) -> None:
        """The engine answered through this connection: ssh is past its questions."""
        ssh = getattr(self, "_ssh", None)
        if ssh is not None and not ssh.dialer.answered.is_set():
            ssh.dialer.on_answer()

    def _real_close(self, _ss=socket.socket._real_close):
        # socket.close() calls this once the socket and every makefile() of it are
        # closed: the moment the connection is really over.
        ending = self._peer_closed()
        try:
            _ss(self)
        finally:
            ssh = getattr(self, "_ssh", None)
            self._ssh = None
            if ssh is not None:
                ssh.stop(ending=ending)

    def _peer_closed(self) -> bool:
        """Whether ssh has closed its end (it is exiting on its own): a peek, no waiting."""
        timeout = self.gettimeout()
        try:
            self.setblocking(False)
            return self.recv(1, socket.MSG_PEEK) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        finally:
            with contextlib.suppress(OSError):
                self.settimeout(timeout)

    def ssh_failure(self) -> str | None:
        """Why this connection's ssh ended, if it ended on its own with an error; None
        while it still serves (it is not touched then)."""
        ssh = getattr(self, "_ssh", None)
        if ssh is None or (ssh.proc.poll() is None and not self._peer_closed()):
            return None
        ssh.stop(ending=True)
        return ssh.failure()


class SSHDialer:
    """Makes connections to one ssh:// engine; remembers why recent ones failed.

    Each connection costs an ssh handshake (about 0.35 s on the test machine, more over a
    real network), and an attach needs three (the API calls, the sidecar's keep-alive
    stream, the command's exec stream). `prefetch(n)` starts n ssh processes at once so
    their handshakes overlap instead of running one after the other; `spare` keeps one
    started ahead while a runbook runs exec after exec. A connection taken from the pool
    is still one ssh process for one connection, and the pool is emptied by `close()`
    (and at exit): nothing is kept once the session is over."""

    def __init__(self, address, *, interactive: bool | None = None):
        self.interactive = terminal_available() if interactive is None else interactive
        self.argv = _without_batch_mode(address.ssh) if self.interactive else list(address.ssh)
        self.text = address.text
        self.where = _where(self.argv)
        self.answered = threading.Event()   # a connection has carried an answer: ssh asked what it had to
        self._deferred = 0
        self.spare = False
        self._pool: collections.deque[SSHSocket] = collections.deque()
        self._pool_lock = threading.Lock()
        self._recent: collections.deque[SSHProcess] = collections.deque(maxlen=16)

    def __call__(self, timeout: float | None) -> socket.socket:
        with self._pool_lock:
            sock = self._pool.popleft() if self._pool else None
        if sock is None:
            sock = self._spawn()
        if self.spare and (self.answered.is_set() or not self.interactive):
            with self._pool_lock:
                refill = not self._pool
            if refill:
                self._add_to_pool()
        sock.settimeout(timeout)
        return sock

    def prefetch(self, count: int) -> None:
        """Start `count` connections now, for the next `count` dials to take (on a terminal,
        not before the first connection has answered: ssh's questions come one at a time)."""
        if self.interactive and not self.answered.is_set():
            self._deferred = max(self._deferred, count)  # started by on_answer()
            return
        for _ in range(count):
            self._add_to_pool()

    def on_answer(self) -> None:
        """The first answer through any connection: ssh's questions are behind us; start
        the connections that prefetch deferred."""
        self.answered.set()
        deferred, self._deferred = self._deferred, 0
        if deferred:
            self.prefetch(deferred)

    def _add_to_pool(self) -> None:
        try:
            sock = self._spawn()
        except OSError:
            return  # the dial that needs it will fail with the reason
        with self._pool_lock:
            self._pool.append(sock)

    def close(self) -> None:
        """End the connections started ahead that nobody took."""
        self.spare = False
        while True:
            with self._pool_lock:
                sock = self._pool.popleft() if self._pool else None
            if sock is None:
                return
            sock.close()

    def _spawn(self) -> "SSHSocket":
        ours, theirs = socket.socketpair()
        try:
            if self.interactive:
                proc = subprocess.Popen(self.argv, stdin=theirs, stdout=theirs, stderr=subprocess.PIPE,
                                        close_fds=True, preexec_fn=_death_signal(ignore_terminal_signals=True))
            else:
                proc = subprocess.Popen(self.argv, stdin=theirs, stdout=theirs, stderr=subprocess.PIPE,
                                        start_new_session=True, close_fds=True, preexec_fn=_death_signal())
        except FileNotFoundError:
            ours.close()
            reason = "ssh is not installed here (an ssh:// engine needs the OpenSSH client)"
            raise SSHConnectionError(f"cannot reach the engine at {self.text}: {reason}", detail=reason) from None
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        sock = SSHSocket(ours.family, ours.type, ours.proto, fileno=ours.detach())
        sock._ssh = SSHProcess(proc, self)
        return sock

    def _ended(self, process: SSHProcess) -> None:
        self._recent.append(process)

    def failure(self) -> str | None:
        """The reason the most recent failed ssh of this engine gave, if any."""
        for process in reversed(self._recent):
            reason = process.failure()
            if reason:
                return reason
        return None


def explain(lines: list[str], where: dict) -> str:
    """ssh's stderr as one line a person can act on."""
    text = "\n".join(lines)
    host, port, user = where["host"], where["port"], where["user"]
    key_name = f"[{host}]:{port}" if port and port != "22" else host
    ssh_cmd = "ssh " + (f"-p {port} " if port and port != "22" else "") + (f"{user}@" if user else "") + host
    scan = "ssh-keyscan " + (f"-p {port} " if port and port != "22" else "") + host
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "has changed and you have requested strict" in text:
        return (f"Host key verification failed: the host key of {key_name} does not match the one in known_hosts "
                f"(a reinstalled server, or someone in the middle); if the change is expected, remove the old key "
                f"with `ssh-keygen -R '{key_name}'`, then run `{ssh_cmd}` once and accept the new key after "
                f"checking its fingerprint")
    if "Host key verification failed" in text:
        return (f"Host key verification failed: the host key of {key_name} is not known; run `{ssh_cmd}` once and "
                f"accept it, or add it with `{scan} >> ~/.ssh/known_hosts` after checking its fingerprint "
                f"(ssh-keygen -lf)")
    for line in lines:
        match = re.search(r"Permission denied \([^)]*\)", line)
        if match:
            return (f"{match.group(0)}: the server refused the key for {user + '@' if user else ''}{host} "
                    f"(ssh-add, or IdentityFile in ~/.ssh/config)")
    for line in lines:
        if re.search(r"docker: (command )?not found|docker: No such file", line):
            return (f"the docker CLI is not installed on {host}: ssh:// engines run `docker system dial-stdio` "
                    f"there ({_strip(line)})")
    for line in lines:
        if re.search(r"Could not resolve hostname|connect to host|Connection (refused|timed out|closed|reset)|"
                     r"No route to host|Network is unreachable|Broken pipe|Cannot connect to the Docker daemon|"
                     r"permission denied while trying to connect|failed to open the raw stream", line, re.I):
            return _strip(line)
    useful = [line for line in lines if not line.lower().startswith(("warning:", "** "))]
    return _strip((useful or lines)[-1])


def _strip(line: str) -> str:
    return line[5:] if line.startswith("ssh: ") else line


def _where(argv: list[str]) -> dict:
    """Host, port and user as given on the ssh command line (for messages)."""
    def value(flag):
        return argv[argv.index(flag) + 1] if flag in argv[:argv.index("--")] else ""
    return {"host": argv[argv.index("--") + 1], "port": value("-p"), "user": value("-l")}


_libc = None
_TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGHUP)


def terminal_available(fd: int = 0) -> bool:
    """stdin is a terminal and this process is in its foreground: ssh may ask there."""
    try:
        return os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


def _without_batch_mode(argv) -> list[str]:
    out = list(argv)
    for i in range(len(out) - 1):
        if out[i] == "-o" and out[i + 1] == "BatchMode=yes":
            del out[i:i + 2]
            break
    return out


def _death_signal(*, ignore_terminal_signals: bool = False):
    """A preexec function that asks the kernel to SIGKILL the child when debugkit dies
    (Linux), and (ignore_terminal_signals) sets the terminal's signals to SIG_IGN in the
    child, through libc: no Python runs between fork and exec but this. PR_SET_PDEATHSIG
    fires when the *thread* that forked exits, so only the main thread asks for it; a
    connection dialed from another thread relies on EOF alone."""
    global _libc
    if _libc is None:
        try:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
            _libc.signal.restype = ctypes.c_void_p
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return None
    libc = _libc
    pdeathsig = hasattr(os, "sched_getaffinity") and threading.current_thread() is threading.main_thread()
    if not pdeathsig and not ignore_terminal_signals:
        return None
    ignored = [int(sig) for sig in _TERMINAL_SIGNALS] if ignore_terminal_signals else []

    def prepare():
        if pdeathsig:
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        for sig in ignored:
            libc.signal(sig, 1)  # SIG_IGN

    return prepare


@atexit.register
def stop_all() -> None:
    """Terminate and reap every ssh still running (the interpreter is exiting)."""
    with _live_lock:
        live = list(_live)
    for process in live:
        try:
            process.stop()
        except Exception:  # noqa: BLE001 - exiting: do the rest
            pass


def live_count() -> int:
    with _live_lock:
        return len(_live)
