"""Helpers for completion tests: the real CLI through click's completion protocol, real
interactive shells on a pseudo-terminal, and a server that accepts and never answers
(an engine or API server that hangs)."""
from __future__ import annotations

import os
import pty
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.helpers import REPO, close_pty_process


def complete(words: str, *, cword: int | None = None, shell: str = "bash", line: str | None = None,
             env: dict | None = None, timeout: float = 30) -> tuple[list[str], float, subprocess.CompletedProcess]:
    """Ask the real CLI for completions the way a shell script does; (values, seconds, process).
    `words` is COMP_WORDS; cword defaults to its last word (an empty one after a trailing space).
    `line` sends COMP_LINE as debugkit's own bash script does."""
    parts = words.split(" ")
    full_env = {**os.environ, "_DEBUGKIT_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
                "COMP_CWORD": str(len(parts) - 1 if cword is None else cword), **(env or {})}
    if shell == "fish":
        full_env["COMP_CWORD"] = parts[-1]
    if line is not None:
        full_env["COMP_LINE"] = line
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "debugkit"], env=full_env, capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    out = proc.stdout.decode()
    if shell == "zsh":
        lines = out.split("\n")
        values = [lines[i + 1] for i in range(0, len(lines) - 2, 3) if lines[i] == "plain"]
    else:
        values = [entry.split(",", 1)[1] for entry in out.splitlines() if entry.startswith("plain,")]
    return values, elapsed, proc


def bin_dir(tmp_path: Path, *names: str) -> Path:
    """A directory with executables that run this checkout's code: `debugkit`, and
    `kubectl-debugkit` (the plugin entry point), as the installed console scripts do."""
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    modules = {"debugkit": "debugkit", "kubectl-debugkit": "debugkit.cli.plugin"}
    for name in names or ("debugkit",):
        path = directory / name
        # PYTHONSAFEPATH: the working directory must not shadow this checkout (Python 3.11+).
        path.write_text(f'#!/bin/sh\nPYTHONSAFEPATH=1 PYTHONPATH={REPO} exec {sys.executable} -m {modules[name]} "$@"\n')
        path.chmod(0o755)
    return directory


class InteractiveShell:
    """bash, zsh or fish on a pseudo-terminal: type, press TAB, read the screen."""

    def __init__(self, argv: list[str], *, path_dir: Path, env: dict | None = None):
        self.master, slave = pty.openpty()
        self.env = {**os.environ, "TERM": "dumb", "PS1": "$ ", **(env or {})}
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=self.env,
                                     start_new_session=True)
        os.close(slave)
        self.buffer = b""
        self.marks = 0
        self.run(f"export PATH={path_dir}:$PATH" if "fish" not in argv[0] else f"set -gx PATH {path_dir} $PATH")

    def _read(self, until, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.buffer += os.read(self.master, 65536)
                except OSError:
                    return

    def run(self, command: str, timeout: float = 30) -> None:
        """Run a setup command and wait until it is done (a marker the shell prints)."""
        self.marks += 1
        marker = f"dk-ready-{self.marks}"
        # printf joins the two halves: the echo of what was typed never matches the marker.
        os.write(self.master, f"{command}; printf '%s-%s\\n' dk-ready {self.marks}\n".encode())
        self._read(lambda: marker.encode() + b"\r\n" in self.buffer or marker.encode() + b"\n" in self.buffer,
                   timeout)
        if marker.encode() not in self.buffer:
            raise AssertionError(f"shell did not finish {command!r}: {self.buffer[-2000:]!r}")

    def tab(self, typed: str, *, presses: int = 1, settle: float = 3.0) -> str:
        """Type `typed`, press TAB, and return what the terminal shows after it."""
        start = len(self.buffer)
        os.write(self.master, typed.encode())
        self._read(lambda: False, 0.3)
        for _ in range(presses):
            os.write(self.master, b"\t")
            self._read(lambda: False, settle)
        shown = self.buffer[start:].decode(errors="replace")
        os.write(self.master, b"\x15")  # Ctrl-U: clear the line for the next test
        self._read(lambda: False, 0.2)
        return shown

    def close(self) -> None:
        close_pty_process(self.master, self.proc)


class SilentServer:
    """Accepts connections and never says a word: an engine or API server that hangs."""

    def __init__(self, unix_path: str | None = None):
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.address = f"unix://{unix_path}"
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.sock.listen(64)
        self.held: list[socket.socket] = []
        self.accepted = 0
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            self.held.append(conn)

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=5)
        for conn in self.held:
            conn.close()
        self.sock.close()

    def __enter__(self) -> "SilentServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def silent_kubeconfig(path: Path, address: str) -> Path:
    """A kubeconfig whose API server is `address` (a SilentServer)."""
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: silent, cluster: {{server: 'https://{address}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: someone, user: {token: abc}}]\n"
        "contexts: [{name: silent, context: {cluster: silent, user: someone, namespace: shop}}]\n"
        "current-context: silent\n")
    return path
