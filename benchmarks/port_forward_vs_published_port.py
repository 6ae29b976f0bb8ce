#!/usr/bin/env python3
"""`debugkit port-forward` on Docker vs a direct connection to a published port, in the same run.

One target (the transfer tests' image, tests/fixtures/transfer: the same Go services on
127.0.0.1 only and on every interface) is started with its public ports published on
127.0.0.1 (`docker run -p`); `debugkit port-forward` forwards local ports to the
localhost-only copies of the same services through its sidecar. Interleaved rounds measure,
for both paths:

- download throughput: N MiB from the `source` service, checked against the SHA-256 the
  server appends;
- upload throughput: N MiB to the `hash` service, then a half-close, checked the same way;
- per-connection latency: connect, one line to the `echo` service and back, close;
- per-message latency: one line back and forth on an open connection.

On a local engine port-forward relays through unix sockets in a bind-mounted directory
(session/relaysock.py); `--with-exec-mux` also measures, in the same rounds, a second
forward forced onto the exec stream (DEBUGKIT_RELAY=exec), as remote engines use.

    .venv/bin/python benchmarks/port_forward_vs_published_port.py [--mib 256] [--rounds 5] [--with-exec-mux] [--json]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c

REPO = Path(__file__).resolve().parent.parent
HASH, SOURCE, ECHO = 9000, 9001, 9002
PUBLIC = {HASH: 8090, SOURCE: 8091, ECHO: 8092}
MIB = 1 << 20


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def download(port: int, size: int) -> float:
    start = time.perf_counter()
    with connect(port) as sock:
        sock.sendall(f"{size}\n".encode())
        digest, tail, got = hashlib.sha256(), b"", 0
        while chunk := sock.recv(1 << 20):
            data = tail + chunk
            digest.update(data[:-64])
            got += len(data) - 64
            tail = data[-64:]
    elapsed = time.perf_counter() - start
    if got != size or tail.decode() != digest.hexdigest():
        raise SystemExit(f"download through port {port}: {got} bytes, checksum mismatch")
    return elapsed


def upload(port: int, size: int, block: bytes) -> float:
    start = time.perf_counter()
    digest = hashlib.sha256()
    with connect(port) as sock:
        sent = 0
        while sent < size:
            piece = block[:min(len(block), size - sent)]
            sock.sendall(piece)
            digest.update(piece)
            sent += len(piece)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    elapsed = time.perf_counter() - start
    if answer.decode().strip() != digest.hexdigest():
        raise SystemExit(f"upload through port {port}: checksum mismatch")
    return elapsed


def echo_once(sock: socket.socket, line: bytes) -> None:
    sock.sendall(line)
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("echo: connection closed")
        got += chunk
    if got != line:
        raise SystemExit("echo: wrong answer")


def connection_latency(port: int) -> float:
    start = time.perf_counter()
    with connect(port) as sock:
        echo_once(sock, b"ping\n")
    return time.perf_counter() - start


def message_latencies(port: int, count: int) -> list[float]:
    out = []
    with connect(port) as sock:
        echo_once(sock, b"warm\n")
        for _ in range(count):
            start = time.perf_counter()
            echo_once(sock, b"ping\n")
            out.append(time.perf_counter() - start)
    return out


def start_forward(target: str, *, exec_mux: bool = False) -> tuple[subprocess.Popen, dict[int, int]]:
    env = {**c.env(), "DEBUGKIT_RELAY": "exec"} if exec_mux else c.env()
    proc = subprocess.Popen([*c.debugkit(), "port-forward", target, f":{HASH}", f":{SOURCE}",
                             f":{ECHO}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=env)
    ports: dict[int, int] = {}
    buffer = b""
    deadline = time.monotonic() + 60
    while len(ports) < 3:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            proc.kill()
            raise SystemExit(f"port-forward did not start: {proc.stderr.read().decode()}")
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            raise SystemExit(f"port-forward ended: {proc.stderr.read().decode()}")
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            words = line.decode().split()  # Forwarding from 127.0.0.1:PORT -> REMOTE (via ...)
            ports[int(words[4])] = int(words[2].rsplit(":", 1)[1])
    return proc, ports


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"median_ms": round(statistics.median(ordered) * 1000, 3),
            "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1] * 1000, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256, help="size of each download and upload")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50, help="connections per round for the latency")
    parser.add_argument("--messages", type=int, default=200, help="messages per round on one connection")
    parser.add_argument("--with-exec-mux", action="store_true",
                        help="also a forward forced onto the exec stream (the remote engines' path)")
    parser.add_argument("--json", action="store_true")
    c.check_code_under_test()
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from tests.fixtures.transfer.image import build_image

    image = build_image(Path(tempfile.mkdtemp(prefix="debugkit-bench-ctx-")))
    target = f"debugkit-bench-pf-{os.getpid()}"
    publish = [arg for remote in PUBLIC.values() for arg in ("-p", f"127.0.0.1::{remote}")]
    subprocess.run(["docker", "run", "-d", "--name", target, "--label", "io.debugkit.test=1", *publish, image],
                   check=True, stdout=subprocess.DEVNULL)
    forward = mux = None
    try:
        direct = {}
        for local_port, public in PUBLIC.items():
            out = subprocess.run(["docker", "port", target, str(public)], check=True, capture_output=True, text=True)
            direct[local_port] = int(out.stdout.split()[0].rsplit(":", 1)[1])
        time.sleep(0.5)
        forward, forwarded = start_forward(target)
        paths = {"direct": direct, "forward": forwarded}
        if args.with_exec_mux:
            mux, paths["exec_mux"] = start_forward(target, exec_mux=True)
        size = args.mib * MIB
        block = os.urandom(MIB)
        results = {name: {"down": [], "up": [], "conn": [], "msg": []} for name in paths}
        for round_ in range(args.rounds + 1):  # round 0 warms up
            for name, ports in paths.items():
                down = download(ports[SOURCE], size)
                up = upload(ports[HASH], size, block)
                conns = [connection_latency(ports[ECHO]) for _ in range(args.connections)]
                msgs = message_latencies(ports[ECHO], args.messages)
                if round_:
                    results[name]["down"].append(down)
                    results[name]["up"].append(up)
                    results[name]["conn"] += conns
                    results[name]["msg"] += msgs
    finally:
        for proc in (forward, mux):
            if proc is None:
                continue
            proc.send_signal(2)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["docker", "rm", "-f", target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    report = {"mib": args.mib, "rounds": args.rounds}
    for name, r in results.items():
        report[name] = {
            "download_mib_s": round(args.mib / statistics.median(r["down"]), 1),
            "upload_mib_s": round(args.mib / statistics.median(r["up"]), 1),
            "connection": summary(r["conn"]),
            "message": summary(r["msg"]),
        }
    d, f = report["direct"], report["forward"]
    report["ratios"] = {
        "download_throughput": round(f["download_mib_s"] / d["download_mib_s"], 3),
        "upload_throughput": round(f["upload_mib_s"] / d["upload_mib_s"], 3),
        "connection_latency": round(f["connection"]["median_ms"] / d["connection"]["median_ms"], 1),
        "message_latency": round(f["message"]["median_ms"] / d["message"]["median_ms"], 2),
    }
    if "exec_mux" in report:
        m = report["exec_mux"]
        report["ratios"]["exec_mux_download_throughput"] = round(m["download_mib_s"] / d["download_mib_s"], 3)
        report["ratios"]["exec_mux_upload_throughput"] = round(m["upload_mib_s"] / d["upload_mib_s"], 3)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.mib} MiB each way, {args.rounds} rounds, interleaved; {args.connections} connections and "
          f"{args.messages} messages per round")
    for name, label in (("direct", "published port (docker run -p)"), ("forward", "debugkit port-forward"),
                        ("exec_mux", "port-forward, exec mux")):
        if name not in report:
            continue
        r = report[name]
        print(f"{label:32} download {r['download_mib_s']:7.1f} MiB/s  upload {r['upload_mib_s']:7.1f} MiB/s  "
              f"connection {r['connection']['median_ms']:7.2f} ms (p90 {r['connection']['p90_ms']:.2f})  "
              f"message {r['message']['median_ms']:.3f} ms (p90 {r['message']['p90_ms']:.3f})")
    ratios = report["ratios"]
    print(f"port-forward / direct: download {ratios['download_throughput']:.2f}x, upload "
          f"{ratios['upload_throughput']:.2f}x, connection latency {ratios['connection_latency']:.1f}x, "
          f"message latency {ratios['message_latency']:.2f}x")
    if "exec_mux" in report:
        print(f"exec mux / direct: download {ratios['exec_mux_download_throughput']:.2f}x, upload "
              f"{ratios['exec_mux_upload_throughput']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
