"""Shared test helpers: run the real CLI as a subprocess (plain or on a pseudo-terminal),
wait for a condition, read the audit log, and find debugkit's sidecars on the real Docker
engine. The fixtures are in the conftest.py files; they import what they need from here."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"
FIXTURE_TAG = os.environ.get("DEBUGKIT_FIXTURE_TAG", "1")
# One fixture per tests/fixtures/targets/*.Dockerfile: the list scripts/build-fixtures
# and scripts/podman-testenv build, kept in one place.
FIXTURES = {path.name.removesuffix(".Dockerfile"): f"debugkit-fixture/{path.name.removesuffix('.Dockerfile')}:"
            f"{FIXTURE_TAG}" for path in sorted((REPO / "tests" / "fixtures" / "targets").glob("*.Dockerfile"))}
TEST_LABEL = "io.debugkit.test"
# Each pytest run labels what it starts with its own ID, so two runs on one engine (a
# developer's and CI's) never sweep each other's containers.
RUN_LABEL = "io.debugkit.test-run"
RUN_ID = uuid.uuid4().hex[:12]
MANAGED_LABEL = "io.debugkit.managed"
STALE_AFTER_S = 3600


def labels_for_test() -> dict:
    return {TEST_LABEL: "1", RUN_LABEL: RUN_ID}


def run_cli(*args: str, input: bytes | str | None = None, timeout: float = 120, env: dict | None = None,
            prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    """The real CLI, as a user runs it: a separate process, real streams, real exit code."""
    full_env = {**os.environ, **(env or {})}
    if isinstance(input, str):
        input = input.encode()
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "debugkit", *args],
        input=input, capture_output=True, timeout=timeout, env=full_env,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def text(result: subprocess.CompletedProcess) -> tuple[str, str]:
    return result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")


def wait_for(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Pty:
    """The CLI on a real pseudo-terminal, as a person at a terminal runs it. controlling:
    the terminal is also the process's controlling terminal, with the process in its
    foreground (what a shell gives a command: /dev/tty works, Ctrl-C is a signal)."""

    def __init__(self, args, rows=40, cols=120, env: dict | None = None, *, controlling: bool = False):
        self.master, slave = pty.openpty()
        self.resize(rows, cols)

        def take_terminal():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen([sys.executable, "-m", "debugkit", *args], stdin=slave, stdout=slave,
                                     stderr=slave, start_new_session=True,
                                     preexec_fn=take_terminal if controlling else None,
                                     env={**os.environ, "TERM": "xterm", **(env or {})})
        os.close(slave)
        self.buffer = b""

    def resize(self, rows, cols):
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, text: str):
        os.write(self.master, text.encode())

    def expect(self, needle: bytes, timeout: float = 30) -> bytes:
        import select

        deadline = time.monotonic() + timeout
        while needle not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {needle!r}; screen so far: {self.buffer[-2000:]!r}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.buffer += os.read(self.master, 65536)
                except OSError:
                    break
        return self.buffer

    def close(self):
        close_pty_process(self.master, self.proc)


def close_pty_process(master: int, proc: subprocess.Popen) -> None:
    """Close a pseudo-terminal's master side and end the process on its other side."""
    try:
        os.close(master)
    except OSError:
        pass
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def audit_records(path: Path) -> list[dict]:
    """Every line must be one complete JSON object: a corrupt line fails the test."""
    import json

    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def sweep_stale_containers(client) -> None:
    """Test containers of runs that crashed long ago (older than an hour)."""
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    for ctr in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        created = dt.datetime.fromisoformat(ctr.attrs["Created"][:26].rstrip("Z") + "+00:00")
        if (now - created).total_seconds() > STALE_AFTER_S:
            ctr.remove(force=True)


def leaked_sidecars(client, **filters) -> list:
    labels = [f"{MANAGED_LABEL}=true"] + [f"{k}={v}" for k, v in filters.items()]
    return client.containers.list(all=True, filters={"label": labels}, ignore_removed=True)


def assert_no_leaked_sidecars(client, started_targets: list) -> None:
    """No debugkit sidecar of the targets a test started is left (checked by label): the
    after-each-test check of the directories whose tests start targets with start_target."""

    def settled():
        return not [c for c in leaked_sidecars(client)
                    if c.labels.get("io.debugkit.target-id") in started_targets]
    # An auto-removed sidecar may take a moment to disappear after its process ends.
    wait_for(settled, timeout=15, what="debugkit sidecars to be removed")
