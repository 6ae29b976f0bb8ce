import pytest

import functools

from debugkit import runtimes
from debugkit.core.errors import InvalidInput
from debugkit.core.targets import ContainerRef, PodRef, TargetSyntax
from debugkit.core.targets import parse_target as parse_with

DockerTarget = functools.partial(ContainerRef, runtime="docker")
KubeTarget = functools.partial(PodRef, runtime="kubernetes")


def parse_target(ref, **kwargs):
    return parse_with(ref, runtimes.syntax(), **kwargs)


@pytest.mark.parametrize("ref,expected", [
    ("web", DockerTarget("web")),
    ("docker://web-1", DockerTarget("web-1")),
    ("podman://web", ContainerRef("web", runtime="podman", scheme="podman://")),
    ("3f2a9c", DockerTarget("3f2a9c")),
    ("pod/api", KubeTarget(pod="api")),
    ("pod/api/app", KubeTarget(pod="api", container="app")),
    ("k8s://prod/api/app", KubeTarget(pod="api", container="app", namespace="prod")),
    ("k8s://prod/api", KubeTarget(pod="api", namespace="prod")),
])
def test_parse(ref, expected):
    assert parse_target(ref) == expected


def test_flags_fill_in_what_the_reference_leaves_out():
    assert parse_target("pod/api", namespace="prod", container="app") == KubeTarget("api", "app", "prod")


@pytest.mark.parametrize("ref,kwargs,message", [
    ("", {}, "no target"),
    ("pod/", {}, "pod/NAME"),
    ("pod/a/b/c", {}, "pod/NAME"),
    ("k8s://ns", {}, "k8s://NAMESPACE"),
    ("pod/API", {}, "invalid pod name"),
    ("k8s://a/b/c", {"namespace": "other"}, "--namespace"),
    ("pod/a/b", {"container": "c"}, "--container"),
    ("web", {"namespace": "prod"}, "Kubernetes targets"),
    ("bad name", {}, "invalid Docker"),
])
def test_bad_references_are_rejected(ref, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        parse_target(ref, **kwargs)


def test_the_syntax_comes_from_the_registry_not_from_core():
    """core knows the shapes; which runtime owns a scheme, and whose bare names are, is the
    registry's: a syntax without a runtime for pods has no pods."""
    own = TargetSyntax(container_schemes=(("lxc://", "lxc"),), bare="lxc", titles=(("lxc", "LXC"),))
    assert parse_with("lxc://web", own) == ContainerRef("web", runtime="lxc", scheme="")
    assert parse_with("web", own) == ContainerRef("web", runtime="lxc")
    with pytest.raises(InvalidInput, match="invalid LXC container name"):
        parse_with("pod/web", own)
    assert str(parse_target("podman://web")) == "podman://web" and str(parse_target("docker://web")) == "web"
