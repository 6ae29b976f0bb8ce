"""Engine failures as debugkit errors, for Docker and Podman alike."""
from __future__ import annotations

import contextlib
import re

from debugkit.core.errors import (
    CommandNotExecutable,
    CommandNotFound,
    DebugkitError,
    EngineUnreachable,
    InvalidInput,
    PermissionDenied,
    TargetNotFound,
    TargetNotRunning,
)


class TransientStartFailure(DebugkitError):
    """runc 1.1 occasionally fails a start with a nil error under load; one retry succeeds."""


def engine_error(exc: BaseException, *, engine: str, host: str) -> DebugkitError:
    """A transport failure (no socket, refused, TLS, SSH) as one clear error."""
    from debugkit.runtimes.docker.engine import EngineAnswerInvalid, SSHConnectionError

    if isinstance(exc, EngineAnswerInvalid):
        # Something answers there, but not the Engine API: say who and what, in one line.
        return EngineUnreachable(f"the {engine} engine at {host} answered {exc.request} with {exc.what}",
                                 hint="is DOCKER_HOST (or -H, the context) the engine's address?")
    if isinstance(exc, SSHConnectionError):
        # ssh's own reason says what to do ("Permission denied (publickey)" is about the
        # key, not the socket): one line, exit 69.
        return EngineUnreachable(f"cannot reach the {engine} engine at {host}: ssh: {exc.detail}")
    text = str(exc)
    if isinstance(exc, PermissionError) or "Permission denied" in text:
        return PermissionDenied(
            f"permission denied on the {engine} socket {host}",
            hint="add your user to the group that owns the socket, or run with sudo",
        )
    detail = getattr(exc, "detail", None)
    return EngineUnreachable(f"cannot reach the {engine} engine at {host}" + (f": {detail}" if detail else ""),
                             hint=start_hint(engine, host))


def start_hint(engine: str, host: str) -> str:
    """What to start when an engine does not answer (said to installed users: no script of
    this repository's)."""
    on_that_host = "" if host.startswith("unix://") else " on that host"
    if engine == "Podman":
        return (f"start Podman's API service{on_that_host}: systemctl start podman.socket, or podman system "
                f"service --time=0; or point CONTAINER_HOST at a running one")
    return (f"start the {engine} engine{on_that_host}: systemctl start docker; or point -H, DOCKER_HOST or "
            f"the Docker context at a running one")


@contextlib.contextmanager
def engine_calls(*, engine: str, host: str):
    """Turn transport failures mid-session (engine restarted, socket gone) into our errors.
    Our own errors pass through untouched (a closed stdout is not the engine's fault)."""
    from debugkit.runtimes.docker.engine import EngineAnswerInvalid, EngineConnectionError, EngineError

    try:
        yield
    except DebugkitError:
        raise
    except (EngineConnectionError, ConnectionError, PermissionError, EngineAnswerInvalid) as exc:
        raise engine_error(exc, engine=engine, host=host) from exc
    except EngineError as exc:
        raise api_error(exc, engine=engine) from exc


def api_error(exc, *, engine: str) -> DebugkitError:
    """An answer the engine refused with: 400 is something the user asked for (a limit the
    host cannot give), 404 something that is gone, the rest the engine's own words."""
    if exc.status_code == 400:
        return InvalidInput(f"the {engine} engine refused the sidecar: {exc.explanation}")
    if exc.status_code == 404:
        return TargetNotFound(f"the {engine} engine no longer has it: {exc.explanation}")
    return DebugkitError(f"the {engine} engine said: {exc.explanation}")


_NOT_FOUND = re.compile(r'exec: "([^"]*)": (executable file not found|stat .*: no such file or directory)|'
                        r'executable file `([^`]*)` not found')
_NOT_EXEC = re.compile(r'exec: "([^"]*)": permission denied|exec format error')


def start_error(text: str) -> DebugkitError:
    """Why the engine would not start a sidecar, as the error a user can act on."""
    match = _NOT_FOUND.search(text)
    if match:
        return CommandNotFound(f"command {match.group(1) or match.group(3)!r} not found in the sidecar image")
    match = _NOT_EXEC.search(text)
    if match:
        what = match.group(1) if match.lastindex else "the command"
        return CommandNotExecutable(f"command {what!r} cannot be executed in the sidecar image")
    if "error during container init: %!w(<nil>)" in text:
        return TransientStartFailure(f"the runtime failed to start the sidecar: {text}")
    if "is restarting, wait until the container is running" in text:  # its restart loop, between two runs
        return TargetNotRunning(f"the target is restarting, not running: {text}")
    # Podman says a stopped target is a "dependency" of the sidecar that "is not started".
    if ("is not running" in text or "of a non running container" in text or "are not started" in text
            or "is not started" in text
            or re.search(r"namespace path: lstat /proc/\d+/ns/\w+: no such file", text)):
        return TargetNotRunning(f"the target stopped before the sidecar could join it: {text}")
    return DebugkitError(f"the engine refused to start the sidecar: {text}")
