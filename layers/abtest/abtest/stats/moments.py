"""Per-variant moments (n, mean, variance) derived from sufficient statistics, and the error reasons.

Variance conventions follow gbstats 0.8.0 (`gbstats.models.statistics`): a binomial metric uses the
plug-in variance p(1 - p) (`ProportionStatistic.variance`), a mean metric the unbiased sample variance
(sum_squares - sum^2 / n) / (n - 1) (`SampleMeanStatistic.variance`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abtest.stats.inputs import BinomialStats, MeanStats

__all__ = [
    "NEGATIVE_BASELINE",
    "NO_USERS",
    "NUMERICAL_ERROR",
    "TOO_FEW_USERS",
    "ZERO_BASELINE",
    "ZERO_VARIANCE",
    "Moments",
    "check_pair",
    "moments",
]

# Error reasons (stable strings: a results handler can map them to messages).
NO_USERS = "no_users"  # the control or the treatment has no users
TOO_FEW_USERS = "too_few_users"  # fewer than 2 users in an arm: no variance estimate
ZERO_BASELINE = "zero_baseline"  # control mean is 0, so a relative lift is undefined
# Control mean below 0: dividing by it flips the sign of the lift against the absolute difference,
# so relative comparisons are refused (the absolute one still runs).
NEGATIVE_BASELINE = "negative_baseline"
ZERO_VARIANCE = "zero_variance"  # an arm's metric does not vary (e.g. 0% or 100% conversion)
NUMERICAL_ERROR = "numerical_error"  # inputs so extreme that the result is not representable


@dataclass(frozen=True, slots=True)
class Moments:
    """Number of users, mean and variance of the per-user metric in one variant."""

    n: int
    mean: float
    variance: float


def moments(stats: BinomialStats | MeanStats) -> Moments:
    """Mean and variance of one variant's metric (0 for both when there are too few users)."""
    n = stats.users
    if isinstance(stats, BinomialStats):
        if n == 0:
            return Moments(0, 0.0, 0.0)
        p = stats.conversions / n
        return Moments(n, p, p * (1.0 - p))
    if n == 0:
        return Moments(0, 0.0, 0.0)
    mean = stats.sum / n
    if n < 2:
        return Moments(n, mean, 0.0)
    # Same expression as gbstats so the two agree even where it is ill-conditioned.
    variance = (stats.sum_squares - stats.sum * stats.sum / n) / (n - 1)
    if not math.isfinite(variance):
        variance = math.nan
    return Moments(n, mean, variance)


def check_pair(control: Moments, treatment: Moments, *, relative: bool) -> str | None:
    """The reason a control/treatment comparison cannot be made, or None when it can."""
    if control.n == 0 or treatment.n == 0:
        return NO_USERS
    if control.n < 2 or treatment.n < 2:
        return TOO_FEW_USERS
    if not (math.isfinite(control.mean) and math.isfinite(treatment.mean)):
        return NUMERICAL_ERROR
    if relative and control.mean == 0.0:
        return ZERO_BASELINE
    if relative and control.mean < 0.0:
        return NEGATIVE_BASELINE
    if math.isnan(control.variance) or math.isnan(treatment.variance):
        return NUMERICAL_ERROR
    # gbstats treats zero or (rounding-)negative variance in either arm as unanalysable.
    if control.variance <= 0.0 or treatment.variance <= 0.0:
        return ZERO_VARIANCE
    return None
