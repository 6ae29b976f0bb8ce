"""What the error channel's metav1.Status says about an exec: its exit code, a command that
could not start, a container the kubelet does not know yet. Pure.
"""
from __future__ import annotations


def exec_failure_code(status: dict | None) -> int | None:
    """The shell's code for an exec the runtime could not start (a Status that carries no
    exit code): 127 when the command does not exist, 126 when it cannot be executed.
    On containerd/runc the Status is an InternalError (500) whose message ends with
    runc's words, e.g. 'exec: "x": executable file not found in $PATH' or
    'exec: "/etc": permission denied'. None for anything else."""
    if not isinstance(status, dict) or exit_code_from_status(status) is not None:
        return None
    message = str(status.get("message") or "")
    if "exec failed" not in message and "failed to exec" not in message:
        return None
    if "executable file not found" in message or "no such file or directory" in message:
        return 127
    if "permission denied" in message or "exec format error" in message or "is a directory" in message:
        return 126
    return None


def container_not_found(status: dict | None) -> bool:
    """True when exec/attach failed because the kubelet does not know the container yet
    (an ephemeral container just added and not yet created): worth retrying shortly."""
    if not isinstance(status, dict):
        return False
    message = str(status.get("message") or "")
    return "container not found" in message or ("not found in pod" in message and "container" in message)


def exit_code_from_status(status: dict | None) -> int | None:
    """Success -> 0; NonZeroExitCode -> the ExitCode cause; otherwise None."""
    if not isinstance(status, dict):
        return None
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message"))
                except (TypeError, ValueError):
                    return None
    return None
