"""What the engines (Docker 20.10, Podman 4.3) say when a sidecar cannot start, as errors a
person can act on: messages copied from the real engines."""
from __future__ import annotations

import pytest

from debugkit.core.errors import CommandNotExecutable, CommandNotFound, DebugkitError, TargetNotRunning
from debugkit.runtimes.docker.errors import TransientStartFailure, start_error


@pytest.mark.parametrize("text, kind", [
    ('OCI runtime create failed: runc create failed: unable to start container process: exec: "nope": '
     'executable file not found in $PATH: unknown', CommandNotFound),
    ('OCI runtime create failed: runc create failed: unable to start container process: exec: "/etc/passwd": '
     'permission denied: unknown', CommandNotExecutable),
    ("cannot join PID of a non running container: 4f1c", TargetNotRunning),
    ("Container 4f1c is not running", TargetNotRunning),
    ("some dependencies of container 9e2a are not started: 4f1c: container state improper", TargetNotRunning),
    ("OCI runtime start failed: container process is already dead: error during container init: %!w(<nil>)",
     TransientStartFailure),
    ("something new", DebugkitError),
])
def test_start_failures_become_errors_a_person_can_act_on(text, kind):
    error = start_error(text)
    assert type(error) is kind, (text, error)
