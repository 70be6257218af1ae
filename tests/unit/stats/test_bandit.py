"""The bandit reweight (abtest.stats.bandit) against closed forms, QUADPACK and GrowthBook's numbers."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from _bandit_reference import exact_p_best, reference_posteriors, reference_weights
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abtest.stats.bandit import (
    PRIOR_VARIANCE,
    ArmStats,
    bandit_reweight,
    floored_weights,
    probability_best,
)
from abtest.stats.distributions import norm_cdf

# The four-arm fixture of gbstats' bandit tests (growthbook packages/stats/tests/test_gbstats.py,
# TestBanditMinVariationWeightFloor, n = 1000 per arm).
GBSTATS_FIXTURE = [(1000, 10, 2000), (1000, 20, 2000), (1000, 30, 2000), (1000, 300, 20000)]
# gbstats bayesian/bandits.py at growthbook@8f1db445 run with the production settings
# (GaussianPrior(0, 1e4, proper=True), top_two=False, seed 100): its posterior means and variances...
GBSTATS_POSTERIOR_MEANS = [0.0099999979980985, 0.0199999959967976, 0.029999993996697893, 0.2999994021032937]
GBSTATS_POSTERIOR_VARIANCES = [
    0.00200190150114086,
    0.0020016012009607845,
    0.0020011007006606194,
    0.01992989020979839,
]
# ... and its Monte Carlo P(best) with n_samples raised from 10,000 to 2,000,000 (standard error
# <= 1.6e-4), "higher" then "lower". At its default 10,000 draws it gave [0.0113, 0.0156, 0.0195,
# 0.9536] ("higher"): off by up to 0.0022.
GBSTATS_MC_P_BEST = {
    "higher": [0.010994, 0.015727, 0.021698, 0.951581],
    "lower": [0.424478, 0.3219675, 0.239524, 0.0140305],
}

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def stats(arms: list[tuple[float, float, float]]) -> list[ArmStats]:
    return [ArmStats(*arm) for arm in arms]


# ---------------------------------------------------------------------------------------------------
# Exact values
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ((1000, 100), (1000, 120)),
        ((5000, 500), (5400, 600)),
        ((200, 3), (250, 1)),
        ((100_000, 10_000), (100_000, 10_030)),
        ((150, 75), (150, 75)),
    ],
)
@pytest.mark.parametrize("direction", ["higher", "lower"])
def test_two_binomial_arms_match_the_closed_form(
    a: tuple[int, int], b: tuple[int, int], direction: str
) -> None:
    arms = [ArmStats.from_conversions(*a), ArmStats.from_conversions(*b)]
    result = bandit_reweight(arms, direction=direction)  # type: ignore[arg-type]
    assert result.outcome == "updated"
    assert result.p_best is not None
    assert result.posteriors is not None
    means, sds = reference_posteriors([(arm.users, arm.sum, arm.sum_squares) for arm in arms])
    sign = 1.0 if direction == "higher" else -1.0
    # P(A > B) for independent Gaussians: Phi((mA - mB) / sqrt(vA + vB)).
    p_a = norm_cdf(sign * (means[0] - means[1]) / math.hypot(sds[0], sds[1]))
    assert result.p_best[0] == pytest.approx(p_a, abs=1e-10)
    assert result.p_best[1] == pytest.approx(1 - p_a, abs=1e-10)
    assert list(result.weights) == pytest.approx(reference_weights([p_a, 1 - p_a], 0.01), abs=1e-10)


def test_posteriors_of_the_gbstats_fixture_are_gbstats_own() -> None:
    result = bandit_reweight(stats(GBSTATS_FIXTURE))
    assert result.posteriors is not None
    assert [p.mean for p in result.posteriors] == pytest.approx(GBSTATS_POSTERIOR_MEANS, rel=1e-14)
    assert [p.variance for p in result.posteriors] == pytest.approx(GBSTATS_POSTERIOR_VARIANCES, rel=1e-14)


@pytest.mark.parametrize("direction", ["higher", "lower"])
def test_the_gbstats_fixture_matches_exact_integration(direction: str) -> None:
    result = bandit_reweight(stats(GBSTATS_FIXTURE), direction=direction)  # type: ignore[arg-type]
    assert result.outcome == "updated"
    assert result.p_best is not None
    exact = exact_p_best(
        GBSTATS_POSTERIOR_MEANS, [math.sqrt(v) for v in GBSTATS_POSTERIOR_VARIANCES], direction
    )
    assert list(result.p_best) == pytest.approx(exact, abs=1e-10)
    assert list(result.weights) == pytest.approx(reference_weights(exact, 0.01), abs=1e-10)
    # GrowthBook's own engine agrees within its Monte Carlo error (2,000,000 draws).
    assert list(result.p_best) == pytest.approx(GBSTATS_MC_P_BEST[direction], abs=7e-4)


def test_the_gbstats_fixture_in_figures() -> None:
    # The exact values (QUADPACK agrees to 1e-16), so a regression shows as numbers, not only as a diff.
    result = bandit_reweight(stats(GBSTATS_FIXTURE))
    assert result.p_best == pytest.approx(
        (0.0110328100097, 0.0156277354378, 0.0217187484648, 0.951620706088), abs=1e-12
    )
    assert result.weights == pytest.approx(
        (0.0205914976093, 0.0250026260203, 0.0308499985262, 0.923555877844), abs=1e-12
    )


def test_a_prior_only_arm_beside_narrow_arms() -> None:
    # An arm with no users keeps the N(0, 10^4) prior (sd 100) next to posteriors of sd ~0.01:
    # widths 4 orders of magnitude apart, where a fixed rule centred on one arm fails.
    arms = [ArmStats(0, 0, 0), ArmStats.from_conversions(1000, 100), ArmStats.from_conversions(1000, 110)]
    result = bandit_reweight(arms, min_users_per_arm=0)
    assert result.outcome == "updated"
    assert result.p_best is not None
    assert result.posteriors is not None
    assert result.posteriors[0].variance == PRIOR_VARIANCE
    means, sds = reference_posteriors([(a.users, a.sum, a.sum_squares) for a in arms])
    assert list(result.p_best) == pytest.approx(exact_p_best(means, sds), abs=1e-10)
    assert result.p_best[0] == pytest.approx(norm_cdf(-0.11 / 100), abs=1e-4)  # P(N(0, 100^2) > ~0.11)


@pytest.mark.parametrize(
    ("means", "sds"),
    [
        ([0.0, 0.1, 0.105], [100.0, 0.003, 0.003]),
        ([0.1, 0.11, 0.12, 0.0], [1e-3, 1e-3, 1e-3, 100.0]),
        ([0.1, 0.1], [1e-6, 1.0]),
        ([1e6, 1e6 + 1e-3, 1e6 - 2e-3], [1e-4, 1e-4, 3e-3]),
        ([0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]),
        ([-3.0, 2.0, 2.5, 0.4, 1.9, 2.4], [10.0, 0.01, 0.5, 3.0, 1e-3, 0.2]),
    ],
)
@pytest.mark.parametrize("direction", ["higher", "lower"])
def test_probability_best_matches_quadpack_when_widths_differ(
    means: list[float], sds: list[float], direction: str
) -> None:
    p = probability_best(means, sds, direction)  # type: ignore[arg-type]
    assert list(p) == pytest.approx(exact_p_best(means, sds, direction), abs=1e-10)
    assert math.fsum(p) == pytest.approx(1.0, abs=1e-10)


def test_equal_posteriors_share_equally() -> None:
    p = probability_best([0.1] * 7, [0.003] * 7)
    assert all(value == pytest.approx(1 / 7, abs=1e-12) for value in p)


# ---------------------------------------------------------------------------------------------------
# Arms without conversions, thresholds
# ---------------------------------------------------------------------------------------------------


def test_an_arm_without_conversions_takes_the_pooled_variance() -> None:
    arms = [
        ArmStats.from_conversions(1000, 0),
        ArmStats.from_conversions(1000, 50),
        ArmStats.from_conversions(2000, 90),
    ]
    result = bandit_reweight(arms)
    assert result.outcome == "updated"
    assert result.p_best is not None
    assert result.posteriors is not None
    s1 = (50 - 50**2 / 1000) / 999
    s2 = (90 - 90**2 / 2000) / 1999
    pooled = (999 * 0 + 999 * s1 + 1999 * s2) / (999 + 999 + 1999)
    assert result.posteriors[0].pooled
    assert not result.posteriors[1].pooled
    assert result.posteriors[0].variance_used == pytest.approx(pooled, rel=1e-13)
    means, sds = reference_posteriors([(a.users, a.sum, a.sum_squares) for a in arms])
    assert list(result.p_best) == pytest.approx(exact_p_best(means, sds), abs=1e-10)
    # GrowthBook would leave arm 0 its N(0, 10^4) prior, so about half the traffic; here it has
    # no chance of being best against two arms with 5% and 4.5%.
    assert result.p_best[0] < 1e-6
    assert result.weights[0] == pytest.approx(0.01, abs=1e-6)


def test_no_variance_anywhere_keeps_the_weights() -> None:
    arms = [
        ArmStats.from_conversions(500, 0),
        ArmStats.from_conversions(500, 0),
        ArmStats.from_conversions(500, 500),
    ]
    result = bandit_reweight(arms, [0.2, 0.3, 0.5])
    assert result.outcome == "no_variance"
    assert result.weights == (0.2, 0.3, 0.5)
    assert result.p_best is None


def test_not_enough_users_keeps_the_weights_but_reports_p_best() -> None:
    arms = [ArmStats.from_conversions(1000, 100), ArmStats.from_conversions(99, 20)]
    result = bandit_reweight(arms, [0.7, 0.3])
    assert result.outcome == "not_enough_users"
    assert result.weights == (0.7, 0.3)
    assert result.p_best is not None
    assert math.fsum(result.p_best) == pytest.approx(1.0, abs=1e-10)
    assert "arms[1]" in result.message
    assert bandit_reweight(arms, [0.7, 0.3], min_users_per_arm=99).outcome == "updated"


def test_not_enough_users_is_checked_before_no_variance() -> None:
    arms = [ArmStats.from_conversions(10, 0), ArmStats.from_conversions(10, 0)]
    assert bandit_reweight(arms).outcome == "not_enough_users"
    assert bandit_reweight(arms, min_users_per_arm=10).outcome == "no_variance"


# ---------------------------------------------------------------------------------------------------
# Impossible statistics
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (ArmStats(120, 300, 869 - 200), "negative"),  # sum_squares < sum^2 / n
        (ArmStats.from_conversions(100, 101), "negative"),  # more conversions than users
        (ArmStats(-5, 0, 0), "negative"),
        (ArmStats(100.5, 10, 10), "whole"),
        (ArmStats(100, math.nan, 10), "finite"),
        (ArmStats(100, 10, math.inf), "finite"),
        (ArmStats(0, 3, 3), "no users"),
        (ArmStats(100, 0, -1), "negative"),
    ],
)
def test_impossible_statistics_are_refused_naming_the_arm(bad: ArmStats, words: str) -> None:
    arms = [ArmStats.from_conversions(1000, 100), bad, ArmStats.from_conversions(1000, 100)]
    result = bandit_reweight(arms, [0.5, 0.25, 0.25])
    assert result.outcome == "invalid_statistics"
    assert result.arm == 1
    assert result.message.startswith("arms[1]: ")
    assert words in result.message
    assert result.weights == (0.5, 0.25, 0.25)
    assert result.p_best is None


def test_gbstats_impossible_fixture_is_refused() -> None:
    # gbstats' QUERY_OUTPUT_BANDITS: arms "two" (1615.59 < 740^2 / 200 = 2738) and "three" (1571 <
    # 770^2 / 220 = 2695) have negative variances. gbstats returns NaN weights for it.
    arms = [
        ArmStats(100, 270, 848.79),
        ArmStats(120, 300, 869),
        ArmStats(200, 740, 1615.59),
        ArmStats(220, 770, 1571),
    ]
    result = bandit_reweight(arms)
    assert result.outcome == "invalid_statistics"
    assert result.arm == 2
    assert all(math.isfinite(w) for w in result.weights)


def test_rounding_just_below_zero_variance_is_not_impossible() -> None:
    # sum_squares = sum^2 / n up to float rounding (a constant metric): a variance of 0, not negative.
    n, value = 3000, 0.1
    arm = ArmStats(n, math.fsum([value] * n), math.fsum([value * value] * n))
    result = bandit_reweight([arm, ArmStats(3000, 330.0, 40.0)])
    assert result.outcome == "updated"
    assert result.posteriors is not None
    assert result.posteriors[0].pooled


# ---------------------------------------------------------------------------------------------------
# Determinism, floors, settings
# ---------------------------------------------------------------------------------------------------


def test_the_same_input_gives_identical_floats() -> None:
    arms = [
        ArmStats.from_conversions(1000, 100),
        ArmStats.from_conversions(1000, 0),
        ArmStats(1000, 300, 20000),
    ]
    first = bandit_reweight(arms)
    assert all(bandit_reweight(arms) == first for _ in range(3))


def test_identical_floats_in_another_process() -> None:
    code = (
        "from abtest.stats.bandit import ArmStats, bandit_reweight; "
        f"r = bandit_reweight([ArmStats(*a) for a in {GBSTATS_FIXTURE!r}]); "
        "print(repr((r.p_best, r.weights)))"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, timeout=60).stdout
    here = bandit_reweight(stats(GBSTATS_FIXTURE))
    assert there == (repr((here.p_best, here.weights)) + "\n").encode()


def test_floor_identity_and_uniform_fallback() -> None:
    p = [0.01, 0.02, 0.03, 0.94]
    assert floored_weights(p, 0.1) == pytest.approx([0.1 + 0.6 * x for x in p], abs=1e-15)
    assert floored_weights(p, 0.25) == (0.25, 0.25, 0.25, 0.25)
    assert floored_weights(p, 0.4) == (0.25, 0.25, 0.25, 0.25)
    assert floored_weights(p, 0.0) == pytest.approx(p, abs=1e-15)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"min_weight": 1.5}, "min_weight"),
        ({"min_weight": -0.1}, "min_weight"),
        ({"min_users_per_arm": -1}, "min_users_per_arm"),
        ({"direction": "up"}, "direction"),
        ({"current_weights": [0.5, 0.5, 0.0]}, "one current weight per arm"),
        ({"current_weights": [math.nan, 1.0]}, "current weights"),
    ],
)
def test_bad_settings_raise(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        bandit_reweight([ArmStats.from_conversions(200, 20)] * 2, **kwargs)  # type: ignore[arg-type]


def test_one_arm_is_not_a_bandit() -> None:
    with pytest.raises(ValueError, match="at least two arms"):
        bandit_reweight([ArmStats.from_conversions(200, 20)])


# ---------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------


@st.composite
def conversion_arm(draw: st.DrawFn) -> ArmStats:
    users = draw(st.integers(min_value=100, max_value=10_000_000))
    return ArmStats.from_conversions(users, draw(st.integers(min_value=0, max_value=users)))


@st.composite
def value_arm(draw: st.DrawFn) -> ArmStats:
    users = draw(st.integers(min_value=100, max_value=1_000_000))
    mean = draw(st.floats(min_value=-1e4, max_value=1e4))
    sd = draw(st.floats(min_value=1e-3, max_value=1e4))
    return ArmStats(users, users * mean, (users - 1) * sd * sd + users * mean * mean)


arms_strategy = st.one_of(
    st.lists(conversion_arm(), min_size=2, max_size=6), st.lists(value_arm(), min_size=2, max_size=6)
)


@SETTINGS
@given(arms=arms_strategy, min_weight=st.floats(min_value=0.0, max_value=0.2), lower=st.booleans())
def test_weights_sum_to_one_and_respect_the_floor(
    arms: list[ArmStats], min_weight: float, lower: bool
) -> None:
    result = bandit_reweight(arms, min_weight=min_weight, direction="lower" if lower else "higher")
    if result.outcome == "no_variance":
        return
    assert result.outcome == "updated"
    assert result.p_best is not None
    assert all(math.isfinite(w) for w in result.weights)
    assert abs(math.fsum(result.weights) - 1.0) <= 1e-12
    assert abs(math.fsum(result.p_best) - 1.0) <= 1e-9
    k = len(arms)
    if k * min_weight < 1:
        assert all(w >= min_weight for w in result.weights)
    else:
        assert result.weights == tuple(1 / k for _ in arms)


@SETTINGS
@given(arms=arms_strategy, data=st.data())
def test_reordering_the_arms_reorders_p_best(arms: list[ArmStats], data: st.DataObject) -> None:
    order = data.draw(st.permutations(range(len(arms))))
    result = bandit_reweight(arms)
    shuffled = bandit_reweight([arms[i] for i in order])
    if result.p_best is None or shuffled.p_best is None:
        assert result.outcome == shuffled.outcome == "no_variance"
        return
    assert list(shuffled.p_best) == pytest.approx([result.p_best[i] for i in order], abs=1e-10)


@SETTINGS
@given(arms=arms_strategy)
def test_lower_is_higher_of_the_negated_metric(arms: list[ArmStats]) -> None:
    negated = [ArmStats(arm.users, -arm.sum, arm.sum_squares) for arm in arms]
    lower, higher = bandit_reweight(arms, direction="lower"), bandit_reweight(negated, direction="higher")
    assert (lower.outcome, lower.p_best, lower.weights) == (higher.outcome, higher.p_best, higher.weights)
