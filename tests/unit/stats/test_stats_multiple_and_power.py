"""Holm / Benjamini-Hochberg against statsmodels, and the sample-size formula against statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower

from abtest.stats import Moments, adjust_p_values, analyze, power_analysis, required_sample_size

METHODS = {"holm": "holm", "bh": "fdr_bh"}


def _p_value_sets() -> list[list[float]]:
    rng = np.random.default_rng(99)
    sets = [rng.random(size).tolist() for size in (1, 2, 3, 4, 5, 8, 13, 20)]
    sets.append((rng.random(10) ** 6).tolist())  # many small p-values
    sets.append([0.01, 0.01, 0.04, 0.04, 0.2])  # ties
    sets.append([0.0, 1.0, 0.5, 1e-300, 0.049])  # boundaries
    return sets


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("p_values", _p_value_sets())
def test_adjusted_p_values_match_statsmodels(p_values: list[float], method: str) -> None:
    _, expected, _, _ = multipletests(p_values, method=METHODS[method])
    adjusted = adjust_p_values(p_values, method)  # type: ignore[arg-type]
    assert adjusted == pytest.approx(expected.tolist(), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("method", list(METHODS))
def test_missing_p_values_are_left_out_of_the_family(method: str) -> None:
    p_values = [0.01, None, 0.03, None, 0.2]
    _, expected, _, _ = multipletests([0.01, 0.03, 0.2], method=METHODS[method])
    adjusted = adjust_p_values(p_values, method)  # type: ignore[arg-type]
    assert adjusted[1] is None
    assert adjusted[3] is None
    assert [adjusted[0], adjusted[2], adjusted[4]] == pytest.approx(expected.tolist(), rel=1e-12)


def test_adjustment_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="p-values"):
        adjust_p_values([0.5, 1.5], "holm")
    with pytest.raises(ValueError, match="unknown method"):
        adjust_p_values([0.5], "bonferroni")  # type: ignore[arg-type]
    assert adjust_p_values([], "bh") == []


def _statsmodels_control_users(
    mean: float, var_c: float, var_t: float, mde: float, alpha: float, power: float, ratio: float
) -> float:
    # NormalIndPower assumes one common sd; choose it so that its variance of the difference
    # sigma^2 (1/n1 + 1/(r n1)) equals ours, (var_t / r + var_c (1 + m)^2) / n1 (in units of mean^2).
    # The one-sided test at alpha/2 is the two-sided test without its far rejection tail.
    sigma2 = (var_t / ratio + var_c * (1 + mde) ** 2) / (1 + 1 / ratio)
    effect_size = mde * mean / math.sqrt(sigma2)
    return float(
        NormalIndPower().solve_power(
            effect_size=effect_size, alpha=alpha / 2, power=power, ratio=ratio, alternative="larger"
        )
    )


@pytest.mark.parametrize(
    ("mean", "var_c", "var_t", "mde", "alpha", "power", "ratio"),
    [
        (0.1, 0.09, 0.1 * 1.1 * (1 - 0.11), 0.1, 0.05, 0.8, 1.0),
        (0.02, 0.02 * 0.98, 0.021 * 0.979, 0.05, 0.05, 0.9, 1.0),
        (12.0, 400.0, 400.0, 0.02, 0.01, 0.8, 1.0),
        (3.5, 90.0, 90.0, 0.05, 0.1, 0.95, 0.25),
        (0.5, 0.25, 0.55 * 0.45, 0.1, 0.05, 0.8, 3.0),
    ],
)
def test_required_sample_size_matches_statsmodels(
    mean: float, var_c: float, var_t: float, mde: float, alpha: float, power: float, ratio: float
) -> None:
    mine = required_sample_size(
        mean, var_c, mde, alpha=alpha, power=power, treatment_variance=var_t, ratio=ratio
    )
    reference = _statsmodels_control_users(mean, var_c, var_t, mde, alpha, power, ratio)
    assert mine == pytest.approx(reference, rel=1e-6)
    # Exactness check with scipy: at n, the planned relative test has the requested power.
    se = math.sqrt(var_t / (ratio * mine) + var_c * (1 + mde) ** 2 / mine) / mean
    assert scipy.stats.norm.cdf(mde / se - scipy.stats.norm.isf(alpha / 2)) == pytest.approx(power, rel=1e-12)


def test_power_section_for_binomial_metric() -> None:
    result = analyze(
        "binomial",
        [
            {"users": 4000, "conversions": 400},
            {"users": 4000, "conversions": 430},
            {"users": 2000, "conversions": 190},
        ],
        weights=[0.4, 0.4, 0.2],
        mde=0.1,
        power=0.8,
    )
    section = result["power"]
    p = 0.1
    expected_control = _statsmodels_control_users(p, p * (1 - p), 0.11 * 0.89, 0.1, 0.05, 0.8, 0.5)
    expected_treatment_1 = _statsmodels_control_users(p, p * (1 - p), 0.11 * 0.89, 0.1, 0.05, 0.8, 1.0)
    required = section["required_users_per_variant"]
    # The 20% arm drives the control's requirement (statsmodels solves numerically, to ~1e-8).
    assert math.ceil(expected_control * (1 - 1e-8)) <= required[0] <= math.ceil(expected_control * (1 + 1e-8))
    assert abs(required[1] - expected_treatment_1) <= 1
    assert abs(required[2] - 0.5 * expected_control) <= 1
    assert section["required_total_users"] == sum(required)
    assert section["progress"] == pytest.approx(
        min(4000 / required[0], 4000 / required[1], 2000 / required[2])
    )
    assert section["error"] is None


def test_power_progress_is_capped_at_one_and_errors_are_reported() -> None:
    done = power_analysis("mean", [Moments(10**6, 5.0, 4.0), Moments(10**6, 5.1, 4.0)], [1, 1], mde=0.1)
    assert done.progress == 1.0
    assert done.required_users_per_variant is not None
    too_big = power_analysis("binomial", [Moments(100, 0.6, 0.24), Moments(100, 0.6, 0.24)], [1, 1], mde=0.7)
    assert too_big.error == "mde_out_of_range"
    assert too_big.required_users_per_variant is None
    zero = power_analysis("binomial", [Moments(100, 0.0, 0.0), Moments(100, 0.1, 0.09)], [1, 1], mde=0.1)
    assert zero.error == "zero_baseline"
    assert zero.progress is None
    empty = power_analysis("mean", [Moments(0, 0.0, 0.0), Moments(3, 1.0, 1.0)], [1, 1], mde=0.1)
    assert empty.error == "too_few_users"


def test_required_sample_size_rejects_degenerate_baselines() -> None:
    with pytest.raises(ValueError, match="non-zero"):
        required_sample_size(0.0, 1.0, 0.1)
    with pytest.raises(ValueError, match="positive"):
        required_sample_size(1.0, 0.0, 0.1)
