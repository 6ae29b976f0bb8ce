"""`debugkit replay SESSION`: a recorded session played back in the terminal, with its timing.

The recording is found through the audit log and played only when its SHA-256 is the one
the session's end record carries: what reaches the terminal is then exactly what the
session showed (escape sequences included, as they were live), never a file that someone
edited since. A recording that was never sealed (the CLI was killed) plays with a warning.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from debugkit.core import digest
from debugkit.core.errors import FileInvalid, InvalidInput
from debugkit.runtimes.base import write_output

# An event line holds at most a 64 KiB chunk of output, escaped as JSON: a few times that.
MAX_LINE = 8 << 20


@dataclass(frozen=True)
class Event:
    interval: float
    code: str
    data: str


@dataclass(frozen=True)
class Recording:
    path: Path
    header: dict
    sealed: bool       # its SHA-256 matched the audit log's end record


def open_recording(entry: dict) -> Recording:
    """The recording of an audit log session, checked against its end record."""
    path = entry.get("recording")
    if not isinstance(path, str):
        raise InvalidInput(f"session {entry['session']} was not recorded (start it with --record)")
    want = entry.get("recording_sha256")
    try:
        have = digest.file_sha256(path)
    except FileNotFoundError:
        raise FileInvalid(f"the recording of session {entry['session']} is missing: {path}") from None
    except OSError as exc:
        raise FileInvalid(f"cannot read the recording {path}: {exc.strerror or exc}") from None
    if isinstance(want, str) and have != want:
        raise FileInvalid(f"the recording {path} was changed since session {entry['session']} ended "
                          f"(its SHA-256 is not the audit log's): not played (debugkit audit verify)")
    return Recording(Path(path), read_header(Path(path)), sealed=isinstance(want, str))


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as fh:
        number = 0
        while True:
            raw = fh.readline(MAX_LINE + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE:
                raise FileInvalid(f"{path}:{number}: a line longer than {MAX_LINE} bytes is not an asciicast event")
            yield number, raw


def read_header(path: Path) -> dict:
    for number, raw in _lines(path):
        try:
            header = json.loads(raw)
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("version") != 3:
            raise FileInvalid(f"{path}:{number}: not an asciicast v3 recording")
        return header
    raise FileInvalid(f"{path}: empty, not an asciicast v3 recording")


def events(path: Path) -> Iterator[Event]:
    """The events after the header; comment lines skipped, a malformed line named."""
    first = True
    for number, raw in _lines(path):
        if first:
            first = False
            continue
        if not raw.strip() or raw.startswith(b"#"):
            continue
        try:
            interval, code, data = json.loads(raw)
            interval = float(interval)
        except (ValueError, TypeError):
            raise FileInvalid(f"{path}:{number}: not an asciicast event [interval, code, data]") from None
        if not isinstance(code, str) or not isinstance(data, str) or not interval >= 0:
            raise FileInvalid(f"{path}:{number}: not an asciicast event [interval, code, data]")
        yield Event(interval, code, data)


def play(recording: Recording, out: BinaryIO, *, speed: float = 1.0, idle_limit: float | None = None,
         sleep: Callable[[float], None] = time.sleep) -> int | None:
    """Write the output events to `out` with their timing (each pause cut to idle_limit,
    then divided by speed); the recorded exit status, if the recording has one."""
    exit_status = None
    pending = 0.0
    for event in events(recording.path):
        pending += event.interval
        if event.code == "o":
            pause = pending if idle_limit is None else min(pending, idle_limit)
            if pause > 0:
                sleep(pause / speed)
            pending = 0.0
            write_output(out, event.data.encode())
        elif event.code == "x":
            exit_status = int(event.data) if event.data.lstrip("-").isdigit() else None
    return exit_status
