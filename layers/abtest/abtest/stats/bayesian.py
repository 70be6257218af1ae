"""Bayesian comparison: Gaussian posterior on the lift, as gbstats 0.8.0 `EffectBayesianABTest`.

The likelihood is the normal approximation of the (relative) difference, with the same estimate and
delta-method variance as the frequentist test. With an optional proper Gaussian prior N(m0, v0) the
posterior is the usual precision-weighted combination; without one (gbstats' default improper prior)
the posterior is N(estimate, variance). From it:
- chance to win: P(lift > 0);
- credible interval: the central 1 - alpha posterior interval;
- risk (expected loss, gbstats `EffectBayesianABTest.get_risk`): shipping control loses
  E[max(lift, 0)], shipping treatment loses E[max(-lift, 0)]. gbstats computes these as
  P(lift > 0) E[lift | lift > 0] with truncated-normal means; the closed forms used here,
  mu Phi(mu/s) + s phi(mu/s) and -mu Phi(-mu/s) + s phi(mu/s), are the same quantities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abtest.stats.distributions import norm_cdf, norm_isf, norm_pdf
from abtest.stats.frequentist import difference
from abtest.stats.inputs import GaussianPrior
from abtest.stats.moments import NUMERICAL_ERROR, Moments, check_pair

__all__ = ["BayesianResult", "effect_bayesian_test", "expected_losses"]


@dataclass(frozen=True, slots=True)
class BayesianResult:
    """Posterior summaries of the lift; all None (and `error` set) when the data cannot support one."""

    chance_to_win: float | None
    ci: tuple[float, float] | None
    risk_control: float | None
    risk_treatment: float | None
    expected: float | None = None
    stddev: float | None = None
    error: str | None = None

    @classmethod
    def failed(cls, error: str) -> BayesianResult:
        """A result that carries only the reason why nothing could be estimated."""
        return cls(None, None, None, None, None, None, error)

    def to_dict(self) -> dict[str, object]:
        """The JSON shape {"chance_to_win", "ci", "risk_control", "risk_treatment"}."""
        return {
            "chance_to_win": self.chance_to_win,
            "ci": list(self.ci) if self.ci is not None else None,
            "risk_control": self.risk_control,
            "risk_treatment": self.risk_treatment,
        }


def expected_losses(mu: float, sigma: float) -> tuple[float, float]:
    """(E[max(X, 0)], E[max(-X, 0)]) for X ~ N(mu, sigma^2): the risk of shipping control, treatment."""
    z = mu / sigma
    density = sigma * norm_pdf(z)
    risk_control = mu * norm_cdf(z) + density
    risk_treatment = -mu * norm_cdf(-z) + density
    # Both are non-negative; rounding in the far tail must not make either slightly negative.
    return max(risk_control, 0.0), max(risk_treatment, 0.0)


def effect_bayesian_test(
    control: Moments,
    treatment: Moments,
    *,
    alpha: float = 0.05,
    prior: GaussianPrior | None = None,
    relative: bool = True,
) -> BayesianResult:
    """Gaussian-posterior test of treatment against control (gbstats `EffectBayesianABTest`).

    `prior` is on the same scale as the effect (relative lift by default); None means a flat prior.
    """
    error = check_pair(control, treatment, relative=relative)
    if error is not None:
        return BayesianResult.failed(error)
    try:
        data_mean, data_variance = difference(control, treatment, relative=relative)
        if not (math.isfinite(data_mean) and math.isfinite(data_variance) and data_variance > 0.0):
            return BayesianResult.failed(NUMERICAL_ERROR)
        if prior is None:
            mean, variance = data_mean, data_variance
        else:
            precision = 1.0 / data_variance + 1.0 / prior.variance
            mean = (data_mean / data_variance + prior.mean / prior.variance) / precision
            variance = 1.0 / precision
        sd = math.sqrt(variance)
        chance_to_win = norm_cdf(mean / sd)
        half_width = norm_isf(0.5 * alpha) * sd
        ci = (mean - half_width, mean + half_width)
        risk_control, risk_treatment = expected_losses(mean, sd)
    except (ArithmeticError, ValueError):
        return BayesianResult.failed(NUMERICAL_ERROR)
    values = (chance_to_win, *ci, risk_control, risk_treatment, mean, sd)
    if not all(math.isfinite(value) for value in values):
        return BayesianResult.failed(NUMERICAL_ERROR)
    return BayesianResult(chance_to_win, ci, risk_control, risk_treatment, mean, sd, None)
