"""The stratified assignment contract (abtest.contract.blocks) against its golden vectors, and the
property every prefix of a stratum's sequence keeps: within one block of the target shares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from abtest.contract.blocks import block_order, block_size, block_slots, stratified_variant
from abtest.limits import MAX_BLOCK_SIZE

VECTORS = json.loads((Path(__file__).parents[1] / "golden" / "block_vectors.json").read_text("utf-8"))


@pytest.mark.parametrize("case", VECTORS["cases"])
def test_golden_vectors(case: dict) -> None:
    size = block_size(case["weights"], MAX_BLOCK_SIZE)
    assert size == case["size"]
    assert block_slots(case["weights"], size) == case["slots"]
    for block, order in enumerate(case["orders"]):
        assert block_order(case["salt"], case["stratum"], block, size) == order
    assert [
        stratified_variant(case["salt"], case["stratum"], k, case["slots"])
        for k in range(len(case["variants"]))
    ] == case["variants"]


@pytest.mark.parametrize("weights", VECTORS["invalid_weights"])
def test_weights_without_a_small_block_are_refused(weights: list[float]) -> None:
    assert block_size(weights, MAX_BLOCK_SIZE) is None


@given(
    salt=st.text(min_size=1, max_size=20),
    stratum=st.text(max_size=20),
    design=st.sampled_from([[0.5, 0.5], [0.25, 0.75], [0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.9]]),
)
def test_every_prefix_is_within_one_block_of_the_target(salt: str, stratum: str, design: list[float]) -> None:
    size = block_size(design, MAX_BLOCK_SIZE)
    assert size is not None
    slots = block_slots(design, size)
    counts = [0] * len(design)
    for k in range(3 * size):
        counts[stratified_variant(salt, stratum, k, slots)] += 1
        for i, weight in enumerate(design):
            assert abs(counts[i] - weight * (k + 1)) < size
        if (k + 1) % size == 0:  # a completed block holds every variant exactly in proportion
            assert counts == [round(w * (k + 1)) for w in design]
