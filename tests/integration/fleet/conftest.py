"""Fleets against the real components: the Kubernetes test node (its session fixture is
shared with tests/integration/kubernetes) and the real Docker and Podman engines."""
from tests.integration.kubernetes.conftest import k8s_cluster  # noqa: F401 - the session fixture
