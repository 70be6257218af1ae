"""The assignment contract of bandits (tests/golden/bandit_vectors.json): which weights a new user is
bucketed with, which period the assignment records, and that a stored assignment wins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from abtest.domain.bandits import Allocation, BanditServing
from abtest.domain.serving import AssignmentService
from tests.unit.fakes import FakeStore, make_experiment

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CASES = json.loads((GOLDEN / "bandit_vectors.json").read_text(encoding="utf-8"))["cases"]
BANDIT = Allocation(type="bandit", metric="m", analysis="conversion", direction="higher", period_hours=1)


def test_the_vectors_are_what_the_generator_writes() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_bandit_vectors", GOLDEN / "make_bandit_vectors.py")
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    on_disk = (GOLDEN / "bandit_vectors.json").read_text(encoding="utf-8")
    assert generator.render() == on_disk, "regenerate: python tests/golden/make_bandit_vectors.py"


def test_the_vectors_cover_every_rule() -> None:
    assert {c["stored_variant_index"] is None for c in CASES} == {True, False}
    assert {c["bandit"]["weights"] is None for c in CASES} == {True, False}
    assert any(c["expected_variant_index"] is None for c in CASES)  # outside the traffic
    # The current weights decide: some new users land in the third arm whom the starting weights
    # (0.34, 0.33, 0.33) would have put in the first or second.
    moved = [
        c
        for c in CASES
        if c["bandit"]["weights"] == [0.01, 0.01, 0.98]
        and c["stored_variant_index"] is None
        and c["traffic_allocation"] == 1.0
        and c["expected_variant_index"] == 2
        and c["hash"] / 2**32 < 0.67
    ]
    assert moved


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bandit_vector(case: dict[str, Any]) -> None:
    experiment = make_experiment(
        weights=tuple(case["variant_weights"]), traffic=case["traffic_allocation"]
    ).model_copy(
        update={
            "salt": case["salt"],
            "allocation": BANDIT,
            "bandit": BanditServing(period=case["bandit"]["period"], weights=case["bandit"]["weights"]),
        }
    )
    store = FakeStore()
    store.add(experiment)
    user = case["user_id"]
    if case["stored_variant_index"] is not None:
        store.assignments[(experiment.id, user)] = experiment.variants[case["stored_variant_index"]].id
        store.members[(experiment.surface, user)] = experiment.id
    service = AssignmentService(store, store, experiment_ttl=3600, catalog_ttl=3600)
    served = service.assign(experiment.id, user)
    index = None if served.variant is None else [v.id for v in experiment.variants].index(served.variant.id)
    assert index == case["expected_variant_index"]
    assert store.periods.get((experiment.id, user)) == case["expected_period_recorded"]
