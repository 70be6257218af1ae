"""Metric definitions, metric roles on experiments, the analysis by role and the decision, through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest

from abtest.stats import MeanStats, analyze
from abtest.stats.compare import compare_moments
from abtest.stats.quantile import percentile_cont, quantile_moments, quantile_summary
from abtest.stats.ratio import ratio_moments
from tests.integration.test_events_and_metrics import rollup
from tests.integration.test_experiments_api import BASE, experiment_body
from tests.unit.stats.test_stats_ratio_quantile import (
    assert_matches_gbstats,
    gb_quantile,
    gb_ratio,
    ratio_stats,
)

DEFS = "/api/v1/metric-definitions"

GOAL = {"name": "checkout", "type": "proportion", "direction": "higher", "description": "Bought"}
LATENCY = {"name": "latency", "type": "mean", "direction": "lower"}
REVENUE = {"name": "revenue", "type": "mean", "direction": "higher"}
ROLES = {
    "goals": ["checkout"],
    "guardrails": [{"name": "latency", "margin": 0.02}],
    "secondary": ["revenue"],
}


def define(api: Any, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        response = api("POST", DEFS, body)
        assert response.status == 201, response


def launch(api: Any, **overrides: Any) -> dict[str, Any]:
    body = experiment_body(traffic_allocation=1.0, **overrides)
    created = api("POST", BASE, body)
    assert created.status == 201, created
    started = api("PUT", f"{BASE}/{created.json['id']}/status", {"status": "running"})
    assert started.status == 200, started
    result: dict[str, Any] = started.json
    return result


def load(
    url: str,
    experiment: dict[str, Any],
    users: list[int],
    conversions: list[list[tuple[str, float, float]]] | Any,
) -> list[list[str]]:
    """Expose users[i] users in variant i at one time; `conversions(i, k)` gives the k-th user of variant
    i's conversions as (metric, value, hours after the exposure). Returns the user ids per variant."""
    at = datetime.now(UTC) - timedelta(days=1)
    ids: list[list[str]] = []
    rows: list[tuple[str, str, str, float, datetime]] = []
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for index, variant in enumerate(experiment["variants"]):
            names = [f"{variant['name']}-{k}" for k in range(users[index])]
            ids.append(names)
            conn.execute(
                "INSERT INTO assignments (experiment_id, user_id, variant_id)"
                " SELECT %s, u, %s FROM unnest(%s::text[]) u",
                (experiment["id"], variant["id"], names),
            )
            conn.execute(
                "INSERT INTO exposures (experiment_id, variant_id, user_id, occurred_at)"
                " SELECT %s, %s, u, %s FROM unnest(%s::text[]) u",
                (experiment["id"], variant["id"], at, names),
            )
            for k, user in enumerate(names):
                for metric, value, hours in conversions(index, k):
                    rows.append((variant["id"], user, metric, value, at + timedelta(hours=hours)))
        if rows:
            conn.execute(
                "INSERT INTO conversions"
                " (experiment_id, variant_id, user_id, metric_name, value, occurred_at)"
                " SELECT %s, v, u, m, x, t FROM unnest(%s::uuid[], %s::text[], %s::text[],"
                " %s::float8[], %s::timestamptz[]) AS r(v, u, m, x, t)",
                (experiment["id"], *[list(column) for column in zip(*rows, strict=True)]),
            )
    return ids


def shop(treatment_latency: float, goal_rates: tuple[float, float] = (0.10, 0.20)) -> Any:
    """Every user: a latency around 100 ms (the treatment's shifted by `treatment_latency`), a checkout
    at the variant's rate, revenue with it."""

    def conversions(index: int, k: int) -> list[tuple[str, float, float]]:
        latency = 100.0 + (k % 11) - 5 + (treatment_latency if index == 1 else 0.0)
        events = [("latency", latency, 0.1)]
        if (k % 100) < goal_rates[index] * 100:
            events += [("checkout", 1.0, 0.5), ("revenue", 10.0 + k % 7, 0.5)]
        return events

    return conversions


def results(api: Any, experiment: dict[str, Any], query: str = "") -> dict[str, Any]:
    response = api("GET", f"{BASE}/{experiment['id']}/results", query=query)
    assert response.status == 200, response
    body: dict[str, Any] = response.json
    return body


# --- Acceptance: the decision ---------------------------------------------------------------------------


def test_a_clear_goal_win_with_a_holding_guardrail_ships(api: Any, clean_db: str) -> None:
    define(api, GOAL, LATENCY, REVENUE)
    experiment = launch(api, metrics=ROLES, decision={"framework": "clear_signals", "min_days": 0})
    load(clean_db, experiment, [2000, 2000], shop(0.0))

    body = results(api, experiment)

    assert body["decision"]["action"] == "ship", body["decision"]
    assert body["decision"]["variant"] == "treatment"
    assert body["decision"]["reasons"]
    assert [g["name"] for g in body["goals"]] == ["checkout"]
    goal = body["goals"][0]["comparisons"][0]
    assert goal["status"] == "won"
    guardrail = body["guardrails"][0]
    assert guardrail["margin"] == 0.02
    assert guardrail["comparisons"][0]["noninferiority"]["outcome"] == "non_inferior"
    secondary = body["secondary"][0]
    assert secondary["label"] == "secondary: uncorrected"
    assert secondary["corrected"] is False
    # The event metrics' own analyses are still there, as before.
    assert set(body["metrics"]) == {"checkout", "latency", "revenue"}


def test_a_guardrail_degrading_beyond_its_margin_rolls_back(api: Any, clean_db: str) -> None:
    define(api, GOAL, LATENCY, REVENUE)
    experiment = launch(api, metrics=ROLES, decision={"min_days": 0})
    load(clean_db, experiment, [2000, 2000], shop(10.0))  # +10% latency against a 2% margin

    body = results(api, experiment)

    assert body["decision"]["action"] == "rollback", body["decision"]
    assert body["guardrails"][0]["comparisons"][0]["noninferiority"]["outcome"] == "inferior"
    assert any("latency" in reason for reason in body["decision"]["reasons"])


def test_a_sample_ratio_mismatch_asks_for_review(api: Any, clean_db: str) -> None:
    define(api, GOAL, LATENCY, REVENUE)
    experiment = launch(api, metrics=ROLES, decision={"min_days": 0})
    load(clean_db, experiment, [2000, 2400], shop(0.0))

    body = results(api, experiment)

    assert body["srm"]["flag"] is True
    assert body["decision"]["action"] == "review"


def test_the_default_min_days_keeps_running_on_the_first_day(api: Any, clean_db: str) -> None:
    define(api, GOAL, LATENCY, REVENUE)
    experiment = launch(api, metrics=ROLES)  # decision defaults: clear_signals, min_days 7
    load(clean_db, experiment, [2000, 2000], shop(0.0))

    body = results(api, experiment)

    assert body["decision"]["action"] == "keep_running"
    assert body["decision"]["variant"] is None
    assert body["goals"][0]["comparisons"][0]["status"] == "won"  # whatever the data


def test_the_correction_runs_over_goals_times_treatments_only(api: Any, clean_db: str) -> None:
    define(api, GOAL, LATENCY, REVENUE, {"name": "signup", "type": "proportion", "metric": "revenue"})
    roles = {**ROLES, "goals": ["checkout", "signup"]}
    variants = [{"name": n, "weight": 1 / 3} for n in ("control", "treatment", "other")]
    experiment = launch(api, metrics=roles, decision={"min_days": 0}, variants=variants)
    load(clean_db, experiment, [300, 300, 300], shop(0.0, (0.1, 0.2, 0.1)))  # type: ignore[arg-type]

    body = results(api, experiment, query="correction=holm")

    raw = [c["relative"]["p_value"] for g in body["goals"] for c in g["comparisons"]]
    adjusted = [c["relative"]["p_value_adjusted"] for g in body["goals"] for c in g["comparisons"]]
    assert len(raw) == 4  # 2 goals x 2 treatments: Holm over these four only
    order = sorted(range(4), key=lambda i: raw[i])
    expected, running = [0.0] * 4, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (4 - rank) * raw[i]))
        expected[i] = running
    assert adjusted == pytest.approx(expected)
    assert all(g["corrected"] for g in body["goals"])
    for metric in [*body["guardrails"], *body["secondary"]]:
        assert all("p_value_adjusted" not in c["relative"] for c in metric["comparisons"])


def test_experiments_without_roles_have_no_decision(api: Any, clean_db: str) -> None:
    experiment = launch(api)
    load(clean_db, experiment, [50, 50], shop(0.0))
    body = results(api, experiment)
    assert body["decision"] is None
    assert body["goals"] == body["guardrails"] == body["secondary"] == []


def test_the_alerts_see_the_decision_and_fire_when_it_changes(api: Any, clean_db: str) -> None:
    from abtest.domain.alerts import AlertKind
    from abtest.storage.alerts import AlertRepository
    from abtest.storage.database import get_database

    define(api, GOAL, LATENCY, REVENUE)
    experiment = launch(api, metrics=ROLES, decision={"min_days": 0})
    load(clean_db, experiment, [2000, 2000], shop(0.0))
    if rollup()["users"] == 0:
        pytest.skip("another session's open transaction holds the rollup horizon back (by design)")
    alerts = AlertRepository(get_database())
    alerts.evaluate(datetime.now(UTC))
    alerts.evaluate(datetime.now(UTC))  # the same decision again: no second alert

    found = alerts.page(kind=AlertKind.DECISION_CHANGED).items
    assert len(found) == 1
    assert found[0].evidence["decision"]["action"] == "ship"
    assert found[0].evidence["decision"] == results(api, experiment)["decision"]


# --- Capping and windows ------------------------------------------------------------------------------


def test_a_percentile_cap_equals_winsorizing_the_per_user_totals_by_hand(api: Any, clean_db: str) -> None:
    define(api, {"name": "spend", "type": "mean", "capping": {"type": "percentile", "value": 0.9}})
    experiment = launch(api, metrics={"goals": ["spend"]}, decision={"min_days": 0})
    rng = np.random.default_rng(22)
    spend = [rng.lognormal(2.0, 1.2, 300) * (rng.random(300) < 0.6) for _ in range(2)]

    def conversions(index: int, k: int) -> list[tuple[str, float, float]]:
        value = float(spend[index][k])
        # Two events per converting user: the cap applies to the user's total, not to each event.
        return [("spend", value / 2, 1.0), ("spend", value / 2, 2.0)] if value > 0 else []

    load(clean_db, experiment, [300, 300], conversions)
    rollup()

    body = results(api, experiment)

    totals = [[2 * (float(v) / 2) for v in values] for values in spend]
    cap = percentile_cont(sorted(t for variant in totals for t in variant), 0.9)
    capped = [[min(t, cap) for t in variant] for variant in totals]
    goal = body["goals"][0]
    assert goal["cap"] == pytest.approx(cap, rel=1e-12)
    assert [v["estimate"] for v in goal["variants"]] == pytest.approx([np.mean(c) for c in capped], rel=1e-9)
    by_hand = analyze(
        "mean",
        [MeanStats(users=300, sum=sum(c), sum_squares=sum(x * x for x in c)) for c in capped],
        weights=[0.5, 0.5],
    )["comparisons"][0]
    ours = goal["comparisons"][0]
    for key in ("estimate", "p_value"):
        assert ours["relative"][key] == pytest.approx(by_hand["relative"][key], rel=1e-9)
    # Uncapped, the answer differs: the cap did something.
    uncapped = np.mean(totals[0])
    assert goal["variants"][0]["estimate"] != pytest.approx(uncapped, rel=1e-6)


def test_an_absolute_cap_caps_each_users_total(api: Any, clean_db: str) -> None:
    define(api, {"name": "spend", "type": "mean", "capping": {"type": "absolute", "value": 25}})
    experiment = launch(api, metrics={"secondary": ["spend"]}, decision={"min_days": 0})
    load(clean_db, experiment, [3, 3], lambda i, k: [("spend", 10.0 * (k + 1), 1.0), ("spend", 5.0, 2.0)])

    body = results(api, experiment)

    # Totals 15, 25, 35 per variant, capped at 25: mean (15 + 25 + 25) / 3.
    assert [v["estimate"] for v in body["secondary"][0]["variants"]] == pytest.approx([65 / 3, 65 / 3])
    assert body["secondary"][0]["cap"] == 25


def test_a_conversion_outside_window_hours_is_not_counted_one_inside_is(api: Any, clean_db: str) -> None:
    define(
        api,
        {"name": "quick_buy", "type": "proportion", "metric": "buy", "window_hours": 24},
        {"name": "quick_spend", "type": "mean", "metric": "buy", "window_hours": 24},
        {"name": "any_buy", "type": "proportion", "metric": "buy"},
    )
    experiment = launch(
        api, metrics={"secondary": ["quick_buy", "quick_spend", "any_buy"]}, decision={"min_days": 0}
    )
    # User k of each variant buys once: users 0-1 after 2 hours (inside), users 2-3 after 30 hours.
    load(clean_db, experiment, [5, 5], lambda i, k: [("buy", 7.0, 2.0 if k < 2 else 30.0)] if k < 4 else [])

    body = {m["name"]: m for m in results(api, experiment)["secondary"]}

    assert [v["estimate"] for v in body["quick_buy"]["variants"]] == pytest.approx([0.4, 0.4])
    assert [v["estimate"] for v in body["quick_spend"]["variants"]] == pytest.approx([2.8, 2.8])
    assert [v["estimate"] for v in body["any_buy"]["variants"]] == pytest.approx([0.8, 0.8])


def test_rolled_up_and_not_yet_rolled_up_users_give_the_same_results(api: Any, clean_db: str) -> None:
    define(
        api,
        GOAL,
        LATENCY,
        {"name": "revenue", "type": "mean", "capping": {"type": "percentile", "value": 0.9}},
        {"name": "revenue_per_latency", "type": "ratio", "numerator": "revenue", "denominator": "latency"},
        {"name": "latency_p50", "type": "quantile", "metric": "latency", "quantile": 0.5},
    )
    roles = {**ROLES, "secondary": ["revenue", "revenue_per_latency", "latency_p50"]}
    experiment = launch(api, metrics=roles, decision={"min_days": 0})
    load(clean_db, experiment, [300, 300], shop(0.0))
    fresh = results(api, experiment)  # every user is above the rollup horizon: recomputed at read time
    rollup()
    stored = results(api, experiment)  # every user from the rollup's stored per-user totals

    def numbers(body: dict[str, Any]) -> list[Any]:
        return [
            (m["name"], [v["estimate"] for v in m["variants"]], m["cap"], m["comparisons"][0]["relative"])
            for role in ("goals", "guardrails", "secondary")
            for m in body[role]
        ]

    assert len(numbers(stored)) == 5
    for (name, values, cap, relative), (name2, values2, cap2, relative2) in zip(
        numbers(fresh), numbers(stored), strict=True
    ):
        assert name == name2
        assert values == pytest.approx(values2, rel=1e-9), name
        assert (cap is None) == (cap2 is None)
        assert relative["estimate"] == pytest.approx(relative2["estimate"], rel=1e-9), name
    assert fresh["decision"] == stored["decision"]


# --- Ratio and quantile against gbstats ----------------------------------------------------------------


def test_ratio_and_quantile_results_match_gbstats(api: Any, clean_db: str) -> None:
    define(
        api,
        {"name": "revenue_per_session", "type": "ratio", "numerator": "revenue", "denominator": "sessions"},
        {"name": "latency_p90", "type": "quantile", "metric": "latency", "quantile": 0.9},
    )
    experiment = launch(
        api, metrics={"secondary": ["revenue_per_session", "latency_p90"]}, decision={"min_days": 0}
    )
    rng = np.random.default_rng(2026)
    n = [400, 420]
    sessions = [rng.poisson(3.0, k).astype(float) + 1.0 for k in n]
    revenue = [
        s * rng.gamma(2.0, 5.0 * (1.0 + 0.1 * i), len(s)) * (rng.random(len(s)) < 0.4)
        for i, s in enumerate(sessions)
    ]
    latency = [rng.lognormal(3.0, 0.8, k) * (1.0 + 0.05 * i) for i, k in enumerate(n)]

    def conversions(i: int, k: int) -> list[tuple[str, float, float]]:
        events = [("sessions", float(sessions[i][k]), 1.0), ("latency", float(latency[i][k]), 1.0)]
        return [*events, ("revenue", float(revenue[i][k]), 1.0)] if revenue[i][k] > 0 else events

    load(clean_db, experiment, n, conversions)

    body = {m["name"]: m for m in results(api, experiment)["secondary"]}

    stats = [ratio_stats(revenue[i], sessions[i]) for i in range(2)]
    ours = body["revenue_per_session"]["comparisons"][0]
    assert_matches_gbstats(ours, gb_ratio(stats[0]), gb_ratio(stats[1]), 0.05)
    expected = compare_moments(ratio_moments(stats[0]), ratio_moments(stats[1]))
    assert ours["relative"]["estimate"] == pytest.approx(expected["relative"]["estimate"], rel=1e-9)

    summaries = [quantile_summary(latency[i], 0.9) for i in range(2)]
    ours = body["latency_p90"]["comparisons"][0]
    assert_matches_gbstats(ours, gb_quantile(summaries[0]), gb_quantile(summaries[1]), 0.05)
    assert body["latency_p90"]["variants"][0]["estimate"] == pytest.approx(
        quantile_moments(summaries[0]).mean, rel=1e-12
    )


# --- Definitions: CRUD, versions, audit ------------------------------------------------------------------


def test_definitions_are_created_listed_versioned_and_deleted_with_audit(api: Any, clean_db: str) -> None:
    for index in range(3):
        define(api, {"name": f"metric_{index}", "type": "mean"})
    page = api("GET", DEFS, query="limit=2").json
    assert [d["name"] for d in page["metric_definitions"]] == ["metric_0", "metric_1"]
    rest = api("GET", DEFS, query=f"limit=2&cursor={page['next_cursor']}").json
    assert [d["name"] for d in rest["metric_definitions"]] == ["metric_2"]
    assert rest["next_cursor"] is None

    assert api("POST", DEFS, {"name": "metric_0", "type": "mean"}).status == 409
    edited = api("PUT", f"{DEFS}/metric_0", {"type": "mean", "direction": "lower"})
    assert edited.status == 200, edited
    assert edited.json["version"] == 2
    assert edited.json["direction"] == "lower"
    assert api("GET", f"{DEFS}/metric_0", query="version=1").json["direction"] == "higher"
    same_body = api("PUT", f"{DEFS}/metric_0", {"name": "metric_0", "type": "mean", "direction": "lower"})
    assert same_body.status == 200
    assert same_body.json["version"] == 2
    renamed = api("PUT", f"{DEFS}/metric_0", {"name": "other", "type": "mean"})
    assert renamed.status == 422
    assert renamed.json["field"] == "name"
    assert api("DELETE", f"{DEFS}/metric_1").status == 204
    assert api("GET", f"{DEFS}/metric_1").status == 404

    history = api("GET", "/api/v1/audit", query="entity_type=metric_definition").json
    actions = sorted(e["action"] for e in history["events"])
    assert actions.count("metric_definition.create") == 3
    assert "metric_definition.update" in actions
    assert "metric_definition.delete" in actions


def test_a_running_experiment_keeps_its_pinned_version_and_the_edit_says_so(api: Any, clean_db: str) -> None:
    define(api, GOAL, LATENCY, REVENUE)
    experiment = launch(api, metrics=ROLES, decision={"min_days": 0})
    assert experiment["pinned_metrics"] == {"checkout": 1, "latency": 1, "revenue": 1}

    edited = api("PUT", f"{DEFS}/latency", {"type": "mean", "direction": "higher"}).json

    assert edited["version"] == 2
    assert [p["experiment_id"] for p in edited["pinned_by"]] == [experiment["id"]]
    load(clean_db, experiment, [50, 50], shop(0.0))
    guardrail = results(api, experiment)["guardrails"][0]
    assert guardrail["version"] == 1
    assert guardrail["direction"] == "lower"
    # In use by an experiment not completed: the definition cannot be deleted.
    refused = api("DELETE", f"{DEFS}/latency")
    assert refused.status == 409
    assert refused.json["error"] == "metric_definition_in_use"


def test_direction_lookup_for_a_metric_name(clean_db: str) -> None:
    from abtest import wiring

    wiring.reset()
    repository = wiring.metric_definitions()
    from abtest.domain.metric_definitions import MetricDefinitionIn

    repository.create(
        MetricDefinitionIn.model_validate({"name": "latency", "type": "mean", "direction": "lower"})
    )
    repository.create(
        MetricDefinitionIn.model_validate({"name": "fast_buy", "type": "proportion", "metric": "buy"})
    )
    assert repository.direction("latency") == "lower"
    assert repository.direction("buy") == "higher"
    assert repository.direction("unknown") is None


def test_a_bandit_must_agree_with_its_metrics_definition(api: Any, clean_db: str) -> None:
    define(api, {"name": "latency", "type": "mean", "direction": "lower"})
    body = experiment_body(
        name="bandit_latency",
        allocation={"type": "bandit", "metric": "latency", "analysis": "value", "period_hours": 1},
    )
    refused = api("POST", BASE, body)  # direction defaults to higher; the definition says lower
    assert refused.status == 422, refused
    assert refused.json["field"] == "allocation.direction"
    agreed = api("POST", BASE, {**body, "allocation": {**body["allocation"], "direction": "lower"}})
    assert agreed.status == 201, agreed
    undefined = {**body["allocation"], "metric": "clicks", "direction": "higher"}
    assert api("POST", BASE, {**body, "name": "bandit_clicks", "allocation": undefined}).status == 201
    flipped = api(
        "PATCH", f"{BASE}/{agreed.json['id']}", {"allocation": {**body["allocation"], "direction": "higher"}}
    )
    assert flipped.status == 422, flipped
    assert flipped.json["field"] == "allocation.direction"


# --- Validation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "r", "type": "ratio", "numerator": "a"}, "body"),
        ({"name": "q", "type": "quantile"}, "body"),
        ({"name": "m", "type": "mean", "capping": {"type": "percentile", "value": 1.5}}, "capping"),
        ({"name": "m", "type": "mean", "window_hours": 0}, "window_hours"),
        ({"name": "Bad Name", "type": "mean"}, "name"),
        ({"name": "m", "type": "median"}, "type"),
    ],
)
def test_bad_definitions_are_refused_naming_the_field(
    api: Any, clean_db: str, body: dict[str, Any], field: str
) -> None:
    response = api("POST", DEFS, body)
    assert response.status == 422, response
    assert field in response.json["field"] or field == "body"


def test_roles_naming_unknown_metrics_or_bad_margins_are_refused(api: Any, clean_db: str) -> None:
    define(api, GOAL, LATENCY)
    unknown = api("POST", BASE, experiment_body(metrics={"goals": ["checkout"], "secondary": ["nope"]}))
    assert unknown.status == 422, unknown
    assert unknown.json["error"] == "unknown_metric_definition"
    assert unknown.json["field"] == "metrics.secondary[0]"
    for margin in (0, -0.1, 1.5, "x"):
        bad = api(
            "POST", BASE, experiment_body(metrics={"guardrails": [{"name": "latency", "margin": margin}]})
        )
        assert bad.status == 422, bad
        assert "margin" in bad.json["field"]
    rules = {
        "framework": {
            "rules": [{"conditions": [{"match": "all", "metrics": "goals"}], "action": "ship"}],
            "default_action": "review",
        }
    }
    bad_rules = api("POST", BASE, experiment_body(decision=rules))
    assert bad_rules.status == 422, bad_rules
    assert "rules[0].conditions[0]" in bad_rules.json["field"]
    assert api("POST", BASE, experiment_body(decision={"framework": "yolo"})).status == 422


def test_goals_and_guardrails_are_fixed_once_running_secondary_may_be_added(api: Any, clean_db: str) -> None:
    define(api, GOAL, LATENCY, REVENUE, {"name": "extra", "type": "mean"})
    experiment = launch(api, metrics=ROLES)
    path = f"{BASE}/{experiment['id']}"

    moved = api("PATCH", path, {"metrics": {**ROLES, "goals": ["checkout", "extra"]}})
    assert moved.status == 409
    assert moved.json["field"] == "metrics.goals"
    margin = api("PATCH", path, {"metrics": {**ROLES, "guardrails": [{"name": "latency", "margin": 0.05}]}})
    assert margin.status == 409
    assert margin.json["field"] == "metrics.guardrails"
    added = api("PATCH", path, {"metrics": {**ROLES, "secondary": ["revenue", "extra"]}})
    assert added.status == 200, added
    assert added.json["metrics"]["secondary"] == ["revenue", "extra"]
    assert added.json["pinned_metrics"]["extra"] == 1
    decision = api("PATCH", path, {"decision": {"framework": "do_no_harm", "min_days": 3}})
    assert decision.status == 200
    assert decision.json["decision"]["framework"] == "do_no_harm"


# --- Where people look ------------------------------------------------------------------------------------


def test_the_report_leads_with_the_decision_and_the_index_shows_it(api: Any, clean_db: str) -> None:
    define(api, GOAL, LATENCY, REVENUE)
    experiment = launch(api, metrics=ROLES, decision={"min_days": 0})
    load(clean_db, experiment, [2000, 2000], shop(0.0))

    page = api("GET", f"{BASE}/{experiment['id']}/report").text
    decision_at = page.index('id="decision"')
    assert decision_at < page.index("<h2>Users</h2>")
    assert (
        page.index("Goals", decision_at)
        < page.index("Guardrails", decision_at)
        < page.index("Secondary metrics", decision_at)
    )
    assert 'data-action="ship"' in page
    assert 'class="margin">+2.00%' in page
    index = api("GET", "/api/v1/report").text
    assert "decision-ship" in index
