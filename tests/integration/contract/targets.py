"""The contract suite's targets: one suite, every real runtime, the same user stories
against Docker, Podman and Kubernetes (the fixtures are in conftest.py).

`target` is parametrised over the three runtimes. Each gives a running distroless target
(the FROM-scratch fixture: a Go server as PID 1 that never reaps, numeric USER 65532)
with what the tests need to check it from the outside (:class:`Target`):

- ``ref``: what a person types (``NAME``, ``podman://NAME``, ``k8s://NS/POD/app``);
- ``host_pid``: the target's PID 1 as this machine sees it (every runtime is local here),
  so processes and zombies under it are counted from the host, not from a sidecar
  (:func:`under`, :func:`in_namespace_named`);
- ``sidecars()``: debugkit's sidecars of this target that still run.

The Kubernetes targets live in one `restricted` namespace per module.
"""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tests.helpers import RUN_ID, RUN_LABEL, TEST_LABEL, run_cli, wait_for

RUNTIMES = ("docker", "podman", "kubernetes")
TARGET_IMAGE_KIND = "distroless"
# Set in every target's environment: what `attach --target-env` must hand to the command.
TARGET_ENV = ("DEBUGKIT_CONTRACT", "from-the-target")
PODMAN_SOCKET = "/run/podman/podman.sock"


@dataclass
class Target:
    runtime: str
    ref: str
    name: str
    host_pid: int
    env: dict = field(default_factory=dict)
    # debugkit's sidecars of this target still running: names (Docker/Podman: containers;
    # Kubernetes: ephemeral containers whose state is running).
    sidecars: Callable[[], list[str]] = lambda: []
    stop: Callable[[], None] = lambda: None

    def cli(self, command: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """The real CLI against this target's runtime (its kubeconfig in the environment)."""
        return run_cli(command, *args, env={**self.env, **kwargs.pop("env", {})}, **kwargs)

    def attach(self, *command: str, flags: tuple[str, ...] = (), **kwargs) -> subprocess.CompletedProcess:
        return self.cli("attach", self.ref, *flags, "--", *command, **kwargs)


# ---------------------------------------------------------------- Docker and Podman

class EngineCli:
    """docker or podman, through its own CLI: what an operator types to check our work."""

    def __init__(self, cli: str):
        self.cli = cli

    def __call__(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        proc = subprocess.run([self.cli, *args], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.cli} {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def start(self, image: str, *args: str) -> tuple[str, str]:
        name = f"dk-contract-{uuid.uuid4().hex[:8]}"
        cid = self("run", "-d", "--name", name, "--label", f"{TEST_LABEL}=1", "--label", f"{RUN_LABEL}={RUN_ID}",
                   "-e", "=".join(TARGET_ENV), *args, image)
        wait_for(lambda: "listening on" in self("logs", name, check=False) + self.stderr_logs(name),
                 timeout=30, what=f"{name} to listen")
        return name, cid

    def stderr_logs(self, name: str) -> str:
        proc = subprocess.run([self.cli, "logs", name], capture_output=True, text=True, timeout=30)
        return proc.stderr

    def pid(self, name: str) -> int:
        pid = int(self("inspect", "--format", "{{.State.Pid}}", name))
        assert pid > 0, f"{name} has no process"
        return pid

    def sidecars_of(self, target_id: str) -> list[str]:
        out = self("ps", "--format", "{{.Names}}", "--filter", "label=io.debugkit.managed=true",
                   "--filter", f"label=io.debugkit.target-id={target_id}")
        return out.split()

    def remove_with_sidecars(self, name: str, target_id: str) -> None:
        leftovers = self("ps", "-a", "-q", "--filter", f"label=io.debugkit.target-id={target_id}", check=False)
        self("rm", "-f", name, *leftovers.split(), check=False)


def engine_target(engine: EngineCli, image: str, scheme: str, runtime: str, env: dict) -> Target:
    name, cid = engine.start(image)
    target = Target(runtime=runtime, ref=f"{scheme}{name}", name=name, host_pid=engine.pid(name), env=env,
                    sidecars=lambda: engine.sidecars_of(cid),
                    stop=lambda: engine("stop", "-t", "1", name))
    target.cleanup = lambda: engine.remove_with_sidecars(name, cid)
    return target


# ---------------------------------------------------------------- Kubernetes

def container_host_pid(container_id: str) -> int:
    """The host PID of a container's PID 1, found by its cgroup (the CRI names cgroups after
    the container ID) and its innermost namespace PID being 1."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cgroup = Path(f"/proc/{entry}/cgroup").read_text()
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        if container_id not in cgroup:
            continue
        nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
        if nspid and nspid[-1] == "1":
            return int(entry)
    raise AssertionError(f"no process of container {container_id} is its PID 1")


def kube_target(cluster, namespace: str, image: str, **pod) -> Target:
    pod.setdefault("container", {"env": [{"name": TARGET_ENV[0], "value": TARGET_ENV[1]}]})
    created = cluster.run_pod(namespace, image, container_name="app", **pod)
    name = created.metadata.name
    status = created.status.container_statuses[0]
    host_pid = container_host_pid(status.container_id.split("://", 1)[1])

    def running_debug_containers() -> list[str]:
        """Debug containers not yet ended: the kubelet may not have published `running` yet
        (debugkit knows a container is up from its first exec, not from the status)."""
        current = cluster.api.read_namespaced_pod(name, namespace)
        ended = {s.name for s in current.status.ephemeral_container_statuses or [] if s.state.terminated}
        return [c.name for c in current.spec.ephemeral_containers or [] if c.name not in ended]

    target = Target(runtime="kubernetes", ref=f"k8s://{namespace}/{name}/app", name=name, host_pid=host_pid,
                    env={"KUBECONFIG": cluster.kubeconfig}, sidecars=running_debug_containers)
    target.cleanup = lambda: cluster.api.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    target.pod = name
    target.namespace = namespace
    return target


# ---------------------------------------------------------------- the runtimes under test

def selected_runtimes(request) -> tuple[str, ...]:
    wanted = os.environ.get("DEBUGKIT_CONTRACT_RUNTIMES")
    return tuple(wanted.split(",")) if wanted else RUNTIMES


# ---------------------------------------------------------------- the host's view of processes

def proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, state, comm) for every process on this machine."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        close = data.rindex(b")")
        comm = data[data.index(b"(") + 1:close].decode(errors="replace")
        fields = data[close + 2:].split()
        table[int(entry)] = (int(fields[1]), fields[0].decode(), comm)
    return table


def under(pid1: int) -> dict[int, tuple[str, str]]:
    """Every process below pid1 (children, grandchildren...): pid -> (state, comm)."""
    table = proc_table()
    found: dict[int, tuple[str, str]] = {}
    frontier = [pid1]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, state, comm) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = (state, comm)
                frontier.append(pid)
    return found


def pid_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def in_namespace_named(pid1: int, comm: str) -> list[int]:
    """PIDs in pid1's PID namespace (sidecars included) whose command is `comm`."""
    ns = pid_namespace(pid1)
    out = []
    for pid, (_, _, name) in proc_table().items():
        if name != comm:
            continue
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") == ns:
                out.append(pid)
        except OSError:
            continue
    return out


def describe(processes: dict[int, tuple[str, str]]) -> str:
    return ", ".join(f"{pid} {comm} ({state})" for pid, (state, comm) in sorted(processes.items())) or "none"


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
