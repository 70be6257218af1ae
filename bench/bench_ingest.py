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

Two rows that explain the gap between record_batch and COPY (not shipped code, benchmark only):

- ceiling: the same binary arrays record_batch sends (taken from record_batch itself, so the client's
  work up to the statement is the same: duplicate check, payload hashes, the columns), plus one
  variant-id array resolved by the client as for COPY, written by ONE statement that only inserts:
  `INSERT INTO exposures ... SELECT FROM unnest(...)` and the same for conversions, two
  data-modifying CTEs, no status, assignment, override, holdout, idempotency or metric check, no
  ON CONFLICT, no per-event answer; sent like record_batch's (the service's Database, autocommit: the
  statement is its own transaction). The fastest any one-statement INSERT ... SELECT can be;
- ceiling + assignment probe: the same, but each event's variant read by the primary-key probe
  record_batch uses (LEFT JOIN LATERAL on assignments, events without one not inserted), instead of
  the client's array: what the per-event probes cost.

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
LABELS = {  # the methods' names in the table, where the short name says too little
    "ceiling": "ceiling: INSERT ... SELECT FROM unnest, no checks",
    "ceiling+probe": "ceiling + assignment probe",
}

# The ceiling of a one-statement batch: record_batch's input (the same binary arrays, plus the variant
# resolved by the client as for COPY) inserted with no check at all. It answers the number of rows
# stored, so the bench can tell that every event was written.
_UNNEST_INPUT = """
WITH input AS (
    SELECT *
    FROM unnest(%(position)b::int[], %(kind)b::text[], %(experiment_id)b::uuid[], %(user_id)b::text[],
                %(event_id)b::text[], %(occurred_at)b::timestamptz[], %(metric_name)b::text[],
                %(value)b::float8[], %(payload)b::jsonb[], %(payload_hash)b::text[], %(variant_id)b::uuid[])
         AS t(position, kind, experiment_id, user_id, event_id, occurred_at, metric_name, value, payload,
              payload_hash, variant_id)
)"""
_INSERT_BOTH = """, new_exposures AS (
    INSERT INTO exposures (experiment_id, variant_id, user_id, event_id, context, occurred_at, payload_hash)
    SELECT experiment_id, variant_id, user_id, event_id, payload, COALESCE(occurred_at, now()), payload_hash
    FROM {source} WHERE kind = 'exposure'
    RETURNING 1
), new_conversions AS (
    INSERT INTO conversions (experiment_id, variant_id, user_id, metric_name, value, event_id, metadata,
                             occurred_at, payload_hash)
    SELECT experiment_id, variant_id, user_id, metric_name, value, event_id, payload,
           COALESCE(occurred_at, now()), payload_hash
    FROM {source} WHERE kind = 'conversion'
    RETURNING 1
)
SELECT (SELECT count(*) FROM new_exposures) + (SELECT count(*) FROM new_conversions) AS stored
"""
CEILING = _UNNEST_INPUT + _INSERT_BOTH.format(source="input")
# The same with only record_batch's assignment probe: the variant comes from assignments (the client's
# array is ignored), and an event without an assignment is not inserted.
CEILING_WITH_PROBE = (
    _UNNEST_INPUT
    + """, probed AS (
    SELECT i.kind, i.experiment_id, a.variant_id, i.user_id, i.event_id, i.occurred_at, i.metric_name,
           i.value, i.payload, i.payload_hash
    FROM input i
    LEFT JOIN LATERAL (
        SELECT variant_id FROM assignments
        WHERE experiment_id = i.experiment_id AND user_id = i.user_id LIMIT 1
    ) a ON true
    WHERE a.variant_id IS NOT NULL
)"""
    + _INSERT_BOTH.format(source="probed")
)


# --- the ingestion benchmark -----------------------------------------------------------------------


@dataclass
class Batch:
    """One batch of 1,000 events in the three shapes the methods need."""

    events: list[dict[str, Any]]  # API bodies
    models: list[Any]  # ExposureEvent / ConversionEvent
    api_event: dict[str, Any]  # the v2 event of POST /api/v1/events
    exposure_rows: list[tuple[Any, ...]]  # COPY rows
    conversion_rows: list[tuple[Any, ...]]
    variants: list[uuid.UUID]  # each event's variant, resolved by the client (COPY and the ceiling)


def make_batch(experiment: Experiment, users: int, tag: str, rng: random.Random) -> Batch:
    from psycopg.types.json import Jsonb

    from abtest.domain.events import EventBatch

    experiment_uuid = uuid.UUID(experiment.id)
    events: list[dict[str, Any]] = []
    exposure_rows: list[tuple[Any, ...]] = []
    conversion_rows: list[tuple[Any, ...]] = []
    variants: list[uuid.UUID] = []
    for i in range(BATCH_SIZE):
        user = rng.randrange(users)
        user_id, event_id = f"u-{user}", f"{tag}-{i}"
        variant = uuid.UUID(variant_of(experiment, user))
        variants.append(variant)
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
        variants,
    )


class Methods:
    """The ways of writing a batch; each checks that all 1,000 events were stored."""

    def __init__(self, url: str) -> None:
        import psycopg

        from abtest.storage import EventRepository
        from abtest.storage.database import get_database
        from events_handler import lambda_handler

        self._database = get_database()
        self._repository = EventRepository(self._database)
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

    def _unchecked(self, statement: str, batch: Batch) -> int:
        """Send `statement` with record_batch's own parameters (and the client's variants), as it does."""
        from abtest.storage import EventRepository

        _, params = captured_statement(lambda db: EventRepository(db).record_batch(batch.models))
        params["variant_id"] = [batch.variants[position] for position in params["position"]]

        def work(conn: Any) -> int:
            row = conn.execute(statement, params).fetchone()
            return int(row["stored"])

        stored: int = self._database.run(work, transaction=False)
        return stored

    def ceiling(self, batch: Batch) -> None:
        stored = self._unchecked(CEILING, batch)
        assert stored == BATCH_SIZE, f"the ceiling stored {stored} of {BATCH_SIZE}"

    def ceiling_with_probe(self, batch: Batch) -> None:
        stored = self._unchecked(CEILING_WITH_PROBE, batch)
        assert stored == BATCH_SIZE, f"the ceiling with the probe stored {stored} of {BATCH_SIZE}"

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


def explain_batch(
    experiment: Experiment, users: int, rng: random.Random, statement: str | None = None
) -> str:
    """EXPLAIN ANALYZE of the shipped batch statement (or of `statement`, with the same parameters and
    the client's variants) for one more batch, rolled back."""
    from abtest.storage import EventRepository
    from abtest.storage.database import get_database

    batch = make_batch(experiment, users, "explain", rng)
    query, params = captured_statement(lambda db: EventRepository(db).record_batch(batch.models))
    if statement is not None:
        query = statement
        params["variant_id"] = [batch.variants[position] for position in params["position"]]
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
        ("ceiling", methods.ceiling),
        ("ceiling+probe", methods.ceiling_with_probe),
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
                LABELS.get(name, name),
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
    ceiling = statistics.median(rates["ceiling"])
    probed = statistics.median(rates["ceiling+probe"])
    print(
        f"Ceiling of one INSERT ... SELECT statement: {ceiling / copy_rate:.2f} x COPY; with the assignment"
        f" probe {probed / copy_rate:.2f} x; record_batch reaches {ratio * copy_rate / ceiling:.2f} of the"
        " ceiling."
    )
    print("\nPlan of the shipped batch statement for this run (EXPLAIN ANALYZE of one more batch):\n")
    print(explain_batch(experiment, args.users, rng))
    print("\nPlan of the ceiling statement (EXPLAIN ANALYZE of one more batch):\n")
    print(explain_batch(experiment, args.users, rng, CEILING))
    print(f"Total run time {time.perf_counter() - started:.0f} s.")
    if args.keep:
        print(f"Database {DATABASE} kept.")
    else:
        drop_database(url)
        print(f"Database {DATABASE} dropped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
