"""debugkit-helper's own Go tests, so that `scripts/test` (and CI) runs them too.

They need a Go toolchain (1.19 or later) on the host; the image does not: its
helper-build stage brings Debian's Go. As root they also run the permission cases as
UID 65534.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.helpers import IN_CI, REPO

pytestmark = pytest.mark.toolbox

HELPER_SRC = REPO / "toolbox-image" / "helper"


def test_go_unit_tests_of_debugkit_helper():
    go = shutil.which("go")
    if go is None:
        if IN_CI:
            pytest.fail("no Go toolchain: debugkit-helper's tests cannot run")
        pytest.skip("no Go toolchain on this machine")
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false", "GOTOOLCHAIN": "local"}
    done = subprocess.run([go, "test", "-count=1", "-timeout", "300s", "./..."], cwd=HELPER_SRC, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok  \tdebugkit.invalid/helper" in done.stdout, done.stdout
