"""Independent reference implementations for the stats tests: gbstats 0.8.0, scipy and statsmodels.

Only the tests import these libraries; the code under test must not (see test_stats_runtime_imports).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from gbstats.bayesian.tests import BayesianTestResult, EffectBayesianABTest, EffectBayesianConfig
from gbstats.bayesian.tests import GaussianPrior as GbGaussianPrior
from gbstats.frequentist.tests import (
    FrequentistConfig,
    FrequentistTestResult,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (
    ProportionStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)

from abtest.stats import BinomialStats, GaussianPrior, MeanStats

# Closed forms computed two ways agree to rounding; p-values from gbstats are 1 - cdf, which only has
# absolute accuracy, hence the absolute floor.
REL = 1e-9
P_REL = 1e-6
P_ABS = 1e-12

VariantStats = BinomialStats | MeanStats
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Case:
    """One analysis input: metric type, variants (0 = control), optional weights."""

    name: str
    metric_type: str
    variants: tuple[VariantStats, ...]
    weights: tuple[float, ...] | None = None
    raw: tuple[FloatArray, ...] | None = field(default=None, compare=False)

    @property
    def comparisons(self) -> list[tuple[Case, int]]:
        return [(self, j) for j in range(1, len(self.variants))]


@contextmanager
def quiet() -> Iterator[None]:
    """gbstats divides by zero and overflows exp() on some inputs; numpy warns, which is not our concern."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def binomial_case(
    name: str, pairs: Sequence[tuple[int, int]], weights: Sequence[float] | None = None
) -> Case:
    variants = tuple(BinomialStats(users=n, conversions=c) for n, c in pairs)
    return Case(name, "binomial", variants, tuple(weights) if weights else None)


def mean_stats_from_sample(post_values: npt.ArrayLike, pre_values: npt.ArrayLike | None = None) -> MeanStats:
    """Sufficient statistics of a raw per-user sample (and its pre-period covariate)."""
    post = np.asarray(post_values, dtype=float)
    if pre_values is None:
        return MeanStats(users=len(post), sum=float(post.sum()), sum_squares=float((post * post).sum()))
    pre = np.asarray(pre_values, dtype=float)
    return MeanStats(
        users=len(post),
        sum=float(post.sum()),
        sum_squares=float((post * post).sum()),
        pre_sum=float(pre.sum()),
        pre_sum_squares=float((pre * pre).sum()),
        post_pre_sum_products=float((post * pre).sum()),
    )


def sample_case(name: str, samples: Sequence[FloatArray], weights: Sequence[float] | None = None) -> Case:
    variants = tuple(mean_stats_from_sample(sample) for sample in samples)
    return Case(name, "mean", variants, tuple(weights) if weights else None, raw=tuple(samples))


def moment_case(name: str, arms: Sequence[tuple[int, float, float]]) -> Case:
    """Mean-metric case from (n, mean, sd) per arm, for sizes too large to simulate."""
    variants = tuple(
        MeanStats(users=n, sum=n * mean, sum_squares=(n - 1) * sd * sd + n * mean * mean)
        for n, mean, sd in arms
    )
    return Case(name, "mean", variants)


def gb_statistic(stats: VariantStats) -> ProportionStatistic | SampleMeanStatistic:
    if isinstance(stats, BinomialStats):
        return ProportionStatistic(n=stats.users, sum=stats.conversions)
    return SampleMeanStatistic(n=stats.users, sum=stats.sum, sum_squares=stats.sum_squares)


def _negative_baseline(control: VariantStats) -> bool:
    """Deliberate difference: a relative lift over a negative control mean is refused (its sign would
    contradict the absolute difference); gbstats divides by the signed mean."""
    return isinstance(control, MeanStats) and control.users > 0 and control.sum < 0


def gb_ttest(
    control: VariantStats, treatment: VariantStats, *, relative: bool, alpha: float = 0.05
) -> FrequentistTestResult:
    config = FrequentistConfig(difference_type="relative" if relative else "absolute", alpha=alpha)
    with quiet():
        result = TwoSidedTTest(gb_statistic(control), gb_statistic(treatment), config).compute_result()
    return (
        replace(result, error_message="negative_baseline")
        if relative and _negative_baseline(control)
        else result
    )


def gb_sequential(
    control: VariantStats, treatment: VariantStats, *, alpha: float = 0.05, tuning: float = 5000
) -> FrequentistTestResult:
    config = SequentialConfig(difference_type="relative", alpha=alpha, sequential_tuning_parameter=tuning)
    with quiet():
        result = SequentialTwoSidedTTest(
            gb_statistic(control), gb_statistic(treatment), config
        ).compute_result()
    return replace(result, error_message="negative_baseline") if _negative_baseline(control) else result


def gb_bayes(
    control: VariantStats, treatment: VariantStats, *, alpha: float = 0.05, prior: GaussianPrior | None = None
) -> BayesianTestResult:
    if prior is None:
        config = EffectBayesianConfig(alpha=alpha)
    else:
        gb_prior = GbGaussianPrior(mean=prior.mean, variance=prior.variance, proper=True)
        config = EffectBayesianConfig(alpha=alpha, prior_effect=gb_prior)
    with quiet():
        result = EffectBayesianABTest(gb_statistic(control), gb_statistic(treatment), config).compute_result()
    return replace(result, error_message="negative_baseline") if _negative_baseline(control) else result


def gb_regression_adjusted(stats: MeanStats) -> RegressionAdjustedStatistic:
    assert stats.pre_sum is not None
    assert stats.pre_sum_squares is not None
    assert stats.post_pre_sum_products is not None
    return RegressionAdjustedStatistic(
        n=stats.users,
        post_statistic=SampleMeanStatistic(n=stats.users, sum=stats.sum, sum_squares=stats.sum_squares),
        pre_statistic=SampleMeanStatistic(
            n=stats.users, sum=stats.pre_sum, sum_squares=stats.pre_sum_squares
        ),
        post_pre_sum_of_products=stats.post_pre_sum_products,
        theta=0,
    )


def gb_cuped(control: MeanStats, treatment: MeanStats, *, alpha: float = 0.05) -> FrequentistTestResult:
    config = FrequentistConfig(difference_type="absolute", alpha=alpha)
    with quiet():
        return TwoSidedTTest(
            gb_regression_adjusted(control), gb_regression_adjusted(treatment), config
        ).compute_result()


def variance_of(stats: VariantStats) -> float:
    """gbstats' variance convention: p(1-p) for binomial, unbiased sample variance for means."""
    return float(gb_statistic(stats).variance)


def mean_of(stats: VariantStats) -> float:
    return float(gb_statistic(stats).mean)


def assert_all_finite(value: Any, path: str = "$") -> None:
    """Every number in a nested result is finite (None is allowed)."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert_all_finite(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            assert_all_finite(item, f"{path}[{index}]")
    elif isinstance(value, float):
        assert math.isfinite(value), f"{path} = {value}"
