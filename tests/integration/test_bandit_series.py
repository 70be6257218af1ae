"""A bandit's results over time are period-weighted (docs/bandits.md, "Results over time"): every daily
point of /results/timeseries and of the report's charts is the period-weighted estimate of the
statistics at the end of that day, the last point is /results, the tail above the rollup's horizon
gives the series the rollup then stores, migration 0019 rebuilds the history of existing bandits, and
fixed experiments are untouched."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest

from abtest.analysis.report import pct
from abtest.storage.schema import migration_files
from tests.integration.test_events_and_metrics import start
from tests.integration.test_experiments_api import BASE
from tests.integration.test_timeseries_and_report import (
    TODAY,
    assert_last_point_is_results,
    at,
    backdate,
    rollup_all,
    series,
)

DAY1, DAY2 = TODAY - timedelta(days=1), TODAY
KINDS = ("conversion", "value")


def start_two_arm_bandit(api: Any, weights: tuple[float, float], analysis: str = "conversion") -> str:
    body = {
        "name": "bandit_series",
        "surface": "bandit_series",
        "variants": [{"name": "a", "weight": weights[0]}, {"name": "b", "weight": weights[1]}],
        "allocation": {"type": "bandit", "metric": "purchase", "analysis": analysis, "period_hours": 24},
    }
    created = api("POST", BASE, body)
    assert created.status == 201, created
    started = api("PUT", f"{BASE}/{created.json['id']}/status", {"status": "running"})
    assert started.status == 200, started
    eid: str = created.json["id"]
    return eid


def enroll(sql: Any, eid: str, users: dict[str, tuple[str, int | None]]) -> None:
    """Store assignments as the bandit made them: user -> (variant name, period that enrolled them)."""
    for user, (variant, period) in users.items():
        sql(
            "INSERT INTO assignments (experiment_id, user_id, variant_id, assigned_at, bandit_period)"
            " SELECT %(e)s, %(u)s, v.id, e.started_at, %(p)s FROM variants v JOIN experiments e"
            " ON e.id = v.experiment_id WHERE v.experiment_id = %(e)s AND v.name = %(v)s RETURNING user_id",
            {"e": eid, "u": user, "v": variant, "p": period},
        )


def reweighted(sql: Any, eid: str, before: list[float], after: list[float]) -> None:
    """As if a reweight had closed period 1 (bucketed with `before`) and opened period 2 with `after`."""
    sql(
        "INSERT INTO bandit_periods (experiment_id, number, started_at, ended_at, period_users,"
        " weights_before, weights_after, outcome, trigger)"
        " SELECT id, 1, started_at, started_at + interval '1 day', '[]', %s, %s, 'updated', 'api'"
        " FROM experiments WHERE id = %s RETURNING number",
        (json.dumps(before), json.dumps(after), eid),
    )
    sql(
        "UPDATE experiments SET bandit_period = 2, bandit_weights = %s,"
        " bandit_period_started_at = started_at + interval '1 day' WHERE id = %s RETURNING id",
        (json.dumps(after), eid),
    )


def events(eid: str, day: date, exposed: list[str], buys: dict[str, float]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "type": "exposure",
            "experiment_id": eid,
            "user_id": u,
            "event_id": f"x-{u}",
            "timestamp": at(day, 9),
        }
        for u in exposed
    ]
    out += [
        {
            "type": "conversion",
            "experiment_id": eid,
            "user_id": u,
            "metric_name": "purchase",
            "value": value,
            "event_id": f"c-{u}-{day}",
            "timestamp": at(day, 15),
        }
        for u, value in buys.items()
    ]
    return out


def post(api: Any, batch: list[dict[str, Any]]) -> None:
    for first in range(0, len(batch), 1000):
        response = api("POST", "/api/v1/events", {"events": batch[first : first + 1000]})
        assert response.status == 200, response
        assert all(r["status"] == "accepted" for r in response.json["results"]), response.json


def simpson(api: Any, sql: Any, eid: str, *, bandit: bool = True) -> None:
    """docs/bandits.md's example at a tenth of its size: both arms convert at 10% on day 1 (period 1,
    weights 0.9/0.1) and at 20% on day 2 (period 2, weights 0.1/0.9)."""
    backdate(eid, DAY1)
    arms = {
        1: {"a": (90, 9), "b": (10, 1)},  # period: variant -> (users, converting users)
        2: {"a": (10, 2), "b": (90, 18)},
    }
    batch: list[dict[str, Any]] = []
    for period, day in ((1, DAY1), (2, DAY2)):
        users = {
            f"p{period}-{v}-{n}": (v, period if bandit else None)
            for v, (k, _) in arms[period].items()
            for n in range(k)
        }
        enroll(sql, eid, users)
        buys = {f"p{period}-{v}-{n}": 1.0 for v, (_, c) in arms[period].items() for n in range(c)}
        batch += events(eid, day, list(users), buys)
    if bandit:
        reweighted(sql, eid, [0.9, 0.1], [0.1, 0.9])
    post(api, batch)


def without_sequential(body: dict[str, Any]) -> dict[str, Any]:
    """The series without the sequential SRM p-values, which only a rollup's check computes."""
    for point in body["points"]:
        point.pop("srm_sequential_p_value")
    return body


def both(api: Any, eid: str) -> dict[str, dict[str, Any]]:
    return {kind: without_sequential(series(api, eid, f"metric=purchase&analysis={kind}")) for kind in KINDS}


def test_the_series_is_period_weighted_where_the_pooled_one_reverses_the_truth(api: Any, sql: Any) -> None:
    # Given the example of docs/bandits.md, nothing rolled up yet
    eid = start_two_arm_bandit(api, (0.9, 0.1))
    simpson(api, sql, eid)

    # Pooled, B converts at 19% and A at 11% ...
    pooled = api("GET", f"{BASE}/{eid}/metrics").json["variant_metrics"]
    assert [v["conversions"]["purchase"]["users"] for v in pooled.values()] == [11, 19]

    # ... but each day's point is the period-weighted estimate: 10% and 10%, then 15% and 15%
    before = both(api, eid)
    points = before["conversion"]["points"]
    assert [p["date"] for p in points] == [DAY1.isoformat(), DAY2.isoformat()]
    assert [[v["value"] for v in p["variants"]] for p in points] == [[0.1, 0.1], [0.15, 0.15]]
    assert [[v["users"] for v in p["variants"]] for p in points] == [[90, 10], [100, 100]]
    assert points[-1]["comparisons"][0]["lift"] == pytest.approx(0.0, abs=1e-12)
    assert points[-1]["comparisons"][0]["p_value"] == pytest.approx(1.0)
    value_points = before["value"]["points"]
    assert [v["value"] for p in value_points for v in p["variants"]] == pytest.approx([0.1, 0.1, 0.15, 0.15])
    # The SRM of each point expects Σ_t N_t · weight_(a,t): 90/10, then 100/100, no alarm
    assert [p["srm_flag"] for p in points] == [False, False]
    assert points[-1]["srm_p_value"] == pytest.approx(1.0)
    # The last point is /results, exactly
    for kind in KINDS:
        assert_last_point_is_results(api, eid, kind)

    # When the rollup runs, it stores both days period-weighted and the series does not change
    rollup_all(sql)
    assert both(api, eid) == before
    assert sql(
        "SELECT day, count(*) FROM snapshot_bandit_metrics WHERE experiment_id = %s"
        " GROUP BY day ORDER BY day",
        (eid,),
    ) == [(DAY1, 2), (DAY2, 2)]
    per_period = sql(
        "SELECT p.period, v.name, p.users FROM rollup_bandit_period_variants p"
        " JOIN variants v ON v.id = p.variant_id WHERE p.experiment_id = %s ORDER BY 1, 2",
        (eid,),
    )
    assert per_period == [(1, "a", 90), (1, "b", 10), (2, "a", 10), (2, "b", 90)]
    for kind in KINDS:
        assert_last_point_is_results(api, eid, kind)

    # The report's lift over time (its chart and the table beside it) is the same series
    report = api("GET", f"{BASE}/{eid}/report", query="metric=purchase")
    assert report.status == 200, report
    rows = re.findall(r"<tr><td>([0-9-]{10})</td><td>b</td><td>([^<]*)</td>", report.text)
    assert rows == [(p["date"], pct(p["comparisons"][0]["lift"])) for p in points]
    assert pct(0.19 / 0.11 - 1) not in {lift for _, lift in rows}  # the pooled lift of day 2


def test_a_fixed_experiment_with_the_same_events_keeps_the_pooled_series(api: Any, sql: Any) -> None:
    eid = start(api, variants=[{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}])["id"]
    simpson(api, sql, eid, bandit=False)
    points = series(api, eid, "metric=purchase")["points"]
    assert [[v["value"] for v in p["variants"]] for p in points] == [[0.1, 0.1], [0.11, 0.19]]
    rollup_all(sql)
    assert series(api, eid, "metric=purchase")["points"][-1]["variants"][1]["value"] == 0.19
    # Nothing of a bandit's series is kept for it
    for table in (
        "rollup_bandit_period_variants",
        "rollup_bandit_period_metrics",
        "snapshot_bandit_variants",
        "snapshot_bandit_metrics",
    ):
        assert sql(f"SELECT count(*) FROM {table}") == [(0,)]


DRIFT_DAYS = [TODAY - timedelta(days=k) for k in range(3, -1, -1)]


def drift(eid: str, sql: Any) -> list[list[dict[str, Any]]]:
    """Four days; period 1 (weights 0.5/0.5) enrolls on the first two, period 2 (0.2/0.8) on the last
    two; buying grows day by day (every 4th user, 3rd, 2nd, every one) with values by user, and the
    first day's users buy again on every later day (period 1's statistics move after it closed).
    Returns each day's events."""
    backdate(eid, DRIFT_DAYS[0])
    days: list[list[dict[str, Any]]] = []
    for k, day in enumerate(DRIFT_DAYS):
        period = 1 if k < 2 else 2
        split = {"a": 10, "b": 10} if period == 1 else {"a": 4, "b": 16}
        users = {f"d{k}-{v}-{n}": (v, period) for v, count in split.items() for n in range(count)}
        enroll(sql, eid, users)
        buys = {u: float(n % 7 + 1) for n, u in enumerate(users) if n % (4 - k) == 0}
        if k > 0:
            buys |= {f"d0-{v}-{n}": 2.0 for v in "ab" for n in range(0, 10, 3)}
        days.append(events(eid, day, list(users), buys))
    return days


def test_the_tail_above_the_horizon_gives_the_series_the_rollup_then_stores(api: Any, sql: Any) -> None:
    # Given a bandit whose first two days are rolled up and whose last two are above the horizon
    eid = start_two_arm_bandit(api, (0.5, 0.5), analysis="value")
    days = drift(eid, sql)
    reweighted(sql, eid, [0.5, 0.5], [0.2, 0.8])
    post(api, days[0] + days[1])
    rollup_all(sql)
    post(api, days[2] + days[3])
    tail = both(api, eid)
    assert [p["date"] for p in tail["value"]["points"]] == [d.isoformat() for d in DRIFT_DAYS]
    for kind in KINDS:
        assert_last_point_is_results(api, eid, kind)

    # When the rollup runs, the stored days give the same series
    rollup_all(sql)
    assert both(api, eid) == tail
    for kind in KINDS:
        assert_last_point_is_results(api, eid, kind)

    # And it is not the pooled series: from the day period 2 began, B's point differs from its pooled mean
    pooled = []
    for k in range(len(DRIFT_DAYS)):
        pooled.append(pooled_means(sql, eid, DRIFT_DAYS[k]))
    weighted = [[v["value"] for v in p["variants"]] for p in tail["value"]["points"]]
    assert weighted[0] == pytest.approx(pooled[0])  # one period: the same
    assert weighted[1] == pytest.approx(pooled[1])
    assert weighted[3] != pytest.approx(pooled[3])


def pooled_means(sql: Any, eid: str, day: date) -> list[float]:
    """Each arm's pooled mean per exposed user at the end of `day`, from the daily snapshots."""
    rows = sql(
        "SELECT s.users, m.sum FROM snapshot_variants s JOIN variants v ON v.id = s.variant_id"
        " JOIN snapshot_metrics m ON m.experiment_id = s.experiment_id AND m.variant_id = s.variant_id"
        " AND m.day = s.day AND m.metric_name = 'purchase'"
        " WHERE s.experiment_id = %s AND s.day = %s ORDER BY v.position",
        (eid, day),
    )
    return [total / users for users, total in rows]


BANDIT_TABLES = {
    "rollup_bandit_period_variants": "experiment_id, period, variant_id, exposures, users",
    "rollup_bandit_period_metrics": (
        "experiment_id, period, variant_id, metric_name, count, sum, sum_squares, users, unattributed"
    ),
    "snapshot_bandit_variants": "experiment_id, day, variant_id, expected_users",
    "snapshot_bandit_metrics": (
        "experiment_id, day, variant_id, metric_name, count, sum, sum_squares, users, unattributed"
    ),
    "snapshot_variants": "experiment_id, variant_id, day, exposures, users",
    "snapshot_metrics": (
        "experiment_id, variant_id, metric_name, day, count, sum, sum_squares, users, unattributed"
    ),
    "rollup_variants": "experiment_id, variant_id, exposures, users",
    "rollup_metrics": "experiment_id, variant_id, metric_name, count, sum, sum_squares, users, unattributed",
    "rollup_users": "experiment_id, user_id, variant_id, exposures",
}


def tables(sql: Any) -> dict[str, list[tuple[Any, ...]]]:
    return {table: sorted(sql(f"SELECT {columns} FROM {table}")) for table, columns in BANDIT_TABLES.items()}


def test_migration_0019_rebuilds_a_bandits_history_and_leaves_fixed_experiments_alone(
    api: Any, sql: Any, clean_db: str
) -> None:
    # Given a bandit with four days rolled up, and a fixed experiment beside it
    eid = start_two_arm_bandit(api, (0.5, 0.5), analysis="value")
    days = drift(eid, sql)
    reweighted(sql, eid, [0.5, 0.5], [0.2, 0.8])
    post(api, [e for day in days for e in day])
    fixed = start(api, name="fixed_beside", surface="elsewhere")["id"]
    api("POST", "/api/v1/assignments", {"experiment_id": fixed, "user_id": "z"})
    rollup_all(sql)
    expected = both(api, eid)
    built = tables(sql)
    fixed_rows = sql("SELECT * FROM rollup_variants WHERE experiment_id = %s", (fixed,))

    # As the rollup left it before this migration: daily snapshots pooled, no per-period statistics
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE rollup_bandit_period_variants, rollup_bandit_period_metrics,"
            " snapshot_bandit_variants, snapshot_bandit_metrics"
        )
    stale = both(api, eid)["value"]["points"]
    assert stale[2] != expected["value"]["points"][2]  # a stored day, read pooled

    # When migration 0019 runs, reads are exact at once (the bandit is pending from transaction 0) ...
    with psycopg.connect(clean_db, autocommit=True) as conn, conn.transaction():
        conn.execute(dict(migration_files())["0019_bandit_series"].encode())
    assert sql("SELECT experiment_id::text FROM rollup_failures") == [(eid,)]
    assert sql("SELECT count(*) FROM snapshot_variants WHERE experiment_id = %s", (eid,)) == [(0,)]
    assert both(api, eid) == expected
    assert sql("SELECT * FROM rollup_variants WHERE experiment_id = %s", (fixed,)) == fixed_rows

    # ... and the next rollup run rebuilds every day, as a fresh fold of the raw events does
    rollup_all(sql)
    assert sql("SELECT count(*) FROM rollup_failures") == [(0,)]
    assert tables(sql) == built
    assert both(api, eid) == expected

    # Starting an experiment's rollups over (abtest_restart_rollups: a mark the next run carries out with
    # abtest_clear_rollups, which lists the bandit tables) clears its per-period statistics too: the
    # rebuild does not count twice
    sql("SELECT abtest_restart_rollups(%s, 'test')", (eid,))
    assert both(api, eid) == expected
    with psycopg.connect(clean_db, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT abtest_clear_rollups(%s)", (eid,))
        for table in (
            "rollup_bandit_period_variants",
            "rollup_bandit_period_metrics",
            "snapshot_bandit_metrics",
        ):
            assert conn.execute(f"SELECT count(*) FROM {table}".encode()).fetchone() == (0,)
        raise psycopg.Rollback()  # only looked: the run does it
    rollup_all(sql)
    assert tables(sql) == built
    assert both(api, eid) == expected


def test_a_long_tail_is_thinned_and_still_gives_the_series_the_rollup_stores(api: Any, sql: Any) -> None:
    # Given a bandit with 150 days of events, none rolled up (past 91 days the series is weekly)
    eid = start_two_arm_bandit(api, (0.5, 0.5))
    days = [TODAY - timedelta(days=k) for k in range(149, -1, -1)]
    backdate(eid, days[0])
    batch: list[dict[str, Any]] = []
    for k, day in enumerate(days):
        period = 1 if k < 70 else 2
        users = {f"t{k}-{v}": (v, period) for v in ("a", "b") if period == 1 or v == "b" or k % 4 == 0}
        enroll(sql, eid, users)
        buys = {u: 1.0 for u in users if (k + len(u)) % 3 == 0}
        if k % 10 == 5:
            buys |= {f"t{k - 5}-b": 1.0}  # a user of an earlier day converts now
        batch += events(eid, day, list(users), buys)
    reweighted(sql, eid, [0.5, 0.5], [0.2, 0.8])
    post(api, batch)
    tail = both(api, eid)
    points = tail["conversion"]["points"]
    assert tail["conversion"]["step_days"] == 7
    assert len(points) < len(days)
    for kind in KINDS:
        assert_last_point_is_results(api, eid, kind)

    # When the rollup has stored every day, the series is the same
    rollup_all(sql)
    assert sql(
        "SELECT count(DISTINCT day) FROM snapshot_bandit_variants WHERE experiment_id = %s", (eid,)
    ) == [(len(days),)]
    assert both(api, eid) == tail
