"""Metric definitions and roles (validation, what may change once running) and the analysis by role with
its decision, on per-variant statistics given directly (the integration tests feed them from events)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from abtest.analysis.roles import analyse_roles, runtime_days
from abtest.domain.decisions import DecisionSettings
from abtest.domain.experiments import Experiment
from abtest.domain.metric_definitions import (
    DefinedMetricData,
    MetricDefinition,
    MetricDefinitionBody,
    MetricDefinitionIn,
    MetricRoles,
    RoleInputs,
    check_roles_change,
)
from abtest.errors import Conflict, ErrorCode

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


# --- Definitions and roles ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"type": "ratio", "numerator": "revenue"},
        {"type": "ratio", "numerator": "revenue", "denominator": "session", "metric": "x"},
        {"type": "mean", "numerator": "revenue"},
        {"type": "quantile"},
        {"type": "mean", "quantile": 0.5},
        {"type": "proportion", "capping": {"type": "absolute", "value": 3}},
        {"type": "mean", "capping": {"type": "percentile", "value": 1}},
        {"type": "mean", "capping": {"type": "absolute", "value": -1}},
        {"type": "mean", "window_hours": 0},
        {"type": "mean", "window_hours": 24 * 366},
        {"type": "mean", "direction": "up"},
        {"type": "mean", "surprise": 1},
    ],
)
def test_inconsistent_definitions_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MetricDefinitionBody.model_validate(body)


def test_a_definition_reads_its_own_name_unless_it_names_a_metric() -> None:
    plain = MetricDefinitionIn.model_validate({"name": "latency", "type": "mean"})
    assert plain.event_metrics("latency") == ["latency"]
    named = MetricDefinitionBody.model_validate({"type": "proportion", "metric_name": "buy"})
    assert named.event_metrics("quick_buy") == ["buy"]
    ratio = MetricDefinitionBody.model_validate({"type": "ratio", "numerator": "a", "denominator": "b"})
    assert ratio.event_metrics("a_per_b") == ["a", "b"]


@pytest.mark.parametrize(
    "roles",
    [
        {"goals": ["a"], "secondary": ["a"]},
        {"goals": ["a"], "guardrails": [{"name": "a", "margin": 0.1}]},
        {"guardrails": [{"name": "a", "margin": 0}]},
        {"guardrails": [{"name": "a", "margin": 1.01}]},
        {"guardrails": [{"name": "a"}]},
        {"goals": ["Not A Name"]},
        {"goals": [f"m{i}" for i in range(11)]},
    ],
)
def test_bad_roles_are_refused(roles: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MetricRoles.model_validate(roles)


ROLES = {"goals": ["buy"], "guardrails": [{"name": "latency", "margin": 0.02}], "secondary": ["revenue"]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"goals": ["buy", "revenue"], "secondary": []}, "metrics.goals"),
        ({"guardrails": [{"name": "latency", "margin": 0.05}]}, "metrics.guardrails"),
        ({"guardrails": []}, "metrics.guardrails"),
        ({"secondary": []}, "metrics.secondary"),
    ],
)
def test_goals_and_guardrails_are_frozen_once_started(change: dict[str, Any], field: str) -> None:
    with pytest.raises(Conflict) as refused:
        check_roles_change(ROLES, MetricRoles.model_validate({**ROLES, **change}))
    assert refused.value.code == ErrorCode.FIELD_FROZEN
    assert refused.value.field == field


def test_secondary_metrics_may_be_added_once_started() -> None:
    check_roles_change(ROLES, MetricRoles.model_validate({**ROLES, "secondary": ["revenue", "clicks"]}))


# --- The analysis by role ----------------------------------------------------------------------------------


def experiment(roles: dict[str, Any], decision: dict[str, Any] | None, *, days: float = 10.0) -> Experiment:
    return Experiment.model_validate(
        {
            "id": uuid4(),
            "name": "e",
            "description": "",
            "status": "running",
            "traffic_allocation": 1.0,
            "salt": "s",
            "surface": "recommendations",
            "variants": [
                {"id": uuid4(), "name": name, "description": "", "weight": 0.5, "config": {}, "position": i}
                for i, name in enumerate(("control", "treatment"))
            ],
            "created_at": NOW - timedelta(days=days),
            "updated_at": NOW,
            "started_at": NOW - timedelta(days=days),
            "completed_at": None,
            "metrics": roles,
            "decision": decision,
        }
    )


def definition(name: str, type_: str, direction: str = "higher") -> MetricDefinition:
    return MetricDefinition.model_validate(
        {"name": name, "version": 1, "type": type_, "direction": direction}
    )


def proportion(users: int, rates: tuple[float, float]) -> DefinedMetricData:
    converted = [round(users * rate) for rate in rates]
    return DefinedMetricData(
        users=[users, users],
        sum_x=[float(c) for c in converted],
        sum_x2=[float(c) for c in converted],
    )


def mean(users: int, means: tuple[float, float], sd: float) -> DefinedMetricData:
    """Per-variant sums of `users` totals with these means and (sample) standard deviation."""
    sums = [users * m for m in means]
    squares = [sd * sd * (users - 1) + s * s / users for s in sums]
    return DefinedMetricData(users=[users, users], sum_x=sums, sum_x2=squares)


def inputs(
    goal: DefinedMetricData,
    guardrail: DefinedMetricData,
    *,
    decision: dict[str, Any] | None = None,
    goal_direction: str = "higher",
    days: float = 10.0,
) -> RoleInputs:
    roles = {"goals": ["goal"], "guardrails": [{"name": "latency", "margin": 0.02}], "secondary": ["extra"]}
    return RoleInputs(
        experiment=experiment(roles, {"min_days": 0, **(decision or {})}, days=days),
        roles=MetricRoles.model_validate(roles),
        definitions={
            "goal": definition("goal", "proportion", goal_direction),
            "latency": definition("latency", "mean", "lower"),
            "extra": definition("extra", "mean"),
        },
        data={"goal": goal, "latency": guardrail, "extra": mean(500, (10.0, 10.5), 3.0)},
    )


WIN = proportion(4000, (0.10, 0.15))
LOSS = proportion(4000, (0.15, 0.10))
FLAT = proportion(4000, (0.10, 0.10))
HOLDS = mean(4000, (100.0, 100.0), 5.0)
HARMS = mean(4000, (100.0, 110.0), 5.0)
UNSURE = mean(40, (100.0, 101.5), 5.0)


@pytest.mark.parametrize(
    ("framework", "goal", "guardrail", "action", "variant"),
    [
        # Clear Signals: rule 1 (ship), rule 2 (a guardrail fails: rollback), rule 3 (a goal lost)
        ("clear_signals", WIN, HOLDS, "ship", "treatment"),
        ("clear_signals", WIN, HARMS, "rollback", None),
        ("clear_signals", LOSS, HOLDS, "rollback", None),
        # an inconclusive guardrail blocks shipping without a rollback
        ("clear_signals", WIN, UNSURE, "keep_running", None),
        # Do No Harm: rule 1 ships a winner, the default rolls back a loser; a failing guardrail rolls back
        ("do_no_harm", WIN, HOLDS, "ship", "treatment"),
        ("do_no_harm", LOSS, HOLDS, "rollback", None),
        ("do_no_harm", WIN, HARMS, "rollback", None),
        # a flat goal is neither powered at 5% nor significant: keep running under both presets
        ("do_no_harm", FLAT, HOLDS, "keep_running", None),
        ("clear_signals", FLAT, HOLDS, "keep_running", None),
    ],
)
def test_the_presets_rules_through_the_analysis(
    framework: str, goal: DefinedMetricData, guardrail: DefinedMetricData, action: str, variant: str | None
) -> None:
    result = analyse_roles(
        inputs(goal, guardrail, decision={"framework": framework}), srm_flag=False, now=NOW
    )
    assert (result.decision.action, result.decision.variant) == (action, variant), result.decision


def test_a_lower_is_better_goal_wins_by_going_down() -> None:
    result = analyse_roles(inputs(LOSS, HOLDS, goal_direction="lower"), srm_flag=False, now=NOW)
    assert result.goals[0].comparisons[0].status == "won"
    assert result.decision.action == "ship"


def test_srm_and_min_days_gate_every_framework() -> None:
    assert analyse_roles(inputs(WIN, HOLDS), srm_flag=True, now=NOW).decision.action == "review"
    young = inputs(WIN, HOLDS, decision={"min_days": 7}, days=1.0)
    assert analyse_roles(young, srm_flag=False, now=NOW).decision.action == "keep_running"


def test_the_guardrail_reports_its_margin_and_the_non_inferiority_test() -> None:
    result = analyse_roles(inputs(WIN, HARMS), srm_flag=False, now=NOW)
    guardrail = result.guardrails[0]
    assert guardrail.margin == 0.02
    test = guardrail.comparisons[0].noninferiority
    assert test is not None
    assert test["outcome"] == "inferior"
    assert test["threshold"] == 0.02  # lower is better: harm is a rise
    assert result.secondary[0].label == "secondary: uncorrected"
    assert result.secondary[0].corrected is False


def test_a_missing_definition_or_too_many_users_keeps_the_decision_running() -> None:
    too_many = DefinedMetricData(users=[5, 5], error="too_many_users")
    result = analyse_roles(inputs(too_many, HOLDS), srm_flag=False, now=NOW)
    assert result.goals[0].error == "too_many_users"
    assert result.decision.action == "keep_running"


def test_runtime_counts_from_the_start_to_completion_or_now() -> None:
    running = experiment(ROLES, None, days=2.5)
    assert runtime_days(running, NOW) == pytest.approx(2.5)
    assert runtime_days(running.model_copy(update={"started_at": None}), NOW) == 0.0
    finished = running.model_copy(update={"completed_at": NOW - timedelta(days=1)})
    assert math.isclose(runtime_days(finished, NOW), 1.5)
    assert DecisionSettings().min_days == 7


def test_every_alpha_results_accept_is_analysed() -> None:
    for alpha in (0.001, 0.1, 0.5):
        result = analyse_roles(inputs(WIN, HOLDS), srm_flag=False, alpha=alpha, now=NOW)
        assert result.guardrails[0].comparisons[0].noninferiority is not None
