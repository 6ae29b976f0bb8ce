"""The ssh:// engine against real components: Debian's OpenSSH sshd on 127.0.0.1
(scripts/ssh-testenv) in front of this machine's Docker engine, the system's ssh client,
and `docker system dial-stdio` on the server side. Every CLI run gets a temporary HOME of
its own (see helpers.py). The Docker target fixtures (start_target, started_targets) are
tests/integration/conftest.py's.
"""
from __future__ import annotations

import shutil

import pytest

from tests.helpers import IN_CI, assert_no_leaked_sidecars, wait_for
from tests.integration.remote.helpers import make_home, server_dial_stdio, server_sessions, ssh_clients, testenv

pytestmark = [pytest.mark.docker, pytest.mark.ssh]


@pytest.fixture(scope="session")
def ssh_server(docker_client) -> dict:
    """scripts/ssh-testenv up (idempotent); its variables (DEBUGKIT_SSH_*)."""
    if not shutil.which("ssh") and not IN_CI:
        pytest.skip("no ssh client (scripts/ssh-testenv up installs one)")
    up = testenv("up", check=False)
    if up.returncode != 0:
        message = f"scripts/ssh-testenv up failed: {up.stderr.strip()[-2000:]}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    values = {}
    for line in testenv("env").stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        values[key] = value
    return values


@pytest.fixture
def ssh_env(ssh_server, tmp_path) -> dict:
    """The environment a CLI run over ssh gets: a temporary HOME (see make_home)."""
    return make_home(tmp_path / "home", ssh_server)


@pytest.fixture
def ssh_url(ssh_server) -> str:
    return ssh_server["DEBUGKIT_SSH_URL"]


@pytest.fixture(autouse=True)
def no_ssh_left(ssh_server):
    """After every test: no ssh client, no server-side dial-stdio, no sshd session left."""
    yield
    wait_for(lambda: not ssh_clients(), timeout=10, what=f"ssh clients to end: {ssh_clients()}")
    wait_for(lambda: not server_dial_stdio(), timeout=10, what="server-side dial-stdio processes to end")
    wait_for(lambda: not server_sessions(ssh_server), timeout=10, what="sshd sessions to end")


@pytest.fixture
def sshd_restored(ssh_server):
    """For tests that take the ssh server down: it is up again afterwards."""
    yield
    testenv("up")


@pytest.fixture(autouse=True)
def no_leaked_sidecars(docker_client, started_targets):
    """Every test must leave no debugkit sidecar of its targets behind, as in tests/integration/docker."""
    yield
    assert_no_leaked_sidecars(docker_client, started_targets)
