"""Always-valid (sequential) confidence interval and p-value, as in gbstats 0.8.0.

GrowthBook's `SequentialTwoSidedTTest` uses the asymptotic confidence sequence of Waudby-Smith et al.
("Time-uniform central limit theory and asymptotic confidence sequences", arXiv:2103.06476v7, eq. 9),
a normal-mixture boundary in the style of Howard et al. (2021, "Time-uniform, nonparametric,
nonasymptotic confidence sequences", Ann. Statist.). The mixture variance rho^2 is tuned so that the
boundary is tightest at N* total users (eq. 161), and the p-value is the inverse of the mixture
e-value (eq. 155). The interval may be looked at after every new user without inflating the error rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abtest.stats.frequentist import FrequentistResult

__all__ = ["SequentialResult", "sequential_rho", "sequential_test"]


@dataclass(frozen=True, slots=True)
class SequentialResult:
    """Always-valid two-sided CI and p-value (None when the fixed-horizon test failed)."""

    ci: tuple[float, float] | None
    p_value: float | None

    def to_dict(self) -> dict[str, object]:
        """The JSON shape {"ci", "p_value"}."""
        return {"ci": list(self.ci) if self.ci is not None else None, "p_value": self.p_value}


def sequential_rho(alpha: float, tuning_parameter: float) -> float:
    """Mixture parameter rho = sqrt((-2 log alpha + log(1 - 2 log alpha)) / N*) (arXiv:2103.06476 eq. 161)."""
    log_alpha = math.log(alpha)
    return math.sqrt((-2.0 * log_alpha + math.log(-2.0 * log_alpha + 1.0)) / tuning_parameter)


def sequential_test(
    fixed: FrequentistResult,
    total_users: int,
    *,
    alpha: float = 0.05,
    tuning_parameter: float = 5000.0,
) -> SequentialResult:
    """Turn a fixed-horizon Welch result into an always-valid CI and p-value.

    `total_users` is N = n_control + n_treatment; the estimate and its variance come from `fixed`, exactly
    as gbstats reuses `TTest.point_estimate` and `TTest.variance`.
    """
    if fixed.estimate is None or fixed.se is None or total_users <= 0:
        return SequentialResult(None, None)
    n = float(total_users)
    rho = sequential_rho(alpha, tuning_parameter)
    rho2 = rho * rho
    n_rho2_plus_1 = n * rho2 + 1.0
    # Width: sqrt(s^2) sqrt(2 (N rho^2 + 1) log(sqrt(N rho^2 + 1) / alpha) / (N rho)^2) with s^2 = var * N.
    s = fixed.se * math.sqrt(n)
    half_width = s * math.sqrt(
        2.0 * n_rho2_plus_1 * (0.5 * math.log(n_rho2_plus_1) - math.log(alpha)) / ((n * rho) * (n * rho))
    )
    ci = (fixed.estimate - half_width, fixed.estimate + half_width)
    # p = min(1, 1 / e-value) with e-value = exp(rho^2 S_t^2 / (2 (N rho^2 + 1))) / sqrt(N rho^2 + 1) and
    # S_t^2 = estimate^2 N / var. Evaluated in logs: gbstats' exp() overflows to p = 0 for huge effects.
    z = fixed.estimate / fixed.se
    z2 = z * z
    log_evalue = rho2 * z2 * n / (2.0 * n_rho2_plus_1) - 0.5 * math.log(n_rho2_plus_1)
    p_value = 1.0 if log_evalue <= 0.0 else math.exp(-log_evalue)
    if not (math.isfinite(ci[0]) and math.isfinite(ci[1]) and math.isfinite(p_value)):
        return SequentialResult(None, None)
    return SequentialResult(ci, p_value)
