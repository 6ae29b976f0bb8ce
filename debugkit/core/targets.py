"""Parse a target reference into a typed reference to the runtime it names. One place, no I/O.

    NAME                         a container on the runtime that takes bare names (Docker)
    SCHEME://NAME                a container on the runtime that owns the scheme (docker://, podman://)
    pod/NAME[/CONTAINER]         a pod (namespace from -n or the context)
    k8s://NAMESPACE/POD[/CTR]    a pod in a namespace
    node/NAME                    a Kubernetes node (a debugging pod on it, in -n or the context's namespace)
    image/REF, SCHEME://image/REF  an image, with no container at all (attach runs a held copy of it)

Which runtime owns which way of writing a target is not decided here: the runtime registry
(debugkit.runtimes) builds a `TargetSyntax` from its entries, and every parser takes one.
What is decided here is the shape of a reference: a container (a name), a pod (namespace,
pod, container) and the references that name many (workloads, selectors, label sets).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple, Union

from debugkit.core.errors import InvalidInput

_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_CONTAINER_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# An image reference as engines write it: [registry[:port]/]path[:tag][@algorithm:digest].
_IMAGE_REF = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.:/@-]*$")
# A container name never has a slash: image/REF cannot be one.
IMAGE_PREFIX = "image/"
# The pod shape's own ways of writing a target (its runtime comes from the registry).
POD_SCHEME = "k8s://"
POD_KINDS = ("pod", "pods", "po")
NODE_KINDS = ("node", "nodes", "no")


class TargetSyntax(NamedTuple):
    """Which runtime each way of writing a target names, as the runtime registry says."""

    container_schemes: tuple[tuple[str, str], ...] = ()  # ("podman://", "podman"): SCHEME NAME
    bare: str | None = None                              # the runtime of a NAME written without a scheme
    pods: str | None = None                              # the runtime of pods: k8s://, pod/, deploy/, -l
    label_sets: tuple[str, ...] = ()                     # runtimes that take --filter label=... and compose/
    titles: tuple[tuple[str, str], ...] = ()             # runtime -> its name in messages ("Docker")

    def title(self, runtime: str) -> str:
        return dict(self.titles).get(runtime, runtime)

    def scheme_of(self, runtime: str) -> str:
        """How a container of `runtime` is written: a bare name, or behind its first scheme."""
        if runtime == self.bare:
            return ""
        return next((scheme for scheme, owner in self.container_schemes if owner == runtime), "")

    @property
    def schemes(self) -> tuple[str, ...]:
        """Every SCHEME:// a target may start with."""
        own = tuple(scheme for scheme, _owner in self.container_schemes)
        return own + ((POD_SCHEME,) if self.pods is not None else ())


@dataclass(frozen=True)
class ContainerRef:
    """A container on a container engine (Docker, Podman), by name or ID."""

    name: str
    runtime: str = ""
    scheme: str = ""                # how it is written: "" (a bare name) or "podman://"

    def __str__(self) -> str:
        return f"{self.scheme}{self.name}"


@dataclass(frozen=True)
class ImageRef:
    """An image on a container engine, debugged through a held copy (no container yet)."""

    image: str
    runtime: str = ""
    scheme: str = ""

    @property
    def name(self) -> str:
        return f"{IMAGE_PREFIX}{self.image}"

    def __str__(self) -> str:
        return f"{self.scheme}{IMAGE_PREFIX}{self.image}"


@dataclass(frozen=True)
class PodRef:
    pod: str
    container: str | None = None
    namespace: str | None = None
    runtime: str = ""

    def __str__(self) -> str:
        ctr = f"/{self.container}" if self.container else ""
        if self.namespace:
            return f"{POD_SCHEME}{self.namespace}/{self.pod}{ctr}"
        return f"pod/{self.pod}{ctr}"


@dataclass(frozen=True)
class NodeRef:
    """A node of the pods' runtime: debugged from a pod pinned to it that shares its PID and
    network namespaces and mounts its root filesystem (privileged by nature: it runs only
    with --profile node or sysadmin typed on the command line). `namespace`: where that pod
    goes (-n), else the context's."""

    node: str
    namespace: str | None = None
    runtime: str = ""

    def __str__(self) -> str:
        return f"node/{self.node}"


# The profiles a node debugging pod runs with, and only when typed: host namespaces and a
# read-only /host (node), or privileged with /host writable (sysadmin).
NODE_PROFILES = ("node", "sysadmin")


@dataclass(frozen=True)
class WorkloadRef:
    """Every running pod of a Kubernetes workload, found through its own selector."""

    kind: str                       # deployments, statefulsets, daemonsets, replicasets, jobs
    name: str
    container: str | None = None
    namespace: str | None = None
    runtime: str = ""
    noun = "pods"

    def __str__(self) -> str:
        return f"{WORKLOAD_SHORT[self.kind]}/{self.name}"


@dataclass(frozen=True)
class SelectorRef:
    """Pods matching a label selector (-l), in a namespace or in all of them."""

    selector: str
    container: str | None = None
    namespace: str | None = None
    all_namespaces: bool = False
    runtime: str = ""
    noun = "pods"

    def __str__(self) -> str:
        return f"-l {self.selector}"


@dataclass(frozen=True)
class NodeSetRef:
    """Nodes matching a label selector (-l SELECTOR --nodes): a node debugging pod on each,
    in `namespace` (or the context's)."""

    selector: str
    namespace: str | None = None
    runtime: str = ""
    noun = "nodes"

    def __str__(self) -> str:
        return f"-l {self.selector} --nodes"


@dataclass(frozen=True)
class ContainerSetRef:
    """Containers on a container engine chosen by labels (--filter label=K=V, or a Compose
    project and service, which are labels too)."""

    labels: tuple[str, ...]         # "K=V" or "K"
    runtime: str = ""
    description: str = ""
    scheme: str = ""                # how its members are written (ContainerRef.scheme)
    noun = "containers"

    def __str__(self) -> str:
        return self.description or " ".join(f"label={label}" for label in self.labels)


TargetRef = Union[ContainerRef, PodRef, NodeRef, ImageRef]
ManyRef = Union[WorkloadRef, SelectorRef, NodeSetRef, ContainerSetRef]

WORKLOAD_KINDS = {
    "deploy": "deployments", "deployment": "deployments", "deployments": "deployments",
    "sts": "statefulsets", "statefulset": "statefulsets", "statefulsets": "statefulsets",
    "ds": "daemonsets", "daemonset": "daemonsets", "daemonsets": "daemonsets",
    "rs": "replicasets", "replicaset": "replicasets", "replicasets": "replicasets",
    "job": "jobs", "jobs": "jobs",
}
WORKLOAD_SHORT = {"deployments": "deploy", "statefulsets": "sts", "daemonsets": "ds", "replicasets": "rs",
                  "jobs": "job"}
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
# Compose names projects [a-z0-9][a-z0-9_-]* and services [a-zA-Z0-9._-]+.
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SELECTOR_TERM = re.compile(r"^!?[A-Za-z0-9./_-]+(\s*(=|==|!=)\s*[A-Za-z0-9._-]*|\s+(in|notin)\s+\([A-Za-z0-9._,\s-]*\))?$")


def parse_many(ref: str | None, syntax: TargetSyntax, *, namespace: str | None = None,
               container: str | None = None, selector: str | None = None, all_namespaces: bool = False,
               filters: tuple[str, ...] = (), filter_runtime: str | None = None,
               nodes: bool = False) -> ManyRef | None:
    """A reference that names many targets, or None when `ref` names one (parse_target).
    deploy/NAME sts/NAME ds/NAME rs/NAME job/NAME; -l SELECTOR [--all-namespaces];
    --filter label=K=V [--runtime NAME]; compose/PROJECT[/SERVICE] (SCHEME://compose/... too).
    A TARGET together with -l or --filter is refused: neither may quietly become the other."""
    chosen = [bool(ref), selector is not None, bool(filters)]
    if sum(chosen) > 1:
        raise InvalidInput("give one of: a TARGET, -l/--selector, or --filter")
    if filter_runtime is not None and not filters:
        raise InvalidInput("--runtime goes with --filter (a TARGET names its own runtime: SCHEME://NAME)")
    if all_namespaces and selector is None:
        raise InvalidInput("--all-namespaces goes with -l/--selector")
    if nodes:
        if selector is None:
            raise InvalidInput("--nodes goes with -l/--selector: the nodes whose labels match it")
        if all_namespaces or container is not None:
            raise InvalidInput("--all-namespaces and --container apply to pods, not to --nodes")
        if syntax.pods is None:
            raise InvalidInput("--nodes needs a runtime with pods, and none is registered")
        check_selector(selector)
        if namespace is not None:
            check_k8s_name("namespace", namespace, selector, label=True)
        return NodeSetRef(selector=selector, namespace=namespace, runtime=syntax.pods)
    if all_namespaces and namespace:
        raise InvalidInput("--all-namespaces and --namespace contradict each other")
    if selector is not None:
        if syntax.pods is None:
            raise InvalidInput("-l/--selector needs a runtime with pods, and none is registered")
        check_selector(selector)
        if container is not None:
            check_k8s_name("container", container, selector, label=True)
        if namespace is not None:
            check_k8s_name("namespace", namespace, selector, label=True)
        return SelectorRef(selector=selector, container=container, namespace=namespace, all_namespaces=all_namespaces,
                           runtime=syntax.pods)
    if filters:
        labels = []
        for item in filters:
            key, sep, value = item.partition("=")
            if key != "label" or not sep or not value:
                raise InvalidInput(f"invalid --filter {item!r}: use label=KEY or label=KEY=VALUE")
            check_label(value.partition("=")[0], item)
            labels.append(value)
        runtime = filter_runtime or syntax.bare
        if runtime not in syntax.label_sets:
            raise InvalidInput(f"--filter needs a container runtime: --runtime {' or '.join(syntax.label_sets)}")
        if namespace is not None or container is not None:
            raise InvalidInput(f"--namespace and --container apply to {syntax.title(syntax.pods or 'pod')} targets, "
                               f"not to --filter")
        scheme = syntax.scheme_of(runtime)
        return ContainerSetRef(labels=tuple(labels), runtime=runtime, scheme=scheme,
                               description=(f"{runtime}: " if scheme else "")
                               + " ".join(f"label={label}" for label in labels))
    if not ref:
        return None
    runtime, text = syntax.bare, ref
    for scheme, owner in syntax.container_schemes:
        if text.startswith(scheme):
            runtime, text = owner, text[len(scheme):]
            break
    if text.startswith("compose/") and runtime in syntax.label_sets:
        parts = text.split("/")[1:]
        if len(parts) not in (1, 2) or not all(parts):
            raise InvalidInput(f"invalid target {ref!r}: expected compose/PROJECT[/SERVICE]")
        for part in parts:
            if not _LABEL_VALUE.match(part):
                raise InvalidInput(f"invalid target {ref!r}: {part!r} is not a Compose project or service name")
        if namespace is not None or container is not None:
            raise InvalidInput(f"--namespace and --container apply to {syntax.title(syntax.pods or 'pod')} targets, "
                               f"not to compose/")
        labels = [f"{COMPOSE_PROJECT}={parts[0]}"] + ([f"{COMPOSE_SERVICE}={parts[1]}"] if len(parts) == 2 else [])
        return ContainerSetRef(labels=tuple(labels), runtime=runtime, description=ref,
                               scheme=syntax.scheme_of(runtime))
    kind, sep, rest = ref.partition("/")
    if sep and kind in WORKLOAD_KINDS and syntax.pods is not None:
        if not rest or "/" in rest:
            raise InvalidInput(f"invalid target {ref!r}: expected {kind}/NAME")
        check_k8s_name(kind, rest, ref)
        if namespace:
            check_k8s_name("namespace", namespace, ref, label=True)
        if container:
            check_k8s_name("container", container, ref, label=True)
        return WorkloadRef(kind=WORKLOAD_KINDS[kind], name=rest, container=container, namespace=namespace,
                           runtime=syntax.pods)
    return None


def names_a_pod(text: str) -> bool:
    """Whether `text` is written as a pod (pod/NAME..., k8s://...), syntax checks aside."""
    return text.startswith(POD_SCHEME) or (text.partition("/")[0] in POD_KINDS and "/" in text)


def names_a_node(text: str) -> bool:
    """Whether `text` is written as a node (node/NAME)."""
    return text.partition("/")[0] in NODE_KINDS and "/" in text


def check_selector(selector: str) -> str:
    """Kubernetes' label selector syntax: terms separated by commas (=, ==, !=, in, notin, !key)."""
    if not selector.strip():
        raise InvalidInput("-l/--selector must not be empty")
    depth, terms, current = 0, [], ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    for term in terms:
        if not _SELECTOR_TERM.match(term.strip()):
            raise InvalidInput(f"invalid label selector {selector!r} (at {term.strip()!r})")
    return selector


def check_label(key: str, where: str) -> str:
    if not key or len(key) > 316 or not _LABEL_KEY.match(key):
        raise InvalidInput(f"invalid label key {key!r} in {where!r}")
    return key


def check_k8s_name(kind: str, value: str, ref: str, *, label: bool = False) -> str:
    """Namespaces and container names are DNS labels (63, no dots); pods are DNS subdomains."""
    pattern, limit = (_DNS_LABEL, 63) if label else (_DNS_NAME, 253)
    if not value or len(value) > limit or not pattern.match(value):
        raise InvalidInput(f"invalid {kind} name {value!r} in target {ref!r}")
    return value


def parse_target(ref: str, syntax: TargetSyntax, *, namespace: str | None = None,
                 container: str | None = None) -> TargetRef:
    """-n/--namespace and -c/--container fill in what the reference leaves out; a
    contradiction between the two is an error rather than a silent choice."""
    ref = (ref or "").strip()
    if not ref:
        raise InvalidInput("no target given")
    if namespace is not None:
        check_k8s_name("namespace", namespace, ref, label=True)
    if container is not None:
        check_k8s_name("container", container, ref, label=True)
    if syntax.pods is not None and ref.startswith(POD_SCHEME):
        parts = ref[len(POD_SCHEME):].split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidInput(f"invalid target {ref!r}: expected {POD_SCHEME}NAMESPACE/POD[/CONTAINER]")
        ns, pod, ctr = parts[0], parts[1], (parts[2] if len(parts) == 3 else None)
        if namespace and namespace != ns:
            raise InvalidInput(f"target {ref!r} names namespace {ns!r} but --namespace is {namespace!r}")
        return _pod(ref, pod, ctr, ns, container, syntax.pods)
    if syntax.pods is not None and names_a_node(ref):
        name = ref.split("/", 1)[1]
        if not name or "/" in name:
            raise InvalidInput(f"invalid target {ref!r}: expected node/NAME")
        if container is not None:
            raise InvalidInput(f"--container applies to pods, not to a node ({ref!r})")
        check_k8s_name("node", name, ref)
        return NodeRef(node=name, namespace=namespace, runtime=syntax.pods)
    if syntax.pods is not None and names_a_pod(ref):
        parts = ref.split("/", 1)[1].split("/")
        if len(parts) not in (1, 2) or not all(parts):
            raise InvalidInput(f"invalid target {ref!r}: expected pod/NAME[/CONTAINER]")
        return _pod(ref, parts[0], parts[1] if len(parts) == 2 else None, namespace, container, syntax.pods)
    runtime = syntax.bare
    for scheme, owner in syntax.container_schemes:
        if ref.startswith(scheme):
            runtime, ref = owner, ref[len(scheme):]
            break
    if runtime is None:
        raise InvalidInput(f"invalid target {ref!r}: write SCHEME://NAME ({', '.join(syntax.schemes)})")
    title, pods = syntax.title(runtime), syntax.title(syntax.pods or "pod")
    if namespace:
        raise InvalidInput(f"--namespace applies to {pods} targets (pod/NAME); this is a {runtime} target")
    if container:
        raise InvalidInput(f"--container applies to {pods} targets (pod/NAME/CONTAINER); this is a {runtime} "
                           f"target")
    if ref.startswith(IMAGE_PREFIX):
        image = ref[len(IMAGE_PREFIX):]
        if not _IMAGE_REF.match(image) or len(image) > 512:
            raise InvalidInput(f"invalid image reference {image!r}: expected image/[REGISTRY/]NAME[:TAG][@DIGEST]")
        return ImageRef(image, runtime=runtime, scheme=syntax.scheme_of(runtime))
    if not _CONTAINER_NAME.match(ref) or len(ref) > 255:
        raise InvalidInput(f"invalid {title} container name or ID {ref!r}")
    return ContainerRef(ref.lstrip("/"), runtime=runtime, scheme=syntax.scheme_of(runtime))


def _pod(ref: str, pod: str, ctr: str | None, ns: str | None, flag_ctr: str | None, runtime: str) -> PodRef:
    if flag_ctr and ctr and flag_ctr != ctr:
        raise InvalidInput(f"target {ref!r} names container {ctr!r} but --container is {flag_ctr!r}")
    check_k8s_name("pod", pod, ref)
    ctr = ctr or flag_ctr
    if ctr:
        check_k8s_name("container", ctr, ref, label=True)
    if ns:
        check_k8s_name("namespace", ns, ref, label=True)
    return PodRef(pod=pod, container=ctr, namespace=ns, runtime=runtime)
