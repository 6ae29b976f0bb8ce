"""One exception hierarchy for everything debugkit can refuse or fail at.

Only the CLI's top level turns these into exit codes; library code raises and never
exits. A remote command's own exit code is passed through unchanged, so debugkit's own
failures use codes a command rarely chooses (sysexits-style 64-80, and the shell's
124/126/127 where the meaning is the same).
"""
from __future__ import annotations

import enum
from enum import IntEnum


@enum.unique
class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    INVALID_INPUT = 64
    FILE_INVALID = 65           # a runbook, a --custom file or a config file that cannot be used
    TARGET_NOT_FOUND = 66
    TARGET_NOT_RUNNING = 67
    IDENTITY_UNRESOLVED = 68
    ENGINE_UNREACHABLE = 69
    INTERNAL = 70
    AUDIT_UNWRITABLE = 73       # the audit log (nothing is launched without its record), a recording, a report
    IMAGE_MISSING = 71
    ENGINE_INCOMPATIBLE = 76    # the engine speaks no Engine API version debugkit speaks (sysexits' EX_PROTOCOL)
    PERMISSION_DENIED = 77
    FORBIDDEN = 78
    EPHEMERAL_UNAVAILABLE = 79
    POLICY_REJECTED = 80
    PATH_NOT_FOUND = 81         # cp: no such path in the target (or locally)
    PATH_FORBIDDEN = 82         # cp: the target's user may not read (or write) it
    DESTINATION_EXISTS = 83     # cp: the destination exists and --force was not given
    NOT_A_DIRECTORY = 84        # cp: a directory onto a file, or a parent that is a file
    PORT_UNAVAILABLE = 85       # port-forward: the local port is taken
    NOTHING_LISTENING = 86      # port-forward: nothing listens on the target's port
    SPECIAL_FILE = 87           # cp: a device, FIFO or socket where a file, directory or symlink is needed
    RELAY_ENDED = 88            # port-forward: the relay in the sidecar ended while the target runs
    CONFIG_INVALID = 74         # the config file: unreadable, unknown key, wrong type
    TIMEOUT = 124
    COMMAND_NOT_EXECUTABLE = 126
    COMMAND_NOT_FOUND = 127
    HANGUP = 129
    INTERRUPTED = 130
    BROKEN_PIPE = 141           # our stdout was closed by its reader (`| head`), as other CLIs do
    TERMINATED = 143


class DebugkitError(Exception):
    """Base class: a message for one line on stderr, and the exit code it maps to."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InvalidInput(DebugkitError):
    """A flag or argument that cannot be used as given (bad --user, bad target syntax)."""

    exit_code = ExitCode.INVALID_INPUT


class FileInvalid(DebugkitError):
    """A file the user handed us (runbook, --custom) that cannot be used as it is."""

    exit_code = ExitCode.FILE_INVALID


# Runbooks are the most common such file; the name reads better where they are handled.
RunbookInvalid = FileInvalid


class ConfigInvalid(DebugkitError):
    """The configuration file: unreadable, not YAML, an unknown key or a wrong type."""

    exit_code = ExitCode.CONFIG_INVALID


class CannotWrite(DebugkitError):
    """A record or a report could not be written or read back: the audit log (nothing is
    launched without its start record), a runbook report on a full disk. sysexits' EX_CANTCREAT."""

    exit_code = ExitCode.AUDIT_UNWRITABLE


class TargetNotFound(DebugkitError):
    exit_code = ExitCode.TARGET_NOT_FOUND


class TargetNotRunning(DebugkitError):
    exit_code = ExitCode.TARGET_NOT_RUNNING


class IdentityUnresolved(DebugkitError):
    exit_code = ExitCode.IDENTITY_UNRESOLVED


class EngineUnreachable(DebugkitError):
    exit_code = ExitCode.ENGINE_UNREACHABLE


class EngineIncompatible(DebugkitError):
    """The engine answers, but speaks no API version we do: which ranges, what to upgrade."""

    exit_code = ExitCode.ENGINE_INCOMPATIBLE


class ImageMissing(DebugkitError):
    exit_code = ExitCode.IMAGE_MISSING


class PermissionDenied(DebugkitError):
    """The local engine socket (or kubeconfig credentials file) refused us."""

    exit_code = ExitCode.PERMISSION_DENIED


class Forbidden(DebugkitError):
    """The Kubernetes API said 403: names the verb and resource that is missing."""

    exit_code = ExitCode.FORBIDDEN


class EphemeralContainersUnavailable(DebugkitError):
    exit_code = ExitCode.EPHEMERAL_UNAVAILABLE


class PolicyRejected(DebugkitError):
    """A PodSecurity level (or our pre-check of it) rejects the requested profile."""

    exit_code = ExitCode.POLICY_REJECTED


class Timeout(DebugkitError):
    exit_code = ExitCode.TIMEOUT


class CommandNotExecutable(DebugkitError):
    exit_code = ExitCode.COMMAND_NOT_EXECUTABLE


class CommandNotFound(DebugkitError):
    exit_code = ExitCode.COMMAND_NOT_FOUND


class Interrupted(DebugkitError):
    """Ctrl-C, SIGTERM or SIGHUP: cleanup ran; exit with 128 + signal number."""

    def __init__(self, message: str = "interrupted", *, signum: int = 2):
        super().__init__(message)
        self.signum = signum
        self.exit_code = signal_exit_code(signum)


def signal_exit_code(signum: int) -> ExitCode:
    """128 + the signal, for the signals that end a session."""
    return {1: ExitCode.HANGUP, 15: ExitCode.TERMINATED}.get(signum, ExitCode.INTERRUPTED)


class Signalled(BaseException):
    """SIGTERM or SIGHUP where it lands. A BaseException, as Ctrl-C's KeyboardInterrupt is,
    so that no `except Exception` (a library's, or a best-effort cleanup's) can swallow it
    and let the session run on. Not a KeyboardInterrupt: click would turn that into a bare
    Abort and lose which signal it was."""

    def __init__(self, signum: int):
        import signal

        super().__init__(f"received {signal.Signals(signum).name}, cleaned up")
        self.signum = signum
        self.exit_code = signal_exit_code(signum)


class OutputClosed(DebugkitError):
    """Our stdout (or stderr) was closed by its reader, as `| head` does: end quietly."""

    exit_code = ExitCode.BROKEN_PIPE


class PathNotFound(DebugkitError):
    exit_code = ExitCode.PATH_NOT_FOUND


class PathForbidden(DebugkitError):
    exit_code = ExitCode.PATH_FORBIDDEN


class DestinationExists(DebugkitError):
    exit_code = ExitCode.DESTINATION_EXISTS


class NotADirectory(DebugkitError):
    exit_code = ExitCode.NOT_A_DIRECTORY


class SpecialFile(DebugkitError):
    """cp: a device, FIFO or socket as the source or the destination: never read from,
    written to or replaced, even with --force."""

    exit_code = ExitCode.SPECIAL_FILE


class PortUnavailable(DebugkitError):
    exit_code = ExitCode.PORT_UNAVAILABLE


class NothingListening(DebugkitError):
    exit_code = ExitCode.NOTHING_LISTENING


class RelayEnded(DebugkitError):
    """port-forward's relay in the sidecar ended (or failed) while the sidecar runs."""

    exit_code = ExitCode.RELAY_ENDED
