"""The closed-form tests against gbstats 0.8.0 and scipy on the shared case table (tolerance 1e-9
relative for estimates, 1e-6 relative / 1e-12 absolute for p-values)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from _stats_cases import ALL_CASES, COMPARISONS, comparison_id
from _stats_reference import (
    P_ABS,
    P_REL,
    REL,
    Case,
    gb_bayes,
    gb_sequential,
    gb_ttest,
    mean_of,
    variance_of,
)
from gbstats.utils import check_srm

from abtest.stats import (
    GaussianPrior,
    effect_bayesian_test,
    moments,
    sequential_test,
    srm_check,
    two_sided_ttest,
)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _approx(value: float, rel: float = REL) -> object:
    return pytest.approx(value, rel=rel, abs=1e-300)


def _p_approx(value: float) -> object:
    return pytest.approx(value, rel=P_REL, abs=P_ABS)


def test_case_table_is_large_enough() -> None:
    # The acceptance bar: at least 30 reference cases, 3 to 5 arms, 10 million users per arm.
    assert len(ALL_CASES) >= 25
    assert len(COMPARISONS) >= 30
    assert {len(case.variants) for case in ALL_CASES} >= {2, 3, 4, 5}
    assert max(v.users for case in ALL_CASES for v in case.variants) >= 10_000_000


@pytest.mark.parametrize("relative", [True, False], ids=["relative", "absolute"])
@pytest.mark.parametrize("pair", COMPARISONS, ids=comparison_id)
def test_welch_matches_gbstats_two_sided_ttest(pair: tuple[Case, int], relative: bool) -> None:
    case, j = pair
    control, treatment = case.variants[0], case.variants[j]
    mine = two_sided_ttest(moments(control), moments(treatment), relative=relative)
    reference = gb_ttest(control, treatment, relative=relative)
    if reference.error_message is not None:
        assert mine.error is not None
        assert mine.estimate is None
        assert mine.p_value is None
        assert mine.ci is None
        return
    assert mine.error is None
    assert mine.estimate == _approx(reference.expected)
    assert mine.se == _approx(reference.uplift.stddev)
    assert mine.ci is not None
    assert mine.ci[0] == _approx(reference.ci[0])
    assert mine.ci[1] == _approx(reference.ci[1])
    assert mine.p_value == _p_approx(reference.p_value)


@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.2])
@pytest.mark.parametrize("pair", COMPARISONS, ids=comparison_id)
def test_absolute_welch_matches_scipy_from_stats(pair: tuple[Case, int], alpha: float) -> None:
    # Independent of gbstats: scipy's Welch test on (mean, sd, n) with gbstats' variance convention.
    case, j = pair
    control, treatment = case.variants[0], case.variants[j]
    if min(variance_of(control), variance_of(treatment)) <= 0 or min(control.users, treatment.users) < 2:
        pytest.skip("degenerate: covered by the degenerate-input tests")
    mine = two_sided_ttest(moments(control), moments(treatment), relative=False, alpha=alpha)
    sd_t, sd_c = math.sqrt(variance_of(treatment)), math.sqrt(variance_of(control))
    result = scipy.stats.ttest_ind_from_stats(
        mean_of(treatment), sd_t, treatment.users, mean_of(control), sd_c, control.users, equal_var=False
    )
    a, b = variance_of(control) / control.users, variance_of(treatment) / treatment.users
    dof = (a + b) ** 2 / (a * a / (control.users - 1) + b * b / (treatment.users - 1))
    half = scipy.stats.t.isf(alpha / 2, dof) * math.sqrt(a + b)
    diff = mean_of(treatment) - mean_of(control)
    assert mine.p_value == _p_approx(float(result.pvalue))
    assert mine.estimate == pytest.approx(diff, rel=REL, abs=1e-15)
    assert mine.dof == _approx(dof)
    assert mine.ci is not None
    assert mine.ci[0] == pytest.approx(diff - half, rel=REL, abs=1e-15)
    assert mine.ci[1] == pytest.approx(diff + half, rel=REL, abs=1e-15)


@pytest.mark.parametrize("pair", [p for p in COMPARISONS if p[0].raw is not None], ids=comparison_id)
def test_absolute_welch_matches_scipy_on_raw_samples(pair: tuple[Case, int]) -> None:
    # From the raw per-user values rather than sufficient statistics.
    case, j = pair
    assert case.raw is not None
    control_raw, treatment_raw = case.raw[0], case.raw[j]
    mine = two_sided_ttest(moments(case.variants[0]), moments(case.variants[j]), relative=False)
    result = scipy.stats.ttest_ind(treatment_raw, control_raw, equal_var=False)
    ci = result.confidence_interval(0.95)
    assert mine.estimate == pytest.approx(treatment_raw.mean() - control_raw.mean(), rel=1e-8)
    assert mine.p_value == pytest.approx(float(result.pvalue), rel=1e-8, abs=P_ABS)
    assert mine.dof == pytest.approx(float(result.df), rel=1e-8)
    assert mine.ci is not None
    assert mine.ci[0] == pytest.approx(float(ci.low), rel=1e-8)
    assert mine.ci[1] == pytest.approx(float(ci.high), rel=1e-8)


@pytest.mark.parametrize(("alpha", "tuning"), [(0.05, 5000), (0.01, 5000), (0.1, 100_000), (0.05, 50)])
@pytest.mark.parametrize("pair", COMPARISONS, ids=comparison_id)
def test_sequential_matches_gbstats(pair: tuple[Case, int], alpha: float, tuning: float) -> None:
    case, j = pair
    control, treatment = case.variants[0], case.variants[j]
    fixed = two_sided_ttest(moments(control), moments(treatment), relative=True, alpha=alpha)
    mine = sequential_test(fixed, control.users + treatment.users, alpha=alpha, tuning_parameter=tuning)
    reference = gb_sequential(control, treatment, alpha=alpha, tuning=tuning)
    if reference.error_message is not None:
        assert mine.ci is None
        assert mine.p_value is None
        return
    assert mine.ci is not None
    assert mine.ci[0] == _approx(reference.ci[0])
    assert mine.ci[1] == _approx(reference.ci[1])
    assert mine.p_value == _p_approx(reference.p_value)


PRIORS = [None, GaussianPrior(mean=0.0, variance=0.3**2), GaussianPrior(mean=0.05, variance=0.01)]


@pytest.mark.parametrize("prior", PRIORS, ids=["flat", "prior_sd_0.3", "prior_mean_0.05"])
@pytest.mark.parametrize("pair", COMPARISONS, ids=comparison_id)
def test_bayesian_matches_gbstats_effect_test(pair: tuple[Case, int], prior: GaussianPrior | None) -> None:
    case, j = pair
    control, treatment = case.variants[0], case.variants[j]
    mine = effect_bayesian_test(moments(control), moments(treatment), prior=prior)
    reference = gb_bayes(control, treatment, prior=prior)
    if reference.error_message is not None:
        assert mine.error is not None
        assert mine.chance_to_win is None
        assert mine.risk_control is None
        return
    assert mine.error is None
    assert mine.chance_to_win == pytest.approx(reference.chance_to_win, rel=REL, abs=1e-15)
    assert mine.expected == _approx(reference.expected)
    assert mine.stddev == _approx(reference.uplift.stddev)
    assert mine.ci is not None
    assert mine.ci[0] == _approx(reference.ci[0])
    assert mine.ci[1] == _approx(reference.ci[1])
    # gbstats' truncated-normal means come from scipy.stats.truncnorm, accurate to ~1e-10 relative.
    assert mine.risk_control == pytest.approx(reference.risk[0], rel=1e-8, abs=1e-15)
    assert mine.risk_treatment == pytest.approx(reference.risk[1], rel=1e-8, abs=1e-15)


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda case: f"{case.metric_type}-{case.name}")
def test_srm_matches_scipy_chisquare_and_gbstats(case: Case) -> None:
    users = [variant.users for variant in case.variants]
    weights = list(case.weights) if case.weights else [1.0] * len(users)
    expected = np.array(weights) / sum(weights) * sum(users)
    reference = scipy.stats.chisquare(users, f_exp=expected)
    mine = srm_check(users, weights)
    assert mine.p_value == _p_approx(float(reference.pvalue))
    assert mine.p_value == _p_approx(float(check_srm(users, weights)))
    assert mine.flag == (float(reference.pvalue) < 0.001 and min(users) >= 8)


def test_srm_flags_5000_vs_5400_on_equal_weights() -> None:
    result = srm_check([5000, 5400], [0.5, 0.5])
    assert result.flag
    assert result.p_value == _p_approx(float(scipy.stats.chisquare([5000, 5400]).pvalue))
    assert result.p_value < 1e-4


@pytest.mark.parametrize(
    ("users", "weights", "flag"),
    [
        ([5000, 5050], [0.5, 0.5], False),  # chance imbalance
        ([0, 7], [0.5, 0.5], False),  # p < 0.001 but fewer than 8 users
        ([8, 40], [0.5, 0.5], True),  # p ~ 1e-6 with 8 users: flagged
        ([4000, 6000], [0.4, 0.6], False),  # matches unequal weights
        ([5000, 5000], [0.4, 0.6], True),  # equal counts against 40/60
        ([10_000_000, 10_010_000], [1, 1], False),
        ([10_000_000, 10_020_000], [1, 1], True),
        ([100, 100, 100, 150], [25, 25, 25, 25], True),
        ([0, 0, 0], [1, 1, 1], False),
    ],
)
def test_srm_flag_cases(users: list[int], weights: list[float], flag: bool) -> None:
    result = srm_check(users, weights)
    assert result.flag is flag
    if sum(users):
        expected = np.array(weights) / sum(weights) * sum(users)
        assert result.p_value == _p_approx(float(scipy.stats.chisquare(users, f_exp=expected).pvalue))
    else:
        assert result.p_value == 1.0
