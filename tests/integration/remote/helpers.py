"""Helpers for the ssh:// engine tests (the fixtures are in conftest.py): real components,
Debian's OpenSSH sshd on 127.0.0.1 (scripts/ssh-testenv) in front of this machine's Docker
engine, the system's ssh client, and `docker system dial-stdio` on the server side.

Every CLI run gets a temporary HOME whose ~/.ssh holds a copy of the test key, a
known_hosts with the test server's key, and a config that uses only those. OpenSSH reads
~ from the passwd entry, not from $HOME, so an `ssh` wrapper first on PATH passes that
config with -F: the real ~/.ssh is never read or written.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from tests.helpers import REPO, leaked_sidecars

TESTENV = REPO / "scripts" / "ssh-testenv"


def testenv(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(TESTENV), *args], capture_output=True, text=True, timeout=300, check=check)


def make_home(root: Path, server: dict, *, known_hosts: str | None = None) -> dict:
    """A HOME with its own ~/.ssh, and the environment that uses it (see the module doc)."""
    ssh_dir = root / ".ssh"
    ssh_dir.mkdir(parents=True, mode=0o700)
    shutil.copy(server["DEBUGKIT_SSH_KEY"], ssh_dir / "id_ed25519")
    os.chmod(ssh_dir / "id_ed25519", 0o600)
    if known_hosts is None:
        known_hosts = Path(server["DEBUGKIT_SSH_KNOWN_HOSTS"]).read_text()
    (ssh_dir / "known_hosts").write_text(known_hosts)
    (ssh_dir / "config").write_text(
        "Host *\n"
        f"    User root\n"
        f"    IdentityFile {ssh_dir}/id_ed25519\n"
        "    IdentitiesOnly yes\n"
        "    IdentityAgent none\n"
        f"    UserKnownHostsFile {ssh_dir}/known_hosts\n"
        "    GlobalKnownHostsFile /dev/null\n"
        "    UpdateHostKeys no\n"
        "    ControlMaster no\n")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "ssh"
    wrapper.write_text('#!/bin/sh\nexec /usr/bin/ssh -F "$HOME/.ssh/config" "$@"\n')
    wrapper.chmod(0o755)
    # Empty DOCKER_HOST / DOCKER_CONTEXT count as unset (docker CLI and debugkit alike):
    # whatever the outer shell had does not leak into the test.
    return {"HOME": str(root), "PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_CONFIG": str(root / ".docker"),
            "DOCKER_HOST": "", "DOCKER_CONTEXT": "", "DOCKER_TLS_VERIFY": ""}


def listener_pid(server: dict) -> int | None:
    try:
        return int(Path(server["DEBUGKIT_SSH_STATE"], "sshd.pid").read_text())
    except (OSError, ValueError):
        return None


def processes() -> list[tuple[int, int, str, list[str]]]:
    """(pid, ppid, state, argv) of every process."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        out.append((int(entry.name), int(fields[1]), fields[0].decode(), argv))
    return out


def ssh_clients() -> list[tuple[int, list[str]]]:
    """Local `ssh ... docker system dial-stdio` processes that still run (zombies of a
    killed CLI, reparented to an init that reaps late, do not run)."""
    return [(pid, argv) for pid, _, state, argv in processes()
            if state != "Z" and argv and os.path.basename(argv[0]) == "ssh" and "dial-stdio" in argv
            and "2222" in " ".join(argv)]


def server_sessions(server: dict) -> list[int]:
    """The test sshd's per-connection processes (its children)."""
    listener = listener_pid(server)
    return [pid for pid, ppid, state, _ in processes() if listener and ppid == listener and state != "Z"]


def server_dial_stdio() -> list[int]:
    """`docker system dial-stdio` processes on the server side that still run."""
    return [pid for pid, _, state, argv in processes()
            if state != "Z" and argv[:1] and os.path.basename(argv[0]) == "docker" and "dial-stdio" in argv]


def kill_server(server: dict) -> None:
    """The connection drops as if the server vanished: the listener and every session
    process are SIGKILLed at once (no reconnect is possible; each TCP connection closes)."""
    listener = listener_pid(server)
    for pid in ([listener] if listener else []) + server_sessions(server):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def sidecars_of(client, target) -> list:
    return leaked_sidecars(client, **{"io.debugkit.target": target.name})
