"""Ratio (delta method) and quantile metrics against gbstats 0.8.0 on the same inputs, within 1e-6.

gbstats is the reference; numpy recomputes the sufficient statistics and quantiles from the raw
per-user values independently of the code under test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig
from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (
    ProportionStatistic,
    QuantileStatistic,
    RatioStatistic,
    SampleMeanStatistic,
)

from abtest.stats.bayesian import effect_bayesian_test
from abtest.stats.compare import compare_moments
from abtest.stats.inputs import GaussianPrior
from abtest.stats.moments import ZERO_VARIANCE, Moments
from abtest.stats.quantile import (
    N_STAR_VALUES,
    QuantileSummary,
    percentile_cont,
    quantile_bound_levels,
    quantile_moments,
    quantile_summary,
)
from abtest.stats.ratio import RatioStats, ratio_moments
from tests.unit.stats._stats_reference import quiet

TOL = 1e-6
FloatArray = npt.NDArray[np.float64]


def close(ours: float | None, reference: float) -> bool:
    """Within 1e-6, relative for large numbers and absolute near 0."""
    return ours is not None and abs(ours - reference) <= TOL * max(1.0, abs(reference))


# -- ratio metrics ---------------------------------------------------------------------------------------
def ratio_stats(x: FloatArray, y: FloatArray) -> RatioStats:
    return RatioStats(
        users=len(x),
        sum_x=float(x.sum()),
        sum_x2=float((x * x).sum()),
        sum_y=float(y.sum()),
        sum_y2=float((y * y).sum()),
        sum_xy=float((x * y).sum()),
    )


def gb_ratio(stats: RatioStats) -> RatioStatistic:
    return RatioStatistic(
        n=stats.users,
        m_statistic=SampleMeanStatistic(n=stats.users, sum=stats.sum_x, sum_squares=stats.sum_x2),
        d_statistic=SampleMeanStatistic(n=stats.users, sum=stats.sum_y, sum_squares=stats.sum_y2),
        m_d_sum_of_products=stats.sum_xy,
    )


def sessions_and_revenue(rng: np.random.Generator, n: int, lift: float) -> tuple[FloatArray, FloatArray]:
    """Per-user sessions (denominator) and revenue (numerator) that grows with sessions."""
    sessions = rng.poisson(3.0, n).astype(float) + 1.0
    revenue = sessions * rng.gamma(2.0, 5.0 * (1.0 + lift), n) * (rng.random(n) < 0.3)
    return revenue, sessions


def _ratio_cases() -> list[tuple[str, RatioStats, RatioStats]]:
    rng = np.random.default_rng(20261207)
    cases = []
    for n_c, n_t, lift in [(50, 60, 0.0), (400, 380, 0.1), (5000, 5100, 0.03), (20000, 19000, -0.05)]:
        control = ratio_stats(*sessions_and_revenue(rng, n_c, 0.0))
        treatment = ratio_stats(*sessions_and_revenue(rng, n_t, lift))
        cases.append((f"revenue per session n={n_c}/{n_t} lift={lift}", control, treatment))
    # Clicks per impression: both sides 0/1-heavy and strongly correlated.
    for n in (200, 3000):
        impressions = rng.integers(1, 20, n).astype(float)
        control = ratio_stats(rng.binomial(impressions.astype(int), 0.1).astype(float), impressions)
        impressions_t = rng.integers(1, 20, n).astype(float)
        treatment = ratio_stats(rng.binomial(impressions_t.astype(int), 0.12).astype(float), impressions_t)
        cases.append((f"clicks per impression n={n}", control, treatment))
    return cases


RATIO_CASES = _ratio_cases()


@pytest.mark.parametrize(
    ("control", "treatment"), [c[1:] for c in RATIO_CASES], ids=[c[0] for c in RATIO_CASES]
)
def test_ratio_moments_match_gbstats_ratio_statistic(control: RatioStats, treatment: RatioStats) -> None:
    for stats in (control, treatment):
        ours, reference = ratio_moments(stats), gb_ratio(stats)
        assert ours.n == reference.n
        assert ours.mean == pytest.approx(reference.mean, rel=1e-12)
        assert ours.variance == pytest.approx(reference.variance, rel=1e-9)


def test_delta_method_variance_is_that_of_the_linearised_per_user_values() -> None:
    # Independent of gbstats: var(x - R y) / y_bar^2 with R = sum x / sum y, from the raw values.
    rng = np.random.default_rng(7)
    x, y = sessions_and_revenue(rng, 1000, 0.0)
    ratio = x.sum() / y.sum()
    linearised = (x - ratio * y) / y.mean()
    assert ratio_moments(ratio_stats(x, y)).variance == pytest.approx(float(linearised.var(ddof=1)), rel=1e-9)


@pytest.mark.parametrize(
    ("control", "treatment"), [c[1:] for c in RATIO_CASES], ids=[c[0] for c in RATIO_CASES]
)
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_ratio_comparisons_match_gbstats(control: RatioStats, treatment: RatioStats, alpha: float) -> None:
    ours = compare_moments(ratio_moments(control), ratio_moments(treatment), alpha=alpha)
    assert_matches_gbstats(ours, gb_ratio(control), gb_ratio(treatment), alpha)


def assert_matches_gbstats(ours: dict[str, Any], stat_a: Any, stat_b: Any, alpha: float) -> None:
    """Relative and absolute Welch tests, the sequential interval and the posterior, all within 1e-6."""
    with quiet():
        for key, difference_type in (("relative", "relative"), ("absolute", "absolute")):
            config = FrequentistConfig(difference_type=difference_type, alpha=alpha)
            reference = TwoSidedTTest(stat_a, stat_b, config).compute_result()
            assert reference.error_message is None
            block = ours[key]
            assert block["error"] is None
            assert close(block["estimate"], reference.expected)
            assert close(block["ci"][0], reference.ci[0])
            assert close(block["ci"][1], reference.ci[1])
            assert close(block["p_value"], reference.p_value)
        sequential = SequentialTwoSidedTTest(
            stat_a, stat_b, SequentialConfig(difference_type="relative", alpha=alpha)
        ).compute_result()
        assert close(ours["sequential_relative"]["ci"][0], sequential.ci[0])
        assert close(ours["sequential_relative"]["ci"][1], sequential.ci[1])
        assert close(ours["sequential_relative"]["p_value"], sequential.p_value)
        bayes = EffectBayesianABTest(stat_a, stat_b, EffectBayesianConfig(alpha=alpha)).compute_result()
        assert close(ours["bayes_relative"]["chance_to_win"], bayes.chance_to_win)
        assert close(ours["bayes_relative"]["ci"][0], bayes.ci[0])
        assert close(ours["bayes_relative"]["ci"][1], bayes.ci[1])


@pytest.mark.parametrize(
    ("numerator_proportion", "denominator_proportion"), [(True, False), (False, True), (True, True)]
)
def test_ratio_with_proportion_sides_matches_gbstats(
    numerator_proportion: bool, denominator_proportion: bool
) -> None:
    # E.g. purchasers (0/1) per session, or purchasers (0/1) per user who reached checkout (0/1).
    rng = np.random.default_rng(11)
    arms = []
    for n, rate in ((3000, 0.2), (3100, 0.23)):
        reached = (rng.random(n) < 0.6).astype(float)
        y = reached if denominator_proportion else rng.poisson(2.0, n).astype(float) + 1.0
        bought = reached * (rng.random(n) < rate / 0.6)
        x = bought if numerator_proportion else bought * rng.gamma(2.0, 10.0, n)
        arms.append(ratio_stats(x, y))

    def gb_side(n: int, total: float, squares: float, proportion: bool) -> Any:
        if proportion:
            return ProportionStatistic(n=n, sum=total)
        return SampleMeanStatistic(n=n, sum=total, sum_squares=squares)

    reference = [
        RatioStatistic(
            n=a.users,
            m_statistic=gb_side(a.users, a.sum_x, a.sum_x2, numerator_proportion),
            d_statistic=gb_side(a.users, a.sum_y, a.sum_y2, denominator_proportion),
            m_d_sum_of_products=a.sum_xy,
        )
        for a in arms
    ]
    ours = [
        ratio_moments(
            a, numerator_proportion=numerator_proportion, denominator_proportion=denominator_proportion
        )
        for a in arms
    ]
    for moment, statistic in zip(ours, reference, strict=True):
        assert moment.variance == pytest.approx(statistic.variance, rel=1e-9)
    assert_matches_gbstats(compare_moments(*ours), *reference, 0.05)


def test_ratio_with_a_zero_denominator_reports_zero_variance() -> None:
    empty = RatioStats(users=10, sum_x=0.0, sum_x2=0.0, sum_y=0.0, sum_y2=0.0, sum_xy=0.0)
    assert ratio_moments(empty) == Moments(10, 0.0, 0.0)
    treatment = ratio_moments(
        RatioStats(users=10, sum_x=5.0, sum_x2=5.0, sum_y=10.0, sum_y2=12.0, sum_xy=6.0)
    )
    result = compare_moments(ratio_moments(empty), treatment)
    assert result["absolute"]["error"] == ZERO_VARIANCE


# -- quantile metrics ------------------------------------------------------------------------------------
def test_percentile_cont_is_numpys_linear_quantile() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 100, 1001):
        values = np.sort(rng.lognormal(0.0, 1.0, n))
        for level in (0.0, 1e-8, 0.1, 0.5, 0.9, 0.99, 1.0):
            assert percentile_cont(list(values), level) == pytest.approx(
                float(np.quantile(values, level)), rel=1e-12, abs=1e-15
            )


@pytest.mark.parametrize(
    ("n", "n_star"),
    [(2, 100), (50, 100), (100, 100), (101, 100), (201, 200), (800, 400), (801, 800), (10_000, 6400)],
)
def test_n_star_is_the_largest_grid_value_below_n(n: int, n_star: int) -> None:
    values = np.random.default_rng(n).exponential(1.0, n)
    summary = quantile_summary(values, 0.5)
    assert summary.n_star == n_star
    lower_level, upper_level = quantile_bound_levels(0.5, n_star)
    assert summary.lower == pytest.approx(float(np.quantile(values, lower_level)), rel=1e-12)
    assert summary.upper == pytest.approx(float(np.quantile(values, upper_level)), rel=1e-12)
    assert summary.quantile == pytest.approx(float(np.median(values)), rel=1e-12)


def test_bound_levels_are_growthbooks() -> None:
    # GrowthBook's getQuantileBoundValues(0.9, 0.05, 100): 0.9 -/+ 1.959964 * sqrt(0.09 / 100).
    lower, upper = quantile_bound_levels(0.9, 100)
    assert (lower, upper) == pytest.approx((0.9 - 0.0587989195, 0.9 + 0.0587989195), abs=1e-9)
    assert quantile_bound_levels(0.999, 100)[1] == 1.0 - 1e-8  # clamped
    # GrowthBook's back end, services/experimentQueries/constants.ts, transcribed.
    growthbook = (100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 102400, 204800)
    growthbook += (409600, 819200, 1638400, 3276800, 6553600, 13107200, 26214400, 52428800)
    assert growthbook == N_STAR_VALUES


def test_collapsed_bounds_fall_back_to_a_wider_grid_value() -> None:
    # 10,000 users; the middle 10% share one value. The bounds read at n* = 6400, 3200, ..., 400
    # all fall inside the tie; n* = 200 (levels 0.431 and 0.569) is the first to resolve.
    n = 10_000
    values = np.concatenate([np.arange(4500.0), np.full(1000, 5000.0), 10_000.0 + np.arange(4500.0)])
    summary = quantile_summary(values, 0.5)
    assert summary.n_star == 200
    assert summary.lower < summary.quantile == 5000.0 < summary.upper
    assert summary.n == n


def test_all_collapsed_bounds_give_zero_variance() -> None:
    summary = quantile_summary([3.0] * 500, 0.5)
    assert summary.lower == summary.upper == 3.0
    assert quantile_moments(summary).variance == 0.0


def test_ignore_zeros_leaves_out_users_with_zero() -> None:
    summary = quantile_summary([0.0, 0.0, 1.0, 2.0, 3.0], 0.5, ignore_zeros=True)
    assert (summary.n, summary.quantile) == (3, 2.0)


def gb_quantile(summary: QuantileSummary) -> QuantileStatistic:
    return QuantileStatistic(
        n=summary.n,
        n_star=summary.n_star,
        nu=summary.nu,
        quantile_hat=summary.quantile,
        quantile_lower=summary.lower,
        quantile_upper=summary.upper,
    )


def _quantile_cases() -> list[tuple[str, FloatArray, FloatArray, float]]:
    rng = np.random.default_rng(42)
    cases = []
    for n_c, n_t, nu, scale in [
        (60, 70, 0.5, 1.0),
        (500, 450, 0.9, 1.05),
        (3000, 3100, 0.5, 0.97),
        (12_000, 11_000, 0.99, 1.1),
    ]:
        control = rng.lognormal(3.0, 0.8, n_c)
        treatment = rng.lognormal(3.0, 0.8, n_t) * scale
        cases.append((f"latency p{int(nu * 100)} n={n_c}/{n_t}", control, treatment, nu))
    return cases


QUANTILE_CASES = _quantile_cases()


@pytest.mark.parametrize(
    ("control", "treatment", "nu"), [c[1:] for c in QUANTILE_CASES], ids=[c[0] for c in QUANTILE_CASES]
)
def test_quantile_moments_match_gbstats_quantile_statistic(
    control: FloatArray, treatment: FloatArray, nu: float
) -> None:
    for values in (control, treatment):
        summary = quantile_summary(values, nu)
        ours, reference = quantile_moments(summary), gb_quantile(summary)
        assert (ours.n, ours.mean) == (reference.n, reference.mean)
        assert ours.variance == pytest.approx(reference.variance, rel=1e-9)


@pytest.mark.parametrize(
    ("control", "treatment", "nu"), [c[1:] for c in QUANTILE_CASES], ids=[c[0] for c in QUANTILE_CASES]
)
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_quantile_comparisons_match_gbstats(
    control: FloatArray, treatment: FloatArray, nu: float, alpha: float
) -> None:
    summary_c, summary_t = quantile_summary(control, nu), quantile_summary(treatment, nu)
    ours = compare_moments(quantile_moments(summary_c), quantile_moments(summary_t), alpha=alpha)
    assert_matches_gbstats(ours, gb_quantile(summary_c), gb_quantile(summary_t), alpha)


@pytest.mark.parametrize(("n", "nu"), [(3, 0.5), (10, 0.05), (34, 0.9), (34, 0.1)])
def test_quantiles_gbstats_refuses_are_refused(n: int, nu: float) -> None:
    # n <= 1.96^2 nu / (1 - nu) or n <= 1.96^2 (1 - nu) / nu: the order statistic's interval leaves [0, 1].
    summary = quantile_summary(np.arange(1.0, n + 1.0), nu)
    assert gb_quantile(summary)._has_zero_variance
    assert quantile_moments(summary).variance == 0.0


def test_collapsed_bounds_from_1000_users_on_are_refused_unlike_gbstats_0_8() -> None:
    # Deliberate difference: gbstats 0.8.0 floors the variance at 1e-5 (in the metric's own units) when
    # 1000+ users tie; GrowthBook's newer gbstats refuses the comparison, and so do we.
    summary = quantile_summary([3.0] * 1500, 0.5)
    assert not gb_quantile(summary)._has_zero_variance
    other = quantile_summary(np.arange(1500.0), 0.5)
    result = compare_moments(quantile_moments(summary), quantile_moments(other))
    assert result["relative"]["error"] == ZERO_VARIANCE


def test_growthbooks_own_quantile_posterior_numbers() -> None:
    # gbstats' tests/bayesian/test_tests.py::TestEffectBayesianABTest (p90, n* = n), transcribed; its
    # absolute-scale cases with a proper prior are left out (gbstats rescales that prior, analyze does not).
    control = quantile_moments(
        QuantileSummary(11054, 11054, 0.9, 7.157987489967789, 7.098780136176828, 7.217194843758751)
    )
    treatment = quantile_moments(
        QuantileSummary(10861, 10861, 0.9, 7.694499927525767, 7.64180598628119, 7.747193868770344)
    )
    expected = [
        (False, None, 0.5365124375579775, (0.4572559589115422, 0.6157689162044128)),
        (
            True,
            GaussianPrior(mean=0.0, variance=1e6),
            0.07495297222736319,
            (0.06341005842481906, 0.08649588602990732),
        ),
        (
            True,
            GaussianPrior(mean=0.0, variance=1.0),
            0.07495037261804469,
            (0.06340765898986044, 0.08649308624622894),
        ),
    ]
    for relative, prior, mean, ci in expected:
        result = effect_bayesian_test(control, treatment, prior=prior, relative=relative)
        assert result.ci is not None
        assert close(result.expected, mean)
        assert close(result.ci[0], ci[0])
        assert close(result.ci[1], ci[1])


@pytest.mark.parametrize("n", [999, 60_000_000])
def test_growthbooks_collapsed_bounds_cases_have_zero_variance(n: int) -> None:
    # gbstats' tests/test_shared_models.py::TestQuantileStatisticZeroVariance (newer than 0.8.0), transcribed.
    assert quantile_moments(QuantileSummary(n, n, 0.9, 5.0, 5.0, 5.0)).variance == 0.0
    assert quantile_moments(QuantileSummary(n, n, 0.9, 5.0, 4.99, 5.01)).variance > 0.0
