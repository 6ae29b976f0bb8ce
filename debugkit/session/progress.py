"""A copy's progress: bytes so far and the rate, on one updating line of stderr."""
from __future__ import annotations

import sys
import threading
import time


class Progress:
    """Bytes so far and the rate, on one updating line of stderr; silent when not a terminal."""

    def __init__(self, total: int | None, *, enabled: bool):
        self.total = total
        self.enabled = enabled
        self.done = 0
        self.started = time.monotonic()
        self._shown = 0.0
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        self.done += count
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._shown >= 0.2:
            self._shown = now
            rate = self.done / max(now - self.started, 1e-6)
            of = f" of {_human(self.total)}" if self.total else ""
            with self._lock:
                sys.stderr.write(f"\r\x1b[Kdebugkit: {_human(self.done)}{of} ({_human(rate)}/s)")
                sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            with self._lock:
                sys.stderr.write("\r\x1b[K")
                sys.stderr.flush()


def _human(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"
