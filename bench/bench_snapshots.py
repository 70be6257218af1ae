"""Daily snapshots: one rollup of the same new events with empty snapshot tables, and with years of them.

    .venv/bin/python bench/bench_snapshots.py [--new 50000] [--days 1095] [--experiments 1000] [--reps 3]

Database `abtest_bench_snapshots` (public schema dropped and re-migrated at the start, dropped at the
end). One running experiment, two variants, users `n-0` .. `n-19996`; the new events are the generator
of _harness.bulk_load (60 % exposures, 40 % conversions over three metrics, timestamps over the
last 24 hours, so a run folds two UTC days and writes two days of snapshots).

What is timed: RollupRepository(get_database()).roll_up(), wall time of the whole call (window by
day, per-user state, fold, the four upserts, the latest-snapshot-day probe and the snapshot upserts).
Each repetition truncates the event, rollup and snapshot tables, loads the same events, then:

- empty: no snapshot rows;
- history: `--days` days of snapshot rows for the experiment (its three metrics, before the new
  events' days) plus the same for `--experiments` other experiments (foreign keys skipped), i.e.
  experiments x days x variants rows in snapshot_variants and three times that in snapshot_metrics.

Target: rollup time with history / without close to 1 (the snapshot work follows the new events'
experiments and days, not the history).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import _harness as common

DATABASE = "abtest_bench_snapshots"  # its own database: never another benchmark's
USERS = 19_997


def load_history(conn: Any, experiment: common.Experiment, days: int, others: int) -> int:
    """Snapshot rows for `days` days before yesterday, for the experiment and `others` fake ones."""
    conn.execute("SET session_replication_role = replica")
    try:
        params = {"days": days, "others": others, "variants": experiment.variant_ids, "e": experiment.id}
        conn.execute(
            "WITH exps AS (SELECT %(e)s::uuid AS id UNION ALL"
            " SELECT gen_random_uuid() FROM generate_series(1, %(others)s)),"
            " days AS (SELECT (now() AT TIME ZONE 'UTC')::date - 2 - d AS day"
            " FROM generate_series(0, %(days)s - 1) d)"
            " INSERT INTO snapshot_variants (experiment_id, variant_id, day, exposures, users)"
            " SELECT exps.id, CASE WHEN exps.id = %(e)s THEN v ELSE gen_random_uuid() END, days.day, 10, 5"
            " FROM exps, days, unnest(%(variants)s::uuid[]) v",
            params,
        )
        conn.execute(
            "INSERT INTO snapshot_metrics"
            " (experiment_id, variant_id, metric_name, day, count, sum, sum_squares, users)"
            " SELECT experiment_id, variant_id, m, day, 3, 3, 9, 2 FROM snapshot_variants,"
            " unnest(%s::text[]) m",
            (list(common.METRICS),),
        )
    finally:
        conn.execute("SET session_replication_role = DEFAULT")
    conn.execute("VACUUM (ANALYZE) snapshot_variants")
    conn.execute("VACUUM (ANALYZE) snapshot_metrics")
    row = conn.execute(
        "SELECT (SELECT count(*) FROM snapshot_variants) + (SELECT count(*) FROM snapshot_metrics)"
    )
    return int(row.fetchone()[0])


def timed_rollup(
    admin: Any, experiment: common.Experiment, new: int, history: tuple[int, int] | None
) -> float:
    from abtest.storage import RollupRepository
    from abtest.storage.database import get_database

    admin.execute(
        "TRUNCATE exposures, conversions, rollup_users, rollup_user_metrics, rollup_variants, rollup_metrics,"
        " rollup_failures, snapshot_variants, snapshot_metrics"
    )
    admin.execute("UPDATE rollup_state SET horizon = '0'::xid8")
    if history is not None:
        load_history(admin, experiment, *history)
    common.bulk_load(admin, experiment, tag="e", first=0, count=new, users=USERS, user_prefix="n-")
    admin.execute("VACUUM (ANALYZE) exposures")
    admin.execute("VACUUM (ANALYZE) conversions")
    common.wait_until_rollup_can_see_everything(admin)
    started = time.perf_counter()
    run = RollupRepository(get_database()).roll_up()
    seconds = time.perf_counter() - started
    assert run.snapshot_days >= 1, run
    assert common.events_above_horizon(admin) == 0, "the run did not fold every event"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--new", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=1095)
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    url = common.prepare(DATABASE)
    experiment = common.create_events_experiment("bench_snapshots")
    with common.admin_connection(url) as admin:
        common.assign_users(admin, experiment, "n-", 0, USERS)
        empty, full = [], []
        rows = 0
        for _ in range(args.reps):
            empty.append(timed_rollup(admin, experiment, args.new, None))
            full.append(timed_rollup(admin, experiment, args.new, (args.days, args.experiments)))
            rows = admin.execute(
                "SELECT (SELECT count(*) FROM snapshot_variants) + (SELECT count(*) FROM snapshot_metrics)"
            ).fetchone()[0]
    facts = common.server_facts(url)
    common.drop_database(url)
    ratio = statistics.median(full) / statistics.median(empty)
    print(f"## Rollup of {args.new:,} new events with and without snapshot history\n")
    print(f"{facts}\n")
    print("| snapshot tables | median of runs (s) | runs (s) |")
    print("|---|---|---|")
    print(f"| empty | {statistics.median(empty):.3f} | {', '.join(f'{s:.3f}' for s in empty)} |")
    print(
        f"| {rows:,} rows ({args.experiments + 1} experiments x {args.days} days) |"
        f" {statistics.median(full):.3f} | {', '.join(f'{s:.3f}' for s in full)} |"
    )
    print(f"\nratio history / empty: **{ratio:.2f}** (target: close to 1)")


if __name__ == "__main__":
    main()
