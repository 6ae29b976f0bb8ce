"""One status line that updates in place on a terminal, and plain lines everywhere else.

Long waits (a toolbox build, a push, a debug container the node is still pulling) show
what they are doing on one line of stderr that is rewritten, with the time spent, and
cleared when the wait ends. `rich` draws it, and only when the stream is a terminal:
it is imported then and not before, so a command that never waits on a terminal, and
`debugkit --help`, never load it. When the stream is a pipe or a file, `update()` draws
nothing and `print()` writes plain lines, which is what scripts, CI logs and tests read.

Text shown here may come from a registry, a build or the Kubernetes API: it is passed
through `safe()` and drawn as literal text (never as rich markup).
"""
from __future__ import annotations

import os
import sys
import time
from typing import IO, Any, BinaryIO

from debugkit.core.escape import safe

_UNICODE_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_ASCII_FRAMES = "-\\|/"


def elapsed_text(seconds: float) -> str:
    """0:07, 2:31, 1:02:03."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def is_live_terminal(stream: Any) -> bool:
    """True when stream is a terminal that can redraw a line (not TERM=dumb)."""
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False
    return tty and os.environ.get("TERM", "") != "dumb"


class _TextOnBinary:
    """A text stream over a binary one (the runtimes write bytes), for rich's console."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.encoding = "utf-8"

    def write(self, text: str) -> int:
        self._raw.write(text.encode("utf-8", "replace"))
        return len(text)

    def flush(self) -> None:
        self._raw.flush()

    def isatty(self) -> bool:
        return self._raw.isatty()

    def fileno(self) -> int:
        return self._raw.fileno()


class _Line:
    """What rich draws on each refresh: spinner, elapsed time (computed then), text."""

    def __init__(self, frames: str, started: float):
        self.text = ""
        self.frames = frames
        self.started = started

    def __rich__(self):
        from rich.text import Text

        now = time.monotonic()
        frame = self.frames[int(now * 10) % len(self.frames)]
        line = Text(no_wrap=True, overflow="ellipsis", end="")
        line.append(frame + " ", style="cyan")
        line.append(f"{elapsed_text(now - self.started)} ", style="dim")
        line.append(self.text)
        return line


class StatusLine:
    """A line rewritten in place on a terminal; plain lines (print) otherwise.

    live      None: decide from the stream (a terminal that is not TERM=dumb).
    Use it as a context manager, or call close(): on a terminal the line is erased, so
    whatever comes next starts on a clean line.
    """

    def __init__(self, stream: IO[str] | None = None, *, live: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.live = is_live_terminal(self.stream) if live is None else live
        self.started = time.monotonic()
        self._display = None
        self._line: _Line | None = None
        self._console = None
        if self.live:
            self._start()

    @classmethod
    def over_binary(cls, raw: BinaryIO, *, live: bool | None = None) -> "StatusLine":
        """A status line on a binary stream (the runtimes' Streams.stderr)."""
        if raw is getattr(sys.stderr, "buffer", None):
            return cls(sys.stderr, live=live)
        return cls(_TextOnBinary(raw), live=live)  # type: ignore[arg-type]

    def _start(self) -> None:
        from rich.console import Console
        from rich.live import Live

        encoding = (getattr(self.stream, "encoding", None) or "").lower()
        frames = _UNICODE_FRAMES if encoding.startswith("utf") else _ASCII_FRAMES
        self._console = Console(file=self.stream, force_terminal=True, highlight=False, soft_wrap=False)
        self._line = _Line(frames, self.started)
        self._display = Live(self._line, console=self._console, transient=True, auto_refresh=True,
                             refresh_per_second=4, redirect_stdout=False, redirect_stderr=False)
        self._display.start()

    def update(self, text: str) -> None:
        """The line's new text (a terminal only; nothing is written otherwise). It is drawn
        at the next refresh, four times a second: a build's hundreds of lines cost no more."""
        if self._line is not None:
            self._line.text = safe(text)

    def print(self, text: str) -> None:
        """A line that stays: above the status line on a terminal, plain otherwise."""
        text = safe(text)
        if self._display is not None and self._console is not None:
            from rich.text import Text

            self._console.print(Text(text, end="\n"), soft_wrap=True)
            return
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Erase the line (a terminal) and stop redrawing it. Idempotent."""
        display, self._display = self._display, None
        if display is not None:
            display.stop()
        self._line = None

    def __enter__(self) -> "StatusLine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
