import pytest

from debugkit.core.errors import InvalidInput
from debugkit.core.targets import ContainerRef as DockerTarget, PodRef as KubeTarget, parse_target


@pytest.mark.parametrize("ref,expected", [
    ("web", DockerTarget("web")),
    ("docker://web-1", DockerTarget("web-1")),
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
