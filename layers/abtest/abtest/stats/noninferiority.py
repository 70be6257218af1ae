"""Guardrails: a one-sided non-inferiority test of the relative lift against a margin in the bad direction.

A guardrail (latency, refunds, errors) is not meant to improve; it must not get worse by more than a
relative margin m (0.02: at most 2% worse than control). "Worse" is the metric's bad direction:
up for a `lower`-is-better metric, down for a `higher`-is-better one. Write L for the relative lift
(mean_t - mean_c) / mean_c, with the delta-method standard error se and Welch-Satterthwaite degrees of
freedom nu of the two-sided test (`frequentist.difference`, `frequentist.welch_dof`), t = t_(1 - alpha, nu),
and the harm h = L for a lower-is-better metric, h = -L for a higher-is-better one. Then:

- harm bound      h_hat + t se: the worst harm the data allow at one-sided level alpha;
- favourable bound h_hat - t se: the least harm the data allow;
- `non_inferior` when the harm bound lies within the margin (h_hat + t se < m): the test of
  H0: h >= m rejects at level alpha, i.e. gbstats' one-sided t test (`OneSidedTreatmentLesserTTest` with
  test_value = m for lower-is-better, `OneSidedTreatmentGreaterTTest` with test_value = -m otherwise);
- `inferior` when even the favourable bound lies beyond the margin (h_hat - t se > m): the test of
  H0: h <= m rejects at level alpha, i.e. the treatment is worse than the margin allows;
- `inconclusive` otherwise (the one-sided intervals straddle the margin), and whenever the comparison
  cannot be made (no users, zero variance, a control mean that is not positive): it reports `error`.
For alpha < 0.5 the two rejections exclude each other. Reported on the lift's own scale: `harm_bound` is
L_hat + t se (lower-is-better) or L_hat - t se (higher-is-better), `threshold` is +m or -m.

Sequential mode (`sequential_tuning_parameter` = N*, e.g. 5000): the fixed-horizon t bounds assume one
look; a decision recomputed at every rollup looks many times. With N* set, both bounds are GrowthBook's
one-sided always-valid bounds instead (newer gbstats' `SequentialOneSidedTreatment{Lesser,Greater}TTest`,
Waudby-Smith et al., arXiv:2103.06476v7 eq. 134): half-width
sqrt(s^2 2 (N rho^2 + 1) / (N rho)^2 log(1 + sqrt(N rho^2 + 1) / (2 alpha))), with s^2 = se^2 N,
N = n_c + n_t and rho tuned at N* for level 2 alpha; the outcomes read these bounds, and the p-values
(which gbstats finds by bisection) are left out (None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from abtest.stats.distributions import t_cdf, t_isf, t_sf
from abtest.stats.frequentist import difference, welch_dof
from abtest.stats.moments import NUMERICAL_ERROR, Moments, check_pair
from abtest.stats.sequential import sequential_rho

__all__ = ["Direction", "GuardrailOutcome", "NonInferiorityResult", "noninferiority_test"]

Direction = Literal["higher", "lower"]
GuardrailOutcome = Literal["non_inferior", "inferior", "inconclusive"]


@dataclass(frozen=True, slots=True)
class NonInferiorityResult:
    """Outcome of a guardrail's non-inferiority test; numbers are None (and `error` set) when undefined."""

    outcome: GuardrailOutcome
    margin: float
    direction: Direction
    threshold: float  # the lift at the margin: +margin (lower is better) or -margin (higher is better)
    estimate: float | None = None  # relative lift L_hat
    se: float | None = None
    harm_bound: float | None = None  # one-sided (1 - alpha) bound of L on the harmful side
    favourable_bound: float | None = None  # one-sided (1 - alpha) bound of L on the favourable side
    p_value: float | None = None  # of H0 "harm >= margin" (small: non-inferior); None when sequential
    p_value_inferior: float | None = None  # of H0 "harm <= margin" (small: inferior); None when sequential
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of a guardrail's result."""
        return {
            "outcome": self.outcome,
            "margin": self.margin,
            "direction": self.direction,
            "threshold": self.threshold,
            "estimate": self.estimate,
            "se": self.se,
            "harm_bound": self.harm_bound,
            "favourable_bound": self.favourable_bound,
            "p_value": self.p_value,
            "p_value_inferior": self.p_value_inferior,
            "error": self.error,
        }


def _sequential_half_width(se: float, total_users: int, alpha: float, tuning_parameter: float) -> float:
    """One-sided always-valid half-width (arXiv:2103.06476v7 eq. 134, rho at 2 alpha as gbstats does)."""
    n = float(total_users)
    rho = sequential_rho(2.0 * alpha, tuning_parameter)
    n_rho2_plus_1 = n * rho * rho + 1.0
    s2 = se * se * n
    return math.sqrt(
        s2
        * 2.0
        * n_rho2_plus_1
        / ((n * rho) * (n * rho))
        * math.log1p(math.sqrt(n_rho2_plus_1) / (2.0 * alpha))
    )


def noninferiority_test(
    control: Moments,
    treatment: Moments,
    *,
    margin: float,
    direction: Direction,
    alpha: float = 0.05,
    sequential_tuning_parameter: float | None = None,
) -> NonInferiorityResult:
    """One-sided non-inferiority test of the treatment's relative lift against `margin` (see module doc).

    `margin` >= 0 is relative (0.02 = 2%); `direction` is the metric's good direction; `alpha` in (0, 0.5)
    is the one-sided level of each of the two tests; `sequential_tuning_parameter` (N*) switches to the
    always-valid one-sided bounds.
    """
    if not (math.isfinite(margin) and margin >= 0.0):
        raise ValueError("margin must be a finite number >= 0")
    if not 0.0 < alpha < 0.5:
        raise ValueError("alpha must be in (0, 0.5)")
    if sequential_tuning_parameter is not None and not sequential_tuning_parameter > 0.0:
        raise ValueError("sequential_tuning_parameter must be > 0")
    sign = 1.0 if direction == "lower" else -1.0  # harm = sign * lift
    threshold = sign * margin
    error = check_pair(control, treatment, relative=True)
    if error is not None:
        return NonInferiorityResult("inconclusive", margin, direction, threshold, error=error)
    try:
        estimate, variance = difference(control, treatment, relative=True)
        dof = welch_dof(control, treatment)
        se = math.sqrt(variance)
        if not (math.isfinite(estimate) and math.isfinite(dof) and se > 0.0 and math.isfinite(se)):
            raise ArithmeticError
        harm = sign * estimate
        p_non_inferior: float | None = None
        p_inferior: float | None = None
        if sequential_tuning_parameter is None:
            half_width = t_isf(alpha, dof) * se
            # Standardised distance of the harm from the margin; the two one-sided p-values.
            z = (harm - margin) / se
            p_non_inferior = t_cdf(z, dof)
            p_inferior = t_sf(z, dof)
        else:
            half_width = _sequential_half_width(
                se, control.n + treatment.n, alpha, sequential_tuning_parameter
            )
        if not math.isfinite(half_width):
            raise ArithmeticError
    except (ArithmeticError, ValueError):
        return NonInferiorityResult("inconclusive", margin, direction, threshold, error=NUMERICAL_ERROR)
    outcome: GuardrailOutcome = "inconclusive"
    if harm + half_width < margin:
        outcome = "non_inferior"
    elif harm - half_width > margin:
        outcome = "inferior"
    return NonInferiorityResult(
        outcome,
        margin,
        direction,
        threshold,
        estimate=estimate,
        se=se,
        harm_bound=estimate + sign * half_width,
        favourable_bound=estimate - sign * half_width,
        p_value=p_non_inferior,
        p_value_inferior=p_inferior,
    )
