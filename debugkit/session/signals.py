"""Turn SIGTERM and SIGHUP into exceptions, so every `finally` cleans up as on Ctrl-C."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from debugkit.core.errors import Signalled


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, _frame):
        raise Signalled(signum)

    previous = {sig: signal.signal(sig, _raise) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
