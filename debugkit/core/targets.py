"""Parse a target reference into a typed reference to the runtime it names. One place, no I/O.

    NAME, docker://NAME          a Docker container (name or ID)
    podman://NAME                a Podman container
    pod/NAME[/CONTAINER]         a Kubernetes pod (namespace from -n or the context)
    k8s://NAMESPACE/POD[/CTR]    a Kubernetes pod in a namespace
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from debugkit.core.errors import InvalidInput

_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_CONTAINER_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
CONTAINER_SCHEMES = {"docker://": "docker", "podman://": "podman"}


@dataclass(frozen=True)
class ContainerRef:
    """A container on a Docker-API engine (Docker itself, or Podman's compatible service)."""

    name: str
    runtime: str = "docker"

    def __str__(self) -> str:
        return self.name if self.runtime == "docker" else f"{self.runtime}://{self.name}"


@dataclass(frozen=True)
class PodRef:
    pod: str
    container: str | None = None
    namespace: str | None = None
    runtime: str = "kubernetes"

    def __str__(self) -> str:
        ctr = f"/{self.container}" if self.container else ""
        if self.namespace:
            return f"k8s://{self.namespace}/{self.pod}{ctr}"
        return f"pod/{self.pod}{ctr}"


TargetRef = Union[ContainerRef, PodRef]


def check_k8s_name(kind: str, value: str, ref: str, *, label: bool = False) -> str:
    """Namespaces and container names are DNS labels (63, no dots); pods are DNS subdomains."""
    pattern, limit = (_DNS_LABEL, 63) if label else (_DNS_NAME, 253)
    if not value or len(value) > limit or not pattern.match(value):
        raise InvalidInput(f"invalid {kind} name {value!r} in target {ref!r}")
    return value


def parse_target(ref: str, *, namespace: str | None = None, container: str | None = None) -> TargetRef:
    """-n/--namespace and -c/--container fill in what the reference leaves out; a
    contradiction between the two is an error rather than a silent choice."""
    ref = (ref or "").strip()
    if not ref:
        raise InvalidInput("no target given")
    if namespace is not None:
        check_k8s_name("namespace", namespace, ref, label=True)
    if container is not None:
        check_k8s_name("container", container, ref, label=True)
    if ref.startswith("k8s://"):
        parts = ref[len("k8s://"):].split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidInput(f"invalid target {ref!r}: expected k8s://NAMESPACE/POD[/CONTAINER]")
        ns, pod, ctr = parts[0], parts[1], (parts[2] if len(parts) == 3 else None)
        if namespace and namespace != ns:
            raise InvalidInput(f"target {ref!r} names namespace {ns!r} but --namespace is {namespace!r}")
        return _pod(ref, pod, ctr, ns, container)
    if ref.startswith(("pod/", "pods/", "po/")):
        parts = ref.split("/", 1)[1].split("/")
        if len(parts) not in (1, 2) or not all(parts):
            raise InvalidInput(f"invalid target {ref!r}: expected pod/NAME[/CONTAINER]")
        return _pod(ref, parts[0], parts[1] if len(parts) == 2 else None, namespace, container)
    runtime = "docker"
    for scheme, name in CONTAINER_SCHEMES.items():
        if ref.startswith(scheme):
            runtime, ref = name, ref[len(scheme):]
            break
    if namespace:
        raise InvalidInput(f"--namespace applies to Kubernetes targets (pod/NAME); this is a {runtime} target")
    if container:
        raise InvalidInput(f"--container applies to Kubernetes targets (pod/NAME/CONTAINER); this is a {runtime} "
                           f"target")
    if not _CONTAINER_NAME.match(ref) or len(ref) > 255:
        raise InvalidInput(f"invalid {runtime.capitalize()} container name or ID {ref!r}")
    return ContainerRef(ref.lstrip("/"), runtime=runtime)


def _pod(ref: str, pod: str, ctr: str | None, ns: str | None, flag_ctr: str | None) -> PodRef:
    if flag_ctr and ctr and flag_ctr != ctr:
        raise InvalidInput(f"target {ref!r} names container {ctr!r} but --container is {flag_ctr!r}")
    check_k8s_name("pod", pod, ref)
    ctr = ctr or flag_ctr
    if ctr:
        check_k8s_name("container", ctr, ref, label=True)
    if ns:
        check_k8s_name("namespace", ns, ref, label=True)
    return PodRef(pod=pod, container=ctr, namespace=ns)
