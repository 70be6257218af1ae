"""`analyze`: output shape, wiring of each block to its reference, options, input validation."""

from __future__ import annotations

import pytest
from _stats_cases import ALL_CASES
from _stats_reference import (
    P_ABS,
    P_REL,
    REL,
    Case,
    gb_bayes,
    gb_sequential,
    gb_ttest,
    mean_stats_from_sample,
)
from statsmodels.stats.multitest import multipletests

from abtest.stats import BinomialStats, GaussianPrior, MeanStats, StatsInputError, analyze, srm_check

ESTIMATE_KEYS = {"estimate", "se", "ci", "p_value", "error"}
COMPARISON_KEYS = {"treatment_index", "relative", "absolute", "sequential_relative", "bayes_relative"}


def _run(case: Case, **options: object) -> dict[str, object]:
    return analyze(case.metric_type, list(case.variants), weights=case.weights, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda case: f"{case.metric_type}-{case.name}")
def test_analyze_shape_and_values_match_the_references(case: Case) -> None:
    result = _run(case, alpha=0.1, sequential_tuning_parameter=2000)
    assert set(result) == {"srm_p_value", "srm_flag", "comparisons"}
    users = [v.users for v in case.variants]
    srm = srm_check(users, list(case.weights) if case.weights else [1.0] * len(users))
    assert result["srm_p_value"] == srm.p_value
    assert result["srm_flag"] is srm.flag
    comparisons = result["comparisons"]
    assert isinstance(comparisons, list)
    assert len(comparisons) == len(case.variants) - 1
    for j, comparison in enumerate(comparisons, start=1):
        assert set(comparison) == COMPARISON_KEYS
        assert comparison["treatment_index"] == j
        assert set(comparison["relative"]) == ESTIMATE_KEYS
        assert set(comparison["absolute"]) == ESTIMATE_KEYS
        assert set(comparison["sequential_relative"]) == {"ci", "p_value"}
        assert set(comparison["bayes_relative"]) == {"chance_to_win", "ci", "risk_control", "risk_treatment"}
        control, treatment = case.variants[0], case.variants[j]
        for key, relative in (("relative", True), ("absolute", False)):
            reference = gb_ttest(control, treatment, relative=relative, alpha=0.1)
            if reference.error_message is None:
                assert comparison[key]["estimate"] == pytest.approx(reference.expected, rel=REL)
                assert comparison[key]["ci"] == pytest.approx(reference.ci, rel=REL)
                assert comparison[key]["p_value"] == pytest.approx(reference.p_value, rel=P_REL, abs=P_ABS)
        sequential = gb_sequential(control, treatment, alpha=0.1, tuning=2000)
        if sequential.error_message is None:
            assert comparison["sequential_relative"]["ci"] == pytest.approx(sequential.ci, rel=REL)
            assert comparison["sequential_relative"]["p_value"] == pytest.approx(
                sequential.p_value, rel=P_REL, abs=P_ABS
            )
        bayes = gb_bayes(control, treatment, alpha=0.1)
        if bayes.error_message is None:
            assert comparison["bayes_relative"]["chance_to_win"] == pytest.approx(
                bayes.chance_to_win, rel=REL
            )
            assert comparison["bayes_relative"]["ci"] == pytest.approx(bayes.ci, rel=REL)
            assert comparison["bayes_relative"]["risk_control"] == pytest.approx(
                bayes.risk[0], rel=1e-8, abs=1e-15
            )
            assert comparison["bayes_relative"]["risk_treatment"] == pytest.approx(
                bayes.risk[1], rel=1e-8, abs=1e-15
            )


def test_prior_is_passed_to_the_bayesian_block() -> None:
    variants = [BinomialStats(users=1000, conversions=100), BinomialStats(users=1000, conversions=130)]
    prior = GaussianPrior(mean=0.0, variance=0.05**2)
    with_prior = analyze("binomial", variants, prior=prior)["comparisons"][0]["bayes_relative"]
    flat = analyze("binomial", variants)["comparisons"][0]["bayes_relative"]
    reference = gb_bayes(variants[0], variants[1], prior=prior)
    assert with_prior["ci"] == pytest.approx(reference.ci, rel=REL)
    assert with_prior["chance_to_win"] < flat["chance_to_win"]  # shrunk towards 0
    assert analyze("binomial", variants, prior={"mean": 0.0, "variance": 0.05**2}) == analyze(
        "binomial", variants, prior=prior
    )


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_correction_adds_adjusted_p_values_across_treatments(method: str) -> None:
    variants = [BinomialStats(users=5000, conversions=500 + 15 * j) for j in range(5)]
    result = analyze("binomial", variants, correction=method)  # type: ignore[arg-type]
    for key in ("relative", "absolute"):
        raw = [c[key]["p_value"] for c in result["comparisons"]]
        _, expected, _, _ = multipletests(raw, method={"holm": "holm", "bh": "fdr_bh"}[method])
        assert [c[key]["p_value_adjusted"] for c in result["comparisons"]] == pytest.approx(expected.tolist())
    assert "p_value_adjusted" not in analyze("binomial", variants)["comparisons"][0]["relative"]


def test_cuped_block_only_with_pre_period_data() -> None:
    plain = [
        MeanStats(users=10, sum=50.0, sum_squares=300.0),
        MeanStats(users=12, sum=66.0, sum_squares=400.0),
    ]
    assert "cuped_absolute" not in analyze("mean", plain)["comparisons"][0]
    with_pre = [
        mean_stats_from_sample([1.0, 2.0, 4.0, 3.0], [1.0, 2.5, 3.0, 3.5]),
        mean_stats_from_sample([2.0, 3.0, 5.0, 3.0], [1.0, 2.0, 3.0, 3.0]),
    ]
    comparison = analyze("mean", with_pre)["comparisons"][0]
    assert set(comparison) == {*COMPARISON_KEYS, "cuped_absolute"}
    assert set(comparison["cuped_absolute"]) == ESTIMATE_KEYS


def test_default_weights_are_equal() -> None:
    variants = [BinomialStats(users=5000, conversions=10), BinomialStats(users=5400, conversions=10)]
    assert analyze("binomial", variants) == analyze("binomial", variants, weights=[0.5, 0.5])
    assert analyze("binomial", variants)["srm_flag"] is True
    assert analyze("binomial", variants, weights=[50, 54])["srm_flag"] is False


@pytest.mark.parametrize(
    ("metric_type", "variants", "options", "field"),
    [
        ("binomial", [{"users": 10, "conversions": 1}], {}, "variants"),
        (
            "binomial",
            [{"users": 10, "conversions": 11}, {"users": 10, "conversions": 1}],
            {},
            "variants[0].conversions",
        ),
        (
            "binomial",
            [{"users": -1, "conversions": 0}, {"users": 10, "conversions": 1}],
            {},
            "variants[0].users",
        ),
        ("binomial", [{"users": 10}, {"users": 10, "conversions": 1}], {}, "variants[0].conversions"),
        ("binomial", [{"users": 10, "conversions": 1}] * 2, {"weights": [1.0]}, "weights"),
        ("binomial", [{"users": 10, "conversions": 1}] * 2, {"weights": [1.0, 0.0]}, "weights[1]"),
        ("binomial", [{"users": 10, "conversions": 1}] * 2, {"alpha": 0.0}, "alpha"),
        (
            "binomial",
            [{"users": 10, "conversions": 1}] * 2,
            {"sequential_tuning_parameter": -5},
            "sequential_tuning_parameter",
        ),
        ("binomial", [{"users": 10, "conversions": 1}] * 2, {"correction": "bonferroni"}, "correction"),
        ("binomial", [{"users": 10, "sum": 1, "sum_squares": 1}] * 2, {}, "variants[0].conversions"),
        ("mean", [{"users": 10, "sum": 1.0, "sum_squares": -1.0}] * 2, {}, "variants[0].sum_squares"),
        ("mean", [{"users": 10, "sum": 1.0, "sum_squares": 1.0, "pre_sum": 1.0}] * 2, {}, "variants[0]"),
        ("ratio", [{"users": 10, "sum": 1.0, "sum_squares": 1.0}] * 2, {}, "metric_type"),
    ],
)
def test_invalid_input_raises_with_the_field(
    metric_type: str, variants: list[dict[str, object]], options: dict[str, object], field: str
) -> None:
    with pytest.raises(StatsInputError) as caught:
        analyze(metric_type, variants, **options)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert caught.value.code == "invalid_input"
    assert caught.value.to_dict() == {
        "error": "invalid_input",
        "message": caught.value.message,
        "field": field,
    }
