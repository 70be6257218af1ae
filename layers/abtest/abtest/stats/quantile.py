"""Quantile metrics (e.g. the p50 or p90 of per-user values), with the interval as GrowthBook computes it.

GrowthBook splits the work in two, and this module does both halves from the per-user values:
1. Its SQL summarises each variant (`getQuantileGridColumns`, `getQuantileBoundsFromQueryResponse` in
   GrowthBook's back end): the sample quantile q_hat = PERCENTILE_CONT(nu) of the n values, and the
   order-statistic interval [PERCENTILE_CONT(nu - z se), PERCENTILE_CONT(nu + z se)] with
   z = Phi^-1(0.975), se = sqrt(nu (1 - nu) / n_star), the levels clamped to [1e-8, 1 - 1e-8]. n_star is
   the largest value of the grid 100, 200, 400, ..., 52 428 800 below n (100 when n <= 100); when the
   two bounds coincide (a heavily tied sample), the next smaller n_star whose bounds differ is used.
   `quantile_summary` computes these numbers (`QuantileSummary`).
2. gbstats (`QuantileStatistic`) turns them into a variance: the interval's half-width over z is the
   standard error at n_star, rescaled to n:
       variance_init = (n_star / n) (n - 1) ((upper - lower) / (2 z))^2   (0 when n <= 1),
       variance      = variance_init when n < 100, else max(variance_init, 1e-5);
   and it refuses the comparison (zero variance) when the normal approximation of the order statistic
   would put the interval outside [0, 1] (n <= z^2 nu / (1 - nu) or n <= z^2 (1 - nu) / nu) or when
   variance_init is 0. `quantile_moments` returns `Moments(n, q_hat, variance)`, which the Welch,
   sequential and Bayesian comparisons take as they are (`compare.compare_moments`), as gbstats does.
The 0.05 in z is GrowthBook's, fixed whatever the analysis alpha.

PERCENTILE_CONT is linear interpolation between order statistics (PostgreSQL; numpy's default
"linear" method): position nu (n - 1) in the sorted values. Pure Python (the results function has no
numpy): sorting is O(n log n) time and the sorted copy O(n) memory per variant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from abtest.stats.distributions import norm_isf
from abtest.stats.moments import Moments

__all__ = [
    "N_STAR_VALUES",
    "QuantileSummary",
    "percentile_cont",
    "quantile_bound_levels",
    "quantile_moments",
    "quantile_summary",
]

# GrowthBook's grid of sample sizes at which the interval's bounds are read (back end, N_STAR_VALUES).
N_STAR_VALUES: tuple[int, ...] = tuple(100 * 2**k for k in range(20))
_Z = norm_isf(0.025)  # GrowthBook fixes alpha = 0.05 for the grid and for the zero-variance check
_LEVEL_FLOOR = 1e-8


@dataclass(frozen=True, slots=True)
class QuantileSummary:
    """What GrowthBook's SQL returns for one variant: n, n_star, nu, the quantile and its bounds."""

    n: int
    n_star: int
    nu: float
    quantile: float
    lower: float
    upper: float


def percentile_cont(sorted_values: Sequence[float], level: float) -> float:
    """PostgreSQL PERCENTILE_CONT(level) of ascending values: linear interpolation at level (n - 1)."""
    if not sorted_values:
        raise ValueError("no values")
    if not 0.0 <= level <= 1.0:
        raise ValueError("level must be in [0, 1]")
    position = level * (len(sorted_values) - 1)
    below = math.floor(position)
    above = min(below + 1, len(sorted_values) - 1)
    low, high = sorted_values[below], sorted_values[above]
    return low + (position - below) * (high - low)


def quantile_bound_levels(nu: float, n_star: int) -> tuple[float, float]:
    """The levels nu -/+ z sqrt(nu (1 - nu) / n_star), clamped (GrowthBook `getQuantileBoundValues`)."""
    half_width = _Z * math.sqrt(nu * (1.0 - nu) / n_star)
    return max(nu - half_width, _LEVEL_FLOOR), min(nu + half_width, 1.0 - _LEVEL_FLOOR)


def _bounds(sorted_values: Sequence[float], nu: float, n_star: int) -> tuple[float, float]:
    lower_level, upper_level = quantile_bound_levels(nu, n_star)
    return percentile_cont(sorted_values, lower_level), percentile_cont(sorted_values, upper_level)


def quantile_summary(values: Iterable[float], nu: float, *, ignore_zeros: bool = False) -> QuantileSummary:
    """The nu-quantile of one variant's per-user values and GrowthBook's interval around it.

    `ignore_zeros` leaves out users whose value is 0 (GrowthBook's `quantileSettings.ignoreZeros`).
    With no values every number is 0, as GrowthBook reports an empty variant.
    """
    if not 0.0 < nu < 1.0:
        raise ValueError("nu must be in (0, 1)")
    ordered = sorted(float(value) for value in values if not (ignore_zeros and value == 0.0))
    n = len(ordered)
    if n == 0:
        return QuantileSummary(0, 0, nu, 0.0, 0.0, 0.0)
    quantile = percentile_cont(ordered, nu)
    # The largest n_star below n; the smallest grid value when n is at most that.
    selected = max((k for k, n_star in enumerate(N_STAR_VALUES) if n_star < n), default=0)
    lower, upper = _bounds(ordered, nu, N_STAR_VALUES[selected])
    if lower == upper:
        # Collapsed bounds: walk down to wider intervals until they resolve (GrowthBook does the same);
        # when none does, keep the collapsed pair so that the comparison reports zero variance.
        for k in range(selected - 1, -1, -1):
            wider = _bounds(ordered, nu, N_STAR_VALUES[k])
            if wider[0] != wider[1]:
                selected, (lower, upper) = k, wider
                break
    return QuantileSummary(n, N_STAR_VALUES[selected], nu, quantile, lower, upper)


def _variance_init(summary: QuantileSummary) -> float:
    if summary.n <= 1:
        return 0.0
    spread = (summary.upper - summary.lower) / (2.0 * _Z)
    return (summary.n_star / summary.n) * (summary.n - 1) * spread * spread


def quantile_moments(summary: QuantileSummary) -> Moments:
    """`Moments(n, quantile, variance)` as gbstats `QuantileStatistic` (variance 0 where it refuses)."""
    n, nu = summary.n, summary.nu
    if n == 0:
        return Moments(0, 0.0, 0.0)
    variance_init = _variance_init(summary)
    too_few = n <= _Z * _Z * nu / (1.0 - nu) or n <= _Z * _Z * (1.0 - nu) / nu
    if too_few or variance_init <= 0.0:
        return Moments(n, summary.quantile, 0.0)
    variance = variance_init if n < 100 else max(variance_init, 1e-5)
    return Moments(n, summary.quantile, variance)
