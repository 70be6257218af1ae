"""Regenerate tests/golden/ssrm_vectors.json: reference p-values of the sequential SRM test computed by
Optimizely's `ssrm-test` 0.1.5 (the public reference implementation), for
tests/unit/stats/test_sequential_srm.py.

ssrm-test cannot live in the project's environment: it requires numpy<2 and toolz<0.11 and uses `np.Inf`,
which numpy 2 removed. So it runs in a throwaway virtual environment of its own:

    python3 -m venv /tmp/ssrm && /tmp/ssrm/bin/pip install ssrm-test==0.1.5
    /tmp/ssrm/bin/python tests/golden/make_ssrm_vectors.py

(the run that produced the committed file: ssrm-test 0.1.5, numpy 1.26.4, scipy 1.17.1, Python 3.11).
The inputs are random but seeded, so rerunning it must not change the file. Every number is written with
repr, so the floats read back exactly.

Cases with several periods (expected shares that change) have no single ssrm-test call: each period is
an ssrm-test run of its own on that period's checks and shares (`sequential_bayes_factors`), and the
reference p-value after a check is the running minimum of 1 / (product of the closed periods' final Bayes
factors times the current period's Bayes factor), capped at 1, as ssrm-test caps its own.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
from ssrm_test import ssrm_test

OUT = Path(__file__).with_name("ssrm_vectors.json")


def _draw(rng: random.Random, users: int, shares: list[float]) -> list[int]:
    """Multinomial counts of `users` over `shares`, from the seeded stdlib generator (exact ints)."""
    gen = np.random.default_rng(rng.randrange(2**32))
    return [int(n) for n in gen.multinomial(users, shares)]


def _tilt(shares: list[float], skew: float) -> list[float]:
    """The shares with variant 0 over-served by `skew` (relative), renormalised."""
    tilted = [p * (1 + skew) if i == 0 else p for i, p in enumerate(shares)]
    total = sum(tilted)
    return [p / total for p in tilted]


def _single(
    name: str, checks: list[list[int]], expected: list[float], concentration: float
) -> dict[str, Any]:
    p_values = ssrm_test.sequential_p_values(
        np.array(checks), np.array(expected), dirichlet_concentration=concentration
    )
    posteriors = ssrm_test.sequential_posteriors(
        np.array(checks), np.array(expected), dirichlet_concentration=concentration
    )
    return {
        "name": name,
        "periods": [{"expected": expected, "checks": checks}],
        "concentration": concentration,
        "p_values": [float(p) for p in p_values],
        "log_bayes_factors": [float(posterior["log_bayes_factor"]) for posterior in posteriors],
    }


def _multi(
    name: str, periods: list[tuple[list[float], list[list[int]]]], concentration: float
) -> dict[str, Any]:
    p_values: list[float] = []
    running = 1.0
    closed = 1.0
    for expected, checks in periods:
        factors = ssrm_test.sequential_bayes_factors(
            np.array(checks), np.array(expected), dirichlet_concentration=concentration
        )
        for factor in factors:
            running = min(running, 1.0 / (closed * float(factor)))
            p_values.append(running)
        closed *= float(factors[-1])
    return {
        "name": name,
        "periods": [{"expected": expected, "checks": checks} for expected, checks in periods],
        "concentration": concentration,
        "p_values": p_values,
    }


def cases() -> list[dict[str, Any]]:
    rng = random.Random(20261207)
    out: list[dict[str, Any]] = []

    def daily(shares: list[float], skew: float, days: int, per_day: int) -> list[list[int]]:
        served = _tilt(shares, skew)
        return [_draw(rng, rng.randint(per_day // 2, per_day * 3 // 2), served) for _ in range(days)]

    # A/A and skewed splits, two variants, daily checks.
    for i, skew in enumerate((0.0, 0.0, 0.01, 0.03, 0.1)):
        out.append(
            _single(f"two_50_50_skew_{skew}_{i}", daily([0.5, 0.5], skew, 30, 2_000), [0.5, 0.5], 10_000)
        )
    # Unequal shares, three to five variants.
    for shares, skew in (
        ([0.2, 0.3, 0.5], 0.0),
        ([0.2, 0.3, 0.5], 0.05),
        ([0.1, 0.1, 0.8], 0.02),
        ([0.25, 0.25, 0.25, 0.25], 0.0),
        ([0.4, 0.15, 0.15, 0.15, 0.15], 0.04),
    ):
        out.append(_single(f"k{len(shares)}_skew_{skew}", daily(shares, skew, 20, 5_000), shares, 10_000))
    # Twenty variants (the service's maximum): numpy sums these pairwise.
    twenty = [1 / 20] * 20
    out.append(_single("k20_equal", daily(twenty, 0.0, 15, 20_000), twenty, 10_000))
    out.append(_single("k20_skew", daily(twenty, 0.2, 15, 20_000), twenty, 10_000))
    # Other concentrations.
    for concentration in (100.0, 1_000.0, 100_000.0):
        out.append(
            _single(
                f"concentration_{concentration:g}",
                daily([0.5, 0.5], 0.02, 25, 3_000),
                [0.5, 0.5],
                concentration,
            )
        )
    # Large daily traffic (lgamma of tens of millions) and tiny traffic.
    out.append(_single("large_aa", daily([0.5, 0.5], 0.0, 30, 1_000_000), [0.5, 0.5], 10_000))
    out.append(_single("large_skew_0.002", daily([0.5, 0.5], 0.002, 30, 1_000_000), [0.5, 0.5], 10_000))
    out.append(_single("tiny", daily([0.5, 0.5], 0.0, 10, 6), [0.5, 0.5], 10_000))
    # Checks that saw nobody, first and in the middle.
    zeros = [[0, 0], [0, 0], *daily([0.5, 0.5], 0.05, 5, 10_000), [0, 0], *daily([0.5, 0.5], 0.05, 5, 10_000)]
    out.append(_single("with_empty_checks", zeros, [0.5, 0.5], 10_000))
    # One user per check (ssrm-test's unit-level use).
    units = [[1, 0] if rng.random() < 0.56 else [0, 1] for _ in range(400)]
    out.append(_single("unit_level", units, [0.5, 0.5], 10_000))
    # A single check.
    out.append(_single("single_check", [[5_210, 4_790]], [0.5, 0.5], 10_000))
    # A p-value so small that 1/BF underflows to 0.
    out.append(_single("overwhelming", [[600_000, 400_000], [600_000, 400_000]], [0.5, 0.5], 10_000))
    # Periods with different expected shares (a bandit reweighting).
    for skew in (0.0, 0.03):
        periods = [
            ([0.5, 0.5], daily([0.5, 0.5], skew, 7, 3_000)),
            ([0.7, 0.3], daily([0.7, 0.3], skew, 7, 3_000)),
            ([0.9, 0.1], daily([0.9, 0.1], skew, 7, 3_000)),
        ]
        out.append(_multi(f"periods_skew_{skew}", periods, 10_000))
    periods3 = [
        ([1 / 3, 1 / 3, 1 / 3], daily([1 / 3, 1 / 3, 1 / 3], 0.0, 5, 4_000)),
        ([0.2, 0.5, 0.3], daily([0.2, 0.5, 0.3], 0.04, 10, 4_000)),
    ]
    out.append(_multi("periods_k3", periods3, 10_000))
    return out


def main() -> None:
    # One case per line: small, and a regenerated file diffs case by case.
    lines = ",\n".join(json.dumps(case) for case in cases())
    OUT.write_text('{"generator": "ssrm-test 0.1.5", "cases": [\n' + lines + "\n]}\n")


if __name__ == "__main__":
    main()
