"""The period-weighted estimator and the SRM expectation of bandits (abtest.stats.bandit_periods)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abtest.stats.bandit import ArmStats, bandit_reweight, sample_variance
from abtest.stats.bandit_periods import (
    InvalidPeriodStatistics,
    PeriodWeightedArm,
    bandit_srm_check,
    expected_users,
    period_weighted_estimates,
)
from abtest.stats.srm import srm_check


def conv(users: int, conversions: int) -> ArmStats:
    return ArmStats.from_conversions(users, conversions)


def test_one_period_is_the_plain_estimate() -> None:
    arms = [conv(1000, 100), ArmStats(1200, 300.0, 869.0)]
    estimates = period_weighted_estimates([arms])
    for arm, estimate in zip(arms, estimates, strict=True):
        assert estimate.users == arm.users
        assert estimate.mean == arm.mean
        assert estimate.variance_of_mean == pytest.approx(sample_variance(arm) / arm.users, rel=1e-15)
        triple = estimate.as_stats()
        assert triple.sum == pytest.approx(arm.sum, rel=1e-14)
        assert triple.sum_squares == pytest.approx(arm.sum_squares, rel=1e-14)
    one_period = bandit_reweight([e.as_stats() for e in estimates], min_users_per_arm=0)
    plain = bandit_reweight(arms, min_users_per_arm=0)
    assert one_period.p_best == pytest.approx(plain.p_best, abs=1e-12)


def test_two_periods_against_a_direct_computation() -> None:
    periods = [
        [conv(400, 40), conv(400, 48), ArmStats(200, 30.0, 30.0)],
        [conv(150, 20), conv(700, 90), conv(150, 15)],
    ]
    estimates = period_weighted_estimates(periods)
    totals = np.array([1000.0, 1000.0])
    w = totals / totals.sum()
    for a, estimate in enumerate(estimates):
        n = np.array([p[a].users for p in periods])
        s = np.array([p[a].sum for p in periods])
        ss = np.array([p[a].sum_squares for p in periods])
        means = s / n
        variances = (ss - s**2 / n) / (n - 1)
        assert estimate.users == n.sum()
        assert estimate.mean == pytest.approx(float(np.sum(w * means)), rel=1e-14)
        assert estimate.variance_of_mean == pytest.approx(float(np.sum(w**2 * variances / n)), rel=1e-13)


def test_a_period_without_variance_takes_the_arms_pooled_variance() -> None:
    # Arm 0 kept 8 users after the weights moved away from it, none converted: s² = 0 there.
    periods = [[conv(200, 10), conv(200, 40)], [conv(8, 0), conv(992, 200)]]
    estimate = period_weighted_estimates(periods)[0]
    pooled = (199 * sample_variance(conv(200, 10)) + 7 * 0.0) / (199 + 7)
    w = np.array([400.0, 1000.0]) / 1400.0
    expected = w[0] ** 2 * sample_variance(conv(200, 10)) / 200 + w[1] ** 2 * pooled / 8
    assert estimate.variance_of_mean == pytest.approx(expected, rel=1e-13)
    assert estimate.mean == pytest.approx(w[0] * 0.05, rel=1e-14)
    # An arm without variance in any period keeps 0.
    flat = period_weighted_estimates([[conv(10, 0), conv(10, 5)], [conv(10, 0), conv(10, 5)]])[0]
    assert flat.variance_of_mean == 0.0


def test_period_weighting_undoes_simpsons_paradox() -> None:
    # Both arms convert at 10% in period 1 and at 20% in period 2; arm 1 got most of its users in
    # the better period. Pooled, arm 1 looks far better (19% vs 11%); weighted, they are equal.
    periods = [[conv(900, 90), conv(100, 10)], [conv(100, 20), conv(900, 180)]]
    pooled = [conv(1000, 110), conv(1000, 190)]
    estimates = period_weighted_estimates(periods)
    assert [e.mean for e in estimates] == pytest.approx([0.15, 0.15], abs=1e-15)
    assert bandit_reweight(pooled).p_best == pytest.approx((0.0, 1.0), abs=1e-6)
    weighted = bandit_reweight([e.as_stats() for e in estimates])
    assert weighted.p_best is not None
    assert abs(weighted.p_best[0] - weighted.p_best[1]) < 0.2


def test_a_period_where_an_arm_has_no_users_merges_into_the_next() -> None:
    periods = [
        [conv(50, 5), conv(0, 0)],
        [conv(450, 45), conv(500, 60)],
        [conv(500, 70), conv(500, 40)],
    ]
    merged = [[conv(500, 50), conv(500, 60)], periods[2]]
    assert period_weighted_estimates(periods) == period_weighted_estimates(merged)


def test_the_last_short_period_merges_into_the_one_before() -> None:
    periods = [[conv(500, 50), conv(500, 60)], [conv(30, 3), conv(1, 1)]]
    merged = [[conv(530, 53), conv(501, 61)]]
    assert period_weighted_estimates(periods) == period_weighted_estimates(merged)


def test_an_arm_without_any_users() -> None:
    estimates = period_weighted_estimates([[conv(100, 10), conv(0, 0)], [conv(100, 20), conv(0, 0)]])
    assert estimates[1] == PeriodWeightedArm(0, 0.0, 0.0)
    assert estimates[1].as_stats() == ArmStats(0, 0.0, 0.0)
    assert estimates[0].users == 200
    assert estimates[0].mean == pytest.approx(0.15, abs=1e-15)


def test_explicit_period_totals_set_the_weights() -> None:
    periods = [[conv(100, 10), conv(100, 10)], [conv(100, 30), conv(100, 30)]]
    estimates = period_weighted_estimates(periods, period_users=[600, 200])
    assert estimates[0].mean == pytest.approx(0.75 * 0.1 + 0.25 * 0.3, abs=1e-15)


def test_impossible_period_statistics_name_the_period_and_arm() -> None:
    with pytest.raises(InvalidPeriodStatistics, match=r"periods\[1\]\[0\]") as caught:
        period_weighted_estimates([[conv(10, 1), conv(10, 1)], [conv(10, 11), conv(10, 1)]])
    assert (caught.value.period, caught.value.arm) == (1, 0)


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="same number of arms"):
        period_weighted_estimates([[conv(10, 1), conv(10, 1)], [conv(10, 1)]])
    with pytest.raises(ValueError, match="one total of users per period"):
        period_weighted_estimates([[conv(10, 1), conv(10, 1)]], period_users=[20, 20])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    users=st.integers(min_value=2, max_value=10**9),
    mean=st.floats(min_value=-1e6, max_value=1e6),
    variance=st.floats(min_value=0.0, max_value=1e6),
)
def test_the_stored_triple_gives_back_mean_and_variance(users: int, mean: float, variance: float) -> None:
    triple = PeriodWeightedArm(users, mean, variance).as_stats()
    assert triple.mean == pytest.approx(mean, rel=1e-12, abs=1e-12)
    # The variance comes back from sum_squares - sum^2/n: exact up to the rounding of n*m^2.
    recovered = sample_variance(triple) / users
    scale = mean * mean / (users - 1) + variance
    assert abs(recovered - variance) <= 1e-11 * scale


# ---------------------------------------------------------------------------------------------------
# SRM under changing weights
# ---------------------------------------------------------------------------------------------------


def test_expected_users_follow_the_weights_of_each_period() -> None:
    expected = expected_users([1000, 2000, 500], [[0.5, 0.5], [0.2, 0.8], [0.1, 0.9]])
    assert expected == pytest.approx((500 + 400 + 50, 500 + 1600 + 450), abs=1e-12)


def test_a_bandit_raises_no_false_srm_alarm() -> None:
    rng = np.random.default_rng(7)
    weights = [[1 / 3] * 3, [0.2, 0.3, 0.5], [0.05, 0.15, 0.8], [0.01, 0.09, 0.9]]
    period_users = [3000, 3000, 3000, 3000]
    users = np.zeros(3, dtype=int)
    for total, w in zip(period_users, weights, strict=True):
        users += rng.multinomial(total, w)
    result = bandit_srm_check(users.tolist(), period_users, weights)
    assert not result.flag
    assert result.p_value > 0.001
    # Checked against today's weights the same users look like a glaring mismatch.
    assert srm_check(users.tolist(), weights[-1]).flag


def test_a_real_mismatch_is_still_flagged() -> None:
    weights = [[0.5, 0.5], [0.3, 0.7]]
    result = bandit_srm_check([2300, 1700], [2000, 2000], weights)
    assert result.flag
    assert math.isfinite(result.p_value)
