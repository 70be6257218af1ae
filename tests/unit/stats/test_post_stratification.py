"""Post-stratified estimates against gbstats' post-stratification (tests/golden/post_strat_vectors.json,
made by tests/golden/make_post_strat_vectors.py from the growthbook repository's packages/stats)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from abtest.stats.post_stratification import (
    ZERO_BASELINE,
    ZERO_VARIANCE,
    CellStat,
    post_stratified,
    post_stratified_block,
)

VECTORS = json.loads((Path(__file__).parents[2] / "golden" / "post_strat_vectors.json").read_text())
ERRORS = {"ZERO_NEGATIVE_VARIANCE": ZERO_VARIANCE}


def _cells(case: dict) -> list[tuple[CellStat, CellStat]]:
    proportion = case["kind"] == "proportion"
    return [
        tuple(CellStat(a["n"], a["sum"], a["sum_squares"], proportion) for a in (cell["a"], cell["b"]))  # type: ignore[misc]
        for cell in case["cells"]
    ]


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["name"] for c in VECTORS["cases"]])
@pytest.mark.parametrize("difference", ["relative", "absolute"])
def test_matches_gbstats_within_1e_6(case: dict, difference: str) -> None:
    expected = case[difference]
    got = post_stratified(_cells(case), relative=difference == "relative")
    if expected["error"] is not None:
        assert got.error == ERRORS.get(expected["error"], ZERO_BASELINE)
        return
    assert got.error is None
    assert got.estimate == pytest.approx(expected["estimate"], abs=1e-6, rel=1e-9)
    assert got.se == pytest.approx(expected["se"], abs=1e-6, rel=1e-9)


def test_narrower_than_plain_on_a_skewed_population() -> None:
    """Strata with very different baselines: stratifying removes their spread from the variance."""
    rng = random.Random(7)
    cells = []
    for base in (0.02, 0.2, 0.6):
        arms = []
        for lift in (0.0, 0.1):
            n = 2000
            conv = sum(rng.random() < base * (1 + lift) for _ in range(n))
            arms.append(CellStat(n, conv, conv, proportion=True))
        cells.append((arms[0], arms[1]))
    stratified = post_stratified(cells, relative=False)
    total_a = CellStat(sum(c[0].n for c in cells), sum(c[0].sum for c in cells), 0, True)
    total_b = CellStat(sum(c[1].n for c in cells), sum(c[1].sum for c in cells), 0, True)
    plain = post_stratified([(total_a, total_b)], relative=False)
    assert stratified.error is None
    assert plain.error is None
    assert stratified.se < plain.se


def test_block_has_a_normal_interval() -> None:
    cells = [(CellStat(100, 10, 10, True), CellStat(100, 20, 20, True))] * 2
    block = post_stratified_block(post_stratified(cells, relative=True), 0.05)
    assert block.ci is not None
    assert block.estimate is not None
    assert block.se is not None
    assert block.ci[1] - block.estimate == pytest.approx(1.959963984540054 * block.se)
    assert block.p_value is not None
    assert 0 < block.p_value < 1
    assert math.isfinite(block.p_value)
