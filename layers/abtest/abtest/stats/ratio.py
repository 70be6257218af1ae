"""Ratio metrics: per-user numerator over per-user denominator, analysed with the delta method.

A ratio metric (revenue per session, errors per request) is sum(x) / sum(y) over a variant's users, where
x and y are each user's numerator and denominator totals. Users, not events, are the independent units,
so its variance comes from the delta method on the pair of per-user means (x_bar, y_bar), exactly as
gbstats 0.8.0 `RatioStatistic` with two `SampleMeanStatistic`s:

    mean     = sum_x / sum_y   (0 when sum_y is 0)
    variance = var_x / y_bar^2 + var_y x_bar^2 / y_bar^4 - 2 cov_xy x_bar / y_bar^3   (gbstats
               `variance_of_ratios`), with the unbiased var_x, var_y and
               cov_xy = (sum_xy - sum_x sum_y / n) / (n - 1) (`compute_covariance`); 0 when y_bar is 0
               or n < 2, which the comparisons report as `zero_variance`.

`variance / n` is the squared standard error of the ratio, so a `Moments(n, mean, variance)` plugs into
the same Welch test (absolute and relative lift, `frequentist.two_sided_ttest`), always-valid interval
(`sequential.sequential_test`) and Gaussian posterior (`bayesian.effect_bayesian_test`) as a mean metric,
which is what gbstats' frequentist and Bayesian engines do with a `RatioStatistic`.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from abtest.stats.moments import Moments

__all__ = ["RatioStats", "ratio_moments"]

Count = Annotated[int, Field(ge=0, le=10**15)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class RatioStats(BaseModel):
    """Sufficient statistics of a ratio metric in one variant.

    `users` exposed users; for each user i with numerator total x_i and denominator total y_i:
    sum_x = sum x_i, sum_x2 = sum x_i^2, sum_y = sum y_i, sum_y2 = sum y_i^2, sum_xy = sum x_i y_i.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    users: Count
    sum_x: FiniteFloat
    sum_x2: NonNegativeFloat
    sum_y: FiniteFloat
    sum_y2: NonNegativeFloat
    sum_xy: FiniteFloat


def ratio_moments(
    stats: RatioStats, *, numerator_proportion: bool = False, denominator_proportion: bool = False
) -> Moments:
    """The ratio sum_x / sum_y and its per-user delta-method variance (gbstats `RatioStatistic`).

    A side that is a `proportion` metric (each user's value 0 or 1) uses gbstats' `ProportionStatistic`
    variance, the plug-in p (1 - p). The covariance is the unbiased one whatever the sides, as in
    gbstats 0.8.0 (newer gbstats uses the plug-in covariance when both sides are proportions; the two
    differ by a factor (n - 1) / n in that one term).
    """
    n = stats.users
    if n == 0:
        return Moments(0, 0.0, 0.0)
    mean = 0.0 if stats.sum_y == 0.0 else stats.sum_x / stats.sum_y
    y_bar = stats.sum_y / n
    if y_bar == 0.0 or n < 2:
        return Moments(n, mean, 0.0)
    x_bar = stats.sum_x / n
    # The same expressions as gbstats, so the two agree even where they are ill-conditioned.
    if numerator_proportion:
        var_x = x_bar * (1.0 - x_bar)
    else:
        var_x = (stats.sum_x2 - stats.sum_x * stats.sum_x / n) / (n - 1)
    if denominator_proportion:
        var_y = y_bar * (1.0 - y_bar)
    else:
        var_y = (stats.sum_y2 - stats.sum_y * stats.sum_y / n) / (n - 1)
    cov_xy = (stats.sum_xy - stats.sum_x * stats.sum_y / n) / (n - 1)
    variance = var_x / y_bar**2 + var_y * x_bar**2 / y_bar**4 - 2.0 * cov_xy * x_bar / y_bar**3
    if not math.isfinite(variance):
        variance = math.nan
    return Moments(n, mean, variance)
