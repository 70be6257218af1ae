"""Sample size for a minimum detectable relative effect, and progress towards it.

The test being planned is the one `analyze` runs: a two-sided test of the relative lift with the
delta-method variance (see `frequentist.difference`), in its large-sample normal form. The lift m is
detected with probability `power` when m / se = z_(1 - alpha/2) + z_power, with
se^2 = [var_t / n_t + var_c (1 + m)^2 / n_c] / mean_c^2 and n_t = r n_c, so
n_c = (z_(1 - alpha/2) + z_power)^2 (var_t / r + var_c (1 + m)^2) / (m mean_c)^2
(the usual unpooled-variance formula, e.g. Chow, Shao & Wang, *Sample Size Calculations in Clinical
Research*, sec. 3.2, applied to the ratio). The far rejection tail is ignored, as is customary.
For a binomial metric the treatment variance under the alternative is p_t (1 - p_t) with
p_t = p_c (1 + m); for a mean metric the control variance is assumed for both arms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from abtest.stats.distributions import norm_isf
from abtest.stats.moments import (
    NEGATIVE_BASELINE,
    NUMERICAL_ERROR,
    TOO_FEW_USERS,
    ZERO_BASELINE,
    ZERO_VARIANCE,
    Moments,
)

__all__ = ["MDE_OUT_OF_RANGE", "PowerResult", "power_analysis", "required_sample_size"]

MDE_OUT_OF_RANGE = "mde_out_of_range"  # e.g. a conversion rate that the lift would push past 100%


@dataclass(frozen=True, slots=True)
class PowerResult:
    """Users needed per variant, their total, and the fraction of that already reached (capped at 1)."""

    mde: float
    power: float
    required_users_per_variant: tuple[int, ...] | None
    required_total_users: int | None
    progress: float | None
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of the optional `power` section of the analysis."""
        return {
            "mde": self.mde,
            "power": self.power,
            "required_users_per_variant": (
                list(self.required_users_per_variant) if self.required_users_per_variant is not None else None
            ),
            "required_total_users": self.required_total_users,
            "progress": self.progress,
            "error": self.error,
        }


def required_sample_size(
    baseline_mean: float,
    baseline_variance: float,
    mde: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    treatment_variance: float | None = None,
    ratio: float = 1.0,
) -> float:
    """Control-arm users needed to detect a relative lift `mde` (the treatment needs `ratio` times as many).

    Returns the exact (non-integer) solution; round up for a head count. `treatment_variance` defaults
    to `baseline_variance`. Raises ValueError when the baseline mean is 0 or a variance is not positive.
    """
    if baseline_mean == 0.0:
        raise ValueError("baseline mean must be non-zero")
    if mde == 0.0 or not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0 or ratio <= 0.0:
        raise ValueError("need mde != 0, alpha and power in (0, 1), ratio > 0")
    if treatment_variance is None:
        treatment_variance = baseline_variance
    if baseline_variance <= 0.0 or treatment_variance <= 0.0:
        raise ValueError("variances must be positive")
    z = norm_isf(0.5 * alpha) + norm_isf(1.0 - power)
    spread = treatment_variance / ratio + baseline_variance * (1.0 + mde) * (1.0 + mde)
    effect = mde * baseline_mean
    return z * z * spread / (effect * effect)


def power_analysis(
    metric_type: str,
    variants: Sequence[Moments],
    weights: Sequence[float],
    *,
    mde: float,
    alpha: float = 0.05,
    power: float = 0.8,
) -> PowerResult:
    """Users needed in every variant for each treatment-vs-control test to reach `power` at lift `mde`.

    Traffic is assumed to keep following `weights`: treatment j needs r_j = w_j / w_0 times the control
    count of its own comparison, and the control needs the largest of those. `progress` is the smallest
    users_i / required_i over the variants, capped at 1.
    """
    control = variants[0]
    if control.n < 2:
        return PowerResult(mde, power, None, None, None, TOO_FEW_USERS)
    if control.mean == 0.0:
        return PowerResult(mde, power, None, None, None, ZERO_BASELINE)
    if control.mean < 0.0:
        return PowerResult(mde, power, None, None, None, NEGATIVE_BASELINE)
    if not control.variance > 0.0:
        return PowerResult(mde, power, None, None, None, ZERO_VARIANCE)
    treatment_variance = control.variance
    if metric_type == "binomial":
        p_treatment = control.mean * (1.0 + mde)
        if not 0.0 < p_treatment < 1.0:
            return PowerResult(mde, power, None, None, None, MDE_OUT_OF_RANGE)
        treatment_variance = p_treatment * (1.0 - p_treatment)
    try:
        control_needed = 0.0
        treatment_needed: list[float] = []
        for weight in weights[1:]:
            ratio = weight / weights[0]
            n_control = required_sample_size(
                control.mean,
                control.variance,
                mde,
                alpha=alpha,
                power=power,
                treatment_variance=treatment_variance,
                ratio=ratio,
            )
            control_needed = max(control_needed, n_control)
            treatment_needed.append(ratio * n_control)
        needed = [control_needed, *treatment_needed]
        if not all(math.isfinite(value) for value in needed):
            return PowerResult(mde, power, None, None, None, NUMERICAL_ERROR)
        required = tuple(max(2, math.ceil(value)) for value in needed)
    except (ArithmeticError, ValueError):
        return PowerResult(mde, power, None, None, None, NUMERICAL_ERROR)
    progress = min(1.0, min(variant.n / need for variant, need in zip(variants, required, strict=True)))
    return PowerResult(mde, power, required, sum(required), progress)
