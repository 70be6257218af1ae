"""The largest legal experiment (MAX_VARIANTS variants, MAX_METRICS_PER_EXPERIMENT metrics, a year of
daily snapshots) through the handlers against a real PostgreSQL: /results/timeseries and the report stay
under Lambda's 6 MB response limit with margin (docs/events-and-time.md)."""

from __future__ import annotations

from typing import Any

import psycopg

from abtest.analysis.timeseries import DAILY_DAYS, MAX_SERIES_POINTS
from abtest.limits import MAX_METRICS_PER_EXPERIMENT, MAX_VARIANTS
from tests.integration.test_experiments_api import BASE

BUDGET = 4_000_000  # bytes, of Lambda's 6 MB
DAYS = 366


def largest(api: Any, url: str) -> str:
    """Started a year ago, with one snapshot per day, variant and metric (as the rollup writes them)
    and the rollup totals of today: 7,320 variant rows and 732,000 metric rows."""
    weight = 1 / MAX_VARIANTS
    body = {
        "name": "largest_legal",
        "surface": "largest",
        "variants": [
            {"name": f"variant_{i:02d}", "weight": 1 - (MAX_VARIANTS - 1) * weight if i == 0 else weight}
            for i in range(MAX_VARIANTS)
        ],
    }
    created = api("POST", BASE, body)
    assert created.status == 201, created
    eid: str = created.json["id"]
    assert api("PUT", f"{BASE}/{eid}/status", {"status": "running"}).status == 200
    today = "(now() AT TIME ZONE 'UTC')::date"
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL statement_timeout = 0")  # the bulk load, not a request
        params = {"e": eid, "last": DAYS - 1, "metrics": MAX_METRICS_PER_EXPERIMENT - 1}
        conn.execute(
            "UPDATE experiments SET started_at = now() - make_interval(days => %(last)s) WHERE id = %(e)s",
            params,
        )
        conn.execute(
            "INSERT INTO snapshot_variants (experiment_id, variant_id, day, exposures, users)"
            f" SELECT %(e)s, v.id, {today} - d, 100 * (%(last)s + 1 - d) + v.position,"
            " 100 * (%(last)s + 1 - d) + v.position"
            " FROM variants v, generate_series(0, %(last)s) d WHERE v.experiment_id = %(e)s",
            params,
        )
        conn.execute(
            "INSERT INTO snapshot_metrics"
            " (experiment_id, variant_id, metric_name, day, count, sum, sum_squares, users)"
            f" SELECT %(e)s, v.id, 'metric_' || lpad(m::text, 3, '0'), {today} - d,"
            " 10 * (%(last)s + 1 - d) + v.position + m, 25 * (%(last)s + 1 - d) + v.position,"
            " 70 * (%(last)s + 1 - d) + v.position, 10 * (%(last)s + 1 - d) + v.position"
            " FROM variants v, generate_series(0, %(last)s) d, generate_series(0, %(metrics)s) m"
            " WHERE v.experiment_id = %(e)s",
            params,
        )
        conn.execute(
            "INSERT INTO rollup_variants (experiment_id, variant_id, exposures, users)"
            " SELECT experiment_id, variant_id, exposures, users FROM snapshot_variants"
            f" WHERE experiment_id = %(e)s AND day = {today}",
            params,
        )
        conn.execute(
            "INSERT INTO rollup_metrics"
            " (experiment_id, variant_id, metric_name, count, sum, sum_squares, users)"
            " SELECT experiment_id, variant_id, metric_name, count, sum, sum_squares, users"
            f" FROM snapshot_metrics WHERE experiment_id = %(e)s AND day = {today}",
            params,
        )
        conn.execute(
            "INSERT INTO experiment_metrics SELECT DISTINCT experiment_id, metric_name FROM rollup_metrics"
            " WHERE experiment_id = %(e)s",
            params,
        )
    return eid


def test_the_largest_legal_experiment_reads_stay_under_the_budget(api: Any, clean_db: str) -> None:
    eid = largest(api, clean_db)

    series = api("GET", f"{BASE}/{eid}/results/timeseries", query="metric=metric_042")
    assert series.status == 200, series
    assert len(series.text.encode()) < BUDGET
    points = series.json["points"]
    assert DAILY_DAYS < len(points) <= MAX_SERIES_POINTS + 1
    assert (series.json["step_days"], len(points[-1]["variants"])) == (7, MAX_VARIANTS)

    summary = api("GET", f"{BASE}/{eid}/report")
    assert summary.status == 200
    assert len(summary.text.encode()) < BUDGET
    assert summary.text.count('<section class="metric"') == 0
    assert summary.text.count('href="?metric=') == MAX_METRICS_PER_EXPERIMENT

    one = api("GET", f"{BASE}/{eid}/report", query="metric=metric_042")
    assert one.status == 200
    assert len(one.text.encode()) < BUDGET
    assert one.text.count('<section class="metric"') == 1
    assert 'data-metric="metric_042"' in one.text

    unknown = api("GET", f"{BASE}/{eid}/report", query="metric=nope")
    assert (unknown.status, unknown.json["error"], unknown.json["field"]) == (
        404,
        "metric_not_found",
        "metric",
    )
