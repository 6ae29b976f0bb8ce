from __future__ import annotations

import pytest

from tests.helpers import assert_no_leaked_sidecars

pytestmark = pytest.mark.docker


@pytest.fixture(autouse=True)
def no_leaked_sidecars(docker_client, started_targets):
    """Every test must leave no debugkit sidecar behind: checked by label after each one."""
    yield
    assert_no_leaked_sidecars(docker_client, started_targets)
