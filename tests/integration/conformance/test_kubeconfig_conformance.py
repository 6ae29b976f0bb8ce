"""debugkit connects as kubectl does: every case of kube_cases runs kubectl and debugkit
against the same recording fakes, and what arrived must be the same, or differ exactly as
the case's documented Difference says (the documentation must say so too)."""
from __future__ import annotations

import pytest

from tests.helpers import REPO
from tests.integration.conformance.cases.kube_cases import CASES, FIELDS


def compare(case, result: dict, fields=FIELDS, *, oracle_name: str = "kubectl") -> None:
    oracle, ours = result["oracle"], result["debugkit"]
    context = (f"\n--- {oracle_name}: {oracle['outcome']}\n{ {k: oracle.get(k) for k in fields} }"
               f"\n--- debugkit: {ours['outcome']}\n{ {k: ours.get(k) for k in fields} }")
    if case.reached_expected is not None:
        assert oracle["reached"] is case.reached_expected, "the oracle did not behave as the case says" + context
    differing = set(case.differs.expect) if case.differs else set()
    for field in fields:
        if field in differing:
            assert ours.get(field) == case.differs.expect[field], f"{field}: debugkit's documented behaviour" + context
        else:
            assert ours.get(field) == oracle.get(field), f"{field} differs from {oracle_name}" + context
    if case.differs:
        assert any(oracle.get(f) != case.differs.expect[f] for f in differing), \
            f"{oracle_name} no longer differs: make this case an equality" + context
        page = (REPO / case.differs.page).read_text()
        assert case.differs.doc in " ".join(page.split()), f"{case.differs.page} does not document: {case.differs.doc}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_debugkit_connects_as_kubectl_does(case, run_case, kubectl):
    compare(case, run_case("kube", case.id, oracle=kubectl))
