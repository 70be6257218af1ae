"""Capping (winsorization) of per-user totals, and the guardrails' one-sided non-inferiority test.

References: numpy winsorizes by hand; gbstats 0.8.0's one-sided t tests give the p-values; scipy's t
distribution gives the one-sided bounds (gbstats 0.8.0's lesser-side interval has a sign slip, fixed in
newer gbstats, so it is not used).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from gbstats.frequentist.tests import (
    FrequentistConfig,
    OneSidedTreatmentGreaterTTest,
    OneSidedTreatmentLesserTTest,
)
from gbstats.models.statistics import SampleMeanStatistic
from pydantic import ValidationError
from scipy import stats as scipy_stats

from abtest.stats import MeanStats, analyze, moments
from abtest.stats.capping import Capping, cap_value, capped_mean_stats, capped_ratio_stats
from abtest.stats.moments import NO_USERS, Moments
from abtest.stats.noninferiority import noninferiority_test
from abtest.stats.ratio import RatioStats
from tests.unit.stats._stats_reference import quiet


# -- capping ---------------------------------------------------------------------------------------------
def _whales(seed: int) -> list[list[float]]:
    """Three variants of per-user revenue: mostly zeros, a long tail, and a few huge totals."""
    rng = np.random.default_rng(seed)
    variants = []
    for n in (900, 1000, 950):
        totals = rng.lognormal(2.0, 1.0, n) * (rng.random(n) < 0.4)
        totals[rng.integers(0, n, 3)] = rng.uniform(5_000, 50_000, 3)
        variants.append([float(v) for v in totals])
    return variants


def _by_hand(totals: list[float], cap: float) -> MeanStats:
    capped = np.minimum(np.asarray(totals), cap)
    return MeanStats(users=len(capped), sum=float(capped.sum()), sum_squares=float((capped * capped).sum()))


def test_a_percentile_cap_is_the_pooled_percentile_and_winsorizes_as_by_hand() -> None:
    variants = _whales(1)
    capping = Capping(type="percentile", value=0.99)
    cap = cap_value(variants, capping)
    assert cap == pytest.approx(float(np.quantile(np.concatenate(variants), 0.99)), rel=1e-12)
    ours = capped_mean_stats(variants, capping)
    assert cap is not None
    for stats, totals in zip(ours, variants, strict=True):
        expected = _by_hand(totals, cap)
        assert stats.users == expected.users
        assert stats.sum == pytest.approx(expected.sum, rel=1e-12)
        assert stats.sum_squares == pytest.approx(expected.sum_squares, rel=1e-12)
    # So the mean result is the same as analysing hand-winsorized totals, and differs from the raw one.
    by_hand = [_by_hand(totals, cap) for totals in variants]
    capped_result, by_hand_result = analyze("mean", ours), analyze("mean", by_hand)
    for got, expected in zip(capped_result["comparisons"], by_hand_result["comparisons"], strict=True):
        for key in ("relative", "absolute"):
            assert got[key]["estimate"] == pytest.approx(expected[key]["estimate"], rel=1e-9)
            assert got[key]["ci"] == pytest.approx(expected[key]["ci"], rel=1e-9)
            assert got[key]["p_value"] == pytest.approx(expected[key]["p_value"], rel=1e-9)
    raw = capped_mean_stats(variants, None)
    assert (
        analyze("mean", raw)["comparisons"][0]["absolute"]
        != analyze("mean", ours)["comparisons"][0]["absolute"]
    )


def test_ignore_zeros_takes_the_percentile_over_non_zero_totals_only() -> None:
    variants = _whales(2)
    cap = cap_value(variants, Capping(type="percentile", value=0.9, ignore_zeros=True))
    pooled = np.concatenate(variants)
    assert cap == pytest.approx(float(np.quantile(pooled[pooled != 0.0], 0.9)), rel=1e-12)
    # Zeros are still analysed: every user is counted.
    stats = capped_mean_stats(variants, Capping(type="percentile", value=0.9, ignore_zeros=True))
    assert [s.users for s in stats] == [len(v) for v in variants]


def test_an_absolute_cap_caps_only_the_upper_tail() -> None:
    stats = capped_mean_stats([[-5.0, 1.0, 30.0], [100.0, 2.0]], Capping(type="absolute", value=10.0))
    assert stats == [
        MeanStats(users=3, sum=6.0, sum_squares=126.0),
        MeanStats(users=2, sum=12.0, sum_squares=104.0),
    ]


def test_no_totals_means_no_percentile_cap() -> None:
    assert cap_value([[], []], Capping(type="percentile", value=0.99)) is None
    assert (
        capped_mean_stats([[], []], Capping(type="percentile", value=0.99))
        == [MeanStats(users=0, sum=0.0, sum_squares=0.0)] * 2
    )


def test_ratio_capping_caps_each_side_with_its_own_percentile() -> None:
    pairs = [[(1.0, 1.0), (2.0, 2.0), (100.0, 3.0)], [(4.0, 1.0), (5.0, 50.0)]]
    stats = capped_ratio_stats(
        pairs, Capping(type="absolute", value=10.0), Capping(type="percentile", value=0.5)
    )
    # Denominator cap: the median of 1, 2, 3, 1, 50 is 2.
    assert stats[0] == RatioStats(
        users=3, sum_x=13.0, sum_x2=105.0, sum_y=5.0, sum_y2=9.0, sum_xy=1.0 + 4.0 + 20.0
    )
    assert stats[1] == RatioStats(users=2, sum_x=9.0, sum_x2=41.0, sum_y=3.0, sum_y2=5.0, sum_xy=4.0 + 10.0)


@pytest.mark.parametrize(
    "data",
    [
        {"type": "percentile", "value": 1.0},
        {"type": "percentile", "value": 99},
        {"type": "absolute", "value": 0},
        {"type": "absolute", "value": -3.0},
        {"type": "winsor", "value": 0.5},
        {"type": "absolute", "value": float("inf")},
        {"type": "absolute", "value": 5, "ignoreZeros": True},
    ],
)
def test_bad_capping_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Capping.model_validate(data)


# -- non-inferiority -------------------------------------------------------------------------------------
def arm(n: int, mean: float, sd: float) -> Moments:
    return Moments(n, mean, sd * sd)


def gb(m: Moments) -> SampleMeanStatistic:
    return SampleMeanStatistic(n=m.n, sum=m.n * m.mean, sum_squares=(m.n - 1) * m.variance + m.n * m.mean**2)


CASES = [
    # (name, control, treatment, margin, direction, outcome)
    (
        "latency 1% worse, margin 2%, many users",
        arm(50_000, 100.0, 20.0),
        arm(50_000, 101.0, 20.0),
        0.02,
        "lower",
        "non_inferior",
    ),
    (
        "latency 5% worse, margin 2%",
        arm(50_000, 100.0, 20.0),
        arm(50_000, 105.0, 20.0),
        0.02,
        "lower",
        "inferior",
    ),
    (
        "latency 2% worse, margin 2%: straddles",
        arm(50_000, 100.0, 20.0),
        arm(50_000, 102.0, 20.0),
        0.02,
        "lower",
        "inconclusive",
    ),
    (
        "latency 1% worse, few users",
        arm(200, 100.0, 20.0),
        arm(200, 101.0, 20.0),
        0.02,
        "lower",
        "inconclusive",
    ),
    ("latency 3% better", arm(5_000, 100.0, 20.0), arm(5_000, 97.0, 20.0), 0.02, "lower", "non_inferior"),
    (
        "revenue 1% down, margin 2%",
        arm(50_000, 10.0, 2.0),
        arm(50_000, 9.9, 2.0),
        0.02,
        "higher",
        "non_inferior",
    ),
    ("revenue 5% down, margin 2%", arm(50_000, 10.0, 2.0), arm(50_000, 9.5, 2.0), 0.02, "higher", "inferior"),
    (
        "revenue 5% up: latency-style reading would be wrong",
        arm(50_000, 10.0, 2.0),
        arm(50_000, 10.5, 2.0),
        0.02,
        "higher",
        "non_inferior",
    ),
    (
        "refund rate 5% up, higher is worse",
        arm(50_000, 0.2, 0.4),
        arm(50_000, 0.21, 0.4),
        0.0,
        "lower",
        "inferior",
    ),
    ("margin 0, no change", arm(10_000, 1.0, 1.0), arm(10_000, 1.0, 1.0), 0.0, "higher", "inconclusive"),
]


@pytest.mark.parametrize(
    ("control", "treatment", "margin", "direction", "outcome"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
@pytest.mark.parametrize("alpha", [0.05, 0.025])
def test_noninferiority_outcomes_and_gbstats_one_sided_p_values(
    control: Moments, treatment: Moments, margin: float, direction: str, outcome: str, alpha: float
) -> None:
    result = noninferiority_test(control, treatment, margin=margin, direction=direction, alpha=alpha)  # type: ignore[arg-type]
    if alpha == 0.05:
        assert result.outcome == outcome
    # The non-inferiority p-value is gbstats' one-sided test against the margin on the bad side.
    if direction == "lower":
        test = OneSidedTreatmentLesserTTest
        test_value = margin
    else:
        test = OneSidedTreatmentGreaterTTest
        test_value = -margin
    config = FrequentistConfig(difference_type="relative", alpha=alpha, test_value=test_value)
    with quiet():
        reference = test(gb(control), gb(treatment), config).compute_result()
    assert result.p_value is not None
    assert result.p_value_inferior is not None
    assert abs(result.p_value - reference.p_value) <= 1e-6
    assert result.estimate == pytest.approx(reference.expected, rel=1e-9)
    # The bounds: one-sided t quantile with Welch's degrees of freedom, from scipy.
    dof = (control.variance / control.n + treatment.variance / treatment.n) ** 2 / (
        (control.variance / control.n) ** 2 / (control.n - 1)
        + (treatment.variance / treatment.n) ** 2 / (treatment.n - 1)
    )
    assert result.se is not None
    half_width = float(scipy_stats.t.ppf(1 - alpha, dof)) * result.se
    sign = 1.0 if direction == "lower" else -1.0
    assert result.harm_bound == pytest.approx(result.estimate + sign * half_width, rel=1e-9)
    assert result.favourable_bound == pytest.approx(result.estimate - sign * half_width, rel=1e-9)
    assert result.threshold == sign * margin
    # The outcomes are the two one-sided tests' rejections.
    assert (result.outcome == "non_inferior") == (result.p_value < alpha)
    assert (result.outcome == "inferior") == (result.p_value_inferior < alpha)
    assert result.p_value + result.p_value_inferior == pytest.approx(1.0, abs=1e-12)


def test_directions_mirror_each_other() -> None:
    # With margin 0, "lower is better" and "higher is better" swap the two one-sided tests.
    control, treatment = arm(20_000, 10.0, 3.0), arm(20_000, 10.15, 3.0)
    as_latency = noninferiority_test(control, treatment, margin=0.0, direction="lower")
    as_revenue = noninferiority_test(control, treatment, margin=0.0, direction="higher")
    assert (as_latency.outcome, as_revenue.outcome) == ("inferior", "non_inferior")
    assert as_latency.p_value == as_revenue.p_value_inferior
    assert as_latency.p_value_inferior == as_revenue.p_value
    assert as_latency.harm_bound == as_revenue.favourable_bound


def test_an_impossible_comparison_is_inconclusive_and_says_why() -> None:
    result = noninferiority_test(arm(0, 0.0, 0.0), arm(10, 1.0, 1.0), margin=0.02, direction="lower")
    assert (result.outcome, result.error, result.p_value) == ("inconclusive", NO_USERS, None)
    assert result.to_dict()["outcome"] == "inconclusive"


@pytest.mark.parametrize(("margin", "alpha"), [(-0.01, 0.05), (math.nan, 0.05), (0.02, 0.5), (0.02, 0.0)])
def test_bad_margin_or_alpha_is_refused(margin: float, alpha: float) -> None:
    with pytest.raises(ValueError, match=r"margin|alpha"):
        noninferiority_test(
            arm(10, 1.0, 1.0), arm(10, 1.0, 1.0), margin=margin, direction="lower", alpha=alpha
        )


def test_moments_of_mean_stats_feed_the_test() -> None:
    # The results wiring passes the same moments it analyses: MeanStats -> moments -> test.
    control = moments(MeanStats(users=4, sum=10.0, sum_squares=30.0))
    treatment = moments(MeanStats(users=4, sum=10.4, sum_squares=32.0))
    assert noninferiority_test(control, treatment, margin=0.02, direction="lower").outcome == "inconclusive"


# Reference numbers from GrowthBook's newer gbstats (SequentialOneSidedTreatmentLesserTTest and
# ...GreaterTTest, relative lift), computed from its repository fetched outside this one; 0.8.0 has no
# sequential one-sided test. Rows: control and treatment (n, mean, sd), alpha, N*, the Lesser test's CI
# upper end, the Greater test's CI lower end.
SEQUENTIAL_REFERENCE = [
    ((5000, 100.0, 20.0), (5000, 101.0, 20.0), 0.05, 5000, 0.02126148887869178, -0.0012614888786917824),
    ((50000, 10.0, 2.0), (50000, 9.5, 2.0), 0.05, 5000, -0.046188236245434194, -0.05381176375456581),
    ((2000, 0.2, 0.4), (2100, 0.21, 0.41), 0.025, 1000, 0.25317333213057713, -0.1531733321305773),
]


@pytest.mark.parametrize(("control", "treatment", "alpha", "tuning", "upper", "lower"), SEQUENTIAL_REFERENCE)
def test_sequential_bounds_match_growthbooks_one_sided_confidence_sequences(
    control: tuple[int, float, float],
    treatment: tuple[int, float, float],
    alpha: float,
    tuning: float,
    upper: float,
    lower: float,
) -> None:
    as_latency = noninferiority_test(
        arm(*control),
        arm(*treatment),
        margin=0.02,
        direction="lower",
        alpha=alpha,
        sequential_tuning_parameter=tuning,
    )
    as_revenue = noninferiority_test(
        arm(*control),
        arm(*treatment),
        margin=0.02,
        direction="higher",
        alpha=alpha,
        sequential_tuning_parameter=tuning,
    )
    assert as_latency.harm_bound == pytest.approx(upper, abs=1e-9)
    assert as_latency.favourable_bound == pytest.approx(lower, abs=1e-9)
    assert as_revenue.harm_bound == pytest.approx(lower, abs=1e-9)
    assert as_revenue.favourable_bound == pytest.approx(upper, abs=1e-9)
    assert as_latency.p_value is None
    # Always-valid bounds are wider than the fixed-horizon ones.
    fixed = noninferiority_test(arm(*control), arm(*treatment), margin=0.02, direction="lower", alpha=alpha)
    assert fixed.harm_bound is not None
    assert as_latency.harm_bound > fixed.harm_bound


def test_sequential_mode_is_more_cautious_than_fixed_horizon() -> None:
    # 2.7% worse with a 2% margin on 20,000 users: fixed-horizon calls it inferior, the always-valid
    # bounds (which allow a look at every rollup) do not yet.
    control, treatment = arm(10_000, 100.0, 20.0), arm(10_000, 102.7, 20.0)
    assert noninferiority_test(control, treatment, margin=0.02, direction="lower").outcome == "inferior"
    sequential = noninferiority_test(
        control, treatment, margin=0.02, direction="lower", sequential_tuning_parameter=5000
    )
    assert sequential.outcome == "inconclusive"
    with pytest.raises(ValueError, match="sequential_tuning_parameter"):
        noninferiority_test(control, treatment, margin=0.02, direction="lower", sequential_tuning_parameter=0)
