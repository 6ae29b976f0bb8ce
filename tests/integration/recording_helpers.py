"""What the recording tests share: the real asciinema 3 CLI (built by scripts/asciinema-testenv),
a recording found through the audit log, and checks that a file is a whole asciicast v3."""
from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from debugkit.core import digest
from tests.helpers import IN_CI, REPO, audit_records


def asciinema_binary() -> Path:
    """scripts/asciinema-testenv path: built once per version (a few minutes), cached after."""
    try:
        built = subprocess.run([str(REPO / "scripts" / "asciinema-testenv"), "path"], capture_output=True,
                               text=True, timeout=45 * 60)
    except FileNotFoundError as exc:
        pytest.fail(f"scripts/asciinema-testenv missing: {exc}")
    if built.returncode != 0:
        message = f"scripts/asciinema-testenv could not build asciinema: {built.stderr.strip()[-1500:]}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return Path(built.stdout.strip().splitlines()[-1])


def session_records(audit_log: Path) -> dict[str, dict]:
    """{event: record} of the one session in a test's audit log (start, created, end)."""
    records = audit_records(audit_log)
    sessions = {r["session"] for r in records}
    assert len(sessions) == 1, sessions
    return {r["event"]: r for r in records}


def recording_of(audit_log: Path) -> tuple[Path, dict]:
    """The recording the log names, checked: in the recordings directory beside the log,
    mode 0600, its SHA-256 the one in the end record."""
    records = session_records(audit_log)
    path = Path(records["start"]["recording"])
    assert path.parent == audit_log.parent / "recordings"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert records["end"]["recording_sha256"] == digest.file_sha256(path)
    return path, records


def cast_events(path: Path) -> tuple[dict, list[list]]:
    """(header, events): every line must be whole JSON (the file is valid however it ended)."""
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"", "the file must end with a whole line"
    header = json.loads(lines[0])
    assert header["version"] == 3 and {"cols", "rows"} <= set(header["term"])
    events = [json.loads(line) for line in lines[1:-1]]
    for interval, code, data in events:
        assert isinstance(interval, (int, float)) and interval >= 0 and isinstance(code, str)
        assert isinstance(data, str)
    return header, events


def asciinema_text(asciinema: Path, cast: Path) -> str:
    """What the recording shows, as plain text, by asciinema's own terminal emulator."""
    out = subprocess.run([str(asciinema), "convert", "--quiet", "-f", "txt", str(cast), "-"], capture_output=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out.stdout.decode()


def asciinema_cat(asciinema: Path, cast: Path) -> list[list]:
    """`asciinema cat` (3.x: concatenate recordings) of the file with itself: asciinema's
    parser reads every event, and writes them back as one v3 recording."""
    out = subprocess.run([str(asciinema), "cat", "--quiet", str(cast), str(cast)], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    lines = out.stdout.decode().splitlines()
    assert json.loads(lines[0])["version"] == 3
    return [json.loads(line) for line in lines[1:]]


def asciinema_play(asciinema: Path, cast: Path, *, rows: int = 50, cols: int = 140) -> bytes:
    """`asciinema play` fast (-s 20, pauses cut to 0.1 s) on a pseudo-terminal, as a person
    would watch it; what it wrote to the terminal."""
    master, slave = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def controlling_terminal():  # asciinema opens /dev/tty: the pty must be the session's terminal
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([str(asciinema), "play", "--speed", "20", "--idle-time-limit", "0.1", str(cast)],
                            stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_terminal,
                            env={**os.environ, "TERM": "xterm-256color"})
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                screen += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=10) == 0, screen[-2000:]
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return screen
