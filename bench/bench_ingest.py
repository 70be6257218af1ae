"""Batch ingestion throughput: EventRepository.record_batch and POST /api/v1/events next to COPY.

    .venv/bin/python bench/bench_ingest.py [--reps 7] [--batches 20] [--users 50000] [--keep]

Database `abtest_bench_events` (its public schema is dropped and re-migrated at the start; the
database is dropped at the end unless --keep). One running experiment with two variants and `--users`
assigned users (bulk-inserted with generate_series). Every batch holds 1,000 events, alternately an
exposure (with a small context) and a conversion (one of three metrics, with a value), for random
assigned users, each with a fresh event_id. Per repetition, each method writes `--batches` batches,
interleaved batch by batch with the other methods, in an order that rotates between repetitions:

- record_batch: EventRepository.record_batch on the service's Database (one statement per batch, its
  columns sent as binary arrays, which also looks up each user's assignment and the experiment's
  status, and answers per event: a row for each event not stored, none for the accepted ones);
- handler: events_handler.lambda_handler with the API Gateway v2 event of POST /api/v1/events (JSON
  parsing, validation, the same record_batch, the response);
- copy: psycopg `cursor.copy` of the same kind of rows (variant ids resolved by the client) into the
  same two tables, both COPYs in one transaction per batch, on a connection configured like the
  service's (autocommit, no prepared statements). COPY checks nothing and answers nothing per event.

The two what-if rows of earlier runs (the assignment lookup as one primary-key probe per event, and
the batch as one jsonb parameter) are what record_batch ships now, so they are gone.

All of them pay the same indexes, foreign-key triggers and one commit per batch. Rates are events per
second of wall time, including the client's Python work; medians over the repetitions.
Target (issue 14): record_batch rate >= 0.8 x COPY rate.

The setup it shares with bench_metrics.py and bench_rollup.py (bulk loads, rollups, statement timing)
is in _harness.py.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from _harness import (
    BATCH_SIZE,
    EVENTS_DATABASE,
    METRICS,
    Experiment,
    Request,
    admin_connection,
    api_event,
    assign_users,
    condensed_plan,
    context,
    create_events_experiment,
    drop_database,
    markdown_table,
    prepare,
    server_facts,
    time_statements,
    variant_of,
)

DATABASE = EVENTS_DATABASE
TARGET_RATIO = 0.8  # record_batch rate / COPY rate, at least (issue 14)


# --- the ingestion benchmark -----------------------------------------------------------------------


@dataclass
class Batch:
    """One batch of 1,000 events in the three shapes the methods need."""

    events: list[dict[str, Any]]  # API bodies
    models: list[Any]  # ExposureEvent / ConversionEvent
    api_event: dict[str, Any]  # the v2 event of POST /api/v1/events
    exposure_rows: list[tuple[Any, ...]]  # COPY rows
    conversion_rows: list[tuple[Any, ...]]


def make_batch(experiment: Experiment, users: int, tag: str, rng: random.Random) -> Batch:
    from psycopg.types.json import Jsonb

    from abtest.domain.models import EventBatch

    experiment_uuid = uuid.UUID(experiment.id)
    events: list[dict[str, Any]] = []
    exposure_rows: list[tuple[Any, ...]] = []
    conversion_rows: list[tuple[Any, ...]] = []
    for i in range(BATCH_SIZE):
        user = rng.randrange(users)
        user_id, event_id = f"u-{user}", f"{tag}-{i}"
        variant = uuid.UUID(variant_of(experiment, user))
        if i % 2 == 0:
            context_ = {"page": "home", "slot": i % 10}
            events.append(
                {
                    "type": "exposure",
                    "experiment_id": experiment.id,
                    "user_id": user_id,
                    "event_id": event_id,
                    "context": context_,
                }
            )
            exposure_rows.append((experiment_uuid, variant, user_id, event_id, Jsonb(context_)))
        else:
            metric = METRICS[i % 3]
            value = round(rng.uniform(1, 50), 2) if metric == "purchase" else 1.0
            events.append(
                {
                    "type": "conversion",
                    "experiment_id": experiment.id,
                    "user_id": user_id,
                    "event_id": event_id,
                    "metric_name": metric,
                    "value": value,
                }
            )
            conversion_rows.append((experiment_uuid, variant, user_id, metric, value, event_id, None))
    models = EventBatch.model_validate({"events": events}).events
    return Batch(
        events,
        models,
        api_event("POST", "/api/v1/events", {"events": events}, route_key="POST /api/v1/events"),
        exposure_rows,
        conversion_rows,
    )


class Methods:
    """The three ways of writing a batch; each checks that all 1,000 events were stored."""

    def __init__(self, url: str) -> None:
        import psycopg

        from abtest.storage import EventRepository
        from abtest.storage.database import get_database
        from events_handler import lambda_handler

        self._repository = EventRepository(get_database())
        self._handler = lambda_handler
        self._copy_conn = psycopg.connect(url, autocommit=True, prepare_threshold=None)

    def record_batch(self, batch: Batch) -> None:
        results = self._repository.record_batch(batch.models)
        accepted = sum(r.status == "accepted" for r in results)
        assert accepted == BATCH_SIZE, f"record_batch accepted {accepted} of {BATCH_SIZE}"

    def handler(self, batch: Batch) -> None:
        reply = Request.reply(self._handler(batch.api_event, context()))
        assert reply.status == 200, reply
        accepted = reply.body["accepted"]
        assert accepted == BATCH_SIZE, f"the handler accepted {accepted} of {BATCH_SIZE}"

    def copy(self, batch: Batch) -> None:
        conn = self._copy_conn
        with conn.transaction(), conn.cursor() as cursor:
            with cursor.copy(
                "COPY exposures (experiment_id, variant_id, user_id, event_id, context) FROM STDIN"
            ) as copy:
                for row in batch.exposure_rows:
                    copy.write_row(row)
            stored = cursor.rowcount
            with cursor.copy(
                "COPY conversions"
                " (experiment_id, variant_id, user_id, metric_name, value, event_id, metadata) FROM STDIN"
            ) as copy:
                for row in batch.conversion_rows:
                    copy.write_row(row)
            stored += cursor.rowcount
        assert stored == BATCH_SIZE, f"COPY stored {stored} of {BATCH_SIZE}"

    def close(self) -> None:
        self._copy_conn.close()


class _Captured(Exception):
    def __init__(self, query: Any, params: Any) -> None:
        super().__init__("captured")
        self.query, self.params = query, params


class _CapturingConnection:
    def execute(self, query: Any, params: Any = None) -> Any:
        raise _Captured(query, params)


class _CapturingDatabase:
    """Stands in for abtest.storage.database.Database: a connection that captures the first statement."""

    def run(self, work: Callable[[Any], Any], *, transaction: bool = True) -> Any:
        return work(_CapturingConnection())


def captured_statement(call: Callable[[Any], Any]) -> tuple[Any, Any]:
    """The (query, params) a repository method would send first, without sending it."""
    try:
        call(_CapturingDatabase())
    except _Captured as captured:
        return captured.query, captured.params
    raise AssertionError("no statement was sent")


def explain_batch(experiment: Experiment, users: int, rng: random.Random) -> str:
    """EXPLAIN ANALYZE of the shipped batch statement for one more batch, rolled back."""
    from abtest.storage import EventRepository
    from abtest.storage.database import get_database

    batch = make_batch(experiment, users, "explain", rng)
    query, params = captured_statement(lambda db: EventRepository(db).record_batch(batch.models))
    conn = get_database().connection()
    with conn.transaction(force_rollback=True):
        text = query.encode() if isinstance(query, str) else query
        lines = [
            next(iter(row.values())) for row in conn.execute(b"EXPLAIN (ANALYZE, BUFFERS) " + text, params)
        ]
    return "```\n" + condensed_plan(lines) + "\n```"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=7, help="repetitions (medians are reported)")
    parser.add_argument("--batches", type=int, default=20, help="batches of 1,000 per method and repetition")
    parser.add_argument("--users", type=int, default=50_000, help="assigned users")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    url = prepare(DATABASE)
    experiment = create_events_experiment("bench-ingest")
    with admin_connection(url) as admin:
        assign_users(admin, experiment, "u-", 0, args.users)
        admin.execute("VACUUM (ANALYZE) assignments")
    methods = Methods(url)
    names: list[tuple[str, Callable[[Batch], None]]] = [
        ("record_batch", methods.record_batch),
        ("handler", methods.handler),
        ("copy", methods.copy),
    ]
    rng = random.Random(20261127)
    for name, write in names:  # warm-up: connections, imports, plan caches, buffers
        for b in range(2):
            write(make_batch(experiment, args.users, f"warm-{name}-{b}", rng))

    rates: dict[str, list[float]] = {name: [] for name, _ in names}
    batch_ms: dict[str, list[float]] = {name: [] for name, _ in names}
    db_ms: dict[str, list[float]] = {name: [] for name, _ in names}
    for rep in range(args.reps):
        # Interleaved batch by batch, in an order rotating between repetitions, so that every method
        # sees the same machine (the host is shared) and the same table sizes.
        order = names[rep % len(names) :] + names[: rep % len(names)]
        batches = {
            name: [make_batch(experiment, args.users, f"{name}-{rep}-{b}", rng) for b in range(args.batches)]
            for name, _ in names
        }
        elapsed: dict[str, list[float]] = {name: [] for name, _ in names}
        in_db: dict[str, float] = {name: 0.0 for name, _ in names}
        with time_statements() as statements:
            for b in range(args.batches):
                for name, write in order:
                    before = statements.total()
                    start = time.perf_counter()
                    write(batches[name][b])
                    elapsed[name].append(time.perf_counter() - start)
                    in_db[name] += statements.total() - before
        for name, _ in names:
            rates[name].append(BATCH_SIZE * args.batches / sum(elapsed[name]))
            batch_ms[name].append(statistics.median(elapsed[name]) * 1000)
            db_ms[name].append(in_db[name] / args.batches * 1000)
    methods.close()

    with admin_connection(url) as admin:
        stored = admin.execute(
            "SELECT (SELECT count(*) FROM exposures) + (SELECT count(*) FROM conversions)"
        ).fetchone()
    copy_rate = statistics.median(rates["copy"])
    rows = []
    for name, _ in names:
        rate = statistics.median(rates[name])
        db = "n/a (COPY)" if name == "copy" else f"{statistics.median(db_ms[name]):.1f}"
        rows.append(
            [
                name,
                f"{rate:,.0f}",
                f"{min(rates[name]):,.0f} .. {max(rates[name]):,.0f}",
                f"{statistics.median(batch_ms[name]):.1f}",
                db,
                f"{rate / copy_rate:.2f}",
            ]
        )
    ratio = statistics.median(rates["record_batch"]) / copy_rate
    print("## Batch ingestion (bench/bench_ingest.py)\n")
    print(server_facts(url))
    print(
        f"\n{args.reps} repetitions x {args.batches} batches x {BATCH_SIZE} events per method "
        f"(500 exposures + 500 conversions), {args.users:,} assigned users; "
        f"{stored[0] if stored else '?':,} events stored in all.\n"
    )
    print(
        markdown_table(
            [
                "method",
                "events/s (median)",
                "range over reps",
                "ms per 1,000-event batch",
                "ms in Cursor.execute",
                "x COPY rate",
            ],
            rows,
        )
    )
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(f"\nTarget record_batch >= {TARGET_RATIO} x COPY: {ratio:.2f} x, {verdict}.")
    print("\nPlan of the shipped batch statement for this run (EXPLAIN ANALYZE of one more batch):\n")
    print(explain_batch(experiment, args.users, rng))
    print(f"Total run time {time.perf_counter() - started:.0f} s.")
    if args.keep:
        print(f"Database {DATABASE} kept.")
    else:
        drop_database(url)
        print(f"Database {DATABASE} dropped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
