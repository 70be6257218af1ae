"""Metric definitions kept by the rollup (absolute caps, conversion windows, ratios): the rollup's exact
per-user statistics, so /metrics, /results and the time series read the same numbers, before and after
the rollup runs, day by day; and a definition added to a running experiment is rebuilt from the raw
events. The oracle is computed here in Python from the very events the test writes."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from abtest.storage.migrations import __file__ as migrations_init
from tests.integration.test_events_and_metrics import rollup
from tests.integration.test_experiments_api import BASE
from tests.integration.test_metric_definitions import define, launch, results

QUICK_BUY = {"name": "quick_buy", "type": "proportion", "metric": "buy", "window_hours": 24}
QUICK_SPEND = {
    "name": "quick_spend",
    "type": "mean",
    "metric": "buy",
    "window_hours": 24,
    "capping": {"type": "absolute", "value": 12},
}
CAPPED_SPEND = {
    "name": "capped_spend",
    "type": "mean",
    "metric": "buy",
    "capping": {"type": "absolute", "value": 10},
}
BUY_PER_VISIT = {
    "name": "buy_per_visit",
    "type": "ratio",
    "numerator": "buy",
    "denominator": "visit",
    "window_hours": 48,
}
KEPT = [QUICK_BUY, QUICK_SPEND, CAPPED_SPEND, BUY_PER_VISIT]

Event = tuple[str, str, float, datetime]  # user, metric, value, when


def started_days_ago(url: str, experiment: dict[str, Any], days: int) -> datetime:
    """Move the experiment's start back `days` days (to midnight UTC) so the series has several days."""
    start = datetime.combine(datetime.now(UTC).date() - timedelta(days=days), time(0), tzinfo=UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE experiments SET started_at = %s WHERE id = %s", (start, experiment["id"]))
    return start


def traffic(
    url: str, experiment: dict[str, Any], start: datetime, users: int
) -> tuple[dict[str, Any], list[Event]]:
    """Per variant `users` users exposed at start + 1 h + k minutes, each with purchases and visits spread
    over the following days (some inside 24 h, some beyond, one before the exposure). Returns the first
    exposure of every user (with its variant) and every conversion."""
    first: dict[str, Any] = {}
    conversions: list[Event] = []
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for index, variant in enumerate(experiment["variants"]):
            for k in range(users):
                user = f"{variant['name']}-{k}"
                at = start + timedelta(hours=1, minutes=k)
                first[user] = (variant["id"], at)
                conn.execute(
                    "INSERT INTO assignments (experiment_id, user_id, variant_id, assigned_at)"
                    " VALUES (%s, %s, %s, %s)",
                    (experiment["id"], user, variant["id"], at),
                )
                for repeat in range(1 + k % 2):  # a second exposure later never moves the first
                    conn.execute(
                        "INSERT INTO exposures (experiment_id, variant_id, user_id, occurred_at)"
                        " VALUES (%s, %s, %s, %s)",
                        (experiment["id"], variant["id"], user, at + timedelta(hours=30 * repeat)),
                    )
                hours = [2.0, 20.0, 30.0, 50.0][k % 4] + index  # the treatment converts a little later
                events = [("visit", 1.0, 0.5), ("visit", 1.0, hours + 1.0), ("buy", 4.0 + k % 9, hours)]
                if k % 3 == 0:
                    events.append(("buy", 6.0, hours + 20.0))  # a second purchase, maybe outside
                if k % 5 == 0:
                    events.append(("buy", 3.0, -0.5))  # before the exposure: never counts
                for metric, value, offset in events:
                    when = at + timedelta(hours=offset)
                    conversions.append((user, metric, value, when))
                    conn.execute(
                        "INSERT INTO conversions"
                        " (experiment_id, variant_id, user_id, metric_name, value, occurred_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        (experiment["id"], variant["id"], user, metric, value, when),
                    )
    return first, conversions


def oracle(
    definition: dict[str, Any], first: dict[str, Any], conversions: list[Event], until: datetime | None = None
) -> dict[str, dict[str, float]]:
    """Per variant id: users (exposed by `until`), count, converted, sum_x, sum_x2, sum_y, sum_y2, sum_xy."""
    window = definition.get("window_hours")
    x_metric = definition.get("numerator") or definition.get("metric") or definition["name"]
    y_metric = definition.get("denominator")
    cap = definition.get("capping", {}).get("value")
    per_user: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])  # count, x, y
    for user, metric, value, when in conversions:
        exposed_at = first[user][1]
        if until is not None and when >= until:
            continue
        if when < exposed_at or (window is not None and when > exposed_at + timedelta(hours=window)):
            continue
        if metric == x_metric:
            per_user[user][0] += 1
            per_user[user][1] += value
        elif metric == y_metric:
            per_user[user][2] += value
    out: dict[str, dict[str, float]] = {}
    for user, (variant_id, exposed_at) in first.items():
        if until is not None and exposed_at >= until:
            continue
        stats = out.setdefault(variant_id, defaultdict(float))
        count, x, y = per_user.get(user, [0.0, 0.0, 0.0])
        if definition["type"] == "proportion":
            x = 1.0 if count > 0 else 0.0
        elif cap is not None:
            x = min(x, cap)
        stats["users"] += 1
        stats["count"] += count
        stats["converted"] += count > 0
        stats["sum_x"] += x
        stats["sum_x2"] += x * x
        stats["sum_y"] += y
        stats["sum_y2"] += y * y
        stats["sum_xy"] += x * y
    return out


def assert_metrics_match(api: Any, experiment: dict[str, Any], first: Any, conversions: list[Event]) -> None:
    body = api("GET", f"{BASE}/{experiment['id']}/metrics").json
    for definition in KEPT:
        expected = oracle(definition, first, conversions)
        for variant_id, report in body["variant_metrics"].items():
            got = report["defined_metrics"][definition["name"]]
            want = expected[variant_id]
            assert report["unique_users"] == want["users"]
            assert got["count"] == want["count"], definition["name"]
            assert got["users"] == want["converted"], definition["name"]
            assert got["sum"] == pytest.approx(want["sum_x"], rel=1e-12), definition["name"]
            assert got["sum_squares"] == pytest.approx(want["sum_x2"], rel=1e-12), definition["name"]
            assert got["denominator_sum"] == pytest.approx(want["sum_y"], rel=1e-12), definition["name"]
            assert got["sum_products"] == pytest.approx(want["sum_xy"], rel=1e-12), definition["name"]
        # Plain event metrics are not defined metrics; nothing else appears there.
        assert set(report["defined_metrics"]) == {d["name"] for d in KEPT}


def series(api: Any, experiment: dict[str, Any], metric: str) -> dict[str, Any]:
    response = api("GET", f"{BASE}/{experiment['id']}/results/timeseries", query=f"metric={metric}")
    assert response.status == 200, response
    body: dict[str, Any] = response.json
    return body


def expected_series(
    definition: dict[str, Any],
    experiment: dict[str, Any],
    first: Any,
    conversions: list[Event],
    days: list[date],
) -> list[list[float | None]]:
    """Each day's per-variant value (rate or mean per exposed user) at the end of that day."""
    values = []
    for day in days:
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
        stats = oracle(definition, first, conversions, end)
        row: list[float | None] = []
        for variant in experiment["variants"]:
            s = stats.get(variant["id"])
            if not s or not s["users"]:
                row.append(None)
            elif definition["type"] == "proportion":
                row.append(s["converted"] / s["users"])
            else:
                row.append(s["sum_x"] / s["users"])
        values.append(row)
    return values


def test_kept_definitions_agree_with_the_raw_events_before_and_after_the_rollup(
    api: Any, clean_db: str, sql: Any
) -> None:
    define(api, *KEPT)
    experiment = launch(api, metrics={"secondary": [d["name"] for d in KEPT]}, decision={"min_days": 0})
    start = started_days_ago(clean_db, experiment, 4)
    first, conversions = traffic(clean_db, experiment, start, 40)

    assert_metrics_match(api, experiment, first, conversions)  # every user above the horizon: the tail
    before = {name: series(api, experiment, name) for name in ("quick_buy", "quick_spend", "capped_spend")}
    rollup()
    assert_metrics_match(api, experiment, first, conversions)  # every user from the rollup's rows

    # The rollup stored them: per-user rows, per-variant sums and one snapshot per day walked.
    assert sql("SELECT count(*) FROM rollup_definitions")[0][0] == 2 * len(KEPT)
    assert sql("SELECT count(DISTINCT day) FROM snapshot_definitions")[0][0] >= 3
    # /results analyses the same numbers: the windowed, capped mean per exposed user.
    body = {m["name"]: m for m in results(api, experiment)["secondary"]}
    spend = oracle(QUICK_SPEND, first, conversions)
    assert [v["estimate"] for v in body["quick_spend"]["variants"]] == pytest.approx(
        [spend[v["id"]]["sum_x"] / spend[v["id"]]["users"] for v in experiment["variants"]], rel=1e-12
    )
    assert body["quick_spend"]["cap"] == 12

    for name, definition in (
        ("quick_buy", QUICK_BUY),
        ("quick_spend", QUICK_SPEND),
        ("capped_spend", CAPPED_SPEND),
    ):
        after = series(api, experiment, name)
        assert after["points"] == before[name]["points"], name  # the tail walks the days as the rollup did
        assert after["analysis"] == ("conversion" if definition["type"] == "proportion" else "value")
        days = [date.fromisoformat(p["date"]) for p in after["points"]]
        assert len(days) >= 3
        got = [[v["value"] for v in p["variants"]] for p in after["points"]]
        want = expected_series(definition, experiment, first, conversions, days)
        assert got == [pytest.approx(row, rel=1e-12) for row in want], name
        # The last point is /results' number.
        last = after["points"][-1]
        assert [v["value"] for v in last["variants"]] == pytest.approx(
            [v["estimate"] for v in body[name]["variants"]]
        )
        compared = body[name]["comparisons"][0]
        assert last["comparisons"][0]["lift"] == pytest.approx(compared["relative"]["estimate"]), name
        assert last["comparisons"][0]["p_value"] == pytest.approx(compared["relative"]["p_value"]), name

    # The window matters: the windowed rate is below the unwindowed event rate.
    buy = series(api, experiment, "buy")["points"][-1]["variants"]
    quick = series(api, experiment, "quick_buy")["points"][-1]["variants"]
    assert all(q["value"] < b["value"] for q, b in zip(quick, buy, strict=True))


def test_a_ratios_series_walks_the_days_and_ends_at_its_results(api: Any, clean_db: str) -> None:
    define(api, BUY_PER_VISIT)
    experiment = launch(api, metrics={"secondary": ["buy_per_visit"]}, decision={"min_days": 0})
    start = started_days_ago(clean_db, experiment, 4)
    first, conversions = traffic(clean_db, experiment, start, 40)
    rollup()

    body = series(api, experiment, "buy_per_visit")

    assert body["metric"] == "buy_per_visit"
    assert body["analysis"] == "value"
    days = [date.fromisoformat(p["date"]) for p in body["points"]]
    assert len(days) >= 3
    for day, point in zip(days, body["points"], strict=True):
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
        stats = oracle(BUY_PER_VISIT, first, conversions, end)
        want = [stats[v["id"]]["sum_x"] / stats[v["id"]]["sum_y"] for v in experiment["variants"]]
        assert [v["value"] for v in point["variants"]] == pytest.approx(want, rel=1e-12), day
    # The last point is what /results says of it, lift and intervals included.
    result = results(api, experiment)["secondary"][0]
    last = body["points"][-1]
    assert [v["value"] for v in last["variants"]] == pytest.approx(
        [v["estimate"] for v in result["variants"]]
    )
    assert last["comparisons"][0]["lift"] == pytest.approx(result["comparisons"][0]["relative"]["estimate"])
    assert last["comparisons"][0]["ci"] == pytest.approx(result["comparisons"][0]["relative"]["ci"])
    assert last["comparisons"][0]["sequential_ci"] == pytest.approx(
        result["comparisons"][0]["sequential_relative"]["ci"]
    )


def test_a_definition_added_while_running_is_rebuilt_from_the_raw_events(
    api: Any, clean_db: str, sql: Any
) -> None:
    define(api, {"name": "buy", "type": "mean"}, QUICK_BUY)
    experiment = launch(api, metrics={"secondary": ["buy"]}, decision={"min_days": 0})
    start = started_days_ago(clean_db, experiment, 3)
    first, conversions = traffic(clean_db, experiment, start, 30)
    rollup()
    assert sql("SELECT count(*) FROM rollup_users")[0][0] == 60
    assert sql("SELECT count(*) FROM rollup_definitions")[0][0] == 0  # a plain mean: nothing more kept

    added = api("PATCH", f"{BASE}/{experiment['id']}", {"metrics": {"secondary": ["buy", "quick_buy"]}})
    assert added.status == 200, added

    # Marked to start over (the request neither locks nor deletes; the next run does): pending from the
    # first transaction, not failed.
    assert sql("SELECT failures, restart, since::text FROM rollup_failures") == [(0, True, "0")]
    expected = oracle(QUICK_BUY, first, conversions)
    rates = [expected[v["id"]]["converted"] / expected[v["id"]]["users"] for v in experiment["variants"]]
    pending = {m["name"]: m for m in results(api, experiment)["secondary"]}  # exact meanwhile (raw events)
    assert [v["estimate"] for v in pending["quick_buy"]["variants"]] == pytest.approx(rates, rel=1e-12)
    # Not held by the rollups yet: no daily series until the run rebuilds it.
    unbuilt = api("GET", f"{BASE}/{experiment['id']}/results/timeseries", query="metric=quick_buy")
    assert unbuilt.status == 404
    assert unbuilt.json["field"] == "metric"

    rollup()

    assert sql("SELECT count(*) FROM rollup_failures")[0][0] == 0
    assert sql("SELECT count(*) FROM rollup_users")[0][0] == 60
    assert sql("SELECT count(DISTINCT day) FROM snapshot_definitions")[0][0] >= 3  # every day rebuilt
    rebuilt = {m["name"]: m for m in results(api, experiment)["secondary"]}
    assert [v["estimate"] for v in rebuilt["quick_buy"]["variants"]] == pytest.approx(rates, rel=1e-12)
    rebuilt_series = series(api, experiment, "quick_buy")["points"]
    days = [date.fromisoformat(p["date"]) for p in rebuilt_series]
    got = [[v["value"] for v in p["variants"]] for p in rebuilt_series]
    want = expected_series(QUICK_BUY, experiment, first, conversions, days)
    assert got == [pytest.approx(row, rel=1e-12) for row in want]


def test_migration_0018_starts_over_the_experiments_that_pinned_a_kept_definition(
    api: Any, clean_db: str, sql: Any
) -> None:
    define(
        api,
        {"name": "buy", "type": "mean"},
        QUICK_BUY,
        CAPPED_SPEND,
        {
            "name": "spend_p90",
            "type": "mean",
            "metric": "buy",
            "capping": {"type": "percentile", "value": 0.9},
        },
    )
    kept = launch(api, name="kept", metrics={"secondary": ["buy", "capped_spend"]}, decision={"min_days": 0})
    plain = launch(
        api,
        name="plain",
        surface="elsewhere",
        metrics={"secondary": ["buy", "spend_p90"]},
        decision={"min_days": 0},
    )
    for experiment in (kept, plain):
        traffic(clean_db, experiment, datetime.now(UTC) - timedelta(hours=3), 5)
    rollup()
    # The database as it was before 0018: nothing of the definitions rolled up.
    for table in ("snapshot_definitions", "rollup_definitions", "rollup_user_definitions"):
        assert sql(f"WITH gone AS (DELETE FROM {table} RETURNING 1) SELECT count(*) FROM gone")[0][0] > 0
    migration = (Path(migrations_init).parent / "0018_defined_rollups.sql").read_text(encoding="utf-8")
    statement = migration[migration.index("CREATE TEMPORARY VIEW kept_pins") :]

    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute(statement.encode())

    # Only the experiment with a kept definition (an absolute cap) starts over; a percentile cap and a
    # plain mean have nothing to rebuild.
    assert sql("SELECT experiment_id::text, failures FROM rollup_failures") == [(kept["id"], 0)]
    rollup()
    assert sql("SELECT count(*) FROM rollup_failures")[0][0] == 0
    assert {r[0] for r in sql("SELECT DISTINCT name FROM rollup_definitions")} == {"capped_spend"}
    body = api("GET", f"{BASE}/{kept['id']}/metrics").json
    assert all(v["defined_metrics"]["capped_spend"]["users"] > 0 for v in body["variant_metrics"].values())


def test_a_phase_reads_its_kept_definitions_from_its_own_users_and_events(api: Any, clean_db: str) -> None:
    from tests.integration.test_config_schemas import assign

    define(
        api,
        {"name": "any_buy", "type": "proportion", "metric": "buy"},  # plain: the phase's event statistics
        {"name": "quick_buy", "type": "proportion", "metric": "buy", "window_hours": 24},  # kept
    )
    experiment = launch(
        api,
        surface="checkout",
        metrics={"secondary": ["any_buy", "quick_buy"]},
        decision={"min_days": 0},
        variants=[
            {"name": "control", "weight": 0.5, "config": {"button": "green"}},
            {"name": "treatment", "weight": 0.5, "config": {"button": "blue"}},
        ],
    )
    eid = experiment["id"]

    def buy(user: str) -> None:
        body = {"experiment_id": eid, "user_id": user, "metric_name": "buy", "value": 1}
        assert api("POST", "/api/v1/experiments/conversions", body).status in (200, 201)

    for n in range(12):  # phase 1: 12 users, every one buys
        assign(api, eid, f"early-{n}")
        buy(f"early-{n}")
    rollup()
    variants = [
        {"name": "control", "weight": 0.5, "config": {"button": "green"}},
        {"name": "treatment", "weight": 0.5, "config": {"button": "red"}},
    ]
    assert api("PATCH", f"{BASE}/{eid}", {"variants": variants}).json["phase"] == 2
    for n in range(8):  # phase 2: 8 users, one in four buys
        assign(api, eid, f"late-{n}")
        if n % 4 == 0:
            buy(f"late-{n}")

    for query, users, rate in (("", 8, 0.25), ("phase=1", 12, 1.0), ("phase=all", 20, 0.7)):
        body = {m["name"]: m for m in results(api, experiment, query)["secondary"]}
        for name in ("any_buy", "quick_buy"):
            assert sum(v["users"] for v in body[name]["variants"]) == users, (query, name)
        converted = sum(v["users"] * v["estimate"] for v in body["quick_buy"]["variants"])
        assert converted == pytest.approx(rate * users), query
        assert [v["estimate"] for v in body["quick_buy"]["variants"]] == [
            v["estimate"] for v in body["any_buy"]["variants"]
        ], query


def test_a_rebuild_longer_than_the_budget_advances_by_days_over_several_runs(
    api: Any, clean_db: str, sql: Any
) -> None:
    from abtest.storage import RollupRepository
    from abtest.storage.database import get_database

    define(api, QUICK_BUY)
    experiment = launch(api, metrics={"secondary": ["quick_buy"]}, decision={"min_days": 0})
    start = started_days_ago(clean_db, experiment, 4)
    first, conversions = traffic(clean_db, experiment, start, 20)
    rollup()
    whole = series(api, experiment, "quick_buy")["points"]
    days = sql("SELECT count(DISTINCT day) FROM snapshot_variants")[0][0]
    assert days >= 3
    sql("SELECT abtest_restart_rollups(%s, 'test')", (experiment["id"],))
    repository = RollupRepository(get_database())

    runs = 0
    while sql("SELECT count(*) FROM rollup_failures")[0][0]:
        run = repository.roll_up(budget_seconds=0)  # spent at once: one day per run
        runs += 1
        walked = sql("SELECT count(DISTINCT day) FROM snapshot_variants")[0][0]
        assert walked == min(runs, days)  # whole days, in order, never rewritten
        if walked < days:
            assert run.deferred == [UUID(experiment["id"])]
            assert sql("SELECT failures, error FROM rollup_failures") == [
                (0, "deferred: the run's time budget")
            ]
        # Exact all along: what is not rolled up yet is read from the raw events.
        assert series(api, experiment, "quick_buy")["points"] == whole
        assert runs <= days
    assert runs == days

    # Events that arrive while a rebuild is under way (late ones dated on its first day too) are
    # folded once, by the runs that continue it.
    sql("SELECT abtest_restart_rollups(%s, 'test')", (experiment["id"],))
    repository.roll_up(budget_seconds=0)
    user = "control-3"
    late = [(user, "buy", 5.0, first[user][1] + timedelta(minutes=30)), (user, "buy", 1.0, datetime.now(UTC))]
    for who, metric, value, when in late:
        sql(
            "INSERT INTO conversions (experiment_id, variant_id, user_id, metric_name, value, occurred_at)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING 1",
            (experiment["id"], first[who][0], who, metric, value, when),
        )
    conversions += late
    while sql("SELECT count(*) FROM rollup_failures")[0][0]:
        repository.roll_up(budget_seconds=0)
    expected_now = oracle(QUICK_BUY, first, conversions)
    metrics = api("GET", f"{BASE}/{experiment['id']}/metrics").json["variant_metrics"]
    for variant_id, report in metrics.items():
        assert report["defined_metrics"]["quick_buy"]["count"] == expected_now[variant_id]["count"]
        assert report["conversions"]["buy"]["count"] == sum(
            1
            for u, m, _, when in conversions
            if m == "buy" and first[u][0] == variant_id and when >= first[u][1]
        )
    expected = oracle(QUICK_BUY, first, conversions)
    body = results(api, experiment)["secondary"][0]
    rates = [expected[v["id"]]["converted"] / expected[v["id"]]["users"] for v in experiment["variants"]]
    assert [v["estimate"] for v in body["variants"]] == pytest.approx(rates, rel=1e-12)
