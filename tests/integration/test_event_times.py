"""Event times bounded by the experiment, against a real PostgreSQL: the SQL form of the rule (one
scenario table with the pure rule), ingestion (batch and single conversion), the reads, and migration
0011, which repairs a database that already holds such events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from abtest.storage.event_times import stored_at_sql, time_error_sql
from abtest.storage.schema import migration_files
from tests.integration.test_events_and_metrics import convert, rollup, start
from tests.integration.test_experiments_api import BASE
from tests.integration.test_timeseries_and_report import rollup_all
from tests.unit.test_event_times import SCENARIOS, Scenario

ASSIGNMENT_TABLES = ("exposures", "conversions")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_the_sql_form_decides_as_the_rule(sql: Any, scenario: Scenario) -> None:
    row = sql(
        "SELECT "
        + time_error_sql(
            "%(kind)s::text", "%(at)s::timestamptz", "%(started)s::timestamptz", "%(assigned)s::timestamptz"
        )
        + ", "
        + stored_at_sql("%(kind)s::text", "%(at)s::timestamptz", "%(assigned)s::timestamptz"),
        {
            "kind": scenario.kind,
            "at": scenario.occurred_at,
            "started": scenario.started_at,
            "assigned": scenario.assigned_at,
        },
    )[0]
    error, stored_at = row
    assert error == (scenario.error.value if scenario.error else None)
    if scenario.error is None:
        assert stored_at == scenario.stored_at


def assign(api: Any, experiment_id: str, user: str) -> None:
    body = {"experiment_id": experiment_id, "user_id": user, "record_exposure": False}
    assert api("POST", "/api/v1/assignments", body).json["enrolled"]


def exposure(experiment_id: str, user: str, event_id: str, at: datetime | None = None) -> dict[str, Any]:
    event = {"type": "exposure", "experiment_id": experiment_id, "user_id": user, "event_id": event_id}
    return event | ({"timestamp": at.isoformat()} if at else {})


def conversion(experiment_id: str, user: str, event_id: str, at: datetime | None = None) -> dict[str, Any]:
    event = {
        "type": "conversion",
        "experiment_id": experiment_id,
        "user_id": user,
        "event_id": event_id,
        "metric_name": "purchase",
        "value": 3.0,
    }
    return event | ({"timestamp": at.isoformat()} if at else {})


def post(api: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = api("POST", "/api/v1/events", {"events": events})
    assert response.status == 200, response
    results: list[dict[str, Any]] = response.json["results"]
    return results


def readings(api: Any, experiment_id: str) -> tuple[Any, int]:
    """/results without its clock, and the length of the time series."""
    results = api("GET", f"{BASE}/{experiment_id}/results").json
    results.pop("computed_at")
    points = api("GET", f"{BASE}/{experiment_id}/results/timeseries").json["points"]
    return results, len(points)


def test_events_dated_before_the_start_are_refused_and_change_nothing(api: Any, sql: Any) -> None:
    """The issue's case: an exposure dated 2000-01-02 sent before the first snapshot, and a conversion
    dated 2000-01-03 of a user assigned today."""
    experiment = start(api)
    eid = experiment["id"]
    assign(api, eid, "u1")
    assert [r["status"] for r in post(api, [exposure(eid, "u1", "x1"), conversion(eid, "u1", "c1")])] == [
        "accepted",
        "accepted",
    ]
    rollup_all(sql)  # the rollup adds the sequential SRM check to /results: the baseline has it too
    before = readings(api, eid)
    assert before[1] == 1

    old = datetime(2000, 1, 2, tzinfo=UTC)
    results = post(
        api,
        [exposure(eid, "u1", "old-x", old), conversion(eid, "u1", "old-c", old + timedelta(days=1))],
    )
    assert [(r["status"], r["error"]) for r in results] == [("rejected", "event_before_start")] * 2
    assert "before the experiment started" in results[0]["message"]
    single = convert(api, eid, "u1", timestamp="2000-01-03T00:00:00Z", event_id="old-single")
    assert (single.status, single.json["error"], single.json["field"]) == (
        422,
        "event_before_start",
        "timestamp",
    )
    assert sql("SELECT count(*) FROM exposures WHERE event_id LIKE 'old%%'") == [(0,)]
    assert sql("SELECT count(*) FROM conversions WHERE event_id LIKE 'old%%'") == [(0,)]
    assert readings(api, eid) == before
    rollup_all(sql)
    assert readings(api, eid) == before


def test_an_exposure_a_little_before_the_assignment_is_moved_to_it(api: Any, sql: Any) -> None:
    experiment = start(api)
    eid = experiment["id"]
    # The experiment started two days ago (as if): only the assignment bounds these exposures.
    sql("UPDATE experiments SET started_at = now() - interval '2 days' WHERE id = %s RETURNING id", (eid,))
    assign(api, eid, "lagging")
    assign(api, eid, "stale")
    assigned_at = sql("SELECT assigned_at FROM assignments WHERE user_id = 'lagging'")[0][0]
    results = post(
        api,
        [
            exposure(eid, "lagging", "lag", assigned_at - timedelta(minutes=4)),
            exposure(eid, "stale", "stale", assigned_at - timedelta(hours=1)),
            conversion(eid, "stale", "early-conversion", assigned_at - timedelta(hours=1)),
        ],
    )
    assert [(r["status"], r["error"]) for r in results] == [
        ("accepted", None),
        ("rejected", "event_before_assignment"),
        ("accepted", None),  # kept as dated: it does not count (before the first exposure)
    ]
    assert sql("SELECT occurred_at FROM exposures WHERE event_id = 'lag'") == [(assigned_at,)]
    # A retry of the moved exposure (same timestamp sent) is a duplicate, not a reuse of its event_id.
    again = post(api, [exposure(eid, "lagging", "lag", assigned_at - timedelta(minutes=4))])
    assert again[0]["status"] == "duplicate"


def test_a_replayed_conversion_is_still_answered_after_the_rule(api: Any) -> None:
    experiment = start(api)
    assign(api, experiment["id"], "u")
    first = convert(api, experiment["id"], "u", event_id="same")
    assert first.status == 201
    assert convert(api, experiment["id"], "u", event_id="same").status == 201


# Migration 0011: a database that holds events the rule now refuses, and the rollups they extended.


def migration_0011() -> str:
    return dict(migration_files())["0011_event_times"]


def bad_history(sql: Any, api: Any) -> str:
    """An experiment with a normal day of data, then (inserted as the old code accepted them) an
    exposure and a conversion of 2000, an exposure an hour before its user's assignment and one two
    minutes before, all folded by the rollup into rollups and snapshots."""
    experiment = start(api)
    eid = experiment["id"]
    for user in ("a", "b", "c", "d"):
        assign(api, eid, user)
    post(api, [exposure(eid, u, f"x-{u}") for u in ("a", "b", "c", "d")] + [conversion(eid, "a", "c-a")])
    sql("UPDATE experiments SET started_at = now() - interval '1 day' WHERE id = %s RETURNING id", (eid,))
    variant = {u: sql("SELECT variant_id FROM assignments WHERE user_id = %s", (u,))[0][0] for u in "abcd"}
    sql(
        "INSERT INTO exposures (experiment_id, variant_id, user_id, event_id, occurred_at) VALUES"
        " (%(e)s, %(vb)s, 'b', 'old-x', '2000-01-02T00:00:00Z'),"
        " (%(e)s, %(vc)s, 'c', 'hour-early', (SELECT assigned_at FROM assignments WHERE user_id = 'c')"
        "   - interval '1 hour'),"
        " (%(e)s, %(vd)s, 'd', 'lagging', (SELECT assigned_at FROM assignments WHERE user_id = 'd')"
        "   - interval '2 minutes') RETURNING id",
        {"e": eid, "vb": variant["b"], "vc": variant["c"], "vd": variant["d"]},
    )
    sql(
        "INSERT INTO conversions"
        " (experiment_id, variant_id, user_id, metric_name, value, event_id, occurred_at)"
        " VALUES (%s, %s, 'b', 'purchase', 7, 'old-c', '2000-01-03T00:00:00Z') RETURNING id",
        (eid, variant["b"]),
    )
    rollup_all(sql)
    return eid


ROLLUP_TABLES = {
    "rollup_users": "experiment_id, user_id, variant_id, exposures",
    "rollup_user_metrics": "experiment_id, user_id, metric_name, variant_id, count, total, unattributed",
    "rollup_variants": "experiment_id, variant_id, exposures, users",
    "rollup_metrics": "experiment_id, variant_id, metric_name, count, sum, sum_squares, users, unattributed",
    "snapshot_variants": "experiment_id, variant_id, day, exposures, users",
    "snapshot_metrics": (
        "experiment_id, variant_id, metric_name, day, count, sum, sum_squares, users, unattributed"
    ),
}


def rollup_state(sql: Any) -> dict[str, list[tuple[Any, ...]]]:
    return {table: sorted(sql(f"SELECT {columns} FROM {table}")) for table, columns in ROLLUP_TABLES.items()}


def test_migration_0011_repairs_events_rollups_and_snapshots_exactly(
    api: Any, sql: Any, clean_db: str
) -> None:
    eid = bad_history(sql, api)
    # The old code folded them: snapshots from 2000-01-02 on (9,800 daily points before this issue).
    assert str(sql("SELECT min(day) FROM snapshot_variants")[0][0]) == "2000-01-02"

    with psycopg.connect(clean_db, autocommit=True) as conn, conn.transaction():
        conn.execute(migration_0011().encode())

    refused = sql("SELECT source, reason, event->>'event_id' FROM refused_events ORDER BY 1, 3")
    assert refused == [
        ("conversions", "event_before_start", "old-c"),
        ("exposures", "event_before_assignment", "hour-early"),
        ("exposures", "event_before_start", "old-x"),
    ]
    assert sql(
        "SELECT x.occurred_at = a.assigned_at"
        " FROM exposures x JOIN assignments a USING (experiment_id, user_id)"
        " WHERE x.event_id = 'lagging'"
    ) == [(True,)]
    # Reads are exact at once (the experiment is pending from transaction 0), before any rollup run.
    pending = readings(api, eid)
    assert pending[1] == 1
    rollup_all(sql)
    assert readings(api, eid) == pending
    assert sql("SELECT count(*) FROM rollup_failures") == [(0,)]
    assert sql(
        "SELECT min(day) >= (SELECT (started_at AT TIME ZONE 'UTC')::date FROM experiments)"
        " FROM snapshot_variants"
    ) == [(True,)]
    repaired = rollup_state(sql)

    # A fresh fold of the same raw events from nothing gives the same rollups and snapshots.
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute(("TRUNCATE " + ", ".join(ROLLUP_TABLES)).encode())
        conn.execute("UPDATE rollup_state SET horizon = '0'::xid8")
    rollup_all(sql)
    assert rollup_state(sql) == repaired
    assert readings(api, eid) == pending

    # Idempotent: a second run moves nothing and marks nothing.
    with psycopg.connect(clean_db, autocommit=True) as conn, conn.transaction():
        conn.execute(migration_0011().encode())
    assert sql("SELECT count(*) FROM refused_events") == [(3,)]
    assert sql("SELECT count(*) FROM rollup_failures") == [(0,)]


def test_migration_0011_leaves_other_experiments_alone(api: Any, sql: Any, clean_db: str) -> None:
    eid = bad_history(sql, api)
    other = start(api, name="unrelated", surface="elsewhere")["id"]
    assign(api, other, "z")
    post(api, [exposure(other, "z", "x-z")])
    rollup_all(sql)
    before = sql("SELECT * FROM rollup_variants WHERE experiment_id = %s", (other,))
    with psycopg.connect(clean_db, autocommit=True) as conn, conn.transaction():
        conn.execute(migration_0011().encode())
    assert sql("SELECT experiment_id::text FROM rollup_failures") == [(eid,)]
    assert sql("SELECT * FROM rollup_variants WHERE experiment_id = %s", (other,)) == before
    rollup()
