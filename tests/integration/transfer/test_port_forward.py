"""`debugkit port-forward` on Docker, Podman and Kubernetes, to services the target binds to
127.0.0.1 only: concurrency, 100 MiB each way with checksums, half-close, the ways it ends
(Ctrl-C, SIGTERM, the target's death), and its two clear refusals."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import audit_records, wait_for
from tests.integration.transfer.helpers import ECHO, HASH, SOURCE, start_forward

pytestmark = pytest.mark.transfer
MIB = 1 << 20
SIDECAR = "the debug sidecar"
SUBRESOURCE = "the pod's portforward subresource"


def connect(port: int, timeout: float = 60) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def concurrent_echo(port: int, count: int = 20) -> None:
    """`count` connections open at once, each gets its own line back."""
    barrier = threading.Barrier(count)
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            with connect(port) as sock:
                barrier.wait(timeout=120)
                line = f"connection {i} {os.urandom(8).hex()}\n".encode()
                sock.sendall(line)
                got = b""
                while not got.endswith(b"\n"):
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                results[i] = got == line
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not errors, errors
    assert results == {i: True for i in range(count)}


def download(port: int, size: int) -> None:
    """`size` bytes from the source service, checked against the SHA-256 it appends."""
    with connect(port) as sock:
        sock.sendall(f"{size}\n".encode())
        digest = hashlib.sha256()
        tail = b""
        received = 0
        while chunk := sock.recv(1 << 20):
            data = tail + chunk
            body, tail = data[:-64], data[-64:]
            digest.update(body)
            received += len(body)
    assert received == size
    assert tail.decode() == digest.hexdigest()


def upload(port: int, size: int) -> None:
    """`size` random bytes to the hash service, then a half-close; its answer is their SHA-256."""
    digest = hashlib.sha256()
    block = os.urandom(MIB)
    with connect(port) as sock:
        sent = 0
        while sent < size:
            piece = block[:min(MIB, size - sent)]
            sock.sendall(piece)
            digest.update(piece)
            sent += len(piece)
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock).decode().strip() == digest.hexdigest()


def half_close(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"half")
        sock.shutdown(socket.SHUT_WR)  # the server answers only after our EOF
        assert read_all(sock) == (hashlib.sha256(b"half").hexdigest() + "\n").encode()


def ended_cleanly(target, code: int, err: str, expected: int) -> None:
    assert code == expected, err
    assert "Traceback" not in err, err
    wait_for(lambda: not target.sidecars(), timeout=60, what="the sidecar to end")


def k8s_sidecar(rt) -> tuple[str, ...]:
    """On Kubernetes, relays through a debug container that ends with the session."""
    return ("--via", "sidecar", "--keep-alive", "0") if rt.name == "kubernetes" else ()


# -- through the sidecar (Docker, Podman; Kubernetes with --via sidecar) -----------------------------------------


@contextlib.contextmanager
def stopped_with(fwd, sig=signal.SIGINT):
    """Stop the forward with `sig` at the end; a failure inside carries its stderr."""
    outcome: dict = {}
    try:
        yield outcome
    except BaseException as exc:
        code, err = fwd.stop(sig)
        raise AssertionError(f"{exc!r}\nport-forward: exit {code}, stderr:\n{err}") from exc
    outcome["code"], outcome["err"] = fwd.stop(sig)


def test_through_the_sidecar(fresh, rt):
    fwd = start_forward(fresh, f":{HASH}", f":{SOURCE}", f":{ECHO}", extra=k8s_sidecar(rt))
    with stopped_with(fwd) as stopped:
        assert fwd.via.startswith(SIDECAR), fwd.lines
        assert all(line.startswith("Forwarding from 127.0.0.1:") for line in fwd.lines), fwd.lines
        assert len(fresh.sidecars()) == 1
        concurrent_echo(fwd.ports[ECHO], 20)
        half_close(fwd.ports[HASH])
        upload(fwd.ports[HASH], 100 * MIB)
        download(fwd.ports[SOURCE], 100 * MIB)
        # A client that goes away mid-answer is no error, and the forward goes on.
        with connect(fwd.ports[SOURCE]) as sock:
            sock.sendall(b"50000000\n")
            sock.recv(1000)
        concurrent_echo(fwd.ports[ECHO], 5)
    code, err = stopped["code"], stopped["err"]
    ended_cleanly(fresh, code, err, ExitCode.INTERRUPTED)
    assert "failed" not in err, err


# -- Kubernetes: the portforward subresource ---------------------------------------------------------------------


def test_a_thousand_concurrent_connections(fresh, rt):
    """More than 1000 connections open at once through the sidecar, each with its own line
    back (issue 27, 3.11: at 1000, with select(), 80% failed with "filedescriptor out of
    range", and the forward was dead for a minute). The CLI starts with a soft limit of
    1024 open files, as on most machines; 1100 connections make sure that it holds
    descriptors past 1023 (checked), where select() fails."""
    import resource

    count = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * count:  # this process holds the other end of every connection
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8 * count), hard))

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    fwd = start_forward(fresh, f":{ECHO}", extra=k8s_sidecar(rt), preexec_fn=low_limit)
    socks = []
    highest = 0
    try:
        assert fwd.via.startswith(SIDECAR), fwd.lines
        for _ in range(count):
            socks.append(connect(fwd.ports[ECHO], timeout=120))
        lines = [f"connection {i} {os.urandom(6).hex()}\n".encode() for i in range(count)]
        for sock, line in zip(socks, lines):
            sock.sendall(line)
        got = []
        for sock in socks:
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            got.append(data)
        # Every connection has been served and is still open: the CLI holds them all now.
        highest = max(int(fd) for fd in os.listdir(f"/proc/{fwd.proc.pid}/fd"))
        assert sum(a == b for a, b in zip(got, lines)) == count, [g for g, w in zip(got, lines) if g != w][:5]
        concurrent_echo(fwd.ports[ECHO], 5)  # and it goes on
    finally:
        for sock in socks:
            sock.close()
        code, err = fwd.stop(signal.SIGINT)
    assert highest >= 1024, f"the CLI's highest descriptor was {highest}: select() would have coped"
    ended_cleanly(fresh, code, err, ExitCode.INTERRUPTED)
    assert "failed" not in err and "too many" not in err, err


def test_kubernetes_prefers_the_portforward_subresource(fresh, rt):
    if rt.name != "kubernetes":
        pytest.skip("the portforward subresource is Kubernetes'")
    fwd = start_forward(fresh, f":{SOURCE}", f":{ECHO}", f":{HASH}")
    try:
        assert fwd.via == SUBRESOURCE, fwd.lines
        concurrent_echo(fwd.ports[ECHO], 20)
        download(fwd.ports[SOURCE], 100 * MIB)
        # No half-close through it (the protocol has none): the request arrives, the EOF
        # does not, and the server's answer never comes (docs/cp-and-port-forward.md).
        with connect(fwd.ports[HASH], timeout=10) as sock:
            sock.sendall(b"half")
            sock.shutdown(socket.SHUT_WR)
            assert read_all(sock) == b""
    finally:
        code, err = fwd.stop(signal.SIGINT)
    assert code == ExitCode.INTERRUPTED, err
    namespace, name = fresh.handle
    pod = rt.cluster.api.read_namespaced_pod(name, namespace)
    assert not pod.spec.ephemeral_containers  # no debug container was needed


def test_kubernetes_without_portforward_rbac_uses_the_debug_container(fresh, rt):
    """A user allowed to debug (patch ephemeralcontainers, exec) but not to port-forward."""
    if rt.name != "kubernetes":
        pytest.skip("RBAC is Kubernetes'")
    namespace, _name = fresh.handle
    rt.cluster.grant_restricted_user(namespace, [
        {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/ephemeralcontainers"], "verbs": ["patch", "update"]},
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get", "create"]},
    ])
    restricted = type(fresh)(**{**fresh.__dict__, "args": ["--kubeconfig", rt.cluster.restricted_user_kubeconfig,
                                                           "-n", namespace]})
    fwd = start_forward(restricted, f":{ECHO}", extra=("--keep-alive", "0"))
    try:
        assert fwd.via.startswith(SIDECAR), fwd.lines
        concurrent_echo(fwd.ports[ECHO], 5)
    finally:
        code, err = fwd.stop(signal.SIGTERM)
    ended_cleanly(fresh, code, err, ExitCode.TERMINATED)
    refused = restricted.cli("port-forward", "--via", "portforward", restricted.ref, f":{ECHO}")
    assert refused.returncode == ExitCode.INVALID_INPUT and b"--via sidecar" in refused.stderr


# -- how it ends, and its refusals --------------------------------------------------------------------------------


def test_sigterm_and_the_targets_death_end_it(fresh, rt):
    fwd = start_forward(fresh, f":{ECHO}", extra=k8s_sidecar(rt))
    code, err = fwd.stop(signal.SIGTERM)
    ended_cleanly(fresh, code, err, ExitCode.TERMINATED)

    fwd = start_forward(fresh, f":{ECHO}", extra=k8s_sidecar(rt))
    concurrent_echo(fwd.ports[ECHO], 2)
    if rt.name == "kubernetes":
        namespace, name = fresh.handle
        rt.cluster.api.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    else:
        fresh.handle.kill()
    try:
        code = fwd.proc.wait(timeout=60)
    finally:
        if fwd.proc.poll() is None:
            fwd.proc.kill()
    err = fwd.proc.stderr.read().decode(errors="replace")
    assert code == ExitCode.TARGET_NOT_RUNNING, err
    assert err.strip().splitlines()[-1].startswith("debugkit: error:"), err
    if rt.name != "kubernetes":  # the pod is gone, and its debug container with it
        wait_for(lambda: not fresh.sidecars(), timeout=60, what="the sidecar to be removed")


def test_a_taken_local_port_and_nothing_listening(shared, rt):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = shared.cli("port-forward", *k8s_sidecar(rt), shared.ref, f"{port}:{ECHO}", timeout=120)
    err = result.stderr.decode()
    assert result.returncode == ExitCode.PORT_UNAVAILABLE, err
    assert len(err.strip().splitlines()) == 1 and f"local port {port}" in err, err
    assert time.monotonic() - started < 30
    for extra in {k8s_sidecar(rt), ()}:
        result = shared.cli("port-forward", *extra, shared.ref, ":9999", timeout=120)
        err = result.stderr.decode()
        assert result.returncode == ExitCode.NOTHING_LISTENING, err
        assert len(err.strip().splitlines()) == 1 and "nothing is listening on" in err and "9999" in err, err
    wait_for(lambda: not shared.sidecars(), timeout=60, what="no sidecar left")


def test_address_and_the_audit_record(fresh, rt, audit_log):
    if rt.name == "kubernetes":
        pytest.skip("the address and the audit record are the CLI's, the same on every runtime")
    fwd = start_forward(fresh, f":{ECHO}", extra=("--address", "127.0.0.2"))
    try:
        assert fwd.lines[0].startswith("Forwarding from 127.0.0.2:"), fwd.lines
        with socket.create_connection(("127.0.0.2", fwd.ports[ECHO]), timeout=60) as sock:
            sock.sendall(b"not-in-the-log\n")
            assert sock.recv(100) == b"not-in-the-log\n"
        with pytest.raises(OSError):
            connect(fwd.ports[ECHO], timeout=5)
        rows = json.loads(fresh.cli("ps", "--runtime", rt.name, "-o", "json").stdout)
        mine = [r for r in rows if r["target"] == fresh.handle.name]
        assert len(mine) == 1 and mine[0]["cli_alive"] is True and mine[0]["user"] == "65532:65532", rows
    finally:
        code, _err = fwd.stop(signal.SIGINT)
    assert code == ExitCode.INTERRUPTED
    records = audit_records(audit_log)
    assert [r["event"] for r in records] == ["start", "created", "end"]
    start, _created, end = records
    assert start["mode"] == "port-forward" and start["ports"] == [f":{ECHO}"] and start["address"] == "127.0.0.2"
    assert (end["exit_code"], end["outcome"]) == (130, "interrupted")
    assert b"not-in-the-log" not in audit_log.read_bytes()


def test_a_killed_cli_leaves_its_session_to_gc(fresh, rt, audit_log):
    if rt.name == "kubernetes":
        pytest.skip("gc reports Kubernetes debug containers; it cannot delete them")
    fwd = start_forward(fresh, f":{ECHO}")
    fwd.proc.kill()
    fwd.proc.wait()
    # The sidecar ends with the CLI's connection (its keep-alive sees EOF); gc closes the
    # audit record the CLI could not, and removes a sidecar if one were left.
    gc = fresh.cli("gc", "--runtime", rt.name, "-o", "json")
    assert gc.returncode == 0, gc.stderr
    actions = json.loads(gc.stdout)
    session = audit_records(audit_log)[0]["session"]
    assert {"session": session, "action": "closed"}.items() <= next(
        a for a in actions if a["session"] == session and a["name"] == "audit record").items()
    wait_for(lambda: not fresh.sidecars(), timeout=60, what="the sidecar to be gone")
    assert audit_records(audit_log)[-1]["outcome"] == "abandoned"
