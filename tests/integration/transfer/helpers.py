"""Helpers for the transfer tests (the fixtures are in conftest.py): cp and port-forward
against the real engines and the real node, Docker, Podman and Kubernetes, the same tests
on each.

The target is a distroless-style image built here (tests/fixtures/transfer): a static Go
server as PID 1, USER 65532, nothing else but its files. Its services on 127.0.0.1 only
(hash 9000, source 9001, echo 9002; see main.go) are reachable from inside its network
namespace alone. /data holds a small tree with modes, mtimes and symlinks (one to
/etc/passwd, ones that point out of the root); /locked, files the target's user cannot
read (root's and user 1234's); /home/nonroot, the target user's home with its private
secret.txt, as the other fixtures have.

`rt` is parametrised over the runtimes; `rt.target()` starts a fresh target and returns a
`Target`, whose `cli()` runs the real CLI against it as a subprocess. What the image holds
(the ground truth for checksums, modes, mtimes and links) is read with the Docker engine's
archive API from a created, never started, container of the very image each runtime runs.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import select
import signal
import stat
import subprocess
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import labels_for_test, run_cli, wait_for

PODMAN_SOCKET = "unix:///run/podman/podman.sock"
RUNTIMES = ("docker", "podman", "kubernetes")
# Services of the transfer target (main.go): on 127.0.0.1 only, and on every interface.
HASH, SOURCE, ECHO = 9000, 9001, 9002
PUBLIC = {HASH: 8090, SOURCE: 8091, ECHO: 8092}

# -- what the image holds ------------------------------------------------------------------------------


def tree_of_tar(data: bytes) -> dict:
    """{relative path: (kind, mode, mtime, sha256 or link text)} below the archive's top entry."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        top = members[0].name.rstrip("/")
        for m in members:
            rel = m.name.rstrip("/")[len(top):].lstrip("/") or "."
            if m.isfile():
                out[rel] = ("file", m.mode & 0o7777, int(m.mtime), hashlib.sha256(tar.extractfile(m).read()).hexdigest())
            elif m.isdir():
                out[rel] = ("dir", m.mode & 0o7777, int(m.mtime), None)
            elif m.issym():
                out[rel] = ("link", None, int(m.mtime), m.linkname)
    return out


def tree_of_local(path: Path) -> dict:
    def one(p: Path):
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            return ("link", None, int(st.st_mtime), os.readlink(p))
        if stat.S_ISDIR(st.st_mode):
            return ("dir", st.st_mode & 0o7777, int(st.st_mtime), None)
        return ("file", st.st_mode & 0o7777, int(st.st_mtime), sha256_file(p))

    out = {".": one(path)}
    if path.is_dir() and not path.is_symlink():
        for p in path.rglob("*"):
            out[str(p.relative_to(path))] = one(p)
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# -- runtimes ----------------------------------------------------------------------------------------------


@dataclass
class Target:
    """A running transfer target and how the CLI names it on its runtime."""

    runtime: str
    ref: str                       # what the CLI takes before the colon (cp) or as TARGET
    args: list[str]                # --kubeconfig, -n NS
    env: dict = field(default_factory=dict)
    handle: object = None          # the container (docker-py) or (namespace, pod name)
    owner: "RuntimeHelper" = None

    def spec(self, path: str) -> str:
        return f"{self.ref}:{path}"

    def cli(self, command: str, *args: str, timeout: float = 240, input=None, extra=()) -> subprocess.CompletedProcess:
        return run_cli(command, *self.args, *extra, *args, timeout=timeout, input=input, env=self.env)

    def popen(self, command: str, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "debugkit", command, *self.args, *args],
                                env={**os.environ, **self.env}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **kwargs)

    def sh(self, script: str, *, timeout: float = 240) -> str:
        """A shell command in a sidecar as the target's user (the target has no shell). On
        Kubernetes in a debug container of its own that ends with it (--keep-alive 0), so
        that the sidecars a test counts are those of the command under test."""
        extra = ("--keep-alive", "0") if self.runtime == "kubernetes" else ()
        result = self.cli("attach", *extra, self.ref, "--", "sh", "-c", script, timeout=timeout)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        return result.stdout.decode()

    def sidecars(self) -> list[str]:
        """debugkit sidecars of this target that still run."""
        return self.owner.sidecars(self)


class RuntimeHelper:
    name: str

    def target(self, **kwargs) -> Target:
        raise NotImplementedError

    def sidecars(self, target: Target) -> list[str]:
        raise NotImplementedError


class EngineHelper(RuntimeHelper):
    """Docker, or Podman through the same docker-py client pointed at its socket."""

    def __init__(self, name: str, client, image: str, scheme: str, env: dict, fixture_image: str):
        self.name = name
        self.client = client
        self.image = image
        self.fixture_image = fixture_image  # a plain fixture target (tests/fixtures/targets)
        self.scheme = scheme
        self.env = env
        self.started: list = []

    def target(self, *, user: str | None = None, image: str | None = None, **kwargs) -> Target:
        name = f"dk-xfer-{uuid.uuid4().hex[:8]}"
        ctr = self.client.containers.run(image or self.image, name=name, detach=True, labels=labels_for_test(), user=user,
                                         **kwargs)
        self.started.append(ctr)
        wait_for(lambda: b"listening on" in ctr.logs(), timeout=30, what=f"{name} to listen")
        ctr.reload()
        return Target(self.name, f"{self.scheme}{name}", [], dict(self.env), ctr, self)

    def sidecars(self, target: Target) -> list[str]:
        found = self.client.containers.list(all=True, filters={"label": [
            "io.debugkit.managed=true", f"io.debugkit.target-id={target.handle.id}"]}, ignore_removed=True)
        return [c.name for c in found]

    def cleanup(self) -> None:
        for ctr in self.started:
            with contextlib.suppress(Exception):
                ctr.remove(force=True)


class KubeHelper(RuntimeHelper):
    name = "kubernetes"

    def __init__(self, cluster, image: str, namespace: str, fixture_image: str):
        self.cluster = cluster
        self.image = image
        self.namespace = namespace
        self.fixture_image = fixture_image

    def target(self, *, user: int = 65532, image: str | None = None, containers: list[dict] | None = None,
               **kwargs) -> Target:
        """A pod whose securityContext names its user (the image is not in a registry, so
        its config cannot say)."""
        name = f"dk-xfer-{uuid.uuid4().hex[:8]}"
        manifest = self.cluster.pod_manifest(self.namespace, image or self.image, name=name, container_name="app",
                                             run_as_user=user, run_as_group=user, **kwargs)
        manifest["spec"]["containers"] += containers or []
        self.cluster.api.create_namespaced_pod(self.namespace, manifest)
        self.cluster.wait_pod_running(self.namespace, name)
        # --keep-alive 0: the debug container ends with the session, as a sidecar does.
        return Target(self.name, f"pod/{name}", ["--kubeconfig", self.cluster.kubeconfig, "-n", self.namespace],
                      {}, (self.namespace, name), self)

    def sidecars(self, target: Target) -> list[str]:
        namespace, name = target.handle
        pod = self.cluster.api.read_namespaced_pod(name, namespace)
        return [st.name for st in pod.status.ephemeral_container_statuses or []
                if st.state.running is not None or st.state.waiting is not None]


def image_content(attrs: dict) -> tuple:
    """What identifies an image's content in both stores: its layers' diff IDs and its
    labels. Not its ID: Docker 29 keeps images in containerd, where the ID is the
    manifest's digest, while Podman's is the config's."""
    return tuple((attrs.get("RootFS") or {}).get("Layers") or ()), (attrs.get("Config") or {}).get("Labels") or {}


def podman_copy(client, ref: str, docker_attrs: dict) -> str | None:
    """The name under which Podman holds Docker's `ref` with the same content, or None.
    `docker save | podman load` names it localhost/REF from a classic Docker store, and
    docker.io/REF from Docker 29's containerd store (its OCI archive names the image in full)."""
    for name in (f"localhost/{ref}", f"docker.io/{ref}"):
        try:
            if image_content(client.images.get(name).attrs) == image_content(docker_attrs):
                return name
        except Exception:  # noqa: BLE001
            continue
    return None


def runtime_helper(request, name: str):
    """The runtime helper for `name`, set up through the fixtures that runtime needs."""
    fixtures = request.getfixturevalue("fixture_images")
    if name == "docker":
        request.getfixturevalue("toolbox_image")
        helper = EngineHelper("docker", request.getfixturevalue("docker_client"),
                              request.getfixturevalue("transfer_image"), "docker://", {}, fixtures["named-user"])
        return helper, helper.cleanup
    if name == "podman":
        images = request.getfixturevalue("podman_images")
        image = images[request.getfixturevalue("transfer_image")]
        helper = EngineHelper("podman", request.getfixturevalue("podman_client"), image, "podman://",
                              {"CONTAINER_HOST": PODMAN_SOCKET}, f"localhost/{fixtures['named-user']}")
        return helper, helper.cleanup
    cluster = request.getfixturevalue("k8s_cluster")
    request.getfixturevalue("toolbox_on_node")
    image = cluster.load_image(request.getfixturevalue("transfer_image"))
    stack = contextlib.ExitStack()
    namespace = stack.enter_context(cluster.namespace("restricted", prefix="dk-xfer"))
    return KubeHelper(cluster, image, namespace, cluster.load_image(fixtures["distroless"])), stack.close


# -- port-forward ------------------------------------------------------------------------------------------


class Forward:
    """A running `debugkit port-forward`: its process and the local ports it announced."""

    def __init__(self, proc: subprocess.Popen, ports: dict[int, int], via: str, lines: list[str]):
        self.proc = proc
        self.ports = ports       # remote -> local
        self.via = via
        self.lines = lines

    def stop(self, sig=signal.SIGINT, *, timeout: float = 30) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"port-forward did not end within {timeout}s of {sig!r}") from None
        return code, self.proc.stderr.read().decode(errors="replace")


def read_line(stream, deadline: float) -> str | None:
    line = b""
    fd = stream.fileno()
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return None
        byte = os.read(fd, 1)
        if not byte:
            return line.decode() or None
        line += byte
    return line.decode()


def start_forward(target: Target, *mappings: str, extra=(), timeout: float = 180, **popen) -> Forward:
    """`port-forward TARGET MAPPINGS...`, waiting for one `Forwarding from` line per mapping."""
    proc = target.popen("port-forward", target.ref, *mappings, *extra, **popen)
    ports, lines, via = {}, [], ""
    deadline = time.monotonic() + timeout
    try:
        while len(lines) < len(mappings):
            line = read_line(proc.stdout, deadline)
            if line is None:
                proc.kill()
                proc.wait()
                raise AssertionError(f"port-forward announced {lines} only; exit {proc.returncode}; "
                                     f"stderr: {proc.stderr.read().decode(errors='replace')}")
            lines.append(line.rstrip("\n"))
            # Forwarding from 127.0.0.1:PORT -> REMOTE (via ...)
            words = line.split()
            local = int(words[2].rsplit(":", 1)[1])
            remote = int(words[4])
            ports[remote] = local
            via = line.split("(via ", 1)[1].rstrip(")\n")
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    return Forward(proc, ports, via, lines)


def audit_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
