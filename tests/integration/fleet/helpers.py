"""Helpers for the fleet tests, which run against the real components: the Kubernetes test
node (its session fixture k8s_cluster is tests/integration/conftest.py's) and the real
Docker and Podman engines."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import run_cli, text


def run_json(*args, expect_list: bool = True, **kwargs):
    """The CLI with -o json: (result, the parsed stdout, stderr as text)."""
    result = run_cli(*args, **kwargs)
    out, err = text(result)
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON on stdout (exit {result.returncode}):\n{out}\n{err}") from None
    if expect_list:
        assert isinstance(data, list), data
    return result, data, err


def popen_cli(*args: str) -> subprocess.Popen:
    """The CLI as a user runs it, in its own process group (a terminal's Ctrl-C goes to the
    group; the test sends SIGINT to the CLI itself)."""
    return subprocess.Popen([sys.executable, "-m", "debugkit", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
