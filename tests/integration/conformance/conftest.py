"""The conformance suite's fixtures: the oracles (kubectl as the rest of the suite finds it,
the docker CLI), a PKI made once per session, and `run_case`, which runs one case in a
private network and mount namespace (runner.py) and returns both sides' observations.

The oracles are required: in CI a missing one fails the suite; elsewhere it fails too,
with the command that provides it (a conformance claim without its oracle is no claim)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import IN_CI, REPO
from tests.integration.kubernetes.cluster import k8s_testenv

DOCKER_CLI = "/usr/local/bin/docker"


def _needs_root_namespaces() -> str | None:
    if os.geteuid() != 0:
        return "the conformance runner needs root (a private network and mount namespace per case)"
    for tool in ("unshare", "ip", "openssl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (util-linux, iproute2, openssl)"
    return None


@pytest.fixture(scope="session")
def kubectl() -> str:
    """The kubectl that scripts/k8s-testenv builds for the test node (never a system one)."""
    paths = k8s_testenv("paths", timeout=30)
    assert paths.returncode == 0, paths.stderr
    info = dict(line.split("=", 1) for line in paths.stdout.split())
    binary = Path(info["bin_dir"]) / "kubectl"
    if not binary.exists():
        built = k8s_testenv("build", timeout=75 * 60, show=True)
        if built.returncode != 0:
            pytest.fail(f"scripts/k8s-testenv build failed (exit {built.returncode}); the kubectl oracle is missing")
    if not binary.exists():
        pytest.fail(f"the kubectl oracle {binary} is missing after scripts/k8s-testenv build")
    return str(binary)


@pytest.fixture(scope="session")
def docker_cli() -> str:
    path = DOCKER_CLI if os.access(DOCKER_CLI, os.X_OK) else shutil.which("docker")
    if not path:
        pytest.fail("the docker CLI oracle is missing (scripts/docker-testenv installs it)")
    return path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> str:
    """ca and other-ca; a server certificate for every fake name and address; client
    certificates alice (client-a, for kubeconfigs) and bob-exec (client-b, from the plugin)."""
    d = tmp_path_factory.mktemp("conformance-pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", *ec, "-days", "2", "-subj", f"/CN=conformance {ca}",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.crt", cwd=d)
    sans = ("subjectAltName=DNS:kube.example,DNS:alt.example,DNS:docker.example,DNS:issuer.example,"
            "DNS:registry.example,DNS:localhost,IP:127.0.0.1,IP:::1,IP:10.99.0.1,IP:10.99.0.4")
    for name, subj, ext in (("server", "/CN=conformance server", sans),
                            ("client-a", "/CN=alice/O=devs", "extendedKeyUsage=clientAuth"),
                            ("client-b", "/CN=bob-exec", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("req", *ec, "-subj", subj, "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)
    for path in d.iterdir():
        path.chmod(0o644)
    return str(d)


@pytest.fixture(scope="session")
def run_case(pki):
    reason = _needs_root_namespaces()
    if reason:
        if IN_CI:
            pytest.fail(f"CI must run the conformance suite, but {reason}")
        pytest.skip(reason)

    def run(suite: str, case_id: str, *, oracle: str) -> dict:
        env = dict(os.environ, CONFORMANCE_PKI=pki,
                   **{"CONFORMANCE_KUBECTL" if suite == "kube" else "CONFORMANCE_DOCKER": oracle})
        proc = subprocess.run(["unshare", "--mount", "--net", "--propagation", "private", sys.executable, "-m",
                               "tests.integration.conformance.runner", suite, case_id],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"the runner failed for {case_id}:\n{proc.stderr[-4000:]}"
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run
