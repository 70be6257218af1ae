"""The analysis by role and the decision of /results (pure: the storage layer supplies the inputs).

For an experiment with metric roles (abtest.domain.metric_definitions):
- goals: every treatment against the control; the alpha correction (holm or bh, the request's) runs
  over goals x treatments only; each goal says whether it is powered for the decision's `target_mde`
  at 80% power;
- guardrails: one-sided non-inferiority tests against their margin in the metric's bad direction, each
  with three outcomes (non_inferior, inferior, inconclusive), never corrected;
- secondary: shown uncorrected and labelled so.
Then the decision (abtest.domain.decisions.evaluate) with the experiment's framework and gates.

The per-variant statistics of each type (proportion, mean, ratio, quantile) reduce to `Moments`, which
`compare_moments` and `noninferiority_test` read. Percentile caps were applied by the storage layer
(pooled over variants); quantiles are computed here from the per-user totals.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from abtest.domain.decisions import (
    DecisionSettings,
    GoalResult,
    GuardrailResult,
    TreatmentResults,
    evaluate,
    goal_result,
    goal_status,
    sequential_status,
)
from abtest.domain.experiments import Experiment
from abtest.domain.metric_definitions import DefinedMetricData, MetricDefinition, RoleInputs
from abtest.stats import BinomialStats, Correction, MeanStats, adjust_p_values, moments
from abtest.stats.compare import compare_moments
from abtest.stats.moments import Moments
from abtest.stats.noninferiority import noninferiority_test
from abtest.stats.power import power_analysis
from abtest.stats.quantile import quantile_moments, quantile_summary
from abtest.stats.ratio import RatioStats, ratio_moments

__all__ = ["DecisionOut", "RoleMetric", "RoleResults", "analyse_roles", "runtime_days", "variant_moments"]

Role = Literal["goal", "guardrail", "secondary"]
MISSING_DEFINITION = "missing_definition"
POWER = 0.8


class RoleVariant(BaseModel):
    name: str
    users: int = Field(description="Exposed users")
    estimate: float | None = Field(description="The variant's value: rate, mean, ratio or quantile")


class RoleComparison(BaseModel):
    """One treatment against the control."""

    variant: str
    relative: dict[str, Any] | None = None
    absolute: dict[str, Any] | None = None
    sequential_relative: dict[str, Any] | None = None
    bayes_relative: dict[str, Any] | None = None
    status: Literal["won", "lost", "neutral"] | None = Field(
        default=None, description="Goals (corrected) and secondary metrics (uncorrected)"
    )
    sequential_status: Literal["won", "lost", "neutral"] | None = None
    noninferiority: dict[str, Any] | None = Field(default=None, description="Guardrails only")


class RoleMetric(BaseModel):
    """One defined metric in its role."""

    name: str
    role: Role
    version: int | None = Field(description="The definition's version analysed (pinned once started)")
    type: str | None
    direction: Literal["higher", "lower"] | None
    corrected: bool = Field(description="Whether its p-values are adjusted (goals only, with a correction)")
    label: str = Field(description="How to read it, e.g. 'secondary: uncorrected'")
    margin: float | None = Field(default=None, description="Guardrails: the relative margin")
    cap: float | None = Field(default=None, description="The cap applied to per-user totals, if any")
    window_hours: float | None = None
    powered: bool | None = Field(default=None, description="Goals: users reached the size for target_mde")
    variants: list[RoleVariant] = Field(default_factory=list)
    comparisons: list[RoleComparison] = Field(default_factory=list)
    error: str | None = None


class DecisionOut(BaseModel):
    """What the results call for."""

    action: Literal["ship", "rollback", "keep_running", "review"]
    variant: str | None = Field(description="The treatment to ship (or the one to review); null otherwise")
    reasons: list[str]


class RoleResults(BaseModel):
    goals: list[RoleMetric]
    guardrails: list[RoleMetric]
    secondary: list[RoleMetric]
    decision: DecisionOut


def variant_moments(definition: MetricDefinition, data: DefinedMetricData) -> list[Moments]:
    """Each variant's `Moments` of the defined metric (its type's statistic)."""
    body = definition.definition
    result = []
    for i, users in enumerate(data.users):
        if body.type == "proportion":
            result.append(moments(BinomialStats(users=users, conversions=min(round(data.sum_x[i]), users))))
        elif body.type == "mean":
            result.append(
                moments(MeanStats(users=users, sum=data.sum_x[i], sum_squares=max(data.sum_x2[i], 0.0)))
            )
        elif body.type == "ratio":
            stats = RatioStats(
                users=users,
                sum_x=data.sum_x[i],
                sum_x2=max(data.sum_x2[i], 0.0),
                sum_y=data.sum_y[i],
                sum_y2=max(data.sum_y2[i], 0.0),
                sum_xy=data.sum_xy[i],
            )
            result.append(ratio_moments(stats))
        else:
            assert data.values is not None
            assert body.quantile is not None
            summary = quantile_summary(data.values[i], body.quantile, ignore_zeros=body.ignore_zeros)
            result.append(quantile_moments(summary))
    return result


def runtime_days(experiment: Experiment, now: datetime | None = None) -> float:
    """Days since the experiment started (until it completed); 0 before it started."""
    if experiment.started_at is None:
        return 0.0
    end = experiment.completed_at or now or datetime.now(UTC)
    return max((end - experiment.started_at).total_seconds() / 86400.0, 0.0)


def _metric(
    inputs: RoleInputs, name: str, role: Role, alpha: float, margin: float | None = None
) -> tuple[RoleMetric, list[Moments] | None]:
    variants = inputs.experiment.variants
    definition = inputs.definitions.get(name)
    label = {
        "goal": "goal",
        "guardrail": "guardrail: non-inferiority",
        "secondary": "secondary: uncorrected",
    }[role]
    if definition is None:
        return RoleMetric(
            name=name,
            role=role,
            version=None,
            type=None,
            direction=None,
            corrected=False,
            label=label,
            margin=margin,
            error=MISSING_DEFINITION,
        ), None
    data = inputs.data[name]
    body = definition.definition
    metric = RoleMetric(
        name=name,
        role=role,
        version=definition.version,
        type=body.type,
        direction=body.direction,
        corrected=False,
        label=label,
        margin=margin,
        cap=data.cap,
        window_hours=body.window_hours,
        error=data.error,
    )
    if data.error is not None:
        metric.variants = [
            RoleVariant(name=v.name, users=n, estimate=None)
            for v, n in zip(variants, data.users, strict=False)
        ]
        return metric, None
    per_variant = variant_moments(definition, data)
    metric.variants = [
        RoleVariant(name=v.name, users=m.n, estimate=m.mean if m.n else None)
        for v, m in zip(variants, per_variant, strict=True)
    ]
    control = per_variant[0]
    for variant, treatment in zip(variants[1:], per_variant[1:], strict=True):
        compared = compare_moments(control, treatment, alpha=alpha)
        comparison = RoleComparison(variant=variant.name, **compared)
        if role == "guardrail":
            assert margin is not None
            # One-sided at alpha, which the test needs below 0.5 (/results accepts 0.5 for two-sided tests).
            test = noninferiority_test(
                control, treatment, margin=margin, direction=body.direction, alpha=min(alpha, 0.49)
            )
            comparison.noninferiority = test.to_dict()
        metric.comparisons.append(comparison)
    return metric, per_variant


def analyse_roles(
    inputs: RoleInputs,
    *,
    srm_flag: bool,
    alpha: float = 0.05,
    correction: Correction | None = None,
    now: datetime | None = None,
) -> RoleResults:
    """Goals, guardrails and secondary metrics analysed by role, and the decision (module docstring)."""
    experiment = inputs.experiment
    settings = experiment.decision or DecisionSettings()
    weights = [v.weight if v.weight > 0 else 1e-12 for v in experiment.variants]
    goals: list[RoleMetric] = []
    powered: dict[str, bool] = {}
    for name in inputs.roles.goals:
        metric, per_variant = _metric(inputs, name, "goal", alpha)
        if per_variant is not None and metric.type is not None:
            kind = "binomial" if metric.type == "proportion" else "mean"
            power = power_analysis(
                kind, per_variant, weights, mde=settings.target_mde, alpha=alpha, power=POWER
            )
            metric.powered = power.progress is not None and power.progress >= 1.0
        else:
            metric.powered = False
        powered[name] = bool(metric.powered)
        goals.append(metric)
    if correction is not None:
        blocks = [c.relative for metric in goals for c in metric.comparisons if c.relative is not None]
        adjusted = adjust_p_values([block.get("p_value") for block in blocks], correction)
        for block, value in zip(blocks, adjusted, strict=True):
            block["p_value_adjusted"] = value
        for metric in goals:
            metric.corrected = True
            metric.label = f"goal: {correction}-corrected over goals x treatments"
    else:
        for metric in goals:
            metric.label = "goal: uncorrected (no correction asked)"
    guardrails = [
        _metric(inputs, g.name, "guardrail", alpha, margin=g.margin)[0] for g in inputs.roles.guardrails
    ]
    secondary = [_metric(inputs, name, "secondary", alpha)[0] for name in inputs.roles.secondary]
    for metric in [*goals, *secondary]:
        for comparison in metric.comparisons:
            relative = comparison.relative or {}
            direction = metric.direction or "higher"
            p_value = (
                relative.get("p_value_adjusted", relative.get("p_value"))
                if metric.role == "goal"
                else relative.get("p_value")
            )
            comparison.status = goal_status(relative.get("estimate"), p_value, alpha, direction)
            ci = (comparison.sequential_relative or {}).get("ci")
            comparison.sequential_status = sequential_status(ci, direction)
    treatments = []
    for index, variant in enumerate(experiment.variants[1:]):
        goal_results = []
        for metric in goals:
            if index < len(metric.comparisons):
                goal_results.append(
                    goal_result(
                        metric.name,
                        metric.comparisons[index].model_dump(),
                        direction=metric.direction or "higher",
                        alpha=alpha,
                        powered=powered[metric.name],
                    )
                )
            else:  # not computable: never ready, so the decision keeps running
                goal_results.append(GoalResult(metric.name, "neutral"))
        guardrail_results = []
        for metric in guardrails:
            outcome = "inconclusive"
            if index < len(metric.comparisons) and metric.comparisons[index].noninferiority is not None:
                outcome = metric.comparisons[index].noninferiority["outcome"]  # type: ignore[index]
            guardrail_results.append(GuardrailResult(metric.name, outcome))  # type: ignore[arg-type]
        treatments.append(TreatmentResults(variant.name, tuple(goal_results), tuple(guardrail_results)))
    decision = evaluate(
        settings.active_framework,
        treatments,
        srm=srm_flag,
        runtime_days=runtime_days(experiment, now),
        min_days=settings.min_days,
    )
    return RoleResults(
        goals=goals,
        guardrails=guardrails,
        secondary=secondary,
        decision=DecisionOut.model_validate(decision.to_dict()),
    )
