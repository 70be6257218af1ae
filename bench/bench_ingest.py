"""Batch ingestion throughput: EventRepository.record_batch and POST /api/v1/events next to COPY.

    .venv/bin/python bench/bench_ingest.py [--reps 7] [--batches 20] [--users 50000] [--keep]

Database `abtest_bench_events` (its public schema is dropped and re-migrated at the start; the
database is dropped at the end unless --keep). One running experiment with two variants and `--users`
assigned users (bulk-inserted with generate_series). Every batch holds 1,000 events, alternately an
exposure (with a small context) and a conversion (one of three metrics, with a value), for random
assigned users, each with a fresh event_id. Per repetition, each method writes `--batches` batches,
interleaved batch by batch with the other methods, in an order that rotates between repetitions:

- record_batch: EventRepository.record_batch on the service's Database (one statement per batch,
  which also looks up each user's assignment and the experiment's status, and answers per event);
- handler: events_handler.lambda_handler with the API Gateway v2 event of POST /api/v1/events (JSON
  parsing, validation, the same record_batch, the response);
- copy: psycopg `cursor.copy` of the same kind of rows (variant ids resolved by the client) into the
  same two tables, both COPYs in one transaction per batch, on a connection configured like the
  service's (autocommit, no prepared statements). COPY checks nothing and answers nothing per event.

Two what-if rows (not the shipped code; swapped in for their own batches only): record_batch with the
assignment lookup as one primary-key probe per event (PROPOSED_LOOKUP), and that statement fed with
the batch as one JSON parameter read by jsonb_to_recordset instead of nine arrays (JSON_INPUT).

All of them pay the same indexes, foreign-key triggers and one commit per batch. Rates are events per
second of wall time, including the client's Python work; medians over the repetitions.
Target: record_batch rate >= 0.5 x COPY rate.

This module also holds the setup shared with bench_metrics.py and bench_rollup.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATABASE = "abtest_bench_events"
# What Lambda puts on sys.path (the layer and the function folders), plus the root for `localdev`.
SOURCE_PATHS = (
    "layers/abtest",
    "functions/events",
    "functions/metrics",
    "functions/experiments",
    "functions/rollup",
    ".",
)
ENV = {
    "POWERTOOLS_SERVICE_NAME": "abtest-bench-events",
    "POWERTOOLS_METRICS_NAMESPACE": "ABTestBench",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}
# What API Gateway's JWT authorizer puts in the event for a token holding every scope.
SCOPES = ("abtest/admin", "abtest/read", "abtest/ingest")
AUTHORIZER = {"jwt": {"claims": {"sub": "bench", "scope": " ".join(SCOPES)}, "scopes": list(SCOPES)}}
METRICS = ("click", "purchase", "signup")
BATCH_SIZE = 1000
TARGET_RATIO = 0.5  # record_batch rate / COPY rate, at least
WHAT_IF = "what-if: record_batch, lookup by PK probe"
WHAT_IF_JSON = "what-if: PK probe + batch as one JSON parameter"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


# --- setup shared by the three event benchmarks ------------------------------------------------------


def configure() -> None:
    """Environment and sys.path, Lambda-style; must run before any abtest module is imported."""
    os.environ.update(ENV)
    for relative in reversed(SOURCE_PATHS):
        folder = str((PROJECT_ROOT / relative).resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)


def prepare_database() -> str:
    """Create (if needed), empty and migrate the dedicated database; return its URL."""
    configure()
    os.environ.pop("DATABASE_URL", None)  # database_url() would return it instead of ours
    from localdev.postgres import database_url

    url = database_url(DATABASE)
    with admin_connection(url) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
        if row is None or row[0] != DATABASE:
            raise SystemExit(f"refusing to reset {row[0] if row else '?'!r}: expected {DATABASE!r}")
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
    os.environ["DATABASE_URL"] = url
    from abtest.storage.database import get_database
    from abtest.storage.schema import apply_migrations

    get_database().run(apply_migrations, transaction=False)
    return url


def admin_connection(url: str) -> Any:
    """An autocommit connection for bulk work, without the database's statement timeout."""
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SET statement_timeout = 0")
    return conn


def drop_database(url: str) -> None:
    """Drop the dedicated database (closing the service's connection first)."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    from abtest.storage.database import get_database

    get_database().close()
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def server_facts(url: str) -> str:
    import platform

    with admin_connection(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        settings = conn.execute(
            "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name)"
            " FROM pg_settings WHERE name IN ('shared_buffers', 'work_mem', 'synchronous_commit')"
        ).fetchone()
    return (
        f"PostgreSQL {version[0] if version else '?'} ({settings[0] if settings else '?'}), "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, run on {time.strftime('%Y-%m-%d')}"
    )


def invoke(
    handler: Handler,
    method: str,
    path: str,
    body: Any = None,
    *,
    route_key: str | None = None,
    path_parameters: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """Call a handler with the API Gateway HTTP API v2 event for this request; (status, JSON body)."""
    reply = handler(
        api_event(method, path, body, route_key=route_key, path_parameters=path_parameters), context()
    )
    clear_metrics()
    text = reply.get("body")
    return reply["statusCode"], json.loads(text) if text else None


def api_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    route_key: str | None = None,
    path_parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    from localdev.lambda_events import http_api_event

    return http_api_event(
        method,
        path,
        route_key=route_key,
        path_parameters=path_parameters,
        headers={"content-type": "application/json"},
        body=None if body is None else json.dumps(body),
        authorizer=AUTHORIZER,
    )


def context() -> Any:
    from localdev.lambda_events import LocalLambdaContext

    return LocalLambdaContext()


def clear_metrics() -> None:
    """With POWERTOOLS_METRICS_DISABLED, log_metrics never flushes: metrics would pile up across
    invocations and be printed every 100. In AWS each invocation flushes them; do the same."""
    from abtest.observability import cloudwatch

    cloudwatch.clear_metrics()


@dataclass(frozen=True)
class Experiment:
    id: str
    variant_ids: list[str]


def create_running_experiment(name: str, variants: int = 2) -> Experiment:
    """Create and start an experiment through the experiments handler."""
    from experiments_handler import lambda_handler as experiments

    body = {
        "name": name,
        "surface": "bench",
        "traffic_allocation": 1.0,
        "variants": [{"name": f"v{i}", "weight": 1 / variants} for i in range(variants)],
    }
    status, created = invoke(experiments, "POST", "/api/v1/experiments", body)
    assert status == 201, created
    experiment_id = str(created["id"])
    status, started = invoke(
        experiments,
        "PUT",
        f"/api/v1/experiments/{experiment_id}/status",
        {"status": "running"},
        route_key="PUT /api/v1/experiments/{experiment_id}/status",
        path_parameters={"experiment_id": experiment_id},
    )
    assert status == 200, started
    assert started["status"] == "running", started
    return Experiment(experiment_id, [str(v["id"]) for v in created["variants"]])


def variant_sql(user_index: str) -> str:
    """The variant of user number `user_index`: variant_ids[user % n] (the same rule as variant_of)."""
    return f"(%(variants)s::uuid[])[1 + ({user_index}) %% cardinality(%(variants)s::uuid[])]"


def variant_of(experiment: Experiment, user: int) -> str:
    return experiment.variant_ids[user % len(experiment.variant_ids)]


def assign_users(conn: Any, experiment: Experiment, prefix: str, first: int, count: int) -> None:
    """Assign users prefix+first .. prefix+(first+count-1), user n to variant n % variants."""
    conn.execute(
        "INSERT INTO assignments (experiment_id, user_id, variant_id)"
        f" SELECT %(experiment)s, %(prefix)s || u, {variant_sql('u')}"
        " FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS u",
        {
            "experiment": experiment.id,
            "prefix": prefix,
            "variants": experiment.variant_ids,
            "first": first,
            "last": first + count - 1,
        },
    )


def bulk_load(
    conn: Any,
    experiment: Experiment,
    *,
    tag: str,
    first: int,
    count: int,
    users: int,
    user_prefix: str = "u-",
    user_offset: int = 0,
    chunk: int = 500_000,
) -> None:
    """Insert `count` events numbered first.. with INSERT ... SELECT FROM generate_series, in chunks
    (one transaction each, so the events span several transaction ids, as real traffic does).

    Event g is an exposure if g % 5 < 3 (60 %), else a conversion (metric g % 3, value 1, or 0.99 to
    49.99 for purchases). Exposure g goes to user g % users, conversion g to user (7g + 3) % users,
    plus `user_offset`; user n is in variant n % variants. `users` must be coprime with 3, 5 and 7, or
    the kinds of events would not reach every user (a multiple of 5 gives exposures to 3/5 of them).
    Foreign-key triggers are skipped (session_replication_role = replica): the rows are consistent by
    construction, and the load takes half the time.
    """
    conn.execute("SET session_replication_role = replica")
    try:
        for low in range(first, first + count, chunk):
            high = min(low + chunk, first + count)
            params = {
                "experiment": experiment.id,
                "variants": experiment.variant_ids,
                "prefix": user_prefix,
                "tag": tag,
                "low": low,
                "high": high - 1,
                "users": users,
                "offset": user_offset,
                "metrics": list(METRICS),
            }
            with conn.transaction():
                conn.execute(
                    "INSERT INTO exposures (experiment_id, variant_id, user_id, event_id, occurred_at)"
                    f" SELECT %(experiment)s, {variant_sql('%(offset)s + g %% %(users)s')},"
                    "  %(prefix)s || (%(offset)s + g %% %(users)s), %(tag)s || g,"
                    "  now() - make_interval(secs => g %% 86400)"
                    " FROM generate_series(%(low)s::bigint, %(high)s::bigint) AS g WHERE g %% 5 < 3",
                    params,
                )
                conn.execute(
                    "INSERT INTO conversions"
                    " (experiment_id, variant_id, user_id, metric_name, value, event_id, occurred_at)"
                    f" SELECT %(experiment)s, {variant_sql('%(offset)s + (7 * g + 3) %% %(users)s')},"
                    "  %(prefix)s || (%(offset)s + (7 * g + 3) %% %(users)s),"
                    "  (%(metrics)s::text[])[1 + g %% 3],"
                    "  CASE WHEN g %% 3 = 1 THEN (g %% 50) + 0.99 ELSE 1 END,"
                    "  %(tag)s || g, now() - make_interval(secs => g %% 86400)"
                    " FROM generate_series(%(low)s::bigint, %(high)s::bigint) AS g WHERE g %% 5 >= 3",
                    params,
                )
    finally:
        conn.execute("SET session_replication_role = DEFAULT")


def vacuum_analyze(conn: Any) -> None:
    """What autovacuum does sooner or later after a bulk load: statistics and the visibility map."""
    for table in (
        "exposures",
        "conversions",
        "rollup_users",
        "rollup_user_metrics",
        "rollup_variants",
        "rollup_metrics",
    ):
        conn.execute(f"VACUUM (ANALYZE) {table}")


def long_timeout_database(timeout_ms: int = 900_000) -> Any:
    """A second Database like the service's but with a long statement timeout, for loading rollups."""
    from abtest.settings import get_settings
    from abtest.storage.database import Database, connection_params

    settings = get_settings()
    return Database(lambda: connection_params(settings), statement_timeout_ms=timeout_ms)


def roll_up_everything(database: Any, admin: Any, wait_seconds: float = 120.0) -> list[Any]:
    """Run rollups until no event is above the horizon.

    The horizon is the xmin of the run's snapshot, cluster-wide: a transaction left open elsewhere on
    the server (another database, another benchmark) holds it back. Retry until it has passed.
    """
    from abtest.storage import RollupRepository

    runs = []
    deadline = time.monotonic() + wait_seconds
    while True:
        runs.append(RollupRepository(database).roll_up())
        if events_above_horizon(admin) == 0:
            return runs
        if time.monotonic() > deadline:
            raise SystemExit("the rollup horizon did not pass the loaded events (a transaction left open?)")
        time.sleep(1.0)


def wait_until_rollup_can_see_everything(admin: Any, wait_seconds: float = 120.0) -> None:
    """Wait until the cluster's snapshot xmin has passed every stored event's transaction, so that
    the next rollup folds all of them (a transaction open elsewhere on the server holds it back)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        row = admin.execute(
            "SELECT pg_snapshot_xmin(pg_current_snapshot()) >"
            " greatest((SELECT max(txid) FROM exposures), (SELECT max(txid) FROM conversions), '0'::xid8)"
        ).fetchone()
        if row[0]:
            return
        if time.monotonic() > deadline:
            raise SystemExit("the cluster's xmin did not pass the loaded events (a transaction left open?)")
        time.sleep(0.5)


def events_above_horizon(admin: Any) -> int:
    row = admin.execute(
        "SELECT (SELECT count(*) FROM exposures WHERE txid >= (SELECT horizon FROM rollup_state))"
        " + (SELECT count(*) FROM conversions WHERE txid >= (SELECT horizon FROM rollup_state))"
    ).fetchone()
    return int(row[0])


# --- statement timing ------------------------------------------------------------------------------

_LABELS = (
    ("FROM exposures WHERE txid", "window: exposures"),
    ("FROM conversions WHERE txid", "window: conversions"),
    ("FROM rollup_users WHERE", "old state: rollup_users"),
    ("FROM rollup_user_metrics WHERE", "old state: rollup_user_metrics"),
    ("INSERT INTO rollup_users", "store: rollup_users"),
    ("INSERT INTO rollup_user_metrics", "store: rollup_user_metrics"),
    ("INSERT INTO rollup_variants", "store: rollup_variants"),
    ("INSERT INTO rollup_metrics", "store: rollup_metrics"),
    ("FROM rollup_variants WHERE", "read: rollup_variants"),
    ("FROM rollup_metrics WHERE", "read: rollup_metrics"),
    ("FROM rollup_state FOR UPDATE", "horizon (lock row)"),
    ("UPDATE rollup_state", "horizon (update)"),
    ("FROM rollup_state", "horizon (read)"),
    ("pg_advisory_xact_lock", "advisory lock"),
    ("FROM unnest(%(position)s", "record_batch statement"),
    ("FROM experiments", "experiment + variants"),
    ("statement_timeout", "SET LOCAL statement_timeout"),
    ("ISOLATION LEVEL", "SET TRANSACTION (repeatable read)"),
)


def label(query: Any) -> str:
    text = " ".join((query.decode() if isinstance(query, bytes) else str(query)).split())
    for needle, name in _LABELS:
        if needle in text:
            return name
    return text[:48]


@dataclass
class StatementTimes:
    """Wall time spent in psycopg Cursor.execute (send, server work, receive), per statement label."""

    seconds: dict[str, list[float]] = field(default_factory=dict)

    def total(self) -> float:
        return sum(sum(v) for v in self.seconds.values())


@contextmanager
def time_statements() -> Iterator[StatementTimes]:
    import psycopg

    times = StatementTimes()
    original = psycopg.Cursor.execute

    def execute(cursor: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(cursor, query, params, **kwargs)
        finally:
            times.seconds.setdefault(label(query), []).append(time.perf_counter() - start)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign,assignment]
    try:
        yield times
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


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


# The shipped lookup joins the batch to `assignments`; PostgreSQL hashes the whole table for it (a seq
# scan of every assignment of every experiment, per batch). As a LATERAL subquery with LIMIT 1 it
# cannot be flattened into a join, so it becomes one primary-key probe per event.
SHIPPED_LOOKUP = "    LEFT JOIN assignments a ON a.experiment_id = i.experiment_id AND a.user_id = i.user_id"
PROPOSED_LOOKUP = """    LEFT JOIN LATERAL (
        SELECT variant_id FROM assignments
        WHERE experiment_id = i.experiment_id AND user_id = i.user_id LIMIT 1
    ) a ON true"""


def proposed_record_batch(shipped: str) -> str:
    if SHIPPED_LOOKUP not in shipped:
        raise LookupError("the shipped _RECORD_BATCH changed: update SHIPPED_LOOKUP in bench_ingest.py")
    return shipped.replace(SHIPPED_LOOKUP, PROPOSED_LOOKUP)


# Second what-if: the batch as one JSON document instead of nine 1,000-element arrays, which psycopg
# dumps element by element in Python (text arrays with regex quoting) inside Cursor.execute.
JSON_INPUT = """WITH input AS (
    SELECT * FROM jsonb_to_recordset(%(batch)s::jsonb)
         AS t(position int, kind text, experiment_id uuid, user_id text, event_id text,
              occurred_at timestamptz, metric_name text, value float8, payload jsonb)
"""


def json_record_batch(shipped: str) -> str:
    start, end = shipped.find("WITH input AS ("), shipped.find("), checked AS")
    if start < 0 or end < 0:
        raise LookupError("the shipped _RECORD_BATCH changed: update json_record_batch in bench_ingest.py")
    return proposed_record_batch(shipped).replace(shipped[start:end], JSON_INPUT)


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
        reply = self._handler(batch.api_event, context())
        clear_metrics()
        assert reply["statusCode"] == 200, reply
        accepted = json.loads(reply["body"])["accepted"]
        assert accepted == BATCH_SIZE, f"the handler accepted {accepted} of {BATCH_SIZE}"

    def record_batch_proposed(self, batch: Batch) -> None:
        """What-if: record_batch with the assignment lookup as one index probe per event (see
        PROPOSED_LOOKUP). Swapped in for this call only; the shipped code is not changed."""
        from abtest.storage import events as module

        shipped = module._RECORD_BATCH
        module._RECORD_BATCH = proposed_record_batch(shipped)
        try:
            self.record_batch(batch)
        finally:
            module._RECORD_BATCH = shipped

    def record_batch_json(self, batch: Batch) -> None:
        """What-if: as record_batch (same statement with the PK-probe lookup, same per-event results via
        the shipped _batch_result), but the batch goes as one JSON parameter."""
        from abtest.storage import events as module
        from abtest.storage.database import get_database

        query = json_record_batch(module._RECORD_BATCH)
        rows = []
        for position, event in enumerate(batch.models):
            conversion = event.type == "conversion"
            rows.append(
                {
                    "position": position,
                    "kind": event.type,
                    "experiment_id": str(event.experiment_id),
                    "user_id": event.user_id,
                    "event_id": event.event_id,
                    "occurred_at": event.timestamp.isoformat() if event.timestamp else None,
                    "metric_name": event.metric_name if conversion else None,
                    "value": event.value if conversion else None,
                    "payload": event.metadata if conversion else event.context,
                }
            )
        text = json.dumps(rows)
        params = {"batch": text}
        stored = get_database().run(lambda conn: list(conn.execute(query, params)), transaction=False)
        results = [
            module._batch_result(r["position"], batch.models[r["position"]].event_id, r) for r in stored
        ]
        accepted = sum(r.status == "accepted" for r in results)
        assert accepted == BATCH_SIZE, f"the JSON what-if accepted {accepted} of {BATCH_SIZE}"

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


PLAN_KEYS = (
    "Scan",
    "Join",
    "Nested Loop",
    "Insert on",
    "Trigger",
    "Limit",
    "Execution Time",
    "Planning Time",
)


def condensed_plan(lines: Sequence[str], keys: Sequence[str] = PLAN_KEYS) -> str:
    """Plan lines worth reading, without the cost estimates."""
    import re

    kept = [re.sub(r"\(cost=[^)]*\) ", "", line) for line in lines if any(key in line for key in keys)]
    return "\n".join(kept)


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
    url = prepare_database()
    experiment = create_running_experiment("bench-ingest")
    with admin_connection(url) as admin:
        assign_users(admin, experiment, "u-", 0, args.users)
        admin.execute("VACUUM (ANALYZE) assignments")
    methods = Methods(url)
    names: list[tuple[str, Callable[[Batch], None]]] = [
        ("record_batch", methods.record_batch),
        ("handler", methods.handler),
        ("copy", methods.copy),
    ]
    from abtest.storage import events as events_module

    try:
        proposed_record_batch(events_module._RECORD_BATCH)
        names.append((WHAT_IF, methods.record_batch_proposed))
        json_record_batch(events_module._RECORD_BATCH)
        names.append((WHAT_IF_JSON, methods.record_batch_json))
    except LookupError as exc:
        print(f"(what-if rows skipped: {exc})")
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
    if WHAT_IF in rates:
        what_if = statistics.median(rates[WHAT_IF]) / copy_rate
        print(
            f"What-if (assignment lookup as a LATERAL ... LIMIT 1 primary-key probe, not shipped): "
            f"{what_if:.2f} x COPY."
        )
    if WHAT_IF_JSON in rates:
        what_if = statistics.median(rates[WHAT_IF_JSON]) / copy_rate
        print(f"What-if (the same, and the batch as one jsonb parameter, not shipped): {what_if:.2f} x COPY.")
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
