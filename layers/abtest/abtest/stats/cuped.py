"""CUPED: regression adjustment with a pre-exposure covariate (Deng et al. 2013, WSDM).

Follows gbstats 0.8.0 (`gbstats.models.statistics.RegressionAdjustedStatistic` and `compute_theta`):
- theta is pooled over both arms: cov(post, pre) / var(pre) computed from the summed sufficient statistics
  of control and treatment together (i.e. the OLS slope of post on pre over all their users);
- each arm's adjusted mean is mean(post) - theta mean(pre), with variance
  var(post) + theta^2 var(pre) - 2 theta cov(post, pre);
- the adjusted absolute difference is then tested with the same Welch test as the unadjusted one.
When the pooled pre-period (or post-period) variance is zero, theta is 0 and the result equals the
unadjusted test, as in gbstats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abtest.stats.frequentist import FrequentistResult, two_sided_ttest
from abtest.stats.inputs import MeanStats
from abtest.stats.moments import NUMERICAL_ERROR, Moments

__all__ = ["CupedSums", "adjusted_moments", "cuped_ttest", "pooled_theta"]


@dataclass(frozen=True, slots=True)
class CupedSums:
    """Post- and pre-period sufficient statistics of one arm (or of several arms summed)."""

    n: int
    post_sum: float
    post_sum_squares: float
    pre_sum: float
    pre_sum_squares: float
    post_pre_sum_products: float

    @classmethod
    def from_stats(cls, stats: MeanStats) -> CupedSums:
        """Take the sums from a `MeanStats` that has pre-period data."""
        if stats.pre_sum is None or stats.pre_sum_squares is None or stats.post_pre_sum_products is None:
            raise ValueError("CUPED needs pre_sum, pre_sum_squares and post_pre_sum_products")
        return cls(
            stats.users,
            stats.sum,
            stats.sum_squares,
            stats.pre_sum,
            stats.pre_sum_squares,
            stats.post_pre_sum_products,
        )

    def __add__(self, other: CupedSums) -> CupedSums:
        return CupedSums(
            self.n + other.n,
            self.post_sum + other.post_sum,
            self.post_sum_squares + other.post_sum_squares,
            self.pre_sum + other.pre_sum,
            self.pre_sum_squares + other.pre_sum_squares,
            self.post_pre_sum_products + other.post_pre_sum_products,
        )

    def _centered(self, sum_products: float, sum_a: float, sum_b: float) -> float:
        # Sample (co)variance (sum ab - sum a sum b / n) / (n - 1), gbstats' expression; 0 when n <= 1.
        if self.n <= 1:
            return 0.0
        return (sum_products - sum_a * sum_b / self.n) / (self.n - 1)

    @property
    def post_variance(self) -> float:
        """Sample variance of the post-period metric."""
        return self._centered(self.post_sum_squares, self.post_sum, self.post_sum)

    @property
    def pre_variance(self) -> float:
        """Sample variance of the pre-period covariate."""
        return self._centered(self.pre_sum_squares, self.pre_sum, self.pre_sum)

    @property
    def covariance(self) -> float:
        """Sample covariance of post and pre."""
        return self._centered(self.post_pre_sum_products, self.post_sum, self.pre_sum)


def pooled_theta(control: CupedSums, treatment: CupedSums) -> float:
    """theta = cov(post, pre) / var(pre) over both arms together (gbstats `compute_theta`); 0 if undefined."""
    joint = control + treatment
    pre_variance = joint.pre_variance
    post_variance = joint.post_variance
    if not (pre_variance > 0.0 and post_variance > 0.0):
        return 0.0
    theta = joint.covariance / pre_variance
    return theta if math.isfinite(theta) else 0.0


def adjusted_moments(arm: CupedSums, theta: float) -> Moments:
    """n, adjusted mean and adjusted variance of one arm for a given theta."""
    if arm.n == 0:
        return Moments(0, 0.0, 0.0)
    mean = arm.post_sum / arm.n - theta * arm.pre_sum / arm.n
    variance = arm.post_variance + theta * theta * arm.pre_variance - 2.0 * theta * arm.covariance
    if not math.isfinite(variance):
        variance = math.nan
    return Moments(arm.n, mean, variance if arm.n > 1 else 0.0)


def cuped_ttest(control: MeanStats, treatment: MeanStats, *, alpha: float = 0.05) -> FrequentistResult:
    """Welch test of the CUPED-adjusted absolute difference (gbstats `TwoSidedTTest` on
    `RegressionAdjustedStatistic`s with difference_type="absolute")."""
    try:
        control_sums = CupedSums.from_stats(control)
        treatment_sums = CupedSums.from_stats(treatment)
        theta = pooled_theta(control_sums, treatment_sums)
        control_moments = adjusted_moments(control_sums, theta)
        treatment_moments = adjusted_moments(treatment_sums, theta)
    except ArithmeticError:
        return FrequentistResult.failed(NUMERICAL_ERROR)
    return two_sided_ttest(control_moments, treatment_moments, relative=False, alpha=alpha)
