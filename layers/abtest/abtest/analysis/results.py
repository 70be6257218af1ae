"""The results report: the statistical verdict of an experiment from its sufficient statistics (pure).

For every metric two analyses, each comparing every variant with the first (the control):
- `conversion` (binomial): exposed users who converted at least once out of exposed users;
- `value` (mean): the per-user total over exposed users (zero for users without conversions).
Each has frequentist (Welch t, delta-method relative lift), sequential (always-valid), and Bayesian
(chance to win, risk) blocks from abtest.stats. The sample-ratio-mismatch verdict sits on top; with
a `correction` (holm or bh) the relative p-values are adjusted across every treatment and metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from abtest.analysis.bandits import BanditEstimates
from abtest.analysis.roles import DecisionOut, RoleMetric, RoleResults
from abtest.analysis.rollup import RunningAllocation, VariantMetrics
from abtest.domain.overrides import OverrideCounts
from abtest.stats import BinomialStats, Correction, MeanStats, adjust_p_values, analyze, srm_check
from abtest.stats.moments import NUMERICAL_ERROR
from abtest.stats.outputs import MetricAnalysis


class VariantUsers(BaseModel):
    id: UUID
    name: str
    weight: float
    users: int = Field(description="Exposed users")
    exposures: int


class SrmVerdict(BaseModel):
    p_value: float | None = Field(
        description="Chi-squared goodness of fit of exposed users to the weights; null without users"
    )
    flag: bool = Field(description="p < 0.001 once every variant has at least 8 users")
    sequential_p_value: float | None = Field(
        default=None,
        description="Anytime-valid (sequential) SRM p-value as of the last rollup: never rises over the "
        "experiment's life; null before the first check (docs/alerts.md)",
    )
    sequential_flag: bool = Field(
        default=False, description="sequential_p_value below the alarm threshold (0.001 by default)"
    )


class MetricResults(BaseModel):
    """The two analyses of one metric."""

    conversion: MetricAnalysis = Field(description="Binomial: exposed users who converted at least once")
    value: MetricAnalysis = Field(description="Mean of the per-user total over exposed users")


class ExperimentResults(BaseModel):
    experiment_id: UUID
    experiment_name: str
    status: str
    alpha: float
    correction: Correction | None
    srm: SrmVerdict
    variants: list[VariantUsers] = Field(description="In stored order; the first is the control")
    metrics: dict[str, MetricResults] = Field(description="Per metric name, sorted by name")
    computed_at: datetime
    overrides: OverrideCounts = Field(
        default_factory=OverrideCounts,
        description="Forced users (overrides): counted here, never in the analysis above",
    )
    bandit: BanditEstimates | None = Field(
        default=None,
        description="A bandit's period-weighted estimates of its metric (the metrics above are "
        "period-weighted too, and the SRM expects Σ_t N_t · weight_(a,t)); null for fixed allocations",
    )
    # Issue 22: the analysis by role (empty, and decision null, for an experiment without metric roles).
    goals: list[RoleMetric] = Field(
        default_factory=list, description="Goal metrics; the correction runs over goals x treatments only"
    )
    guardrails: list[RoleMetric] = Field(
        default_factory=list, description="Guardrails: non-inferiority against their margins"
    )
    secondary: list[RoleMetric] = Field(default_factory=list, description="Secondary metrics, uncorrected")
    decision: DecisionOut | None = Field(
        default=None, description="ship, rollback, keep_running or review (null without metric roles)"
    )

    def with_roles(self, roles: RoleResults) -> ExperimentResults:
        """These results with the analysis by role and the decision."""
        return self.model_copy(
            update={
                "goals": roles.goals,
                "guardrails": roles.guardrails,
                "secondary": roles.secondary,
                "decision": roles.decision,
            }
        )


def srm_verdict(users: list[int], weights: list[float]) -> SrmVerdict:
    """SRM over the variants that receive traffic (a zero-weight variant expects, and gets, nobody)."""
    live = [(count, weight) for count, weight in zip(users, weights, strict=True) if weight > 0]
    if len(live) < 2:
        return SrmVerdict(p_value=1.0, flag=False)
    if sum(count for count, _ in live) == 0:
        return SrmVerdict(p_value=None, flag=False)  # no users: no evidence either way
    check = srm_check([count for count, _ in live], [weight for _, weight in live])
    return SrmVerdict(p_value=check.p_value, flag=check.flag)


def results_report(
    stats: VariantMetrics,
    *,
    alpha: float = 0.05,
    correction: Correction | None = None,
    mde: float | None = None,
    overrides: OverrideCounts | None = None,
    bandit: BanditEstimates | None = None,
) -> ExperimentResults:
    """Analyse every metric of an experiment (variant 0 is the control); `overrides`: the experiment's
    forced users, reported apart (none if not given). For a bandit, pass period-weighted `stats`
    (abtest.analysis.bandits.period_weighted) and its `bandit` estimates, whose SRM verdict is used."""
    experiment = stats.experiment
    variants = experiment.variants
    users = [stats.variants[v.id].users for v in variants]
    weights = [v.weight for v in variants]
    metric_names = sorted({name for per_variant in stats.metrics.values() for name in per_variant})
    metrics: dict[str, MetricResults] = {
        name: MetricResults(
            conversion=metric_analysis(stats, name, "conversion", alpha=alpha, mde=mde),
            value=metric_analysis(stats, name, "value", alpha=alpha, mde=mde),
        )
        for name in metric_names
    }
    if correction is not None:
        _adjust(metrics, correction)
    return ExperimentResults(
        experiment_id=experiment.id,
        experiment_name=experiment.name,
        status=experiment.status.value,
        alpha=alpha,
        correction=correction,
        srm=srm_verdict(users, weights)
        if bandit is None
        else SrmVerdict(p_value=bandit.srm_p_value, flag=bandit.srm_flag),
        variants=[
            VariantUsers(
                id=v.id, name=v.name, weight=v.weight, users=n, exposures=stats.variants[v.id].exposures
            )
            for v, n in zip(variants, users, strict=True)
        ],
        metrics=metrics,
        computed_at=datetime.now(UTC),
        overrides=overrides or OverrideCounts(),
        bandit=bandit,
    )


def metric_analysis(
    stats: VariantMetrics, name: str, kind: Literal["conversion", "value"], *, alpha: float, mde: float | None
) -> MetricAnalysis:
    """One analysis of one metric, exactly as in results_report (the time series needs only one)."""
    variants = stats.experiment.variants
    weights = _analysis_weights([v.weight for v in variants])
    rows = []
    for variant in variants:
        exposed = stats.variants[variant.id].users
        rows.append((exposed, stats.metrics.get(variant.id, {}).get(name)))
    if kind == "conversion":
        binomial = [
            BinomialStats(users=exposed, conversions=min(metric.users if metric else 0, exposed))
            for exposed, metric in rows
        ]
        return MetricAnalysis.model_validate(
            analyze("binomial", binomial, weights=weights, alpha=alpha, mde=mde)
        )
    mean = [
        (exposed, metric.sum if metric else 0.0, metric.sum_squares if metric else 0.0)
        for exposed, metric in rows
    ]
    return MetricAnalysis.model_validate(_mean_analysis(mean, weights, alpha=alpha, mde=mde))


def _mean_analysis(
    variants: list[tuple[int, float, float]], weights: list[float], *, alpha: float, mde: float | None
) -> dict[str, Any]:
    """The mean analysis; sums that are not finite numbers (legacy data stored before the value
    bound) give every comparison `numerical_error` and nulls instead of failing the whole report."""
    finite = all(math.isfinite(total) and math.isfinite(squares) for _, total, squares in variants)
    stats = [
        MeanStats(users=users, sum=total, sum_squares=squares)
        if finite
        else MeanStats(users=users, sum=0.0, sum_squares=0.0)
        for users, total, squares in variants
    ]
    result = analyze("mean", stats, weights=weights, alpha=alpha, mde=mde)
    if not finite:
        for comparison in result["comparisons"]:
            for block in comparison.values():
                if isinstance(block, dict):
                    for key in block:
                        block[key] = NUMERICAL_ERROR if key == "error" else None
            for key in ("relative", "absolute"):
                comparison[key]["error"] = NUMERICAL_ERROR
        if isinstance(result.get("power"), dict):
            result["power"] = {key: None for key in result["power"]} | {"error": NUMERICAL_ERROR}
    return result


def _analysis_weights(weights: list[float]) -> list[float]:
    # The stats engine's SRM needs positive weights; a zero-weight variant is compared but expects no
    # users, so give it a negligible weight there (the report's own SRM verdict excludes it).
    return [weight if weight > 0 else 1e-12 for weight in weights]


def _adjust(metrics: dict[str, MetricResults], correction: Correction) -> None:
    """Adjust relative p-values across every treatment and metric, per kind of analysis."""
    for kind in ("conversion", "value"):
        blocks = [
            comparison.relative
            for results in metrics.values()
            for comparison in getattr(results, kind).comparisons
        ]
        adjusted = adjust_p_values([block.p_value for block in blocks], correction)
        for block, value in zip(blocks, adjusted, strict=True):
            block.p_value_adjusted = value


@dataclass(frozen=True)
class SrmAlert:
    """A running experiment whose exposed users do not match its weights."""

    experiment_id: UUID
    p_value: float
    users: list[int]


def srm_alerts(allocations: Iterable[RunningAllocation]) -> list[SrmAlert]:
    """The running experiments flagged for a sample ratio mismatch (the rollup logs and counts them)."""
    alerts = []
    for allocation in allocations:
        if allocation.experiment.allocation.is_bandit:
            continue  # its weights move: the rollup checks it against Σ_t N_t · weight_(a,t)
        weights = [variant.weight for variant in allocation.experiment.variants]
        verdict = srm_verdict(allocation.users, weights)
        if verdict.flag and verdict.p_value is not None:  # flagged implies users, so a p-value
            alerts.append(SrmAlert(allocation.experiment.id, verdict.p_value, allocation.users))
    return alerts
