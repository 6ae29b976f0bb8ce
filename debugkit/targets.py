"""Parse a target reference into the runtime it names. One place, no I/O."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from debugkit.errors import InvalidInput

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_DOCKER_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


@dataclass(frozen=True)
class DockerTarget:
    container: str
    runtime: str = "docker"

    def __str__(self) -> str:
        return self.container


@dataclass(frozen=True)
class KubeTarget:
    pod: str
    container: str | None = None
    namespace: str | None = None
    runtime: str = "kubernetes"

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        ctr = f"/{self.container}" if self.container else ""
        return f"pod/{ns}{self.pod}{ctr}" if not ns else f"k8s://{ns}{self.pod}{ctr}"


Target = Union[DockerTarget, KubeTarget]


def _check_k8s_name(kind: str, value: str, ref: str) -> str:
    if not value or len(value) > 253 or not _DNS_LABEL.match(value):
        raise InvalidInput(f"invalid {kind} name {value!r} in target {ref!r}")
    return value


def parse_target(ref: str, *, namespace: str | None = None, container: str | None = None) -> Target:
    """`name`, `docker://name`, `pod/NAME[/CONTAINER]` or `k8s://NAMESPACE/POD[/CONTAINER]`.

    -n/--namespace and -c/--container fill in what the reference leaves out; a
    contradiction between the two is an error rather than a silent choice.
    """
    ref = (ref or "").strip()
    if not ref:
        raise InvalidInput("no target given")
    if ref.startswith("k8s://"):
        parts = ref[len("k8s://"):].split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidInput(f"invalid target {ref!r}: expected k8s://NAMESPACE/POD[/CONTAINER]")
        ns, pod, ctr = parts[0], parts[1], (parts[2] if len(parts) == 3 else None)
        if namespace and namespace != ns:
            raise InvalidInput(f"target {ref!r} names namespace {ns!r} but --namespace is {namespace!r}")
        return _kube(ref, pod, ctr or container, ns, container)
    if ref.startswith(("pod/", "pods/", "po/")):
        parts = ref.split("/", 1)[1].split("/")
        if len(parts) not in (1, 2) or not all(parts):
            raise InvalidInput(f"invalid target {ref!r}: expected pod/NAME[/CONTAINER]")
        ctr = parts[1] if len(parts) == 2 else None
        return _kube(ref, parts[0], ctr or container, namespace, container)
    if ref.startswith("docker://"):
        ref = ref[len("docker://"):]
    if namespace:
        raise InvalidInput("--namespace applies to Kubernetes targets (pod/NAME); this is a Docker target")
    if not _DOCKER_NAME.match(ref):
        raise InvalidInput(f"invalid Docker container name or ID {ref!r}")
    return DockerTarget(ref.lstrip("/"))


def _kube(ref: str, pod: str, ctr: str | None, ns: str | None, flag_ctr: str | None) -> KubeTarget:
    if flag_ctr and ctr and flag_ctr != ctr:
        raise InvalidInput(f"target {ref!r} names container {ctr!r} but --container is {flag_ctr!r}")
    _check_k8s_name("pod", pod, ref)
    if ctr:
        _check_k8s_name("container", ctr, ref)
    if ns:
        _check_k8s_name("namespace", ns, ref)
    return KubeTarget(pod=pod, container=ctr, namespace=ns)
