"""Regenerate tests/golden/post_strat_vectors.json: post-stratified effect estimates computed by
GrowthBook's gbstats (`EffectMomentsPostStratification`, count metrics: ProportionStatistic and
SampleMeanStatistic cells) for tests/unit/stats/test_post_stratification.py.

The post-stratification code is in the growthbook repository's packages/stats, not in the PyPI release
of gbstats, so it runs from a checkout of that repository, in a throwaway virtual environment:

    git clone https://github.com/growthbook/growthbook /tmp/growthbook   (the run below: 8f1db44569)
    python3 -m venv /tmp/gbvenv && /tmp/gbvenv/bin/pip install numpy scipy pandas pydantic
    PYTHONPATH=/tmp/growthbook/packages/stats /tmp/gbvenv/bin/python tests/golden/make_post_strat_vectors.py

(the run that produced the committed file: growthbook 8f1db44569, numpy 2.4.6, scipy 1.17.1, pydantic
2.14.4, Python 3.11). Inputs are random but seeded, so rerunning it must not change the file. Every
number is written with repr, so the floats read back exactly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from gbstats.models.statistics import ProportionStatistic, SampleMeanStatistic
from gbstats.models.tests import EffectMomentsConfig, EffectMomentsPostStratification

OUT = Path(__file__).with_name("post_strat_vectors.json")


def _proportion_cell(rng: random.Random, n_a: int, n_b: int, p: float, lift: float) -> dict[str, Any]:
    conv_a = sum(rng.random() < p for _ in range(n_a))
    conv_b = sum(rng.random() < min(1.0, p * (1 + lift)) for _ in range(n_b))
    return {
        "a": {"n": n_a, "sum": conv_a, "sum_squares": conv_a},
        "b": {"n": n_b, "sum": conv_b, "sum_squares": conv_b},
    }


def _mean_arm(rng: random.Random, n: int, mu: float, sd: float) -> dict[str, Any]:
    values = [max(0.0, rng.gauss(mu, sd)) for _ in range(n)]
    return {"n": n, "sum": sum(values), "sum_squares": sum(v * v for v in values)}


def _gbstats(kind: str, cells: list[dict[str, Any]], relative: bool) -> dict[str, Any]:
    def stat(arm: dict[str, Any]) -> Any:
        if kind == "proportion":
            return ProportionStatistic(n=arm["n"], sum=arm["sum"])
        return SampleMeanStatistic(n=arm["n"], sum=arm["sum"], sum_squares=arm["sum_squares"])

    pairs = [(stat(cell["a"]), stat(cell["b"])) for cell in cells]
    config = EffectMomentsConfig(difference_type="relative" if relative else "absolute")
    result = EffectMomentsPostStratification(pairs, config).compute_result()
    return {
        "estimate": float(result.point_estimate),
        "se": float(result.standard_error),
        "error": result.error_message,
    }


def cases() -> list[dict[str, Any]]:
    rng = random.Random(20261207)
    out: list[dict[str, Any]] = []
    for index in range(24):
        kind = "proportion" if index % 2 == 0 else "mean"
        strata = rng.choice([1, 2, 3, 5, 8])
        cells = []
        for _ in range(strata):
            n_a, n_b = rng.randint(5, 400), rng.randint(5, 400)
            if kind == "proportion":
                cells.append(_proportion_cell(rng, n_a, n_b, rng.uniform(0.02, 0.6), rng.uniform(-0.2, 0.3)))
            else:
                mu = rng.uniform(1, 50)
                cells.append(
                    {"a": _mean_arm(rng, n_a, mu, mu / 2), "b": _mean_arm(rng, n_b, mu * 1.1, mu / 2)}
                )
        out.append({"name": f"random_{kind}_{index}", "kind": kind, "cells": cells})
    # A cell without variance in one arm (merged into the largest), and one left with a single cell.
    out.append(
        {
            "name": "merged_zero_variance_cell",
            "kind": "proportion",
            "cells": [
                {
                    "a": {"n": 300, "sum": 60, "sum_squares": 60},
                    "b": {"n": 310, "sum": 75, "sum_squares": 75},
                },
                {
                    "a": {"n": 200, "sum": 20, "sum_squares": 20},
                    "b": {"n": 190, "sum": 30, "sum_squares": 30},
                },
                {"a": {"n": 4, "sum": 0, "sum_squares": 0}, "b": {"n": 5, "sum": 1, "sum_squares": 1}},
            ],
        }
    )
    out.append(
        {
            "name": "single_viable_cell",
            "kind": "proportion",
            "cells": [
                {
                    "a": {"n": 500, "sum": 50, "sum_squares": 50},
                    "b": {"n": 480, "sum": 70, "sum_squares": 70},
                },
                {"a": {"n": 3, "sum": 3, "sum_squares": 3}, "b": {"n": 2, "sum": 0, "sum_squares": 0}},
            ],
        }
    )
    out.append(
        {
            "name": "zero_baseline",
            "kind": "proportion",
            "cells": [
                {"a": {"n": 100, "sum": 0, "sum_squares": 0}, "b": {"n": 100, "sum": 5, "sum_squares": 5}},
                {"a": {"n": 100, "sum": 0, "sum_squares": 0}, "b": {"n": 100, "sum": 7, "sum_squares": 7}},
            ],
        }
    )
    for case in out:
        case["relative"] = _gbstats(case["kind"], case["cells"], True)
        case["absolute"] = _gbstats(case["kind"], case["cells"], False)
    return out


if __name__ == "__main__":
    OUT.write_text(
        json.dumps({"source": "growthbook/growthbook@8f1db44569 packages/stats", "cases": cases()}, indent=1)
        + "\n"
    )
    print(f"wrote {OUT}")
