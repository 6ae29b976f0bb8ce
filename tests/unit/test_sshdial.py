"""The ssh dialer's process handling, with `sh` standing in for ssh (the argv is the
only thing that differs): every process is reaped when its socket closes, a failure
keeps ssh's reason, and ssh's stderr becomes one line a person can act on."""
from __future__ import annotations

import os
import socket

import pytest

from debugkit.runtimes.docker import sshdial
from debugkit.runtimes.docker.engine import EngineAddress, EngineClient, SSHConnectionError
from debugkit.runtimes.docker.sshdial import SSHDialer, explain

WHERE = {"host": "build-1", "port": "2222", "user": "deploy"}


def dialer(script: str) -> SSHDialer:
    """A dialer whose 'ssh' runs `script` with the connection as stdin and stdout."""
    return SSHDialer(EngineAddress("ssh", ssh=("sh", "-c", script, "--", "build-1"), text="ssh://build-1"))


def test_a_connection_is_a_real_socket_to_the_process_and_closing_it_reaps_the_process():
    dial = dialer("exec cat")
    sock = dial(5)
    assert isinstance(sock, socket.socket)
    sock.sendall(b"ping")
    assert sock.recv(4) == b"ping"
    ssh = sock._ssh
    pid = ssh.proc.pid
    sock.close()
    assert ssh.proc.returncode is not None  # waited for: no zombie
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert sshdial.live_count() == 0


def test_a_makefile_keeps_the_connection_until_it_is_closed_too():
    dial = dialer("exec cat")
    sock = dial(5)
    reader = sock.makefile("rb")  # what http.client holds while it reads a response
    ssh = sock._ssh
    sock.close()
    assert ssh.proc.poll() is None
    reader.close()
    assert ssh.proc.returncode is not None


def test_half_close_reaches_the_process_as_eof():
    sock = dialer("wc -c")(5)
    sock.sendall(b"x" * 1000)
    sock.shutdown(socket.SHUT_WR)
    assert sock.recv(100).strip() == b"1000"
    sock.close()


def test_a_process_that_fails_keeps_its_reason_and_the_client_raises_it():
    dial = dialer('echo "deploy@build-1: Permission denied (publickey)." >&2; exit 255')
    client = EngineClient(EngineAddress("ssh", ssh=tuple(dial.argv), text="ssh://deploy@build-1:2222"), dial=dial)
    with pytest.raises(SSHConnectionError) as caught:
        client.ping()
    assert caught.value.detail.startswith("Permission denied (publickey): the server refused the key")
    assert sshdial.live_count() == 0


def test_processes_we_end_are_not_failures():
    dial = dialer("exec cat")
    dial(5).close()
    assert dial.failure() is None


def test_prefetched_connections_are_used_in_order_and_released():
    dial = dialer("exec cat")
    dial.prefetch(2)
    assert sshdial.live_count() == 2
    first = dial(5)
    assert sshdial.live_count() == 2  # taken from the pool, none started
    dial.close()
    assert sshdial.live_count() == 1
    first.close()
    assert sshdial.live_count() == 0


def test_stop_all_reaps_what_is_left_at_exit():
    dial = dialer("exec cat")
    socks = [dial(5) for _ in range(3)]
    procs = [s._ssh.proc for s in socks]
    sshdial.stop_all()
    assert all(p.returncode is not None for p in procs)
    assert sshdial.live_count() == 0


def test_no_ssh_here_is_a_clear_failure():
    dial = SSHDialer(EngineAddress("ssh", ssh=("/nonexistent/ssh", "--", "h"), text="ssh://h"))
    with pytest.raises(SSHConnectionError, match="ssh is not installed here"):
        dial(5)


@pytest.mark.parametrize("stderr,expected", [
    (["No ED25519 host key is known for [build-1]:2222 and you have requested strict checking.",
      "Host key verification failed."],
     "the host key of [build-1]:2222 is not known; run `ssh -p 2222 deploy@build-1` once and accept it, or add "
     "it with `ssh-keyscan -p 2222 build-1 >> ~/.ssh/known_hosts` after checking its fingerprint"),
    (["@@@@@@@@@@", "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @", "Host key verification failed."],
     "does not match the one in known_hosts"),
    (["ssh: Could not resolve hostname build-1: Name or service not known"],
     "Could not resolve hostname build-1: Name or service not known"),
    (["ssh: connect to host build-1 port 2222: Connection refused"], "connect to host build-1 port 2222: Connection refused"),
    (["Connection to build-1 closed by remote host."], "Connection to build-1 closed by remote host."),
    (["bash: line 1: docker: command not found"], "the docker CLI is not installed on build-1"),
    (["Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"],
     "Cannot connect to the Docker daemon"),
    (["Warning: Permanently added 'x' (ED25519) to the list of known hosts.", "something odd"], "something odd"),
])
def test_ssh_stderr_becomes_one_line(stderr, expected):
    line = explain(stderr, WHERE)
    assert expected in line and "\n" not in line


# -- on a terminal: ssh may ask, one question at a time ---------------------------------------

def interactive(script: str) -> SSHDialer:
    argv = ("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-T", "--", "build-1")
    dial = SSHDialer(EngineAddress("ssh", ssh=argv, text="ssh://build-1"), interactive=True)
    dial.argv = ["sh", "-c", script, "--", "build-1"]  # sh stands in for ssh, as above
    return dial


def test_on_a_terminal_batch_mode_goes_and_the_terminals_signals_are_ignored():
    argv = ("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-T", "--", "build-1")
    assert "BatchMode=yes" not in SSHDialer(EngineAddress("ssh", ssh=argv, text="t"), interactive=True).argv
    assert "BatchMode=yes" in SSHDialer(EngineAddress("ssh", ssh=argv, text="t"), interactive=False).argv
    sock = interactive("grep -E '^SigIgn' /proc/$$/status; ps -o pgid= -p $$")(5)
    out = b""
    while not out.count(b"\n") >= 2:
        out += sock.recv(1000)
    sock.close()
    ignored = int(out.split()[1], 16)
    for sig in (2, 3, 20, 1):  # SIGINT, SIGQUIT, SIGTSTP, SIGHUP
        assert ignored & (1 << (sig - 1)), f"signal {sig} is not ignored in ssh"
    assert int(out.split()[2]) == os.getpgrp(), "ssh must share debugkit's process group to reach the terminal"


def test_on_a_terminal_prefetch_waits_for_the_first_answer():
    dial = interactive("exec cat")
    dial.prefetch(2)
    assert not dial._pool, "connections started before ssh's questions were answered"
    first = dial(5)
    first.sendall(b"hi")
    assert first.recv(2) == b"hi"  # the first answer: now the others start
    assert len(dial._pool) == 2
    first.close()
    dial.close()
    assert sshdial.live_count() == 0
