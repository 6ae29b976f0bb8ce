"""One exception hierarchy for everything debugkit can refuse or fail at.

Only the CLI's top level turns these into exit codes; library code raises and never
exits. A remote command's own exit code is passed through unchanged, so debugkit's own
failures use codes a command rarely chooses (sysexits-style 64-80, and the shell's
124/126/127 where the meaning is the same).
"""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    INVALID_INPUT = 64
    RUNBOOK_INVALID = 65
    TARGET_NOT_FOUND = 66
    TARGET_NOT_RUNNING = 67
    IDENTITY_UNRESOLVED = 68
    ENGINE_UNREACHABLE = 69
    INTERNAL = 70
    IMAGE_MISSING = 71
    PERMISSION_DENIED = 77
    FORBIDDEN = 78
    EPHEMERAL_UNAVAILABLE = 79
    POLICY_REJECTED = 80
    TIMEOUT = 124
    COMMAND_NOT_EXECUTABLE = 126
    COMMAND_NOT_FOUND = 127
    HANGUP = 129
    INTERRUPTED = 130
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


class RunbookInvalid(DebugkitError):
    exit_code = ExitCode.RUNBOOK_INVALID


class TargetNotFound(DebugkitError):
    exit_code = ExitCode.TARGET_NOT_FOUND


class TargetNotRunning(DebugkitError):
    exit_code = ExitCode.TARGET_NOT_RUNNING


class IdentityUnresolved(DebugkitError):
    exit_code = ExitCode.IDENTITY_UNRESOLVED


class EngineUnreachable(DebugkitError):
    exit_code = ExitCode.ENGINE_UNREACHABLE


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
        self.exit_code = {1: ExitCode.HANGUP, 15: ExitCode.TERMINATED}.get(signum, ExitCode.INTERRUPTED)
