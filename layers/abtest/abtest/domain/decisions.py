"""The decision an experiment's results call for: ship, roll back, keep running or review (pure).

A decision framework is data in GrowthBook's shape (`packages/shared/src/enterprise/decision-criteria`):
ordered rules, each a list of conditions `{match: all|any|none, metrics: goals|guardrails,
direction: statsigWinner|statsigLoser}` and an action (ship, rollback, review), plus a default action.
For one treatment, the first rule whose conditions all hold gives the action; none holding gives the
default. Two presets ship, verbatim from GrowthBook: `clear_signals` and `do_no_harm` (PRESETS).

What a condition reads, per treatment against the control:
- a goal is `won` / `lost` / `neutral`: significant in the metric's good / bad direction after the alpha
  correction over goals x treatments, else neutral (`goal_status`);
- a guardrail is `non_inferior` / `inferior` / `inconclusive` (stats.noninferiority); `statsigLoser`
  means inferior, `statsigWinner` means non-inferior (a guardrail passes by not harming, not by winning).
`all` holds when every metric of the kind has the status (so it holds for an empty list, as GrowthBook's
`every`), `any` when one does, `none` when none does.

Overriding rules, whatever the framework, in this order (`evaluate`):
1. SRM flagged -> `review` (the traffic split is broken, so no result can be trusted);
2. runtime below `min_days` -> `keep_running`, whatever the data;
3. no goal metrics -> `rollback` if a guardrail is inferior, else `review` (nothing to decide on);
4. per treatment: an inferior guardrail -> `rollback` of that treatment, before its goals are ready;
5. per treatment: its goals must be ready, each goal either `powered` (its users reached the sample size
   for `target_mde` at 80% power) or significant under the sequential (always-valid) interval; until
   every goal is ready -> `keep_running`, so recomputing at every rollup cannot turn peeking into shipping.
   A powered goal is read at its fixed-horizon status; an unpowered one at its sequential status;
6. the framework's rules then decide; a `ship` with an inconclusive guardrail becomes `keep_running`
   (the guardrail blocks shipping without asking for a rollback).
Over the treatments (GrowthBook's `getDecisionFrameworkStatus`): `rollback` when every treatment rolls
back; else `ship` when one or more treatments ship, naming the one with the best relative lift on the
first goal in its good direction (ties: the earlier variant); else `keep_running` when one still runs;
else `review`. `variant` names the treatment to ship, or the one treatment to review; else it is None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
)

from abtest.errors import InvalidInput
from abtest.field_path import field_path
from abtest.limits import MAX_DECISION_CONDITIONS, MAX_DECISION_RULES

__all__ = [
    "PRESETS",
    "Condition",
    "Decision",
    "DecisionSettings",
    "Framework",
    "GoalResult",
    "GuardrailResult",
    "Rule",
    "TreatmentResults",
    "evaluate",
    "goal_result",
    "goal_status",
    "matching_rule",
    "parse_decision_settings",
    "sequential_status",
]

RuleAction = Literal["ship", "rollback", "review"]
Action = Literal["ship", "rollback", "keep_running", "review"]
MetricStatus = Literal["won", "lost", "neutral"]
GuardrailOutcome = Literal["non_inferior", "inferior", "inconclusive"]
Direction = Literal["higher", "lower"]
PresetName = Literal["clear_signals", "do_no_harm"]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)


class Condition(_Strict):
    """One condition of a rule: how many (`match`) of which metrics (`metrics`) have a status."""

    match: Literal["all", "any", "none"]
    metrics: Literal["goals", "guardrails"]
    direction: Literal["statsigWinner", "statsigLoser"]


class Rule(_Strict):
    """Conditions that must all hold for `action` to be taken."""

    conditions: Annotated[list[Condition], Field(min_length=1, max_length=MAX_DECISION_CONDITIONS)]
    action: RuleAction


class Framework(_Strict):
    """Ordered rules and the action taken when none holds (GrowthBook's `DecisionCriteriaData`)."""

    name: Annotated[str, Field(max_length=100)] = "custom"
    description: Annotated[str, Field(max_length=1000)] = ""
    rules: Annotated[list[Rule], Field(max_length=MAX_DECISION_RULES)]
    default_action: RuleAction = Field(validation_alias=AliasChoices("default_action", "defaultAction"))


def _condition(match: str, metrics: str, direction: str) -> Condition:
    return Condition.model_validate({"match": match, "metrics": metrics, "direction": direction})


PRESETS: Mapping[PresetName, Framework] = {
    "clear_signals": Framework(
        name="Clear Signals",
        description="Ship only with clear goal metric successes and no guardrail failures.",
        rules=[
            Rule(
                conditions=[
                    _condition("all", "goals", "statsigWinner"),
                    _condition("none", "guardrails", "statsigLoser"),
                ],
                action="ship",
            ),
            Rule(conditions=[_condition("any", "guardrails", "statsigLoser")], action="rollback"),
            Rule(
                conditions=[
                    _condition("any", "goals", "statsigLoser"),
                    _condition("none", "goals", "statsigWinner"),
                ],
                action="rollback",
            ),
        ],
        default_action="review",
    ),
    "do_no_harm": Framework(
        name="Do No Harm",
        description="Ship so long as no guardrails and no goal metrics are failing. "
        "Useful if the costs of shipping are very low.",
        rules=[
            Rule(
                conditions=[
                    _condition("none", "goals", "statsigLoser"),
                    _condition("none", "guardrails", "statsigLoser"),
                ],
                action="ship",
            )
        ],
        default_action="rollback",
    ),
}


def _framework_kind(value: Any) -> str:
    return "preset" if isinstance(value, str) else "custom"


class DecisionSettings(_Strict):
    """`"decision": {"framework": "clear_signals" | "do_no_harm" | {rules...}, "min_days", "target_mde"}`.

    `target_mde` (relative) is the lift each goal's power analysis must be able to detect at 80% power
    before the goal counts as `powered` (see `GoalResult`); `min_days` gates every decision.
    """

    framework: Annotated[
        Annotated[PresetName, Tag("preset")] | Annotated[Framework, Tag("custom")],
        Discriminator(_framework_kind),
    ] = "clear_signals"
    min_days: Annotated[int, Field(ge=0, le=365)] = 7
    target_mde: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.05

    @property
    def active_framework(self) -> Framework:
        """The framework to apply: the preset's, or the custom one."""
        return PRESETS[self.framework] if isinstance(self.framework, str) else self.framework


def parse_decision_settings(data: Any, *, prefix: str = "decision") -> DecisionSettings:
    """Validate `data` into settings; `InvalidInput` names the first bad field, e.g.
    `decision.framework.rules[2].conditions[0].metrics`."""
    try:
        return DecisionSettings.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]
        # Drop the union's tag ("preset" / "custom") that pydantic puts after "framework".
        loc = [part for i, part in enumerate(problem["loc"]) if not (i == 1 and part in ("preset", "custom"))]
        path = field_path((prefix, *loc)) if prefix else field_path(loc)
        message = str(problem["msg"]).removeprefix("Value error, ")
        if loc == ["framework"]:
            message = (
                f"unknown framework {problem.get('input')!r}: use a preset (clear_signals or do_no_harm) "
                "or an object of custom rules"
            )
        raise InvalidInput(f"{path}: {message}", field=path) from None


@dataclass(frozen=True, slots=True)
class GoalResult:
    """A goal metric for one treatment: its statuses, whether it is powered, and its relative lift."""

    metric: str
    status: MetricStatus  # fixed-horizon, after the alpha correction
    sequential: MetricStatus = "neutral"  # under the always-valid interval
    powered: bool = False  # users reached the sample size for target_mde at 80% power
    lift: float | None = None  # relative lift in the metric's good direction (positive = better)

    @property
    def ready(self) -> bool:
        """Powered, or with a result that holds under the sequential interval."""
        return self.powered or self.sequential != "neutral"

    @property
    def decided_status(self) -> MetricStatus:
        """The status the rules read: fixed-horizon once powered, sequential before."""
        return self.status if self.powered else self.sequential


@dataclass(frozen=True, slots=True)
class GuardrailResult:
    """A guardrail metric for one treatment: the outcome of its non-inferiority test."""

    metric: str
    outcome: GuardrailOutcome


@dataclass(frozen=True, slots=True)
class TreatmentResults:
    """Everything the decision reads about one treatment against the control."""

    variant: str
    goals: tuple[GoalResult, ...] = ()
    guardrails: tuple[GuardrailResult, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """The action, the variant it concerns (or None) and the reasons, in order."""

    action: Action
    variant: str | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """`{"action", "variant", "reasons"}`."""
        return {"action": self.action, "variant": self.variant, "reasons": list(self.reasons)}


def goal_status(
    estimate: float | None, p_value: float | None, alpha: float, direction: Direction
) -> MetricStatus:
    """won / lost when the (corrected) p-value is below alpha, by the estimate's sign and the direction."""
    if estimate is None or p_value is None or not p_value < alpha or estimate == 0.0:
        return "neutral"
    better = estimate > 0.0 if direction == "higher" else estimate < 0.0
    return "won" if better else "lost"


def goal_result(
    metric: str,
    comparison: Mapping[str, Any],
    *,
    direction: Direction,
    alpha: float,
    powered: bool,
) -> GoalResult:
    """A goal's `GoalResult` from one comparison of `abtest.stats.analyze` (or `compare_moments`).

    Reads the relative lift's p-value (the corrected `p_value_adjusted` when present) and the sequential
    interval; `powered` comes from the power analysis at the experiment's `target_mde`.
    """
    relative = comparison.get("relative") or {}
    p_value = relative.get("p_value_adjusted", relative.get("p_value"))
    estimate = relative.get("estimate")
    lift = None if estimate is None else (estimate if direction == "higher" else -estimate)
    return GoalResult(
        metric,
        goal_status(estimate, p_value, alpha, direction),
        sequential_status((comparison.get("sequential_relative") or {}).get("ci"), direction),
        powered,
        lift,
    )


def sequential_status(ci: Sequence[float] | None, direction: Direction) -> MetricStatus:
    """won / lost when the always-valid interval excludes 0, by its side and the direction."""
    if ci is None or not all(math.isfinite(bound) for bound in ci):
        return "neutral"
    low, high = ci
    if low > 0.0:
        return "won" if direction == "higher" else "lost"
    if high < 0.0:
        return "lost" if direction == "higher" else "won"
    return "neutral"


def _holds(
    condition: Condition, goals: Sequence[MetricStatus], guardrails: Sequence[GuardrailOutcome]
) -> bool:
    if condition.metrics == "goals":
        wanted: str = "won" if condition.direction == "statsigWinner" else "lost"
        statuses: Sequence[str] = goals
    else:
        wanted = "non_inferior" if condition.direction == "statsigWinner" else "inferior"
        statuses = guardrails
    if condition.match == "all":
        return all(status == wanted for status in statuses)
    if condition.match == "any":
        return any(status == wanted for status in statuses)
    return all(status != wanted for status in statuses)


def matching_rule(
    framework: Framework, goals: Sequence[MetricStatus], guardrails: Sequence[GuardrailOutcome]
) -> tuple[int | None, RuleAction]:
    """(index of the first rule whose conditions all hold, its action), or (None, the default action)."""
    for index, rule in enumerate(framework.rules):
        if all(_holds(condition, goals, guardrails) for condition in rule.conditions):
            return index, rule.action
    return None, framework.default_action


def _treatment_verdict(framework: Framework, treatment: TreatmentResults) -> tuple[Action, list[str]]:
    name = treatment.variant
    inferior = [g.metric for g in treatment.guardrails if g.outcome == "inferior"]
    if inferior:
        return "rollback", [f"{name}: guardrail {', '.join(inferior)} is worse than its margin allows"]
    waiting = [goal.metric for goal in treatment.goals if not goal.ready]
    if waiting:
        return "keep_running", [
            f"{name}: goal {', '.join(waiting)} has neither reached the sample size for the target MDE "
            "nor a result that holds under the sequential interval"
        ]
    statuses = [goal.decided_status for goal in treatment.goals]
    outcomes = [guardrail.outcome for guardrail in treatment.guardrails]
    index, action = matching_rule(framework, statuses, outcomes)
    which = f"rule {index + 1} of {framework.name}" if index is not None else f"{framework.name}'s default"
    goal_text = ", ".join(
        f"{goal.metric} {status}" for goal, status in zip(treatment.goals, statuses, strict=True)
    )
    reasons = [f"{name}: {which} gives {action} (goals: {goal_text})"]
    blocking = [g.metric for g in treatment.guardrails if g.outcome == "inconclusive"]
    if action == "ship" and blocking:
        reasons.append(f"{name}: guardrail {', '.join(blocking)} is inconclusive, which blocks shipping")
        return "keep_running", reasons
    return action, reasons


def _best_lift(treatment: TreatmentResults) -> float:
    lift = treatment.goals[0].lift if treatment.goals else None
    return lift if lift is not None and math.isfinite(lift) else -math.inf


def evaluate(
    framework: Framework,
    treatments: Sequence[TreatmentResults],
    *,
    srm: bool,
    runtime_days: float,
    min_days: int,
) -> Decision:
    """The decision for an experiment's treatments (each against the control); see the module doc."""
    if srm:
        return Decision(
            "review", None, ("sample ratio mismatch: the traffic split does not match the weights",)
        )
    if runtime_days < min_days:
        # No runtime figure in the words: the decision (alerts compare it) stays the same until it changes.
        return Decision("keep_running", None, (f"younger than the minimum runtime of {min_days} days",))
    if not treatments:
        return Decision("review", None, ("no treatment to compare with the control",))
    if not any(treatment.goals for treatment in treatments):
        harmed = [t for t in treatments if any(g.outcome == "inferior" for g in t.guardrails)]
        if len(harmed) == len(treatments):
            return Decision("rollback", None, ("every treatment breaks a guardrail; no goal metrics",))
        return Decision("review", None, ("no goal metrics: the framework has nothing to decide on",))
    verdicts = [(treatment, *_treatment_verdict(framework, treatment)) for treatment in treatments]
    reasons = tuple(reason for _, _, treatment_reasons in verdicts for reason in treatment_reasons)
    actions = [action for _, action, _ in verdicts]
    if all(action == "rollback" for action in actions):
        return Decision("rollback", None, reasons)
    shipping = [treatment for treatment, action, _ in verdicts if action == "ship"]
    if shipping:
        # max() keeps the first of equal lifts, i.e. the earlier variant.
        best = max(shipping, key=_best_lift)
        if len(shipping) > 1:
            reasons += (f"{best.variant} has the best lift on the first goal among the treatments that ship",)
        return Decision("ship", best.variant, reasons)
    if "keep_running" in actions:
        return Decision("keep_running", None, reasons)
    reviewing = [treatment.variant for treatment, action, _ in verdicts if action == "review"]
    return Decision("review", reviewing[0] if len(reviewing) == 1 else None, reasons)
