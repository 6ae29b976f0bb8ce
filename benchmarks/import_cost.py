#!/usr/bin/env python3
"""What a change costs in imports: `debugkit --help`, and a Kubernetes attach up to its
first API request, for two revisions, measured in the same run.

Each revision is installed as a user gets it: `pip install --no-deps --target DIR` of the
revision's tree (a wheel built from it, not an editable install), then byte-compiled
(compileall), since these machines set PYTHONDONTWRITEBYTECODE. The dependencies come from
this venv; each child is checked to import debugkit from its DIR.

Per sample, a fresh process under `python -X importtime`:
- help: `debugkit --help`;
- attach: `debugkit attach pod/web -n default --kubeconfig K -- true` against a loopback
  TLS API server that answers 404 to the pod (exit 66 after one request): kubeconfig,
  credentials, client, TLS, http.client, up to the first request.
The figure is the sum of the top-level imports' cumulative times (what -X importtime
attributes to imports), and the process's wall time. Revisions alternate; medians.

    .venv/bin/python benchmarks/import_cost.py --base main [--head WORKTREE] [--runs 21]
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def install(source: Path, target: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--target", str(target), str(source)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(target / "debugkit")], check=True)


def tree_of(revision: str, where: Path) -> Path:
    """The revision's files ("WORKTREE": this checkout as it is)."""
    if revision == "WORKTREE":
        return REPO
    where.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def environment(target: Path, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    env.update(PYTHONPATH=str(target), HOME=str(home), XDG_STATE_HOME=str(home / "state"),
               XDG_CONFIG_HOME=str(home / "config"))
    for name in ("KUBECONFIG", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "DEBUGKIT_CONFIG"):
        env.pop(name, None)
    return env


def import_ms(stderr: str) -> float:
    """The sum of the top-level imports' cumulative microseconds, in ms."""
    total = 0
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _self, cumulative, name = line[len("import time:"):].split("|")
        if name.startswith(" ") and not name.startswith("  ") and cumulative.strip().isdigit():
            total += int(cumulative)
    return total / 1000


def sample(argv: list[str], env: dict, expect: int) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "debugkit", *argv], env=env, cwd=env["HOME"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    wall = (time.perf_counter() - start) * 1000
    if proc.returncode != expect:
        raise SystemExit(f"debugkit {' '.join(argv)} exited {proc.returncode}, not {expect}: {proc.stderr[-800:]}")
    return import_ms(proc.stderr), wall


class _NotFound(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - the base class's name
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                           "code": 404, "message": 'pods "web" not found'}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def fake_api(workdir: Path) -> tuple[http.server.HTTPServer, Path]:
    """A TLS API server on loopback, and a kubeconfig for it with a token."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(workdir / "key.pem"), "-out", str(workdir / "cert.pem")],
                   check=True, capture_output=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(workdir / "cert.pem", workdir / "key.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = workdir / "kubeconfig"
    config.write_text(f"""apiVersion: v1
kind: Config
current-context: c
clusters:
- name: k
  cluster:
    server: https://127.0.0.1:{server.server_address[1]}
    certificate-authority: {workdir / 'cert.pem'}
users:
- name: u
  user:
    token: bench-token
contexts:
- name: c
  context: {{cluster: k, user: u}}
""")
    return server, config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="the revision before (default: main)")
    parser.add_argument("--head", default="WORKTREE", help="the revision after (default: this checkout)")
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="debugkit-import-cost-") as tmp:
        work = Path(tmp)
        sides = {}
        for label, revision in (("base", args.base), ("head", args.head)):
            target = work / f"{label}-site"
            install(tree_of(revision, work / f"{label}-src"), target)
            env = environment(target, work / "home")
            (work / "home").mkdir(exist_ok=True)  # the children's cwd too: never this checkout
            where = subprocess.run([sys.executable, "-c", "import debugkit; print(debugkit.__file__)"], env=env,
                                   cwd=work / "home", capture_output=True, text=True, check=True).stdout.strip()
            if not where.startswith(str(target)):
                raise SystemExit(f"the {label} side imports debugkit from {where}, not from {target}")
            sides[label] = env
        server, config = fake_api(work)
        cases = {"help": (["--help"], 0),
                 "attach": (["attach", "pod/web", "-n", "default", "--kubeconfig", str(config), "--", "true"], 66)}
        results: dict = {(label, case): [] for label in sides for case in cases}
        for i in range(args.runs + 2):  # two warm-up rounds
            for case, (argv, expect) in cases.items():
                for label, env in sides.items():
                    measured = sample(argv, env, expect)
                    if i >= 2:
                        results[(label, case)].append(measured)
        server.shutdown()
    print(f"{'':<8}{'imports base':>14}{'imports head':>14}{'delta':>9}{'wall base':>12}{'wall head':>12}{'delta':>9}")
    for case in cases:
        base, head = results[("base", case)], results[("head", case)]
        ib, ih = (statistics.median(x[0] for x in xs) for xs in (base, head))
        wb, wh = (statistics.median(x[1] for x in xs) for xs in (base, head))
        print(f"{case:<8}{ib:>11.1f} ms{ih:>11.1f} ms{ih - ib:>+6.1f} ms{wb:>9.1f} ms{wh:>9.1f} ms{wh - wb:>+6.1f} ms")
    print(f"medians of {args.runs} alternating runs; base {args.base}, head {args.head}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
