"""Session recordings (--record) as asciicast v3 files, the format of asciinema 3.

    {"version": 3, "term": {"cols": 120, "rows": 40, "type": "xterm"}, "timestamp": ..., ...}
    [0.248, "o", "output as a terminal shows it"]
    [1.001, "r", "100x30"]
    [0.5, "i", "input, only with --record-input"]
    [0.02, "x", "0"]

Each event's time is the interval since the one before. A recording is written as the
session runs, one whole line per write(2), so it is a valid file at every moment: after
Ctrl-C, SIGTERM, a broken pipe or a dead target the session's end closes it with an "x"
event (its exit status), and its SHA-256 goes into the audit log's end record.

The recorder hooks into a session through its streams only (`RecordedStreams` wraps the
Streams a runtime writes to; `RecordedExec` wraps a runbook's ExecSession), so the
runtimes know nothing of it. Files are created 0600 in `recordings/` beside the audit log
(a 0700 directory): output can hold secrets, input even more so.
"""
from __future__ import annotations

import codecs
import contextlib
import json
import os
import shlex
import threading
import time
from pathlib import Path
from typing import BinaryIO, Callable

from debugkit.core import digest
from debugkit.core.errors import DebugkitError, ExitCode
from debugkit.core.files import state_dir, state_home
from debugkit.runtimes.base import ExecSession, Plan, Streams, terminal_size
from debugkit.session import audit

SUFFIX = ".cast"


class RecordingUnwritable(DebugkitError):
    """The recording cannot be created: nothing is launched that was asked to be recorded."""

    exit_code = ExitCode.AUDIT_UNWRITABLE


def recordings_dir() -> Path:
    """Beside the audit log whose records name them ($XDG_STATE_HOME/debugkit/recordings)."""
    return audit.audit_path().parent / "recordings"


def path_for(session_id: str) -> Path:
    return recordings_dir() / f"{session_id}{SUFFIX}"


def private_directory(path: Path) -> None:
    """A recordings directory of ours that others can read (made before debugkit made it
    0700, or under a wide umask) is closed to them; one of someone else's is left alone,
    and the file itself is 0600 whatever the directory."""
    info = os.stat(path)
    if info.st_uid == os.getuid() and info.st_mode & 0o077:
        os.chmod(path, 0o700)


class Recorder:
    """An asciicast v3 file being written. Thread-safe: a relay thread records input."""

    def __init__(self, path: Path, *, cols: int, rows: int, command: str | None, title: str,
                 term_type: str | None = None):
        self.path = path
        try:
            if path.parent.parent == state_home() / "debugkit":
                state_dir()  # the state directory 0700, whichever command comes first
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            private_directory(path.parent)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise RecordingUnwritable(f"cannot create the recording {path}: {exc.strerror or exc}",
                                      hint="set DEBUGKIT_AUDIT_LOG or XDG_STATE_HOME to a writable place") from None
        self._lock = threading.Lock()
        self._closed = False
        self._decoders: dict[str, codecs.IncrementalDecoder] = {}
        self.size = (cols, rows)
        header: dict = {"version": 3, "term": {"cols": cols, "rows": rows}, "timestamp": int(time.time())}
        if term_type:
            header["term"]["type"] = term_type
        if command:
            header["command"] = command
        header["title"] = title
        self._write_line(json.dumps(header))
        self._last = time.monotonic()

    # -- events ----------------------------------------------------------------------------

    def output(self, data: bytes, *, channel: str = "stdout", crlf: bool = False) -> None:
        """Output bytes; `crlf` turns each LF into CRLF, as a terminal's ONLCR shows a
        scripted command's output (a player is a terminal: a bare LF would only go down)."""
        text = self._decode(channel, data)
        if text:
            self._event("o", text.replace("\n", "\r\n") if crlf else text)

    def input(self, data: bytes) -> None:
        text = self._decode("input", data)
        if text:
            self._event("i", text)

    def resize(self, cols: int, rows: int) -> None:
        if (cols, rows) != self.size:
            self.size = (cols, rows)
            self._event("r", f"{cols}x{rows}")

    def marker(self, label: str) -> None:
        self._event("m", label)

    def close(self, exit_code: int | None) -> dict:
        """Flush what is half decoded, end with the exit status, and seal: the fields the
        audit log's end record carries. Idempotent."""
        with self._lock:
            if self._closed:
                return {}
        for channel in list(self._decoders):
            rest = self._decoders[channel].decode(b"", final=True)
            if rest:
                self._event("i" if channel == "input" else "o", rest)
        if exit_code is not None:
            self._event("x", str(exit_code))
        with self._lock:
            self._closed = True
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
        # Hashed from the file itself: what `audit verify` will hash, whatever was written.
        return {"recording_sha256": digest.file_sha256(self.path), "recording_bytes": self.path.stat().st_size}

    # -- writing ---------------------------------------------------------------------------

    def _decode(self, channel: str, data: bytes) -> str:
        decoder = self._decoders.get(channel)
        if decoder is None:
            decoder = self._decoders[channel] = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return decoder.decode(data)

    def _event(self, code: str, data: str) -> None:
        with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            interval, self._last = now - self._last, now
            self._write_line(f"[{interval:.6f}, {json.dumps(code)}, {json.dumps(data)}]")

    def _write_line(self, line: str) -> None:
        # One write(2) per whole line: a regular file takes it whole, so the file never
        # holds half an event, whenever the process stops.
        view = memoryview((line + "\n").encode())
        while view:
            view = view[os.write(self._fd, view):]


def start(plan: Plan, *, mode: str) -> Recorder:
    """The recorder for a session that is about to start (after its start record)."""
    rows, cols = terminal_size()
    spec = plan.spec
    command = shlex.join(spec.command) if spec.command else None
    return Recorder(path_for(spec.session_id), cols=cols, rows=rows, command=command,
                    title=f"debugkit {mode} {plan.target.name} (session {spec.session_id})",
                    term_type=os.environ.get("TERM") if spec.tty else None)


# -- hooks into a session's streams -----------------------------------------------------------


class RecordedOutput:
    """A stream a runtime writes a session's output to, recording each write first."""

    def __init__(self, inner: BinaryIO, recorder: Recorder, *, channel: str, crlf: bool,
                 before: Callable[[], None] | None = None):
        self._inner = inner
        self._recorder = recorder
        self._channel = channel
        self._crlf = crlf
        self._before = before

    def write(self, data) -> int:
        if self._before is not None:
            self._before()
        self._recorder.output(bytes(data), channel=self._channel, crlf=self._crlf)
        return self._inner.write(data)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class RecordedInput:
    """stdin as a pipe that a relay thread fills from the real stdin, recording what it
    reads: the runtimes read a file descriptor, so this is where input can be seen.
    Only with --record-input."""

    def __init__(self, inner: BinaryIO, recorder: Recorder, *, before: Callable[[], None] | None = None):
        self._source = inner.fileno()
        self._recorder = recorder
        self._before = before
        self._read_end, self._write_end = os.pipe()
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._relay, name="debugkit-record-input", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        return self._read_end

    def _relay(self) -> None:
        import select

        try:
            while True:
                ready, _, _ = select.select([self._source, self._stop_r], [], [])
                if self._stop_r in ready:
                    return
                try:
                    data = os.read(self._source, 65536)
                except (ConnectionResetError, OSError):
                    data = b""
                if not data:
                    return  # EOF: closing our end tells the session
                if self._before is not None:
                    self._before()
                self._recorder.input(data)
                view = memoryview(data)
                while view:
                    view = view[os.write(self._write_end, view):]
        except OSError:  # the session closed the pipe's other end: it has ended
            return
        finally:
            with contextlib.suppress(OSError):
                os.close(self._write_end)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        with contextlib.suppress(OSError):
            os.close(self._read_end)  # a relay blocked writing gets EPIPE
        self._thread.join(timeout=2)
        for fd in (self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def recorded_streams(streams: Streams, recorder: Recorder, *, tty: bool, record_input: bool):
    """The session's streams with the recorder in between. On a TTY, the terminal's size
    is looked at before each chunk, so a resize is recorded before the output it causes."""
    before = None
    if tty:
        def before():
            rows, cols = terminal_size()
            recorder.resize(cols, rows)
    stdin = streams.stdin
    relay = None
    if record_input and stdin is not None:
        stdin = relay = RecordedInput(stdin, recorder, before=before)
    wrapped = Streams(stdin=stdin,
                      stdout=RecordedOutput(streams.stdout, recorder, channel="stdout", crlf=not tty, before=before),
                      stderr=RecordedOutput(streams.stderr, recorder, channel="stderr", crlf=not tty, before=before))
    try:
        yield wrapped
    finally:
        if relay is not None:
            relay.close()


class RecordedExec:
    """A runbook's sidecar with each step recorded: a marker with the step's command, the
    command as a `$` line, then its stdout and its stderr (each step's output arrives
    whole, so the two are recorded one after the other)."""

    def __init__(self, live: ExecSession, recorder: Recorder):
        self._live = live
        self._recorder = recorder
        self.report: dict | None = None

    def keep_report(self, report: dict) -> None:
        """The runbook's report, kept beside the recording when the session is sealed."""
        self.report = report

    def exec(self, argv, *, timeout: float, **kwargs):
        command = shlex.join(argv)
        self._recorder.marker(command)
        self._recorder.output(f"$ {command}\n".encode(), channel="prompt", crlf=True)
        result = self._live.exec(argv, timeout=timeout, **kwargs)
        self._recorder.output(result.stdout, channel="stdout", crlf=True)
        self._recorder.output(result.stderr, channel="stderr", crlf=True)
        return result

    def __getattr__(self, name):
        return getattr(self._live, name)


class SessionRecording:
    """What the session flow asks of recording, as no-ops when the session is not recorded:
    the start record's fields, the streams (or runbook sidecar) to use, and the seal that
    puts the file's SHA-256 into the end record."""

    def __init__(self, *, enabled: bool, record_input: bool = False):
        self.enabled = enabled
        self.record_input = record_input
        self._recorder: Recorder | None = None

    def start_fields(self, plan: Plan) -> dict:
        if not self.enabled:
            return {}
        return {"recording": str(path_for(plan.spec.session_id)), "recording_input": self.record_input}

    @contextlib.contextmanager
    def streams(self, plan: Plan, streams: Streams, *, mode: str):
        if not self.enabled:
            yield streams
            return
        self._recorder = start(plan, mode=mode)
        with recorded_streams(streams, self._recorder, tty=plan.spec.tty, record_input=self.record_input) as wrapped:
            yield wrapped

    def exec_session(self, plan: Plan, live: ExecSession, *, mode: str):
        if not self.enabled:
            return live
        self._recorder = start(plan, mode=mode)
        self._exec = RecordedExec(live, self._recorder)
        return self._exec

    def seal(self, result: dict) -> None:
        """Close the file with the session's exit status; its hash (and a runbook's report,
        kept beside it, with its hash) goes into `result`."""
        if self._recorder is None:
            return
        recorder, self._recorder = self._recorder, None
        try:
            result.update(recorder.close(result.get("exit_code")))
            report = getattr(self, "_exec", None) and self._exec.report
            if report is not None:
                result.update(write_report(recorder.path, report))
        except OSError as exc:
            result["recording_error"] = f"cannot seal the recording {recorder.path}: {exc.strerror or exc}"


def keep_report(session, report: dict) -> None:
    """A runbook's report for the recording of its session (nothing when not recorded)."""
    if isinstance(session, RecordedExec):
        session.keep_report(report)


def report_path(recording: Path) -> Path:
    return recording.with_name(recording.name[:-len(SUFFIX)] + ".report.json")


def write_report(recording: Path, report: dict) -> dict:
    path = report_path(recording)
    data = (json.dumps(report, indent=2) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"report": str(path), "report_sha256": digest.hex_digest(data)}
