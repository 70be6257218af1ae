"""The decision framework: GrowthBook's presets as data, every rule of both, and the overriding rules.

The scenario tables are the documentation's tables (docs/metrics-and-decisions.md) made executable.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, get_args

import pytest

from abtest.domain.decisions import (
    PRESETS,
    Decision,
    Framework,
    GoalResult,
    GuardrailResult,
    TreatmentResults,
    evaluate,
    goal_result,
    goal_status,
    matching_rule,
    parse_decision_settings,
    sequential_status,
)
from abtest.domain.decisions import GuardrailOutcome as DomainGuardrailOutcome
from abtest.errors import InvalidInput
from abtest.stats.noninferiority import GuardrailOutcome as StatsGuardrailOutcome
from localdev.postgres import PROJECT_ROOT

CLEAR = PRESETS["clear_signals"]
NO_HARM = PRESETS["do_no_harm"]

# GrowthBook's presets as it ships them (packages/shared/src/enterprise/decision-criteria/constants.ts),
# transcribed: our presets must be these rules, in this order, with these defaults.
GROWTHBOOK_PRESETS: dict[str, dict[str, Any]] = {
    "clear_signals": {
        "rules": [
            {
                "conditions": [
                    {"match": "all", "metrics": "goals", "direction": "statsigWinner"},
                    {"match": "none", "metrics": "guardrails", "direction": "statsigLoser"},
                ],
                "action": "ship",
            },
            {
                "conditions": [{"match": "any", "metrics": "guardrails", "direction": "statsigLoser"}],
                "action": "rollback",
            },
            {
                "conditions": [
                    {"match": "any", "metrics": "goals", "direction": "statsigLoser"},
                    {"match": "none", "metrics": "goals", "direction": "statsigWinner"},
                ],
                "action": "rollback",
            },
        ],
        "defaultAction": "review",
    },
    "do_no_harm": {
        "rules": [
            {
                "conditions": [
                    {"match": "none", "metrics": "goals", "direction": "statsigLoser"},
                    {"match": "none", "metrics": "guardrails", "direction": "statsigLoser"},
                ],
                "action": "ship",
            }
        ],
        "defaultAction": "rollback",
    },
}


@pytest.mark.parametrize("name", sorted(GROWTHBOOK_PRESETS))
def test_presets_are_growthbooks_rules_verbatim(name: str) -> None:
    expected = Framework.model_validate(GROWTHBOOK_PRESETS[name])
    preset = PRESETS[name]  # type: ignore[index]
    assert preset.rules == expected.rules
    assert preset.default_action == expected.default_action


def test_guardrail_outcomes_are_the_statistics_outcomes() -> None:
    assert set(get_args(DomainGuardrailOutcome)) == set(get_args(StatsGuardrailOutcome))


# -- every rule of both presets: (framework, goal statuses, guardrail outcomes) -> (rule index, action) --
RULE_TABLE = [
    ("CS rule 1: all goals won, no guardrail lost", CLEAR, ["won"], ["non_inferior"], 0, "ship"),
    ("CS rule 1: all of two goals won, no guardrails", CLEAR, ["won", "won"], [], 0, "ship"),
    ("CS rule 1 reads only 'inferior' as lost", CLEAR, ["won"], ["inconclusive"], 0, "ship"),
    ("CS rule 2: a guardrail lost, goals won", CLEAR, ["won"], ["inferior"], 1, "rollback"),
    (
        "CS rule 2: a guardrail lost, goals neutral",
        CLEAR,
        ["neutral"],
        ["non_inferior", "inferior"],
        1,
        "rollback",
    ),
    ("CS rule 3: a goal lost, none won", CLEAR, ["lost"], ["non_inferior"], 2, "rollback"),
    ("CS rule 3: lost and neutral goals", CLEAR, ["lost", "neutral"], [], 2, "rollback"),
    ("CS default: one goal won, one lost", CLEAR, ["won", "lost"], ["non_inferior"], None, "review"),
    ("CS default: goals neutral", CLEAR, ["neutral"], ["non_inferior"], None, "review"),
    ("CS default: one won, one neutral", CLEAR, ["won", "neutral"], [], None, "review"),
    ("DNH rule 1: nothing lost", NO_HARM, ["neutral"], ["non_inferior"], 0, "ship"),
    ("DNH rule 1: goals won, guardrail inconclusive", NO_HARM, ["won"], ["inconclusive"], 0, "ship"),
    ("DNH default: a goal lost", NO_HARM, ["won", "lost"], ["non_inferior"], None, "rollback"),
    ("DNH default: a guardrail lost", NO_HARM, ["won"], ["inferior"], None, "rollback"),
]


@pytest.mark.parametrize(
    ("framework", "goals", "guardrails", "index", "action"),
    [row[1:] for row in RULE_TABLE],
    ids=[row[0] for row in RULE_TABLE],
)
def test_every_rule_of_both_presets(
    framework: Framework, goals: list[Any], guardrails: list[Any], index: int | None, action: str
) -> None:
    assert matching_rule(framework, goals, guardrails) == (index, action)


def test_the_rule_table_walks_every_rule_and_default() -> None:
    for framework in (CLEAR, NO_HARM):
        reached = {row[4] for row in RULE_TABLE if row[1] is framework}
        assert reached == {*range(len(framework.rules)), None}


# -- the whole evaluator: overriding rules, readiness, several treatments --------------------------------
def goal(
    status: str = "neutral", *, sequential: str = "neutral", powered: bool = True, lift: float | None = None
) -> GoalResult:
    return GoalResult("conversion", status, sequential, powered, lift)  # type: ignore[arg-type]


def guard(outcome: str = "non_inferior") -> GuardrailResult:
    return GuardrailResult("latency", outcome)  # type: ignore[arg-type]


def arm(
    variant: str, goals: list[GoalResult], guardrails: list[GuardrailResult] | None = None
) -> TreatmentResults:
    return TreatmentResults(variant, tuple(goals), tuple(guardrails if guardrails is not None else [guard()]))


WIN = [arm("B", [goal("won", lift=0.1)])]
SCENARIOS: list[tuple[str, Framework, list[TreatmentResults], dict[str, Any], str, str | None]] = [
    # Overriding rules, in order.
    ("SRM gives review whatever the results", CLEAR, WIN, {"srm": True}, "review", None),
    (
        "SRM is checked before the minimum runtime",
        CLEAR,
        WIN,
        {"srm": True, "runtime_days": 0.5},
        "review",
        None,
    ),
    (
        "before min_days: keep running, even when winning",
        CLEAR,
        WIN,
        {"runtime_days": 0.5},
        "keep_running",
        None,
    ),
    (
        "before min_days: keep running, even with a broken guardrail",
        NO_HARM,
        [arm("B", [goal("won")], [guard("inferior")])],
        {"runtime_days": 6.9},
        "keep_running",
        None,
    ),
    ("min_days 0 decides on day 0", CLEAR, WIN, {"runtime_days": 0.0, "min_days": 0}, "ship", "B"),
    (
        "goal neither powered nor sequentially significant: keep running (CS)",
        CLEAR,
        [arm("B", [goal("won", powered=False)])],
        {},
        "keep_running",
        None,
    ),
    (
        "goal neither powered nor sequentially significant: keep running (DNH would ship)",
        NO_HARM,
        [arm("B", [goal("neutral", powered=False)])],
        {},
        "keep_running",
        None,
    ),
    (
        "unpowered goal that wins under the sequential interval ships",
        CLEAR,
        [arm("B", [goal("won", sequential="won", powered=False)])],
        {},
        "ship",
        "B",
    ),
    (
        "unpowered goal that loses under the sequential interval rolls back",
        CLEAR,
        [arm("B", [goal("lost", sequential="lost", powered=False)])],
        {},
        "rollback",
        None,
    ),
    (
        "one of two goals still unready: keep running",
        CLEAR,
        [arm("B", [goal("won"), goal("neutral", powered=False)])],
        {},
        "keep_running",
        None,
    ),
    (
        "inferior guardrail rolls back under Clear Signals, before the goal is ready",
        CLEAR,
        [arm("B", [goal("won", powered=False)], [guard("inferior")])],
        {},
        "rollback",
        None,
    ),
    (
        "inferior guardrail rolls back under Do No Harm",
        NO_HARM,
        [arm("B", [goal("won")], [guard("inferior")])],
        {},
        "rollback",
        None,
    ),
    (
        "inferior guardrail rolls back under a custom framework that would ship",
        Framework.model_validate(
            {
                "rules": [
                    {
                        "conditions": [{"match": "all", "metrics": "goals", "direction": "statsigWinner"}],
                        "action": "ship",
                    }
                ],
                "default_action": "review",
            }
        ),
        [arm("B", [goal("won")], [guard("inferior")])],
        {},
        "rollback",
        None,
    ),
    (
        "inconclusive guardrail blocks ship without a rollback (CS)",
        CLEAR,
        [arm("B", [goal("won")], [guard("inconclusive")])],
        {},
        "keep_running",
        None,
    ),
    (
        "inconclusive guardrail blocks ship without a rollback (DNH)",
        NO_HARM,
        [arm("B", [goal("neutral")], [guard("inconclusive")])],
        {},
        "keep_running",
        None,
    ),
    (
        "inconclusive guardrail does not block a rollback",
        CLEAR,
        [arm("B", [goal("lost")], [guard("inconclusive")])],
        {},
        "rollback",
        None,
    ),
    # The presets' rules through the evaluator (powered goals).
    ("CS rule 1: goal won, guardrail holds", CLEAR, WIN, {}, "ship", "B"),
    ("CS rule 3: goal lost", CLEAR, [arm("B", [goal("lost")])], {}, "rollback", None),
    ("CS default: goal neutral", CLEAR, [arm("B", [goal("neutral")])], {}, "review", "B"),
    ("CS default: goals split", CLEAR, [arm("B", [goal("won"), goal("lost")])], {}, "review", "B"),
    ("DNH rule 1: goal neutral, guardrail holds", NO_HARM, [arm("B", [goal("neutral")])], {}, "ship", "B"),
    ("DNH default: goal lost", NO_HARM, [arm("B", [goal("lost")])], {}, "rollback", None),
    (
        "a powered goal is read at its fixed-horizon status",
        CLEAR,
        [arm("B", [goal("won", sequential="neutral")])],
        {},
        "ship",
        "B",
    ),
    # Several treatments.
    (
        "two treatments ship: the better lift on the first goal wins",
        CLEAR,
        [arm("B", [goal("won", lift=0.03)]), arm("C", [goal("won", lift=0.05)])],
        {},
        "ship",
        "C",
    ),
    (
        "two treatments ship with equal lifts: the earlier variant",
        CLEAR,
        [arm("B", [goal("won", lift=0.05)]), arm("C", [goal("won", lift=0.05)])],
        {},
        "ship",
        "B",
    ),
    (
        "one ships, one rolls back: ship the one",
        CLEAR,
        [arm("B", [goal("won")], [guard("inferior")]), arm("C", [goal("won")])],
        {},
        "ship",
        "C",
    ),
    (
        "every treatment rolls back: rollback",
        CLEAR,
        [arm("B", [goal("lost")]), arm("C", [goal("won")], [guard("inferior")])],
        {},
        "rollback",
        None,
    ),
    (
        "one rolls back, one still running: keep running",
        CLEAR,
        [arm("B", [goal("lost")]), arm("C", [goal("neutral", powered=False)])],
        {},
        "keep_running",
        None,
    ),
    (
        "one to review, one rolls back: review the one",
        CLEAR,
        [arm("B", [goal("neutral")]), arm("C", [goal("lost")])],
        {},
        "review",
        "B",
    ),
    (
        "two to review: review, no single variant",
        CLEAR,
        [arm("B", [goal("neutral")]), arm("C", [goal("neutral")])],
        {},
        "review",
        None,
    ),
    # No goal metrics.
    ("no goals: review", CLEAR, [arm("B", [])], {}, "review", None),
    (
        "no goals, guardrail broken: rollback",
        NO_HARM,
        [arm("B", [], [guard("inferior")])],
        {},
        "rollback",
        None,
    ),
    ("no treatments: review", CLEAR, [], {}, "review", None),
]


@pytest.mark.parametrize(
    ("framework", "treatments", "state", "action", "variant"),
    [row[1:] for row in SCENARIOS],
    ids=[row[0] for row in SCENARIOS],
)
def test_decision_scenarios(
    framework: Framework,
    treatments: list[TreatmentResults],
    state: dict[str, Any],
    action: str,
    variant: str | None,
) -> None:
    settings = {"srm": False, "runtime_days": 10.0, "min_days": 7} | state
    decision = evaluate(framework, treatments, **settings)
    assert (decision.action, decision.variant) == (action, variant)
    assert decision.reasons, "every decision says why"


def test_reasons_name_the_rule_and_the_blocking_guardrail() -> None:
    decision = evaluate(
        CLEAR, [arm("B", [goal("won")], [guard("inconclusive")])], srm=False, runtime_days=8, min_days=7
    )
    assert decision == Decision(
        "keep_running",
        None,
        (
            "B: rule 1 of Clear Signals gives ship (goals: conversion won)",
            "B: guardrail latency is inconclusive, which blocks shipping",
        ),
    )
    assert decision.to_dict() == {
        "action": "keep_running",
        "variant": None,
        "reasons": list(decision.reasons),
    }


# -- statuses from the statistics ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("estimate", "p_value", "direction", "expected"),
    [
        (0.05, 0.01, "higher", "won"),
        (-0.05, 0.01, "higher", "lost"),
        (0.05, 0.01, "lower", "lost"),
        (-0.05, 0.01, "lower", "won"),
        (0.05, 0.05, "higher", "neutral"),  # p must be below alpha
        (None, None, "higher", "neutral"),
    ],
)
def test_goal_status(estimate: float | None, p_value: float | None, direction: Any, expected: str) -> None:
    assert goal_status(estimate, p_value, 0.05, direction) == expected


@pytest.mark.parametrize(
    ("ci", "direction", "expected"),
    [
        ((0.01, 0.2), "higher", "won"),
        ((0.01, 0.2), "lower", "lost"),
        ((-0.2, -0.01), "higher", "lost"),
        ((-0.2, -0.01), "lower", "won"),
        ((-0.2, 0.01), "higher", "neutral"),
        (None, "higher", "neutral"),
    ],
)
def test_sequential_status(ci: tuple[float, float] | None, direction: Any, expected: str) -> None:
    assert sequential_status(ci, direction) == expected


def test_goal_result_reads_the_corrected_p_value_and_the_sequential_interval() -> None:
    comparison = {
        "relative": {"estimate": -0.04, "p_value": 0.01, "p_value_adjusted": 0.03},
        "sequential_relative": {"ci": [-0.07, -0.01], "p_value": 0.02},
    }
    result = goal_result("latency", comparison, direction="lower", alpha=0.05, powered=False)
    assert result == GoalResult("latency", "won", "won", False, 0.04)
    assert result.ready
    assert result.decided_status == "won"
    stricter = goal_result("latency", comparison, direction="lower", alpha=0.02, powered=True)
    assert (stricter.status, stricter.ready) == ("neutral", True)  # 0.03 adjusted is not below 0.02
    failed = goal_result(
        "x",
        {"relative": {"estimate": None, "p_value": None}, "sequential_relative": {"ci": None}},
        direction="higher",
        alpha=0.05,
        powered=False,
    )
    assert (failed.status, failed.sequential, failed.lift, failed.ready) == (
        "neutral",
        "neutral",
        None,
        False,
    )


# -- settings validation: presets, custom rules, errors naming the field ---------------------------------
def test_settings_default_to_clear_signals_seven_days_five_percent() -> None:
    settings = parse_decision_settings({})
    assert (settings.framework, settings.min_days, settings.target_mde) == ("clear_signals", 7, 0.05)
    assert settings.active_framework is CLEAR


def test_custom_rules_in_growthbooks_own_spelling_are_accepted() -> None:
    settings = parse_decision_settings({"framework": GROWTHBOOK_PRESETS["do_no_harm"], "min_days": 0})
    assert isinstance(settings.framework, Framework)
    assert settings.active_framework.rules == NO_HARM.rules
    assert settings.active_framework.default_action == "rollback"


def _custom() -> dict[str, Any]:
    """Three distinct, valid rules and a default (a fresh copy each time, so one edit touches one rule)."""
    rule = {
        "conditions": [{"match": "any", "metrics": "goals", "direction": "statsigWinner"}],
        "action": "ship",
    }
    return {"rules": [copy.deepcopy(rule) for _ in range(3)], "default_action": "review"}


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"framework": _custom()}
    target: Any = data["framework"]
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"framework": "yolo"}, "decision.framework"),
        ({"framework": 3}, "decision.framework"),
        (
            _with(["rules", 2, "conditions", 0, "metrics"], "secondary"),
            "decision.framework.rules[2].conditions[0].metrics",
        ),
        (
            _with(["rules", 1, "conditions", 0, "match"], "most"),
            "decision.framework.rules[1].conditions[0].match",
        ),
        (
            _with(["rules", 0, "conditions", 0, "direction"], "up"),
            "decision.framework.rules[0].conditions[0].direction",
        ),
        (_with(["rules", 0, "action"], "keep_running"), "decision.framework.rules[0].action"),
        (_with(["rules", 0, "conditions"], []), "decision.framework.rules[0].conditions"),
        (_with(["rules", 0, "extra"], 1), "decision.framework.rules[0].extra"),
        (_with(["default_action"], "ship_it"), "decision.framework.default_action"),
        (_with(["rules"], _custom()["rules"] * 7), "decision.framework.rules"),
        ({"min_days": -1}, "decision.min_days"),
        ({"min_days": "7"}, "decision.min_days"),
        ({"target_mde": 0}, "decision.target_mde"),
        ({"target_mde": 1.5}, "decision.target_mde"),
        ({"frame_work": "clear_signals"}, "decision.frame_work"),
    ],
)
def test_bad_settings_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_decision_settings(data)
    assert caught.value.field == field
    assert caught.value.message.startswith(field + ": ")


@pytest.mark.parametrize("framework", ["do_no_harm", GROWTHBOOK_PRESETS["clear_signals"]])
def test_settings_round_trip_through_json(framework: Any) -> None:
    # What the wiring stores (model_dump in JSON mode) validates back to the same settings.
    settings = parse_decision_settings({"framework": framework, "min_days": 3, "target_mde": 0.1})
    stored = settings.model_dump(mode="json")
    assert parse_decision_settings(stored) == settings


def test_the_docs_examples_are_valid_settings() -> None:
    # docs/metrics-and-decisions.md: every JSON example is a valid "decision" block.
    page = (PROJECT_ROOT / "docs" / "metrics-and-decisions.md").read_text(encoding="utf-8")
    examples = re.findall(r"```json\n(.*?)```", page, flags=re.DOTALL)
    assert len(examples) >= 2
    for example in examples:
        settings = parse_decision_settings(json.loads(example)["decision"])
        assert settings.active_framework.rules
