"""Typed output of `analyze`: the JSON shape of one metric's analysis, as pydantic models.

`analyze` returns this shape as plain JSON-ready dicts (what the CLI prints); `MetricAnalysis.model_validate`
turns it into these models, so the service's API documents every field instead of an opaque object.
Optional sections (`p_value_adjusted`, `cuped_absolute`, `power`) are absent from the JSON unless the
analysis produced them, exactly as in the dicts: their default is pydantic's MISSING sentinel, which
serialisation leaves out, while a present None stays `null`.
"""

from __future__ import annotations

from pydantic import MISSING, BaseModel, ConfigDict, Field

__all__ = [
    "BayesianBlock",
    "Comparison",
    "FrequentistBlock",
    "MetricAnalysis",
    "PowerBlock",
    "SequentialBlock",
]

Interval = tuple[float, float]


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FrequentistBlock(_Output):
    """A fixed-horizon Welch t-test of the lift; every number null (and `error` set) when undefined."""

    estimate: float | None = Field(description="Point estimate of the lift")
    se: float | None = Field(description="Standard error of the estimate")
    ci: Interval | None = Field(description="Two-sided (1 - alpha) confidence interval")
    p_value: float | None = Field(description="Two-sided p-value")
    error: str | None = Field(
        description="Why the comparison could not be made: no_users, too_few_users, zero_baseline, "
        "zero_variance or numerical_error"
    )
    p_value_adjusted: float | MISSING | None = Field(
        default=MISSING, description="The p-value adjusted for multiple comparisons (only with `correction`)"
    )


class SequentialBlock(_Output):
    """Always-valid (sequential) confidence interval and p-value of the relative lift."""

    ci: Interval | None
    p_value: float | None


class BayesianBlock(_Output):
    """Gaussian posterior of the relative lift."""

    chance_to_win: float | None = Field(description="Posterior probability that the treatment beats control")
    ci: Interval | None = Field(description="Credible interval of the relative lift")
    risk_control: float | None = Field(description="Expected loss of shipping the control")
    risk_treatment: float | None = Field(description="Expected loss of shipping the treatment")


class Comparison(_Output):
    """One treatment against the control (variant 0)."""

    treatment_index: int = Field(description="Index of the treatment among the variants (1 or more)")
    relative: FrequentistBlock = Field(description="Relative lift (delta method)")
    absolute: FrequentistBlock = Field(description="Absolute difference of the means")
    sequential_relative: SequentialBlock
    bayes_relative: BayesianBlock
    cuped_absolute: FrequentistBlock | MISSING = Field(
        default=MISSING, description="CUPED-adjusted absolute difference (only with pre-period data)"
    )


class PowerBlock(_Output):
    """Users needed to detect the minimum detectable effect, and how far the experiment has come."""

    mde: float = Field(description="Relative minimum detectable effect")
    power: float
    required_users_per_variant: list[int] | None
    required_total_users: int | None
    progress: float | None = Field(description="Fraction of the required users reached (at most 1)")
    error: str | None


class MetricAnalysis(_Output):
    """Every analysis of one metric: SRM, then each treatment against the control."""

    srm_p_value: float = Field(description="Chi-squared p-value of the users against the weights")
    srm_flag: bool
    comparisons: list[Comparison]
    power: PowerBlock | MISSING = Field(default=MISSING, description="Only when an `mde` is given")
