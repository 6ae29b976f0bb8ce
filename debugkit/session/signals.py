"""SIGINT, SIGTERM and SIGHUP end a long-running command as Ctrl-C does: each becomes an
exception where it lands, so every `finally` cleans up.

Whatever disposition the command inherited: a background job of a non-interactive shell
(`debugkit port-forward T 8080 &` in a script) starts with SIGINT ignored, and `nohup`
ignores SIGHUP. Python keeps an inherited ignore, so `kill -INT $!` would do nothing.
kubectl (Go's os/signal) takes the signals it asks for whatever was inherited, and so
does debugkit, for as long as a session runs: an ignored SIGINT that nobody meant to
apply to the forward must not leave it running with no clean way to end it."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from debugkit.core.errors import Signalled

def _raise(signum, _frame):
    raise Signalled(signum)


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt (Python's own handler: exit 130 after cleanup),
    SIGTERM and SIGHUP raise Signalled (143, 129); the previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    previous.update({sig: signal.signal(sig, _raise) for sig in (signal.SIGTERM, signal.SIGHUP)})
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
