"""Degenerate inputs give an `error` reason and None estimates: never NaN, infinity or an exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
import scipy.stats
from _stats_reference import assert_all_finite, gb_bayes, gb_ttest, mean_stats_from_sample

from abtest.stats import BinomialStats, MeanStats, analyze, moments, two_sided_ttest

ESTIMATE_BLOCKS = ("relative", "absolute")

DEGENERATE_BINOMIAL = [
    pytest.param(
        [(0, 0), (100, 10)], {"relative": "no_users", "absolute": "no_users"}, id="control-no-users"
    ),
    pytest.param(
        [(100, 10), (0, 0)], {"relative": "no_users", "absolute": "no_users"}, id="treatment-no-users"
    ),
    pytest.param([(0, 0), (0, 0)], {"relative": "no_users", "absolute": "no_users"}, id="nobody"),
    pytest.param([(1, 1), (10, 5)], {"relative": "too_few_users", "absolute": "too_few_users"}, id="n1"),
    pytest.param(
        [(100, 0), (100, 5)], {"relative": "zero_baseline", "absolute": "zero_variance"}, id="zero-baseline"
    ),
    pytest.param(
        [(100, 0), (100, 0)], {"relative": "zero_baseline", "absolute": "zero_variance"}, id="all-zero"
    ),
    pytest.param(
        [(50, 50), (50, 45)], {"relative": "zero_variance", "absolute": "zero_variance"}, id="control-100pct"
    ),
    pytest.param(
        [(50, 40), (50, 50)], {"relative": "zero_variance", "absolute": "zero_variance"}, id="treat-100pct"
    ),
    pytest.param(
        [(50, 50), (50, 50)], {"relative": "zero_variance", "absolute": "zero_variance"}, id="both-100pct"
    ),
]


@pytest.mark.parametrize(("pairs", "errors"), DEGENERATE_BINOMIAL)
def test_degenerate_binomial_inputs(pairs: list[tuple[int, int]], errors: dict[str, str]) -> None:
    variants = [BinomialStats(users=n, conversions=c) for n, c in pairs]
    result = analyze("binomial", variants)
    json.dumps(result, allow_nan=False)
    assert_all_finite(result)
    comparison = result["comparisons"][0]
    for block in ESTIMATE_BLOCKS:
        assert comparison[block]["error"] == errors[block]
        assert comparison[block]["estimate"] is None
        assert comparison[block]["se"] is None
        assert comparison[block]["ci"] is None
        assert comparison[block]["p_value"] is None
    assert comparison["sequential_relative"] == {"ci": None, "p_value": None}
    assert set(comparison["bayes_relative"].values()) == {None}
    # gbstats refuses the same inputs (it returns zeros with an error message).
    for relative in (True, False):
        assert gb_ttest(variants[0], variants[1], relative=relative).error_message is not None
    assert gb_bayes(variants[0], variants[1]).error_message is not None


DEGENERATE_MEAN = [
    pytest.param([(5, 10.0, 20.0), (5, 12.0, 30.0)], "zero_variance", id="control-constant"),
    pytest.param([(5, 10.0, 21.0), (4, 8.0, 16.0)], "zero_variance", id="treatment-constant"),
    pytest.param([(1, 3.0, 9.0), (5, 12.0, 30.0)], "too_few_users", id="control-one-user"),
    pytest.param([(0, 0.0, 0.0), (5, 12.0, 30.0)], "no_users", id="control-empty"),
    pytest.param([(5, 0.0, 0.0), (5, 12.0, 30.0)], "zero_baseline", id="control-all-zero"),
    # sum_squares < sum^2 / n is impossible for real data: the negative variance is rejected.
    pytest.param([(5, 10.0, 1.0), (5, 12.0, 30.0)], "zero_variance", id="inconsistent-sums"),
    pytest.param([(3, 1e308, 1e308), (3, 1e308, 1e308)], "numerical_error", id="overflowing-sums"),
]


@pytest.mark.parametrize(("arms", "relative_error"), DEGENERATE_MEAN)
def test_degenerate_mean_inputs(arms: list[tuple[int, float, float]], relative_error: str) -> None:
    variants = [MeanStats(users=n, sum=s, sum_squares=ss) for n, s, ss in arms]
    result = analyze("mean", variants)
    json.dumps(result, allow_nan=False)
    assert_all_finite(result)
    relative = result["comparisons"][0]["relative"]
    assert relative["error"] == relative_error
    assert relative["estimate"] is None
    assert relative["p_value"] is None


def test_zero_mean_control_still_has_an_absolute_difference() -> None:
    # Deliberate difference from gbstats, which refuses any test when the control mean is 0: the
    # absolute difference and its Welch test are well defined, and scipy agrees.
    control_values, treatment_values = [-1.0, 1.0, -1.0, 1.0], [2.0, 1.0, -1.0, 0.0]
    control, treatment = mean_stats_from_sample(control_values), mean_stats_from_sample(treatment_values)
    assert gb_ttest(control, treatment, relative=False).error_message is not None
    result = two_sided_ttest(moments(control), moments(treatment), relative=False)
    reference = scipy.stats.ttest_ind(treatment_values, control_values, equal_var=False)
    assert result.error is None
    assert result.estimate == pytest.approx(0.5)
    assert result.p_value == pytest.approx(float(reference.pvalue), rel=1e-6)
    relative = two_sided_ttest(moments(control), moments(treatment), relative=True)
    assert relative.error == "zero_baseline"


def test_extreme_but_valid_inputs_stay_finite() -> None:
    cases: list[tuple[str, list[Any]]] = [
        (
            "binomial",
            [BinomialStats(users=10**15, conversions=1), BinomialStats(users=10**15, conversions=10**15 - 1)],
        ),
        (
            "binomial",
            [BinomialStats(users=10**15, conversions=5 * 10**14), BinomialStats(users=2, conversions=1)],
        ),
        (
            "mean",
            [
                MeanStats(users=2, sum=1e-300, sum_squares=1e-300),
                MeanStats(users=2, sum=1e300, sum_squares=1e300),
            ],
        ),
        (
            "mean",
            [
                MeanStats(users=3, sum=1e-200, sum_squares=1e-200),
                MeanStats(users=3, sum=1.0, sum_squares=1.0),
            ],
        ),
        (
            "mean",
            [
                MeanStats(users=10**15, sum=1e20, sum_squares=1e30),
                MeanStats(users=2, sum=-1e154, sum_squares=1e308),
            ],
        ),
    ]
    for metric_type, variants in cases:
        result = analyze(metric_type, variants, mde=0.01)  # type: ignore[arg-type]
        json.dumps(result, allow_nan=False)
        assert_all_finite(result)
        for block in ESTIMATE_BLOCKS:
            section = result["comparisons"][0][block]
            assert (section["error"] is None) == (section["estimate"] is not None)
