"""debugkit finds and speaks to a Docker engine as the docker CLI does: every case of
docker_cases runs the docker CLI and debugkit against the same recording fake engines, and
what arrived must be the same, or differ exactly as the case's documented Difference says."""
from __future__ import annotations

import pytest

from tests.integration.conformance.cases.docker_cases import CASES, FIELDS
from tests.integration.conformance.test_kubeconfig_conformance import compare


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_debugkit_reaches_the_engine_the_docker_cli_reaches(case, run_case, docker_cli):
    compare(case, run_case("docker", case.id, oracle=docker_cli), FIELDS, oracle_name="the docker CLI")
