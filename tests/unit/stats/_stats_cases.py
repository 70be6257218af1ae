"""The shared table of analysis inputs that every reference comparison runs over."""

from __future__ import annotations

import numpy as np
from _stats_reference import Case, FloatArray, binomial_case, moment_case, sample_case

_rng = np.random.default_rng(20240611)


def _lognormal(n: int, mu: float, sigma: float) -> FloatArray:
    return _rng.lognormal(mu, sigma, n)


def _zero_inflated_revenue(n: int, buy_rate: float, mu: float) -> FloatArray:
    buys = _rng.random(n) < buy_rate
    return np.where(buys, _rng.lognormal(mu, 1.2, n), 0.0)


BINOMIAL_CASES: list[Case] = [
    binomial_case("basic", [(1000, 100), (1000, 120)]),
    binomial_case("small_samples", [(10, 3), (12, 7)]),
    binomial_case("tiny_n2_vs_n3", [(2, 1), (3, 1)]),
    binomial_case("rare_events", [(100_000, 3), (100_000, 9)]),
    binomial_case("near_full_conversion", [(1000, 999), (1000, 990)]),
    binomial_case("high_conversion", [(5000, 4500), (5000, 4600)]),
    binomial_case("negative_lift", [(20_000, 2_000), (20_000, 1_850)]),
    binomial_case("huge_effect_tiny_p", [(200_000, 2_000), (200_000, 2_300)]),
    binomial_case("overwhelming_effect", [(1_000_000, 10_000), (1_000_000, 20_000)]),
    binomial_case("ten_million_per_arm", [(10_000_000, 500_000), (10_000_000, 501_500)]),
    binomial_case("ten_million_unbalanced", [(10_000_000, 1_000_000), (2_000_000, 200_900)], [0.8, 0.2]),
    binomial_case("identical_arms", [(4000, 400), (4000, 400)]),
    binomial_case("srm_violation", [(5000, 500), (5400, 560)]),
    binomial_case("three_arms", [(3000, 300), (3100, 330), (2950, 280)]),
    binomial_case(
        "four_arms_unbalanced_weights",
        [(5000, 250), (1000, 60), (2500, 110), (1500, 80)],
        [0.5, 0.1, 0.25, 0.15],
    ),
    binomial_case("five_arms", [(800, 80), (810, 95), (790, 70), (805, 82), (800, 120)]),
    binomial_case("five_arms_srm", [(1000, 100), (1000, 100), (1000, 100), (1000, 100), (1200, 120)]),
]

MEAN_CASES: list[Case] = [
    sample_case("revenue_lognormal_small", [_lognormal(30, 1.0, 1.0), _lognormal(35, 1.1, 1.0)]),
    sample_case("revenue_lognormal_medium", [_lognormal(2000, 2.0, 1.5), _lognormal(2100, 2.05, 1.5)]),
    sample_case(
        "revenue_zero_inflated_skewed",
        [_zero_inflated_revenue(50_000, 0.04, 3.0), _zero_inflated_revenue(50_000, 0.045, 3.0)],
    ),
    sample_case("heavy_tail_pareto", [_rng.pareto(1.5, 10_000) + 1, _rng.pareto(1.5, 9_000) + 1.05]),
    sample_case("negative_mean", [_rng.normal(-5.0, 3.0, 500), _rng.normal(-4.6, 3.5, 450)]),
    sample_case("two_and_three_users", [np.array([1.0, 3.0]), np.array([2.0, 5.0, 4.0])]),
    sample_case(
        "three_arms_unbalanced_weights",
        [_lognormal(4000, 1.0, 0.8), _lognormal(1000, 1.05, 0.8), _lognormal(2000, 0.95, 0.8)],
        [0.5, 0.2, 0.3],
    ),
    moment_case("ten_million_per_arm", [(10_000_000, 12.5, 40.0), (10_000_000, 12.56, 41.0)]),
    moment_case("ten_million_unbalanced", [(10_000_000, 3.2, 9.0), (1_000_000, 3.25, 9.5)]),
    moment_case(
        "five_arms_mean",
        [
            (20_000, 50.0, 80.0),
            (20_100, 51.0, 82.0),
            (19_900, 49.0, 79.0),
            (20_000, 50.5, 120.0),
            (20_050, 53.0, 85.0),
        ],
    ),
]

ALL_CASES: list[Case] = BINOMIAL_CASES + MEAN_CASES
COMPARISONS = [pair for case in ALL_CASES for pair in case.comparisons]


def comparison_id(pair: tuple[Case, int]) -> str:
    case, index = pair
    return f"{case.metric_type}-{case.name}-t{index}"
