"""A bandit's period-weighted series at the largest legal size, against a fixed experiment's series.

    .venv/bin/python bench/bench_bandit_series.py [--days 1096] [--reps 5]
        [--variants 20] [--metrics 100] [--periods 500]   (defaults: the largest legal bandit)

Database `abtest_bench_bandit_series` (public schema dropped and re-migrated at the start, dropped at
the end). Two running experiments of MAX_VARIANTS (20) variants and MAX_METRICS_PER_EXPERIMENT (100)
metrics, started `--days` days ago (three years by default), with one daily snapshot per day, variant
and metric as the rollup writes them (snapshot_variants, snapshot_metrics) and their rollup totals:

(defaults: `--variants`, `--metrics`, `--periods` change the size)

- fixed: nothing more;
- bandit: MAX_BANDIT_PERIODS (500) closed periods (bandit_periods), the running statistics of every
  period, variant and metric (rollup_bandit_period_*: 10,000 and 1,000,000 rows) and the period-weighted
  daily snapshots (snapshot_bandit_variants, snapshot_bandit_metrics) of every day.

What is timed (median of `--reps`, interleaved):

1. GET /results/timeseries?metric=metric_000&analysis=value through the metrics handler, for each
   experiment: the bandit's read against the fixed one's (what the period weighting adds to a read).
2. `BanditSeriesRollup.snapshot(day)`: what the rollup adds for a bandit per UTC day it walks
   (period_weighted of all 100 metrics over 500 periods x 20 arms, and the day's upserts).
3. `weighted_day` of one metric over 500 periods x 20 arms (pure): what a read adds per tail day.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import _harness as common

from abtest.limits import MAX_BANDIT_PERIODS, MAX_METRICS_PER_EXPERIMENT, MAX_VARIANTS

DATABASE = "abtest_bench_bandit_series"
METRIC = "metric_000"


def create(name: str, bandit: bool, variants: int) -> str:
    from experiments_handler import lambda_handler as experiments

    weight = 1 / variants
    body: dict[str, Any] = {
        "name": name,
        "surface": name,
        "variants": [
            {"name": f"v{i:02d}", "weight": 1 - (variants - 1) * weight if i == 0 else weight}
            for i in range(variants)
        ],
    }
    if bandit:
        body["allocation"] = {"type": "bandit", "metric": METRIC, "analysis": "value", "period_hours": 24}
    created = common.invoke(experiments, "POST", "/api/v1/experiments", body)
    assert created.status == 201, created
    eid = str(created.body["id"])
    started = common.invoke(
        experiments,
        "PUT",
        f"/api/v1/experiments/{eid}/status",
        {"status": "running"},
        route_key="PUT /api/v1/experiments/{experiment_id}/status",
        path_parameters={"experiment_id": eid},
    )
    assert started.status == 200, started
    return eid


def load(conn: Any, eid: str, args: argparse.Namespace, bandit: bool) -> None:
    """The snapshots and rollups of module docstring, consistent enough to analyse (no negative
    variance), for one experiment."""
    today = "(now() AT TIME ZONE 'UTC')::date"
    params = {
        "e": eid,
        "last": args.days - 1,
        "metrics": args.metrics - 1,
        "periods": args.periods,
        "weight": 1 / args.variants,
        "variants": args.variants,
    }
    conn.execute("SET statement_timeout = 0")
    conn.execute(
        "UPDATE experiments SET started_at = now() - make_interval(days => %(last)s) WHERE id = %(e)s", params
    )
    conn.execute(
        "INSERT INTO snapshot_variants (experiment_id, variant_id, day, exposures, users)"
        f" SELECT %(e)s, v.id, {today} - d, 100 * (%(last)s + 1 - d) + v.position,"
        " 100 * (%(last)s + 1 - d) + v.position FROM variants v, generate_series(0, %(last)s) d"
        " WHERE v.experiment_id = %(e)s",
        params,
    )
    conn.execute(
        "INSERT INTO snapshot_metrics"
        " (experiment_id, variant_id, metric_name, day, count, sum, sum_squares, users)"
        " SELECT s.experiment_id, s.variant_id, 'metric_' || lpad(m::text, 3, '0'), s.day, s.users / 4,"
        " s.users / 4 * 3.0, s.users / 4 * 9.0, s.users / 4"
        " FROM snapshot_variants s, generate_series(0, %(metrics)s) m WHERE s.experiment_id = %(e)s",
        params,
    )
    conn.execute(
        "INSERT INTO rollup_variants (experiment_id, variant_id, exposures, users)"
        f" SELECT experiment_id, variant_id, exposures, users FROM snapshot_variants"
        f" WHERE experiment_id = %(e)s AND day = {today}",
        params,
    )
    conn.execute(
        "INSERT INTO rollup_metrics (experiment_id, variant_id, metric_name, count, sum, sum_squares, users)"
        " SELECT experiment_id, variant_id, metric_name, count, sum, sum_squares, users"
        f" FROM snapshot_metrics WHERE experiment_id = %(e)s AND day = {today}",
        params,
    )
    if not bandit:
        return
    conn.execute(
        "INSERT INTO bandit_periods (experiment_id, number, started_at, ended_at, period_users,"
        " weights_before, weights_after, outcome, trigger)"
        " SELECT %(e)s, p, now() - interval '1 day', now(), '[]',"
        " (SELECT jsonb_agg(%(weight)s::float8) FROM generate_series(1, %(variants)s)),"
        " (SELECT jsonb_agg(%(weight)s::float8) FROM generate_series(1, %(variants)s)),"
        " 'updated', 'schedule' FROM generate_series(1, %(periods)s) p",
        params,
    )
    conn.execute("UPDATE experiments SET bandit_period = %(periods)s + 1 WHERE id = %(e)s", params)
    conn.execute(
        "INSERT INTO rollup_bandit_period_variants (experiment_id, period, variant_id, exposures, users)"
        " SELECT %(e)s, p, v.id, 20 + (p * 7 + v.position * 3) %% 50, 20 + (p * 7 + v.position * 3) %% 50"
        " FROM variants v, generate_series(1, %(periods)s) p WHERE v.experiment_id = %(e)s",
        params,
    )
    conn.execute(
        "INSERT INTO rollup_bandit_period_metrics (experiment_id, period, variant_id, metric_name,"
        " count, sum, sum_squares, users)"
        " SELECT r.experiment_id, r.period, r.variant_id, 'metric_' || lpad(m::text, 3, '0'),"
        " r.users / 4 + m %% 3, (r.users / 4 + m %% 3) * 3.0, (r.users / 4 + m %% 3) * 9.0,"
        " r.users / 4 + m %% 3 FROM rollup_bandit_period_variants r, generate_series(0, %(metrics)s) m"
        " WHERE r.experiment_id = %(e)s",
        params,
    )
    conn.execute(
        "INSERT INTO snapshot_bandit_variants (experiment_id, day, variant_id, expected_users)"
        " SELECT experiment_id, day, variant_id, users FROM snapshot_variants WHERE experiment_id = %(e)s",
        params,
    )
    conn.execute(
        "INSERT INTO snapshot_bandit_metrics (experiment_id, day, variant_id, metric_name, count, sum,"
        " sum_squares, users, unattributed) SELECT experiment_id, day, variant_id, metric_name, count, sum,"
        " sum_squares, users, 0 FROM snapshot_metrics WHERE experiment_id = %(e)s",
        params,
    )


def series_request(eid: str) -> common.Request:
    from metrics_handler import lambda_handler as metrics

    prepared = common.request(
        metrics,
        "GET",
        f"/api/v1/experiments/{eid}/results/timeseries",
        route_key="GET /api/v1/experiments/{experiment_id}/results/timeseries",
        path_parameters={"experiment_id": eid},
    )
    prepared.event["rawQueryString"] = f"metric={METRIC}&analysis=value"
    prepared.event["queryStringParameters"] = {"metric": METRIC, "analysis": "value"}
    return prepared


def timed(prepared: common.Request) -> tuple[float, int]:
    started = time.perf_counter()
    raw = prepared.send()
    seconds = time.perf_counter() - started
    reply = common.Request.reply(raw)
    assert reply.status == 200, reply
    return seconds, len(reply.body["points"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=1096)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--variants", type=int, default=MAX_VARIANTS)
    parser.add_argument("--metrics", type=int, default=MAX_METRICS_PER_EXPERIMENT)
    parser.add_argument("--periods", type=int, default=MAX_BANDIT_PERIODS)
    args = parser.parse_args()
    url = common.prepare(DATABASE)
    fixed, bandit = create("bench_fixed", False, args.variants), create("bench_bandit", True, args.variants)
    loading = time.perf_counter()
    with common.admin_connection(url) as admin:
        load(admin, fixed, args, False)
        load(admin, bandit, args, True)
        common.vacuum_analyze(admin)
        rows = {
            table: admin.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in (
                "snapshot_variants",
                "snapshot_metrics",
                "snapshot_bandit_variants",
                "snapshot_bandit_metrics",
                "rollup_bandit_period_variants",
                "rollup_bandit_period_metrics",
            )
        }
    loaded = time.perf_counter() - loading

    from uuid import UUID

    from abtest.analysis.bandits import weighted_day
    from abtest.storage.bandit_series import BanditSeriesRollup, _period_weights, _running
    from abtest.storage.database import get_database
    from abtest.storage.experiments import fetch_experiment
    from abtest.storage.rollups import _rolled_up

    reads: dict[str, list[float]] = {"fixed": [], "bandit": []}
    points = {}
    for _ in range(args.reps):
        for name, eid in (("fixed", fixed), ("bandit", bandit)):
            seconds, points[name] = timed(series_request(eid))
            reads[name].append(seconds)

    today = datetime.now(UTC).date()

    def snapshot_once(conn: Any) -> float:
        rollup = BanditSeriesRollup(conn, UUID(bandit))
        started = time.perf_counter()
        rollup.snapshot(today)
        return time.perf_counter() - started

    writes = [get_database().run(snapshot_once) for _ in range(args.reps)]

    def tail_inputs(conn: Any) -> tuple[Any, Any, Any]:
        experiment = fetch_experiment(conn, UUID(bandit))
        return (
            _rolled_up(conn, experiment),
            _running(conn, experiment, [METRIC]),
            _period_weights(conn, experiment.id),
        )

    pooled, periods, weights = get_database().run(tail_inputs)
    tails = []
    for _ in range(args.reps):
        started = time.perf_counter()
        weighted_day(pooled, periods, weights, [METRIC])
        tails.append(time.perf_counter() - started)
    facts = common.server_facts(url)
    common.drop_database(url)

    def cell(samples: list[float]) -> str:
        return f"{statistics.median(samples) * 1000:.0f} ms ({', '.join(f'{s * 1000:.0f}' for s in samples)})"

    size = f"{args.periods} periods x {args.variants} arms x {args.metrics} metrics"
    print(f"## A bandit's period-weighted series: {size}, {args.days} days\n")
    print(f"{facts}\n")
    print(f"Rows loaded (in {loaded:.0f} s): " + ", ".join(f"{t} {n:,}" for t, n in rows.items()) + "\n")
    print("| what | median (runs) |")
    print("|---|---|")
    for name, label in (("fixed", "fixed experiment"), ("bandit", f"bandit, {args.periods} periods")):
        print(f"| GET /results/timeseries, {label} ({points[name]} points) | {cell(reads[name])} |")
    print(f"| rollup: BanditSeriesRollup.snapshot(day), every metric of {size} | {cell(writes)} |")
    print(f"| read: weighted_day of one metric (per tail day not rolled up) | {cell(tails)} |")
    ratio = statistics.median(reads["bandit"]) / statistics.median(reads["fixed"])
    print(f"\nratio bandit / fixed series read: **{ratio:.2f}**")


if __name__ == "__main__":
    main()
