"""Fixed-horizon frequentist comparison: Welch's t test on the absolute or relative difference.

Matches gbstats 0.8.0 `gbstats.frequentist.tests.TwoSidedTTest`:
- absolute: mean_t - mean_c with variance var_t / n_t + var_c / n_c;
- relative: (mean_t - mean_c) / mean_c with the delta-method variance
  var_t / (mean_c^2 n_t) + var_c mean_t^2 / (mean_c^4 n_c) (`frequentist_variance`);
- degrees of freedom: Welch-Satterthwaite on the per-arm variances (Welch 1947, Satterthwaite 1946),
  also for the relative difference, as gbstats does;
- p-value 2 P(T > |estimate| / se) and CI estimate +/- t_(1 - alpha/2) se.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abtest.stats.distributions import t_isf, t_sf
from abtest.stats.moments import NUMERICAL_ERROR, Moments, check_pair

__all__ = ["FrequentistResult", "difference", "two_sided_ttest", "welch_dof"]


@dataclass(frozen=True, slots=True)
class FrequentistResult:
    """Estimate, standard error, two-sided CI and p-value; all None (and `error` set) when undefined."""

    estimate: float | None
    se: float | None
    ci: tuple[float, float] | None
    p_value: float | None
    error: str | None = None
    dof: float | None = None

    @classmethod
    def failed(cls, error: str) -> FrequentistResult:
        """A result that carries only the reason why nothing could be estimated."""
        return cls(None, None, None, None, error)

    def to_dict(self) -> dict[str, object]:
        """The JSON shape {"estimate", "se", "ci", "p_value", "error"}."""
        return {
            "estimate": self.estimate,
            "se": self.se,
            "ci": list(self.ci) if self.ci is not None else None,
            "p_value": self.p_value,
            "error": self.error,
        }


def difference(control: Moments, treatment: Moments, *, relative: bool) -> tuple[float, float]:
    """Point estimate of the lift and its variance (gbstats `frequentist_diff` / `frequentist_variance`).

    Raises ZeroDivisionError or returns non-finite numbers for degenerate inputs; callers check first.
    """
    if relative:
        ratio = treatment.mean / control.mean
        estimate = (treatment.mean - control.mean) / control.mean
        # var_t / (m_c^2 n_t) + var_c m_t^2 / (m_c^4 n_c), divided stepwise so m_c^4 cannot underflow.
        variance = (treatment.variance / treatment.n) / control.mean / control.mean + (
            control.variance / control.n
        ) * ratio * ratio / control.mean / control.mean
        return estimate, variance
    return treatment.mean - control.mean, treatment.variance / treatment.n + control.variance / control.n


def welch_dof(control: Moments, treatment: Moments) -> float:
    """Welch-Satterthwaite degrees of freedom (s_c^2/n_c + s_t^2/n_t)^2 / sum (s_i^2/n_i)^2 / (n_i - 1).

    Both squared-error terms are scaled by the larger one first so that huge variances cannot overflow.
    """
    a = control.variance / control.n
    b = treatment.variance / treatment.n
    scale = max(a, b)
    a /= scale
    b /= scale
    return (a + b) * (a + b) / (a * a / (control.n - 1) + b * b / (treatment.n - 1))


def _finite(*values: float) -> bool:
    return all(math.isfinite(value) for value in values)


def two_sided_ttest(
    control: Moments, treatment: Moments, *, relative: bool, alpha: float = 0.05
) -> FrequentistResult:
    """Welch two-sided t test of treatment against control (gbstats `TwoSidedTTest`).

    `relative` selects the relative lift (mean_t / mean_c - 1) instead of the absolute difference.
    Unlike gbstats, the absolute test does not require a non-zero control mean (it is well defined
    there), and the p-value is computed as 2 sf(|t|) rather than 2 (1 - cdf(|t|)), which keeps its
    relative accuracy when it is tiny.
    """
    error = check_pair(control, treatment, relative=relative)
    if error is not None:
        return FrequentistResult.failed(error)
    try:
        estimate, variance = difference(control, treatment, relative=relative)
        dof = welch_dof(control, treatment)
        se = math.sqrt(variance)
        if not (_finite(estimate, variance, dof) and se > 0.0 and dof > 0.0):
            return FrequentistResult.failed(NUMERICAL_ERROR)
        statistic = estimate / se
        p_value = min(1.0, 2.0 * t_sf(abs(statistic), dof))
        half_width = t_isf(0.5 * alpha, dof) * se
        ci = (estimate - half_width, estimate + half_width)
    except (ArithmeticError, ValueError):
        return FrequentistResult.failed(NUMERICAL_ERROR)
    if not _finite(*ci, p_value):
        return FrequentistResult.failed(NUMERICAL_ERROR)
    return FrequentistResult(estimate, se, ci, p_value, None, dof)
