"""Latency of GET /api/v1/experiments/{id}/metrics as the event tables grow: 10k, 1M, 5M events.

    .venv/bin/python bench/bench_metrics.py [--steps 10000,1000000,5000000] [--users 120011]
        [--calls 30] [--tail 1000] [--plans] [--keep]

Database `abtest_bench_events` (public schema dropped and re-migrated at the start; the database is
dropped at the end unless --keep). One running experiment with two variants and `--users` assigned
users. The same tables grow step by step. At each step:

1. bulk load (INSERT ... SELECT FROM generate_series, 500k events per transaction) up to the step's
   count: 60 % exposures, 40 % conversions over three metrics, spread over all users
   (_harness.bulk_load says exactly how);
2. roll everything up with RollupRepository.roll_up() (on a Database with a long statement timeout:
   the first rollup of millions of events is a backfill, not the 5-minute schedule), then VACUUM
   ANALYZE, as autovacuum would after such a load;
3. "rolled up": 3 warm-up calls, then `--calls` timed calls of metrics_handler.lambda_handler with
   the API Gateway v2 event of GET /api/v1/experiments/{id}/metrics; the median is reported;
4. "+ tail": `--tail` new events (half exposures, half conversions, random assigned users) written
   through EventRepository.record_batch and not rolled up; the same timed calls again. The next
   step's rollup folds this tail in.

Every answer is checked against the tables (exposure events per variant). The time spent in each
statement of the endpoint (psycopg Cursor.execute: send, server work, receive) is reported per step,
and each SELECT of the endpoint is EXPLAIN ANALYZEd at the largest step.

The what-if column (the tail folded in one SQL statement) is gone: that statement implemented the
fold before issue 10 (every conversion of an exposed user), which no longer gives the shipped answer
(attribution from the first exposure, the tail's users recomputed from their raw events).

Target: median latency at 5M / median latency at 10k < 2 (both with and without the tail).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import _harness as common

TARGET_RATIO = 2.0
ROUTE_KEY = "GET /api/v1/experiments/{experiment_id}/metrics"


def metrics_call(handler: common.Handler, experiment_id: str) -> dict[str, Any]:
    reply = common.invoke(
        handler,
        "GET",
        f"/api/v1/experiments/{experiment_id}/metrics",
        route_key=ROUTE_KEY,
        path_parameters={"experiment_id": experiment_id},
    )
    assert reply.status == 200, reply
    result: dict[str, Any] = reply.body
    return result


def check_answer(admin: Any, experiment_id: str, body: dict[str, Any]) -> None:
    """The endpoint's exposure counts must equal the tables'."""
    stored = dict(
        admin.execute(
            "SELECT variant_id::text, count(*) FROM exposures WHERE experiment_id = %s GROUP BY 1",
            (experiment_id,),
        ).fetchall()
    )
    answered = {variant: report["exposures"] for variant, report in body["variant_metrics"].items()}
    answered = {variant: n for variant, n in answered.items() if n}
    assert answered == stored, f"metrics disagree with the tables: {answered} != {stored}"


def measure(handler: common.Handler, experiment_id: str, calls: int) -> tuple[list[float], dict[str, float]]:
    """Latencies (ms) of `calls` warm calls (after 3 warm-up calls), and the median ms per statement
    over 5 more calls."""
    for _ in range(3):
        timed_call(handler, experiment_id)
    latencies = [timed_call(handler, experiment_id) for _ in range(calls)]
    per_statement: dict[str, list[float]] = {}
    for _ in range(5):
        with common.time_statements() as times:
            metrics_call(handler, experiment_id)
        for name, seconds in times.seconds.items():
            per_statement.setdefault(name, []).append(sum(seconds) * 1000)
    medians = {name: statistics.median(ms) for name, ms in per_statement.items()}
    return latencies, medians


def timed_call(handler: common.Handler, experiment_id: str) -> float:
    start = time.perf_counter()
    metrics_call(handler, experiment_id)
    return (time.perf_counter() - start) * 1000


def write_tail(experiment: common.Experiment, users: int, size: int, tag: str, rng: random.Random) -> None:
    from abtest.domain.events import EventBatch
    from abtest.storage import EventRepository
    from abtest.storage.database import get_database

    repository = EventRepository(get_database())
    for first in range(0, size, common.BATCH_SIZE):
        events = []
        for i in range(first, min(size, first + common.BATCH_SIZE)):
            event: dict[str, Any] = {
                "type": "exposure" if i % 2 == 0 else "conversion",
                "experiment_id": experiment.id,
                "user_id": f"u-{rng.randrange(users)}",
                "event_id": f"{tag}-{i}",
            }
            if i % 2:
                event["metric_name"] = common.METRICS[i % 3]
                event["value"] = round(rng.uniform(1, 50), 2)
            events.append(event)
        results = repository.record_batch(EventBatch.model_validate({"events": events}).events)
        assert all(r.status == "accepted" for r in results), "a tail event was not accepted"


def explain_endpoint(url: str, experiment_id: str, handler: common.Handler, full: bool) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of every SELECT one metrics call sends, with its real parameters,
    in a repeatable-read snapshot like the endpoint's."""
    import psycopg

    sent: list[tuple[Any, Any]] = []
    original = psycopg.Cursor.execute

    def capture(cursor: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        sent.append((query, params))
        return original(cursor, query, params, **kwargs)

    psycopg.Cursor.execute = capture  # type: ignore[method-assign,assignment]
    try:
        metrics_call(handler, experiment_id)
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]
    out = []
    with common.admin_connection(url) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for query, params in sent:
            text = query.decode() if isinstance(query, bytes) else str(query)
            if not text.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            data = query if isinstance(query, bytes) else text.encode()
            lines = [row[0] for row in conn.execute(b"EXPLAIN (ANALYZE, BUFFERS) " + data, params)]
            plan = "\n".join(lines) if full else common.condensed_plan(lines)
            out.append(f"-- {common.label(query)}\n{plan}")
    return "```\n" + "\n\n".join(out) + "\n```"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", default="10000,1000000,5000000", help="stored events at each step")
    parser.add_argument("--users", type=int, default=120_011, help="assigned users (coprime with 105)")
    parser.add_argument("--calls", type=int, default=30, help="timed calls per measurement")
    parser.add_argument("--tail", type=int, default=1000, help="events left above the rollup horizon")
    parser.add_argument("--plans", action="store_true", help="print whole plans, not condensed ones")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    args = parser.parse_args(argv)
    steps = [int(step) for step in args.steps.split(",")]
    if math.gcd(args.users, 3 * 5 * 7) != 1:
        parser.error("--users must be coprime with 3, 5 and 7 (or users would miss some kinds of events)")

    started = time.perf_counter()
    url = common.prepare(common.EVENTS_DATABASE)
    from metrics_handler import lambda_handler as handler

    experiment = common.create_events_experiment("bench-metrics")
    loader = common.long_timeout_database()
    rng = random.Random(20261127)
    rows: list[list[object]] = []
    statements: dict[str, dict[str, float]] = {}
    medians: dict[tuple[int, str], float] = {}
    loaded = 0
    with common.admin_connection(url) as admin:
        common.assign_users(admin, experiment, "u-", 0, args.users)
        admin.execute("VACUUM (ANALYZE) assignments")
        for step in steps:
            load_start = time.perf_counter()
            common.bulk_load(admin, experiment, tag="b-", first=loaded, count=step - loaded, users=args.users)
            load_seconds = time.perf_counter() - load_start
            loaded = step
            rollup_start = time.perf_counter()
            common.roll_up_everything(loader, admin)
            rollup_seconds = time.perf_counter() - rollup_start
            common.vacuum_analyze(admin)
            sizes = admin.execute(
                "SELECT (SELECT count(*) FROM exposures) + (SELECT count(*) FROM conversions),"
                " (SELECT count(*) FROM rollup_users), (SELECT count(*) FROM rollup_user_metrics)"
            ).fetchone()
            for phase in ("rolled up", f"+ tail of {args.tail:,}"):
                if phase != "rolled up":
                    write_tail(experiment, args.users, args.tail, f"tail-{step}", rng)
                shipped_answer = metrics_call(handler, experiment.id)
                check_answer(admin, experiment.id, shipped_answer)
                latencies, per_statement = measure(handler, experiment.id, args.calls)
                medians[(step, phase)] = statistics.median(latencies)
                statements[f"{step:,} {phase}"] = per_statement
                rows.append(
                    [
                        f"{sizes[0]:,}" if phase == "rolled up" else f"{sizes[0] + args.tail:,}",
                        phase,
                        f"{sizes[1]:,} / {sizes[2]:,}",
                        f"{medians[(step, phase)]:.1f}",
                        f"{min(latencies):.1f}",
                        f"{sorted(latencies)[int(0.9 * (len(latencies) - 1))]:.1f}",
                        f"{load_seconds:.0f} s / {rollup_seconds:.1f} s" if phase == "rolled up" else "",
                    ]
                )
            print(f"(step {step:,} done at {time.perf_counter() - started:.0f} s)", file=sys.stderr)
        plans = explain_endpoint(url, experiment.id, handler, args.plans)

    print("## Metrics latency (bench/bench_metrics.py)\n")
    print(common.server_facts(url))
    print(
        f"\nOne experiment, 2 variants, {args.users:,} assigned users, 3 metrics; median of {args.calls} "
        "warm calls of metrics_handler.lambda_handler (API Gateway v2 event).\n"
    )
    print(
        common.markdown_table(
            [
                "stored events",
                "state",
                "rollup_users / rollup_user_metrics rows",
                "median ms",
                "min ms",
                "p90 ms",
                "load / rollup of the step",
            ],
            rows,
        )
    )
    names = sorted({name for per in statements.values() for name in per})
    print("\nMedian ms per statement of one call (psycopg Cursor.execute):\n")
    print(
        common.markdown_table(
            ["statement", *statements.keys()],
            [[name, *(f"{per.get(name, 0.0):.2f}" for per in statements.values())] for name in names],
        )
    )
    first, last = steps[0], steps[-1]
    print()
    for phase in ("rolled up", f"+ tail of {args.tail:,}"):
        ratio = medians[(last, phase)] / medians[(first, phase)]
        verdict = "met" if ratio < TARGET_RATIO else "MISSED"
        print(
            f"Target {last:,}/{first:,} latency ratio < {TARGET_RATIO} ({phase}): "
            f"{medians[(last, phase)]:.1f} / {medians[(first, phase)]:.1f} ms = {ratio:.2f}, {verdict}."
        )
    print(f"\nPlans of the endpoint's SELECTs at {last:,} events with the tail (EXPLAIN ANALYZE):\n")
    print(plans)
    print(f"\nTotal run time {time.perf_counter() - started:.0f} s.")
    if args.keep:
        print(f"Database {common.EVENTS_DATABASE} kept.")
    else:
        common.drop_database(url)
        print(f"Database {common.EVENTS_DATABASE} dropped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
