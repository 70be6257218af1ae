"""Bandit experiments through the API: the allocation, reweights and their periods, honest results."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest

from abtest import wiring
from abtest.domain.assignment import EnrollRequest
from abtest.domain.serving import AssignmentService
from abtest.stats.bandit import ArmStats, bandit_reweight
from abtest.storage import AssignmentRepository, CatalogRepository
from abtest.storage.database import get_database
from tests.integration.test_events_and_metrics import rollup
from tests.integration.test_experiments_api import BASE

RATES = (0.05, 0.10, 0.20)


def bandit_body(name: str = "bandit_test", **allocation: Any) -> dict[str, Any]:
    return {
        "name": name,
        "surface": "checkout",
        "variants": [
            {"name": "a", "weight": 0.34},
            {"name": "b", "weight": 0.33},
            {"name": "c", "weight": 0.33},
        ],
        "allocation": {
            "type": "bandit",
            "metric": "purchase",
            "analysis": "conversion",
            "period_hours": 1,
            **allocation,
        },
    }


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Serve every request from the database's weights (no experiment cache between requests)."""
    monkeypatch.setenv("EXPERIMENT_CACHE_TTL_SECONDS", "0")
    wiring.reset()
    yield
    monkeypatch.delenv("EXPERIMENT_CACHE_TTL_SECONDS")
    wiring.reset()


def start_bandit(api: Any, **allocation: Any) -> dict[str, Any]:
    created = api("POST", BASE, bandit_body(**allocation))
    assert created.status == 201, created
    started = api("PUT", f"{BASE}/{created.json['id']}/status", {"status": "running"})
    assert started.status == 200, started
    body: dict[str, Any] = started.json
    return body


def enroll_and_convert(
    api: Any, experiment: dict[str, Any], users: range, rng: random.Random, assigned: dict[str, str]
) -> None:
    """Enroll `users` (recording their variant in `assigned`), each converting at its arm's rate."""
    names = [v["name"] for v in experiment["variants"]]
    events = []
    for n in users:
        user = f"user-{n}"
        response = api("POST", "/api/v1/assignments", {"experiment_id": experiment["id"], "user_id": user})
        assert response.status == 200, response
        variant = response.json["variant"]["name"]
        assigned[user] = variant
        if rng.random() < RATES[names.index(variant)]:
            events.append(
                {
                    "type": "conversion",
                    "experiment_id": experiment["id"],
                    "user_id": user,
                    "event_id": f"c-{user}",
                    "metric_name": "purchase",
                }
            )
    for start in range(0, len(events), 1000):
        stored = api("POST", "/api/v1/events", {"events": events[start : start + 1000]})
        assert stored.status in (200, 201, 207), stored


def test_allocation_defaults_to_fixed_and_a_bandit_is_stored_with_its_defaults(api: Any) -> None:
    fixed = api("POST", BASE, {**bandit_body("fixed_one"), "allocation": {"type": "fixed"}})
    assert fixed.status == 201, fixed
    assert fixed.json["allocation"] == {"type": "fixed"}
    assert fixed.json["bandit"] is None
    plain = {key: value for key, value in bandit_body("plain").items() if key != "allocation"}
    assert api("POST", BASE, plain).json["allocation"] == {"type": "fixed"}
    created = api("POST", BASE, bandit_body())
    assert created.status == 201, created
    expected = {
        "type": "bandit",
        "metric": "purchase",
        "analysis": "conversion",
        "direction": "higher",
        "period_hours": 1.0,
        "min_users_per_arm": 100,
        "min_weight": 0.01,
    }
    assert created.json["allocation"] == expected
    assert created.json["bandit"] == {"period": 1, "weights": None, "period_started_at": None}
    fetched = api("GET", f"{BASE}/{created.json['id']}").json
    assert fetched["allocation"] == expected


BANDIT = {"type": "bandit", "metric": "m", "analysis": "value", "period_hours": 1}


@pytest.mark.parametrize(
    ("allocation", "field"),
    [
        ({"type": "bandit", "analysis": "conversion", "period_hours": 1}, "allocation.metric"),
        ({"type": "bandit", "metric": "m", "period_hours": 1}, "allocation.analysis"),
        ({"type": "bandit", "metric": "m", "analysis": "conversion"}, "allocation.period_hours"),
        ({**BANDIT, "period_hours": 0.5}, "allocation.period_hours"),
        ({**BANDIT, "period_hours": "1"}, "allocation.period_hours"),
        ({**BANDIT, "analysis": "mean"}, "allocation.analysis"),
        ({**BANDIT, "direction": "up"}, "allocation.direction"),
        ({**BANDIT, "min_weight": 0.5}, "allocation.min_weight"),
        ({**BANDIT, "min_weight": -0.1}, "allocation.min_weight"),
        ({**BANDIT, "min_users_per_arm": -1}, "allocation.min_users_per_arm"),
        ({**BANDIT, "metric": ""}, "allocation.metric"),
        ({"type": "fixed", "metric": "m"}, "allocation.metric"),
        ({"type": "thompson"}, "allocation.type"),
        ({**BANDIT, "extra": 1}, "allocation.extra"),
    ],
)
def test_an_invalid_allocation_is_a_422_naming_the_field(
    api: Any, allocation: dict[str, Any], field: str
) -> None:
    response = api("POST", BASE, {**bandit_body(), "allocation": allocation})
    assert response.status == 422, response
    fields = [response.json.get("field")] + [d.get("field") for d in response.json.get("details", [])]
    assert field in fields, response.json


def test_a_draft_may_become_a_bandit_and_the_allocation_freezes_once_started(api: Any) -> None:
    plain = {key: value for key, value in bandit_body().items() if key != "allocation"}
    created = api("POST", BASE, plain).json
    patched = api("PATCH", f"{BASE}/{created['id']}", {"allocation": bandit_body()["allocation"]})
    assert patched.status == 200, patched
    assert patched.json["allocation"]["type"] == "bandit"
    assert patched.json["bandit"]["period"] == 1
    api("PUT", f"{BASE}/{created['id']}/status", {"status": "running"})
    frozen = api("PATCH", f"{BASE}/{created['id']}", {"allocation": {"type": "fixed"}})
    assert frozen.status == 409
    assert frozen.json["field"] == "allocation"


def test_reweight_refuses_a_fixed_experiment_and_a_draft(api: Any) -> None:
    fixed = api("POST", BASE, {**bandit_body("fixed_one"), "allocation": {"type": "fixed"}}).json
    refused = api("POST", f"{BASE}/{fixed['id']}/bandit/reweight")
    assert refused.status == 409
    assert refused.json["error"] == "not_a_bandit"
    assert api("GET", f"{BASE}/{fixed['id']}/bandit").status == 409
    draft = api("POST", BASE, bandit_body()).json
    not_running = api("POST", f"{BASE}/{draft['id']}/bandit/reweight")
    assert not_running.status == 409
    assert not_running.json["error"] == "experiment_not_running"
    missing = api("POST", f"{BASE}/00000000-0000-4000-8000-000000000000/bandit/reweight")
    assert missing.status == 404


def test_reweight_needs_the_admin_scope(api: Any) -> None:
    experiment = start_bandit(api)
    response = api("POST", f"{BASE}/{experiment['id']}/bandit/reweight", scopes=("abtest/read",))
    assert response.status == 403


def test_the_acceptance_three_arms_move_to_the_best_and_estimates_stay_honest(
    api: Any, sql: Any, fresh_cache: None
) -> None:
    """3 arms converting at 5/10/20%, four periods closed through the reweight route."""
    experiment = start_bandit(api)
    rng = random.Random(21)
    assigned: dict[str, str] = {}
    closed = []
    for period in range(4):
        enroll_and_convert(api, experiment, range(period * 600, (period + 1) * 600), rng, assigned)
        response = api("POST", f"{BASE}/{experiment['id']}/bandit/reweight")
        assert response.status == 200, response
        assert response.json["created"] is True
        assert response.json["period"]["number"] == period + 1
        closed.append(response.json["period"])
        if period == 1:
            rollup()  # half the periods read from the rollups, half from the tail
    assert [p["outcome"] for p in closed] == ["updated"] * 4
    weights = closed[-1]["weights_after"]
    assert weights[2] > 0.6
    assert all(w >= 0.01 - 1e-12 for p in closed for w in p["weights_after"])
    assert abs(sum(weights) - 1) < 1e-9
    # Every period's stored inputs replay to its stored weights, bit for bit.
    for p in closed:
        arms = [ArmStats(a["users"], a["sum"], a["sum_squares"]) for a in p["arms"]]
        replay = bandit_reweight(arms, p["weights_before"], min_weight=0.01, min_users_per_arm=100)
        assert list(replay.weights) == p["weights_after"]
        assert list(replay.p_best or ()) == p["p_best"]
    # No enrolled user changed variant; each assignment names the period whose weights chose it.
    stored = dict(
        sql(
            "SELECT a.user_id, v.name FROM assignments a JOIN variants v ON v.id = a.variant_id"
            " WHERE a.experiment_id = %s",
            (experiment["id"],),
        )
    )
    assert stored == assigned
    periods = dict(
        sql(
            "SELECT bandit_period, count(*) FROM assignments WHERE experiment_id = %s GROUP BY 1",
            (experiment["id"],),
        )
    )
    assert periods == {1: 600, 2: 600, 3: 600, 4: 600}
    # Later users went mostly to the best arm.
    last = [assigned[f"user-{n}"] for n in range(1800, 2400)]
    assert last.count("c") > 0.6 * len(last)
    # Results: period-weighted estimates within three standard errors of the truth, no SRM.
    results = api("GET", f"{BASE}/{experiment['id']}/results").json
    assert results["srm"]["flag"] is False
    bandit = results["bandit"]
    assert bandit["srm_flag"] is False
    for arm, rate in zip(bandit["arms"], RATES, strict=True):
        assert abs(arm["mean"] - rate) < 3 * arm["standard_error"], arm
    assert [arm["users"] for arm in bandit["arms"]] == [
        sum(1 for v in assigned.values() if v == name) for name in ("a", "b", "c")
    ]
    assert bandit["arms"][2]["p_best"] == max(arm["p_best"] for arm in bandit["arms"])
    # The fixed SRM against the starting weights would have flagged it: the bandit's expectation does not.
    assert results["variants"][2]["users"] > 2 * results["variants"][0]["users"]
    # The bandit's own read: current weights, P(best), the periods with their inputs.
    state = api("GET", f"{BASE}/{experiment['id']}/bandit").json
    assert state["open_period"] == 5
    assert state["weights"] == weights
    assert state["p_best"] == closed[-1]["p_best"]
    assert [p["number"] for p in state["periods"]] == [1, 2, 3, 4]
    assert sum(sum(p["period_users"]) for p in state["periods"]) == 2400
    # The scheduled rollup found nothing due (the period is an hour long) and no SRM.
    summary = rollup()
    assert summary["bandit_periods_closed"] == []
    assert experiment["id"] not in summary["bandit_srm_detected"]
    # Nor does the rollup's sequential SRM test: each period's users against that period's weights.
    after = api("GET", f"{BASE}/{experiment['id']}/results").json["srm"]
    assert after["sequential_p_value"] is not None
    assert after["sequential_flag"] is False, after
    # Audited.
    history = api("GET", f"{BASE}/{experiment['id']}/history").json
    actions = [e["action"] for e in history["events"]]
    assert actions.count("experiment.bandit_reweight") == 4


def test_two_concurrent_reweights_close_one_period(api: Any, sql: Any, clean_db: str) -> None:
    experiment = start_bandit(api)
    answers: list[Any] = []

    def reweight() -> None:
        answers.append(api("POST", f"{BASE}/{experiment['id']}/bandit/reweight"))

    # Truly at once: the test holds the experiment's row lock until all four have read the open period
    # and wait for that lock (the race a reweight must survive), then lets them go together.
    with psycopg.connect(clean_db) as holder:
        holder.execute("SELECT 1 FROM experiments WHERE id = %s FOR UPDATE", (experiment["id"],))
        threads = [threading.Thread(target=reweight) for _ in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 4.0  # under the requests' 5 s statement timeout
        waiting = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        while sql(waiting)[0][0] < 4:
            assert time.monotonic() < deadline, "the reweights did not all wait for the row lock"
            time.sleep(0.02)
        holder.rollback()
    for thread in threads:
        thread.join()
    assert all(a.status == 200 for a in answers), answers
    assert sorted(a.json["created"] for a in answers) == [False, False, False, True]
    assert {a.json["period"]["number"] for a in answers} == {1}
    assert sql("SELECT number FROM bandit_periods WHERE experiment_id = %s", (experiment["id"],)) == [(1,)]
    assert api("GET", f"{BASE}/{experiment['id']}").json["bandit"]["period"] == 2


def test_too_few_users_keep_the_weights(api: Any, fresh_cache: None) -> None:
    experiment = start_bandit(api)
    enroll_and_convert(api, experiment, range(30), random.Random(1), {})
    period = api("POST", f"{BASE}/{experiment['id']}/bandit/reweight").json["period"]
    assert period["outcome"] == "not_enough_users"
    assert period["weights_after"] == period["weights_before"] == [0.34, 0.33, 0.33]
    assert sum(sum(a["users"] for a in period["arms"]) for _ in [0]) == 30


def test_impossible_statistics_are_invalid_statistics_through_the_api(api: Any, sql: Any) -> None:
    experiment = start_bandit(api, analysis="value", min_users_per_arm=1)
    enroll_and_convert(api, experiment, range(60), random.Random(3), {})
    rollup()
    # Legacy data from before the value bound: a per-user total beyond a double.
    sql(
        "UPDATE rollup_user_metrics SET total = 'Infinity' WHERE user_id = ("
        " SELECT user_id FROM rollup_user_metrics WHERE experiment_id = %s ORDER BY user_id LIMIT 1)"
        " RETURNING user_id",
        (experiment["id"],),
    )
    response = api("POST", f"{BASE}/{experiment['id']}/bandit/reweight")
    assert response.status == 200, response
    period = response.json["period"]
    assert period["outcome"] == "invalid_statistics"
    assert period["arms"] is None
    assert period["p_best"] is None
    assert period["error"].startswith("periods[0][")
    assert period["weights_after"] == period["weights_before"]
    assert response.json["weights"] == [0.34, 0.33, 0.33]
    assert "NaN" not in response.text
    assert "Infinity" not in response.text
    results = api("GET", f"{BASE}/{experiment['id']}/results")
    assert results.status == 200, results


def test_a_stale_cache_records_the_period_whose_weights_it_used(
    api: Any, sql: Any, fresh_cache: None
) -> None:
    experiment = start_bandit(api, min_users_per_arm=10)
    enroll_and_convert(api, experiment, range(300), random.Random(5), {})
    db = get_database()
    repository = AssignmentRepository(db)
    cached = AssignmentService(repository, CatalogRepository(db), experiment_ttl=3600, catalog_ttl=3600)
    cached.assign(UUID(experiment["id"]), "early")  # loads the cache: period 1
    moved = api("POST", f"{BASE}/{experiment['id']}/bandit/reweight").json
    assert moved["period"]["outcome"] == "updated"
    cached.assign(UUID(experiment["id"]), "late-from-cache")
    api("POST", "/api/v1/assignments", {"experiment_id": experiment["id"], "user_id": "late-fresh"})
    rows = dict(
        sql(
            "SELECT user_id, bandit_period FROM assignments WHERE experiment_id = %s"
            " AND user_id IN ('early', 'late-from-cache', 'late-fresh')",
            (experiment["id"],),
        )
    )
    assert rows == {"early": 1, "late-from-cache": 1, "late-fresh": 2}
    # A direct request without a period (a fixed experiment's shape) stores none.
    assert EnrollRequest("checkout", "x", None, None, False).bandit_period is None


def test_forced_users_never_feed_the_bandit(api: Any, sql: Any, fresh_cache: None) -> None:
    experiment = start_bandit(api, min_users_per_arm=1)
    forced = api(
        "PUT",
        f"{BASE}/{experiment['id']}/overrides/qa-user",
        {"variant": "a"},
    )
    assert forced.status in (200, 201), forced
    served = api("POST", "/api/v1/assignments", {"experiment_id": experiment["id"], "user_id": "qa-user"})
    assert served.json["source"] == "override"
    api(
        "POST",
        "/api/v1/events",
        {
            "events": [
                {
                    "type": "conversion",
                    "experiment_id": experiment["id"],
                    "user_id": "qa-user",
                    "event_id": "qa-1",
                    "metric_name": "purchase",
                }
            ]
        },
    )
    period = api("POST", f"{BASE}/{experiment['id']}/bandit/reweight").json["period"]
    assert period["period_users"] == [0, 0, 0]
    assert sql("SELECT count(*) FROM assignments WHERE experiment_id = %s", (experiment["id"],)) == [(0,)]


def test_the_periods_read_is_paged(api: Any) -> None:
    experiment = start_bandit(api)
    for _ in range(3):
        api("POST", f"{BASE}/{experiment['id']}/bandit/reweight")
    first = api("GET", f"{BASE}/{experiment['id']}/bandit", query="limit=2").json
    assert [p["number"] for p in first["periods"]] == [1, 2]
    assert first["next_cursor"] == "2"
    second = api("GET", f"{BASE}/{experiment['id']}/bandit", query="limit=2&cursor=2").json
    assert [p["number"] for p in second["periods"]] == [3]
    assert second["next_cursor"] is None
    assert second["open_period"] == 4
    bad = api("GET", f"{BASE}/{experiment['id']}/bandit", query="cursor=abc")
    assert bad.status == 422
    assert bad.json["field"] == "cursor"


def test_the_scheduled_rollup_closes_a_period_once_period_hours_have_passed(api: Any, sql: Any) -> None:
    experiment = start_bandit(api, period_hours=2)
    assert rollup()["bandit_periods_closed"] == []  # not due yet
    sql(
        "UPDATE experiments SET started_at = now() - interval '3 hours' WHERE id = %s RETURNING id",
        (experiment["id"],),
    )
    closed = rollup()["bandit_periods_closed"]
    assert closed == [{"experiment_id": experiment["id"], "period": 1, "outcome": "not_enough_users"}]
    state = api("GET", f"{BASE}/{experiment['id']}/bandit").json
    assert state["open_period"] == 2
    assert state["periods"][0]["trigger"] == "schedule"
    assert rollup()["bandit_periods_closed"] == []  # period 2 has just begun


def test_a_bandit_closes_at_most_the_limit_of_periods(api: Any, sql: Any) -> None:
    experiment = start_bandit(api)
    sql("UPDATE experiments SET bandit_period = 501 WHERE id = %s RETURNING id", (experiment["id"],))
    refused = api("POST", f"{BASE}/{experiment['id']}/bandit/reweight")
    assert refused.status == 409
    assert refused.json["field"] == "period"
    sql(
        "UPDATE experiments SET started_at = now() - interval '2 days' WHERE id = %s RETURNING id",
        (experiment["id"],),
    )
    assert rollup()["bandit_periods_closed"] == []  # not due: the schedule leaves it alone


def test_a_bandits_direction_must_agree_with_its_metric_definition(api: Any) -> None:
    defined = api(
        "POST", "/api/v1/metric-definitions", {"name": "purchase", "type": "proportion", "direction": "lower"}
    )
    assert defined.status == 201, defined
    refused = api("POST", BASE, bandit_body())  # direction defaults to higher
    assert refused.status == 422, refused
    assert refused.json["field"] == "allocation.direction"
    agreed = api("POST", BASE, bandit_body(direction="lower"))
    assert agreed.status == 201, agreed
    plain = {key: value for key, value in bandit_body("later").items() if key != "allocation"}
    draft = api("POST", BASE, plain).json
    patched = api("PATCH", f"{BASE}/{draft['id']}", {"allocation": bandit_body()["allocation"]})
    assert patched.status == 422
    assert patched.json["field"] == "allocation.direction"
