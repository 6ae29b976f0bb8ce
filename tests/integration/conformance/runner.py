"""Run one conformance case: the oracle (kubectl or the docker CLI) and debugkit, one after
the other, against the same recording fakes, and print what each made arrive as JSON.

Started by the test as `unshare --mount --net --propagation private PYTHON -m
tests.integration.conformance.runner SUITE CASE_ID` (root): a network namespace of its own
(only a loopback interface, with the fakes' addresses on it), and a mount namespace in
which /etc/hosts names those addresses and /run is a fresh tmpfs (for the in-cluster
service account files, at the fixed path client-go reads). Nothing of the machine's own
network, ports or files is touched, and nothing outlives the process.

The environment gives the oracles: CONFORMANCE_KUBECTL, CONFORMANCE_DOCKER, and the
test PKI made once per session: CONFORMANCE_PKI.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.conformance import fakes
from tests.integration.conformance.cases import docker_cases, kube_cases

REPO = Path(__file__).resolve().parents[3]
CLIENT_TIMEOUT = 15


def setup_namespace(workdir: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for address in sorted(set(fakes.HOSTS.values())):
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    hosts = workdir / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n" +
                     "".join(f"{ip} {name}\n" for name, ip in fakes.HOSTS.items()))
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "conformance", "/run"], check=True)


def materialize(case, workdir: Path, pki: str) -> dict:
    """Write the case's files; returns the substitutions used in its texts."""
    def pem_b64(name: str) -> str:
        return base64.b64encode(Path(pki, name).read_bytes()).decode()

    subs = {"pki": pki, "dir": str(workdir), "plugin": str(workdir / "plugin"),
            "ca_data": pem_b64("ca.crt"), "client_cert_data": pem_b64("client-a.crt"),
            "client_key_data": pem_b64("client-a.key"), "valid_jwt": fakes.jwt(time.time() + 3600, "1"),
            "expired_jwt": fakes.jwt(time.time() - 60, "0"), "ca_pem": Path(pki, "ca.crt").read_text(),
            "client_a_crt": Path(pki, "client-a.crt").read_text(), "client_a_key": Path(pki, "client-a.key").read_text(),
            "other_ca_pem": Path(pki, "other-ca.crt").read_text()}
    plugin = workdir / "plugin"
    plugin.write_text(f"#!{sys.executable}\n" + (Path(__file__).parent / "plugin.py").read_text())
    plugin.chmod(0o755)
    ssh = workdir / "bin" / "ssh"
    ssh.parent.mkdir(exist_ok=True)
    ssh.write_text(f"#!{sys.executable}\n" + (Path(__file__).parent / "fake_ssh.py").read_text())
    ssh.chmod(0o755)
    for name, content in case.files.items():
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        if content == "<fifo>":
            os.mkfifo(path)
        else:
            path.write_text(content.format(**subs))
            if name.startswith("bin/"):
                path.chmod(0o755)
    for name, content in case.root_files.items():  # the in-cluster service account (under the tmpfs /run)
        path = Path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content.format(**subs))
    return subs


def run_client(argv: list[str], env: dict, cwd: Path) -> dict:
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=CLIENT_TIMEOUT, start_new_session=True)
        outcome = {"exit": proc.returncode, "stderr": proc.stderr.decode("utf-8", "replace")[-2000:]}
    except subprocess.TimeoutExpired as exc:
        outcome = {"exit": "timeout", "stderr": (exc.stderr or b"").decode("utf-8", "replace")[-2000:]}
    outcome["seconds"] = round(time.monotonic() - started, 2)
    return outcome


def environment(case, workdir: Path, subs: dict) -> dict:
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    env = {"HOME": str(home), "PATH": f"{workdir / 'bin'}:{os.environ['PATH']}", "LANG": "C.UTF-8",
           "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1", "CONFORMANCE_RECORD": str(workdir / "plugin.log"),
           "XDG_STATE_HOME": str(home / "state"), "XDG_CONFIG_HOME": str(home / "config"),
           "CONFORMANCE_PKI": subs["pki"], "CONFORMANCE_SSH_LOG": str(workdir / "ssh.log"),
           "CONFORMANCE_DOCKER_SOCK": str(workdir / "docker.sock")}
    for key, value in case.env.items():
        env[key] = value.format(**subs)
    return env


def observe(case, workdir: Path) -> dict:
    records = fakes.RECORDS.take()
    log = workdir / "plugin.log"
    plugin_runs = []
    if log.exists():
        plugin_runs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        log.unlink()
    obs = case.summarize(records, plugin_runs, workdir)
    return obs


def main() -> int:
    suite, case_id = sys.argv[1], sys.argv[2]
    table = {"kube": kube_cases.CASES, "docker": docker_cases.CASES}[suite]
    case = next(c for c in table if c.id == case_id)
    pki = os.environ["CONFORMANCE_PKI"]
    workdir = Path(tempfile.mkdtemp(prefix="conformance-"))
    try:
        setup_namespace(workdir)
        servers = fakes.start_all(pki, str(workdir))
        result = {}
        for side in ("oracle", "debugkit"):
            subs = materialize(case, workdir, pki)
            env = environment(case, workdir, subs)
            oracle = os.environ["CONFORMANCE_KUBECTL" if suite == "kube" else "CONFORMANCE_DOCKER"]
            argv = case.argv(side, oracle=oracle, python=sys.executable, subs=subs)
            outcome = run_client(argv, env, workdir)
            time.sleep(0.05)  # a relayed connection's last record
            result[side] = {"outcome": outcome, "hangs": outcome["exit"] == "timeout", **observe(case, workdir)}
            if side == "oracle":
                shutil.rmtree(workdir / "home", ignore_errors=True)
        for server in servers.values():
            server.server_close()
        print(json.dumps(result))
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
