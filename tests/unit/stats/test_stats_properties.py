"""Property-based tests (hypothesis) of invariants that must hold for any valid input."""

from __future__ import annotations

import json
import math

from _stats_reference import assert_all_finite
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from abtest.stats import (
    BinomialStats,
    MeanStats,
    adjust_p_values,
    analyze,
    effect_bayesian_test,
    moments,
    sequential_test,
    srm_check,
    two_sided_ttest,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def binomial_arm(draw: st.DrawFn, min_users: int = 0, max_users: int = 10_000_000) -> BinomialStats:
    users = draw(st.integers(min_value=min_users, max_value=max_users))
    conversions = draw(st.integers(min_value=0, max_value=users))
    return BinomialStats(users=users, conversions=conversions)


@st.composite
def mean_arm(draw: st.DrawFn, min_users: int = 0) -> MeanStats:
    users = draw(st.integers(min_value=min_users, max_value=1_000_000))
    mean = draw(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
    sd = draw(st.floats(min_value=0.0, max_value=1e6, allow_nan=False))
    sum_ = users * mean
    sum_squares = max(0.0, (users - 1) * sd * sd + users * mean * mean) if users else 0.0
    return MeanStats(users=users, sum=sum_, sum_squares=sum_squares)


any_arm = st.one_of(binomial_arm(), mean_arm())


@st.composite
def arm_pair(
    draw: st.DrawFn, min_users: int = 0
) -> tuple[BinomialStats | MeanStats, BinomialStats | MeanStats]:
    if draw(st.booleans()):
        return draw(binomial_arm(min_users)), draw(binomial_arm(min_users))
    return draw(mean_arm(min_users)), draw(mean_arm(min_users))


@SETTINGS
@given(pair=arm_pair(), relative=st.booleans(), alpha=st.floats(min_value=0.001, max_value=0.5))
def test_p_values_in_unit_interval_and_ci_contains_estimate(
    pair: tuple[BinomialStats | MeanStats, BinomialStats | MeanStats], relative: bool, alpha: float
) -> None:
    control, treatment = moments(pair[0]), moments(pair[1])
    result = two_sided_ttest(control, treatment, relative=relative, alpha=alpha)
    if result.error is not None:
        assert result.estimate is None
        assert result.p_value is None
        assert result.ci is None
        assert result.se is None
        return
    assert result.p_value is not None
    assert result.ci is not None
    assert result.estimate is not None
    assert 0.0 <= result.p_value <= 1.0
    assert result.ci[0] <= result.estimate <= result.ci[1]
    sequential = sequential_test(result, control.n + treatment.n, alpha=alpha)
    assert sequential.p_value is not None
    assert 0.0 <= sequential.p_value <= 1.0
    assert sequential.ci is not None
    assert sequential.ci[0] <= result.estimate <= sequential.ci[1]


@SETTINGS
@given(pair=arm_pair())
def test_swapping_arms_negates_the_absolute_lift(
    pair: tuple[BinomialStats | MeanStats, BinomialStats | MeanStats],
) -> None:
    forward = two_sided_ttest(moments(pair[0]), moments(pair[1]), relative=False)
    backward = two_sided_ttest(moments(pair[1]), moments(pair[0]), relative=False)
    assert forward.error == backward.error
    if forward.error is not None:
        return
    assert forward.estimate is not None
    assert backward.estimate is not None
    assert backward.estimate == -forward.estimate
    assert backward.se == forward.se
    assert backward.p_value == forward.p_value
    assert forward.ci is not None
    assert backward.ci is not None
    assert math.isclose(backward.ci[0], -forward.ci[1], rel_tol=1e-12, abs_tol=1e-300)
    assert math.isclose(backward.ci[1], -forward.ci[0], rel_tol=1e-12, abs_tol=1e-300)


@SETTINGS
@given(
    pair=arm_pair(min_users=50),
    alpha=st.sampled_from([0.01, 0.05, 0.1]),
    tuning=st.sampled_from([100, 5000, 1e6]),
)
def test_always_valid_interval_is_wider_than_the_fixed_horizon_one(
    pair: tuple[BinomialStats | MeanStats, BinomialStats | MeanStats], alpha: float, tuning: float
) -> None:
    # The confidence sequence is at least 1.27 times the normal interval for any N (alpha <= 0.1), and
    # with 50+ users per arm the t quantile exceeds the normal one by less than that.
    control, treatment = moments(pair[0]), moments(pair[1])
    fixed = two_sided_ttest(control, treatment, relative=True, alpha=alpha)
    assume(fixed.error is None)
    sequential = sequential_test(fixed, control.n + treatment.n, alpha=alpha, tuning_parameter=tuning)
    assert fixed.ci is not None
    assert sequential.ci is not None
    assert sequential.ci[0] <= fixed.ci[0]
    assert fixed.ci[1] <= sequential.ci[1]


@SETTINGS
@given(pair=arm_pair(), alpha=st.floats(min_value=0.001, max_value=0.5))
def test_bayesian_summaries_are_consistent(
    pair: tuple[BinomialStats | MeanStats, BinomialStats | MeanStats], alpha: float
) -> None:
    result = effect_bayesian_test(moments(pair[0]), moments(pair[1]), alpha=alpha)
    if result.error is not None:
        assert result.chance_to_win is None
        assert result.risk_control is None
        return
    assert result.chance_to_win is not None
    assert 0.0 <= result.chance_to_win <= 1.0
    assert result.risk_control is not None
    assert result.risk_treatment is not None
    assert result.risk_control >= 0.0
    assert result.risk_treatment >= 0.0
    assert result.expected is not None
    assert result.stddev is not None
    assert result.ci is not None
    assert result.ci[0] <= result.expected <= result.ci[1]
    # E[max(X, 0)] - E[max(-X, 0)] = E[X].
    assert math.isclose(
        result.risk_control - result.risk_treatment,
        result.expected,
        rel_tol=1e-9,
        abs_tol=1e-12 * result.stddev,
    )


@SETTINGS
@given(
    users=st.lists(st.integers(min_value=0, max_value=10**9), min_size=2, max_size=8),
    data=st.data(),
)
def test_srm_p_value_in_unit_interval(users: list[int], data: st.DataObject) -> None:
    weights = data.draw(
        st.lists(st.floats(min_value=0.01, max_value=100.0), min_size=len(users), max_size=len(users))
    )
    result = srm_check(users, weights)
    assert 0.0 <= result.p_value <= 1.0
    if min(users) < 8:
        assert not result.flag


@SETTINGS
@given(p_values=st.lists(st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0)), max_size=30))
def test_adjusted_p_values_are_ordered(p_values: list[float | None]) -> None:
    holm = adjust_p_values(p_values, "holm")
    bh = adjust_p_values(p_values, "bh")
    for raw, h, b in zip(p_values, holm, bh, strict=True):
        if raw is None:
            assert h is None
            assert b is None
            continue
        assert h is not None
        assert b is not None
        # BH never exceeds Holm (m p / j <= (m - j + 1) p for the j-th smallest), up to rounding.
        assert raw <= b <= h * (1 + 1e-12)
        assert raw <= h <= 1.0


@SETTINGS
@given(
    variants=st.one_of(
        st.lists(binomial_arm(max_users=10**12), min_size=2, max_size=6),
        st.lists(mean_arm(), min_size=2, max_size=6),
    ),
    mde=st.one_of(st.none(), st.floats(min_value=0.001, max_value=2.0)),
)
def test_analyze_output_is_always_finite_json(
    variants: list[BinomialStats] | list[MeanStats], mde: float | None
) -> None:
    metric_type = "binomial" if isinstance(variants[0], BinomialStats) else "mean"
    result = analyze(metric_type, variants, mde=mde, correction="holm")  # type: ignore[arg-type]
    json.dumps(result, allow_nan=False)
    assert_all_finite(result)
    assert len(result["comparisons"]) == len(variants) - 1
