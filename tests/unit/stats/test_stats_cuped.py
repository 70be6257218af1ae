"""CUPED against gbstats' RegressionAdjustedStatistic and against OLS + scipy's Welch test on raw data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from _stats_reference import P_ABS, P_REL, REL, FloatArray, gb_cuped, mean_stats_from_sample

from abtest.stats import CupedSums, analyze, cuped_ttest, moments, pooled_theta, two_sided_ttest
from abtest.stats.inputs import MeanStats


def _simulate(
    seed: int, n_control: int, n_treatment: int, correlation: float, effect: float, skewed: bool
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per-user (post, pre) pairs for both arms; post depends on pre with the given strength."""
    rng = np.random.default_rng(seed)

    def arm(n: int, lift: float) -> tuple[FloatArray, FloatArray]:
        pre = rng.lognormal(2.0, 1.0, n) if skewed else rng.normal(10.0, 3.0, n)
        noise = rng.normal(0.0, pre.std() * np.sqrt(max(1e-9, 1 - correlation**2)), n)
        post = 1.0 + correlation * pre + noise + lift
        return post, pre

    post_c, pre_c = arm(n_control, 0.0)
    post_t, pre_t = arm(n_treatment, effect)
    return post_c, pre_c, post_t, pre_t


SCENARIOS = [
    pytest.param(1, 200, 200, 0.8, 0.5, False, id="n200-strong"),
    pytest.param(2, 5000, 4800, 0.5, 0.2, False, id="n5000-moderate"),
    pytest.param(3, 50, 60, 0.9, 1.0, False, id="n50-small"),
    pytest.param(4, 100_000, 100_000, 0.7, 0.05, False, id="n100k"),
    pytest.param(5, 3000, 3000, 0.6, 0.3, True, id="skewed-lognormal-pre"),
    pytest.param(6, 2000, 1000, 0.05, 0.1, False, id="weak-correlation-unbalanced"),
    pytest.param(7, 1000, 1000, 0.95, -0.4, True, id="negative-effect"),
]


@pytest.mark.parametrize(("seed", "n_c", "n_t", "corr", "effect", "skewed"), SCENARIOS)
def test_cuped_matches_gbstats_regression_adjusted(
    seed: int, n_c: int, n_t: int, corr: float, effect: float, skewed: bool
) -> None:
    post_c, pre_c, post_t, pre_t = _simulate(seed, n_c, n_t, corr, effect, skewed)
    control, treatment = mean_stats_from_sample(post_c, pre_c), mean_stats_from_sample(post_t, pre_t)
    mine = cuped_ttest(control, treatment)
    reference = gb_cuped(control, treatment)
    assert reference.error_message is None
    assert mine.error is None
    assert mine.estimate == pytest.approx(reference.expected, rel=REL)
    assert mine.se == pytest.approx(reference.uplift.stddev, rel=REL)
    assert mine.ci is not None
    assert list(mine.ci) == pytest.approx(reference.ci, rel=REL)
    assert mine.p_value == pytest.approx(reference.p_value, rel=P_REL, abs=P_ABS)


@pytest.mark.parametrize(("seed", "n_c", "n_t", "corr", "effect", "skewed"), SCENARIOS)
def test_cuped_matches_ols_adjusted_welch_on_raw_data(
    seed: int, n_c: int, n_t: int, corr: float, effect: float, skewed: bool
) -> None:
    post_c, pre_c, post_t, pre_t = _simulate(seed, n_c, n_t, corr, effect, skewed)
    # theta: OLS slope of post on pre over all users of both arms (numpy least squares, with intercept).
    post_all, pre_all = np.concatenate([post_c, post_t]), np.concatenate([pre_c, pre_t])
    design = np.column_stack([np.ones_like(pre_all), pre_all])
    theta = float(np.linalg.lstsq(design, post_all, rcond=None)[0][1])
    adjusted_c, adjusted_t = post_c - theta * pre_c, post_t - theta * pre_t
    welch = scipy.stats.ttest_ind(adjusted_t, adjusted_c, equal_var=False)
    ci = welch.confidence_interval(0.95)

    control, treatment = mean_stats_from_sample(post_c, pre_c), mean_stats_from_sample(post_t, pre_t)
    assert pooled_theta(CupedSums.from_stats(control), CupedSums.from_stats(treatment)) == pytest.approx(
        theta, rel=1e-8
    )
    mine = cuped_ttest(control, treatment)
    assert mine.estimate == pytest.approx(adjusted_t.mean() - adjusted_c.mean(), rel=1e-8, abs=1e-12)
    assert mine.p_value == pytest.approx(float(welch.pvalue), rel=1e-7, abs=P_ABS)
    assert mine.dof == pytest.approx(float(welch.df), rel=1e-8)
    assert mine.ci is not None
    assert mine.ci[0] == pytest.approx(float(ci.low), rel=1e-8)
    assert mine.ci[1] == pytest.approx(float(ci.high), rel=1e-8)


def test_cuped_shrinks_the_standard_error_when_pre_predicts_post() -> None:
    post_c, pre_c, post_t, pre_t = _simulate(11, 4000, 4000, 0.9, 0.2, False)
    control, treatment = mean_stats_from_sample(post_c, pre_c), mean_stats_from_sample(post_t, pre_t)
    plain = two_sided_ttest(moments(control), moments(treatment), relative=False)
    adjusted = cuped_ttest(control, treatment)
    assert plain.se is not None
    assert adjusted.se is not None
    # Variance shrinks by about 1 - rho^2 = 0.19.
    assert adjusted.se < 0.6 * plain.se


def test_constant_pre_period_falls_back_to_the_unadjusted_test() -> None:
    rng = np.random.default_rng(3)
    post_c, post_t = rng.normal(5, 2, 300), rng.normal(5.3, 2, 320)
    control = mean_stats_from_sample(post_c, np.full(300, 7.0))
    treatment = mean_stats_from_sample(post_t, np.full(320, 7.0))
    assert pooled_theta(CupedSums.from_stats(control), CupedSums.from_stats(treatment)) == 0.0
    assert cuped_ttest(control, treatment) == two_sided_ttest(
        moments(control), moments(treatment), relative=False
    )
    reference = gb_cuped(control, treatment)
    assert cuped_ttest(control, treatment).p_value == pytest.approx(reference.p_value, rel=P_REL, abs=P_ABS)


def test_cuped_needs_pre_period_fields() -> None:
    with pytest.raises(ValueError, match="pre_sum"):
        cuped_ttest(MeanStats(users=3, sum=3, sum_squares=5), MeanStats(users=3, sum=3, sum_squares=5))


def test_analyze_adds_cuped_per_treatment_for_three_arms() -> None:
    rng = np.random.default_rng(8)
    arms = []
    for lift in (0.0, 0.3, -0.2):
        pre = rng.normal(10, 3, 1500)
        arms.append(mean_stats_from_sample(2 + 0.8 * pre + rng.normal(0, 1.5, 1500) + lift, pre))
    result = analyze("mean", arms)
    for comparison in result["comparisons"]:
        j = comparison["treatment_index"]
        reference = gb_cuped(arms[0], arms[j])
        assert comparison["cuped_absolute"]["estimate"] == pytest.approx(reference.expected, rel=REL)
        assert comparison["cuped_absolute"]["p_value"] == pytest.approx(
            reference.p_value, rel=P_REL, abs=P_ABS
        )
        assert set(comparison["cuped_absolute"]) == {"estimate", "se", "ci", "p_value", "error"}


def test_cuped_degenerate_arm_gives_error_not_nan() -> None:
    one_user = MeanStats(
        users=1, sum=2.0, sum_squares=4.0, pre_sum=1.0, pre_sum_squares=1.0, post_pre_sum_products=2.0
    )
    other = MeanStats(
        users=5, sum=10.0, sum_squares=30.0, pre_sum=5.0, pre_sum_squares=7.0, post_pre_sum_products=11.0
    )
    result = cuped_ttest(one_user, other)
    assert result.error == "too_few_users"
    assert result.estimate is None
    assert result.p_value is None
