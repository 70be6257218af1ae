"""Sample ratio mismatch: Pearson's chi-squared goodness of fit of the user counts to the weights.

Same statistic as gbstats 0.8.0 `gbstats.utils.check_srm` and `scipy.stats.chisquare` with expected
counts total * w_i / sum(w): X^2 = sum (o_i - e_i)^2 / e_i on k - 1 degrees of freedom. A mismatch is
flagged below p = 0.001 (GrowthBook's default SRM threshold) once every variant has at least 8 users,
so that tiny early counts, for which the chi-squared approximation is poor, never raise the flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from abtest.stats.distributions import chi2_sf

__all__ = ["SRM_MIN_USERS", "SRM_THRESHOLD", "SrmResult", "srm_check", "srm_p_value"]

SRM_THRESHOLD = 0.001
SRM_MIN_USERS = 8


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Chi-squared p-value and whether it signals a sample ratio mismatch."""

    p_value: float
    flag: bool


def srm_p_value(users: Sequence[int], weights: Sequence[float]) -> float:
    """Chi-squared goodness-of-fit p-value of `users` against positive `weights` (1.0 with no users)."""
    if len(users) != len(weights) or len(users) < 2:
        raise ValueError("need at least two variants and one weight per variant")
    if any(weight <= 0 for weight in weights):
        raise ValueError("weights must be positive")
    total = sum(users)
    if total == 0:
        return 1.0
    total_weight = sum(weights)
    statistic = 0.0
    for observed, weight in zip(users, weights, strict=True):
        expected = weight / total_weight * total
        statistic += (observed - expected) ** 2 / expected
    return chi2_sf(statistic, len(users) - 1)


def srm_check(
    users: Sequence[int],
    weights: Sequence[float],
    *,
    threshold: float = SRM_THRESHOLD,
    min_users: int = SRM_MIN_USERS,
) -> SrmResult:
    """SRM p-value and flag: p < threshold while every variant has at least `min_users` users."""
    p_value = srm_p_value(users, weights)
    return SrmResult(p_value, p_value < threshold and min(users) >= min_users)
