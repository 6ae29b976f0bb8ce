"""Engine clients with a short time limit, for the lookups of doctor and completion, and
whether an engine is set up here at all.

A session's client waits as long as a debug session needs (60 s for an engine call).
Completion must answer while a person waits at a prompt and doctor must finish even when
an engine hangs, so both get a client whose every call gives up after their timeout, for
the very address the runtime would dial.
"""
from __future__ import annotations

import os


def configured(connection) -> bool:
    """Docker is set up here when anything but the default socket was chosen (a flag,
    DOCKER_HOST, a context), or when the default socket exists."""
    from debugkit.runtimes.docker import hosts
    from debugkit.runtimes.docker.engine import DEFAULT_SOCKET, EngineConfigError

    try:
        address = hosts.resolve(host=connection.docker_host, context=connection.docker_context).address
    except EngineConfigError:
        return True  # configured, wrongly: doctor says how
    return address.text != f"unix://{DEFAULT_SOCKET}" or os.path.exists(DEFAULT_SOCKET)


def short_client(address, *, timeout: float, engine: str = "Docker"):
    """An engine client for `address` whose every call gives up after `timeout` seconds
    (`engine`: how messages name it). Raises EngineConfigError for an address that cannot
    be used as written."""
    from debugkit.runtimes.docker.engine import EngineClient

    dial = None
    if address.scheme == "ssh":
        from debugkit.runtimes.docker.sshdial import SSHDialer

        dial = SSHDialer(address)
    return EngineClient(address, timeout=timeout, dial=dial, engine=engine)
