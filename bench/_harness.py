"""Shared plumbing for the latency benchmarks: environment, database, handler calls, counting, tables.

The benchmarks call the Lambda handlers in-process with API Gateway HTTP API (v2) events, exactly as
tests/integration does, against a dedicated local database (`abtest_bench`) whose schema is dropped and
re-migrated at the start of every run, so each run sees the current migrations and empty tables.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abtest.http.scopes import SCOPES as SCOPE_NAMES
from abtest.settings import DEFAULT_SCOPE_PREFIX

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BENCH_DATABASE = "abtest_bench"
# The event benchmarks' database (bench_ingest, bench_metrics, bench_rollup): dropped after a run.
EVENTS_DATABASE = "abtest_bench_events"
METRICS = ("click", "purchase", "signup")
BATCH_SIZE = 1000
# A warm container with the production TTL; tracing, metrics and info logs off so they are not timed.
BENCH_ENV = {
    "POWERTOOLS_SERVICE_NAME": "abtest-bench",
    "POWERTOOLS_METRICS_NAMESPACE": "ABTestBench",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "EXPERIMENT_CACHE_TTL_SECONDS": "10",
}
JSON_HEADERS = {"content-type": "application/json"}
# The context API Gateway's JWT authorizer adds (as tests/integration does): AUTH_MODE stays at its
# production default, so the handlers' own scope check is part of what is timed.
SCOPES = tuple(DEFAULT_SCOPE_PREFIX + scope for scope in SCOPE_NAMES)
AUTHORIZER = {
    "jwt": {
        "claims": {"sub": "bench-client", "scope": " ".join(SCOPES), "iss": "https://issuer.example"},
        "scopes": list(SCOPES),
    }
}

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def configure() -> None:
    """The benchmark environment, and the handler modules importable by their bare names, as Lambda
    does (from template.yaml, by localdev.template.use_function_folders: the package is installed)."""
    from localdev.template import use_function_folders

    for key, value in BENCH_ENV.items():
        os.environ[key] = value
    use_function_folders()


def prepare(database: str = BENCH_DATABASE) -> str:
    """Configure the environment, reset and migrate the bench database, and return its URL.

    Must run before any handler is imported: settings and Powertools read the environment once.
    """
    configure()
    from localdev.postgres import database_url

    url = database_url(database)
    os.environ["DATABASE_URL"] = url
    reset_schema(url)
    from abtest.storage.database import get_database
    from abtest.storage.schema import apply_migrations

    get_database().run(apply_migrations, transaction=False)
    return url


def reset_schema(url: str) -> None:
    """Drop everything in the bench database so the run starts from the current migrations.

    Refuses any database whose name lacks "bench": DATABASE_URL, when set, wins in database_url(), and
    it must never point this at the dev or test database.
    """
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
        name = row[0] if row else ""
        if "bench" not in name:
            raise SystemExit(f"refusing to reset database {name!r}: its name must contain 'bench'")
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


# --- handler calls ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any


@dataclass(frozen=True)
class Request:
    """One prepared handler invocation: the event and context are built before any timing starts."""

    handler: Handler
    event: dict[str, Any]
    context: Any

    def send(self) -> dict[str, Any]:
        """Invoke the handler: the part that is timed."""
        return self.handler(self.event, self.context)

    @staticmethod
    def reply(raw: dict[str, Any]) -> Reply:
        """Decode a handler's response, after timing."""
        clear_metrics()
        text = raw.get("body")
        return Reply(raw["statusCode"], json.loads(text) if text else None)


def clear_metrics() -> None:
    """With POWERTOOLS_METRICS_DISABLED, log_metrics never clears the metric set, so values pile up
    across invocations and every 100th add_metric prints an EMF blob to stdout. Clearing does what the
    flush at the end of each invocation in AWS does (minus the print)."""
    from abtest.observability import cloudwatch

    cloudwatch.clear_metrics()


def context() -> Any:
    """The Lambda context the handlers get."""
    from localdev.lambda_events import LocalLambdaContext

    return LocalLambdaContext()


def api_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    route_key: str | None = None,
    path_parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The API Gateway HTTP API v2 event for this request, with every scope in the authorizer context."""
    from localdev.lambda_events import http_api_event

    return http_api_event(
        method,
        path,
        route_key=route_key,
        path_parameters=path_parameters,
        headers=JSON_HEADERS,
        body=None if body is None else json.dumps(body),
        authorizer=AUTHORIZER,
    )


def expect_ok(raw: dict[str, Any]) -> None:
    """Check (untimed) that a handler answered 200."""
    reply = Request.reply(raw)
    assert reply.status == 200, reply


def request(
    handler: Handler,
    method: str,
    path: str,
    body: Any = None,
    *,
    route_key: str | None = None,
    path_parameters: dict[str, str] | None = None,
) -> Request:
    """The API Gateway v2 event API Gateway would send for this request, ready to send."""
    event = api_event(method, path, body, route_key=route_key, path_parameters=path_parameters)
    return Request(handler, event, context())


def invoke(
    handler: Handler,
    method: str,
    path: str,
    body: Any = None,
    *,
    route_key: str | None = None,
    path_parameters: dict[str, str] | None = None,
) -> Reply:
    """Build, send and decode one request (untimed set-up calls)."""
    prepared = request(handler, method, path, body, route_key=route_key, path_parameters=path_parameters)
    return Request.reply(prepared.send())


def create_running_experiment(
    name: str, variants: list[dict[str, Any]], *, traffic: float = 1.0, surface: str | None = None
) -> str:
    """Create an experiment and start it through the experiments handler; return its id."""
    from experiments_handler import lambda_handler as experiments

    body: dict[str, Any] = {"name": name, "traffic_allocation": traffic, "variants": variants}
    if surface is not None:
        body["surface"] = surface
    created = invoke(experiments, "POST", "/api/v1/experiments", body)
    assert created.status == 201, created
    experiment_id = str(created.body["id"])
    started = invoke(
        experiments,
        "PUT",
        f"/api/v1/experiments/{experiment_id}/status",
        {"status": "running"},
        route_key="PUT /api/v1/experiments/{experiment_id}/status",
        path_parameters={"experiment_id": experiment_id},
    )
    assert started.status == 200, started
    assert started.body["status"] == "running", started
    return experiment_id


# --- the floor: one single-row INSERT --------------------------------------------------------------


class InsertFloor:
    """One single-row INSERT round trip on a connection configured like abtest.storage.database's
    (autocommit, no prepared statements), into a scratch table: the least any request that writes can cost."""

    def __init__(self, url: str) -> None:
        import psycopg

        self._conn = psycopg.connect(url, autocommit=True, prepare_threshold=None)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_floor ("
            " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id text NOT NULL)"
        )
        self._n = 0

    def insert(self) -> None:
        self._n += 1
        self._conn.execute("INSERT INTO bench_floor (user_id) VALUES (%s)", (f"floor-{self._n}",))

    def execute(self, query: str, params: Sequence[Any]) -> None:
        """Another single statement on the same connection (for comparisons with the floor)."""
        self._conn.execute(query.encode(), params)

    def close(self) -> None:
        self._conn.close()


# --- counting round trips --------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """One statement as the application sent it."""

    query: Any  # str, bytes or psycopg.sql.Composable, as passed to execute()
    params: Any

    def text(self, conn: Any = None) -> str:
        """The query text (a Composable needs a connection to render)."""
        query = self.query
        if hasattr(query, "as_string"):
            query = query.as_string(conn) if conn is not None else repr(query)
        return query.decode() if isinstance(query, bytes) else str(query)

    def summary(self, width: int = 90) -> str:
        return " ".join(self.text().split())[:width]


@dataclass
class StatementTally:
    """Statements sent through psycopg (execute, executemany, copy, stream, BEGIN, COMMIT/ROLLBACK)."""

    statements: int = 0
    seconds: float = 0.0  # time spent inside those calls: the database's share of a request
    sent: list[Statement] = field(default_factory=list)
    keep: bool = False

    def reset(self) -> None:
        self.statements, self.seconds = 0, 0.0
        self.sent.clear()


@contextmanager
def count_statements(keep: bool = False) -> Iterator[StatementTally]:
    """Patch psycopg so every statement sent is counted and timed (and, with keep, recorded).

    Connection.execute goes through Cursor.execute, so patching the cursor catches both; a
    transaction block adds BEGIN on enter and COMMIT (or ROLLBACK) on exit, one round trip each.
    """
    import psycopg

    tally = StatementTally(keep=keep)
    patched: list[tuple[type, str, Any]] = []

    def wrap(cls: type, name: str, fixed_text: str | None = None) -> None:
        original = getattr(cls, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            tally.statements += 1
            if tally.keep:
                query = fixed_text if fixed_text is not None else (args[1] if len(args) > 1 else "")
                params = args[2] if len(args) > 2 else kwargs.get("params")
                tally.sent.append(Statement(query, params))
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                tally.seconds += time.perf_counter() - start

        patched.append((cls, name, original))
        setattr(cls, name, counted)

    for method in ("execute", "executemany", "copy", "stream"):
        wrap(psycopg.Cursor, method)
    wrap(psycopg.Transaction, "__enter__", "BEGIN")
    wrap(psycopg.Transaction, "__exit__", "COMMIT (or ROLLBACK)")
    try:
        yield tally
    finally:
        for cls, name, original in reversed(patched):
            setattr(cls, name, original)


@contextmanager
def database_stubbed(profile: Sequence[float] | None = None) -> Iterator[None]:
    """Replace AssignmentRepository.enroll with a canned answer (the variant the caller passes, as
    stored; an exposure recorded; `profile` as the user's profile), so the layers above it can be
    timed without the database: their CPU cost alone."""
    from abtest.domain.assignment import Enrollment, EnrollRequest
    from abtest.domain.experiments import Status
    from abtest.storage import AssignmentRepository

    original = AssignmentRepository.enroll
    stored_profile = list(profile) if profile is not None else None

    def enroll(self: AssignmentRepository, request: EnrollRequest) -> Enrollment:
        return Enrollment(
            experiment_id=request.experiment_id,
            status=Status.RUNNING,
            variant_id=request.variant_id,
            member_of=request.experiment_id,
            created=False,
            exposed=request.record_exposure,
            profile=stored_profile if request.with_profile else None,
        )

    AssignmentRepository.enroll = enroll  # type: ignore[method-assign]
    try:
        yield
    finally:
        AssignmentRepository.enroll = original  # type: ignore[method-assign]


def explain_analyze(url: str, statement: Statement, repeats: int = 25) -> dict[str, float]:
    """Median planning, execution and foreign-key trigger time of a statement over `repeats` runs,
    each in a rolled-back transaction (so it writes nothing): server-side milliseconds, without the
    round trip or the commit. "Execution" includes the triggers."""
    import psycopg

    runs: dict[str, list[float]] = {"planning": [], "execution": [], "fk triggers": []}
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        query = f"EXPLAIN (ANALYZE, TIMING) {statement.text(conn)}".encode()
        for _ in range(repeats):
            with conn.transaction(force_rollback=True):
                rows = conn.execute(query, statement.params).fetchall()
            triggers = 0.0
            for (line,) in rows:
                text = str(line).strip()
                if text.startswith("Planning Time:"):
                    runs["planning"].append(float(text.split()[2]))
                elif text.startswith("Execution Time:"):
                    runs["execution"].append(float(text.split()[2]))
                elif text.startswith("Trigger for constraint") and "time=" in text:
                    triggers += float(text.split("time=")[1].split()[0])
            runs["fk triggers"].append(triggers)
    return {name: statistics.median(values) if values else float("nan") for name, values in runs.items()}


class WireTrace:
    """Count round trips on the wire: libpq's protocol trace of one connection, one ReadyForQuery
    message per completed round trip (an independent check of the statement count).

    libpq writes the trace through a buffered FILE that only PQuntrace flushes, so tracing is switched
    on and off around each measured call.
    """

    def __init__(self, conn: Any) -> None:
        self._pgconn = conn.pgconn
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()

    def round_trips(self, call: Callable[[], Any]) -> int:
        """Run `call` and return how many round trips it made on the traced connection."""
        from psycopg import pq

        start = self._file.seek(0, os.SEEK_END)
        self._pgconn.trace(self._file.fileno())
        self._pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            call()
        finally:
            self._pgconn.untrace()
        self._file.seek(start)
        text = self._file.read().decode(errors="replace")
        return sum(1 for line in text.splitlines() if "\tReadyForQuery" in line)

    def close(self) -> None:
        self._file.close()


# --- the event benchmarks (ingest, metrics, rollup): bulk data, rollups, statement timing -------------


def admin_connection(url: str) -> Any:
    """An autocommit connection for bulk work, without the database's statement timeout."""
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SET statement_timeout = 0")
    return conn


def drop_database(url: str) -> None:
    """Drop the benchmark's database (closing the service's connection first)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from abtest.storage.database import get_database

    name = str(conninfo_to_dict(url).get("dbname", ""))
    if "bench" not in name:
        raise SystemExit(f"refusing to drop database {name!r}: its name must contain 'bench'")
    get_database().close()
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def server_facts(url: str) -> str:
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


@dataclass(frozen=True)
class Experiment:
    id: str
    variant_ids: list[str]


def create_events_experiment(name: str, variants: int = 2) -> Experiment:
    """Create and start an experiment with `variants` equal variants on the "bench" surface."""
    from experiments_handler import lambda_handler as experiments

    weights = [{"name": f"v{i}", "weight": 1 / variants} for i in range(variants)]
    experiment_id = create_running_experiment(name, weights, surface="bench")
    read = invoke(
        experiments,
        "GET",
        f"/api/v1/experiments/{experiment_id}",
        route_key="GET /api/v1/experiments/{experiment_id}",
        path_parameters={"experiment_id": experiment_id},
    )
    assert read.status == 200, read
    return Experiment(experiment_id, [str(v["id"]) for v in read.body["variants"]])


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
    ("FROM jsonb_to_recordset(%(batch)s", "record_batch statement"),
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


# --- measuring ------------------------------------------------------------------------------------


Action = Callable[[], Any]
Check = Callable[[Any], None]


@dataclass(frozen=True)
class Probe:
    """What one timed call needs: `action` is timed; `check` then verifies its result, untimed."""

    action: Action
    check: Check | None = None

    def run(self) -> float:
        """Run the action and check it; return the action's wall time in milliseconds."""
        start = time.perf_counter_ns()
        result = self.action()
        elapsed = (time.perf_counter_ns() - start) / 1e6
        if self.check is not None:
            self.check(result)
        return elapsed


def timed_once(call: Callable[[], Any]) -> float:
    """Wall time of one call, in milliseconds."""
    start = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - start) / 1e6


def run_interleaved(probes: Mapping[str, Callable[[int], Probe]], iterations: int) -> dict[str, list[float]]:
    """Time every probe once per iteration, in turn, so all see the same machine conditions (other
    load, checkpoints, cache reloads). Each probe is built (untimed) from the iteration number.
    Returns milliseconds per probe name."""
    samples: dict[str, list[float]] = {name: [] for name in probes}
    for i in range(iterations):
        for name, make in probes.items():
            samples[name].append(make(i).run())
    return samples


@dataclass
class RoundTrips:
    """Per request: statements sent, round trips on the wire, ms inside psycopg, ms in total."""

    statements: list[int] = field(default_factory=list)
    wire: list[int] = field(default_factory=list)
    db_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)


def count_round_trips(cases: Mapping[str, Sequence[Probe]], conn: Any) -> dict[str, RoundTrips]:
    """Count each case's requests: the first half with psycopg patched (statements, time inside it),
    the second half with the wire traced on `conn` (the service's connection), so neither instrument
    disturbs the other."""
    found = {case: RoundTrips() for case in cases}
    with count_statements() as tally:
        for case, probes in cases.items():
            for probe in probes[: len(probes) // 2]:
                tally.reset()
                found[case].total_ms.append(probe.run())
                found[case].statements.append(tally.statements)
                found[case].db_ms.append(tally.seconds * 1000)
    trace = WireTrace(conn)
    try:
        for case, probes in cases.items():
            for probe in probes[len(probes) // 2 :]:
                found[case].wire.append(trace.round_trips(probe.run))
    finally:
        trace.close()
    return found


def count_calls(cls: type, name: str) -> Callable[[], int]:
    """Count calls of a method from now on (e.g. cache reloads, each an extra round trip)."""
    original = getattr(cls, name)
    calls = 0

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    setattr(cls, name, counted)
    return lambda: calls


# --- statistics and output -------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): an observed value, no interpolation."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Latency:
    n: int
    p50: float
    p99: float
    mean: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Latency:
        return cls(len(samples), percentile(samples, 50), percentile(samples, 99), statistics.fmean(samples))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else f"missed by {value / target:.2f}x"


def latency_table(samples: Mapping[str, Sequence[float]], floor: str, target: float) -> str:
    """Each case's p50/p99 next to the floor's, with the p50 ratio checked against `target`."""
    base = Latency.of(samples[floor])
    rows: list[list[object]] = []
    for case, values in samples.items():
        stats = Latency.of(values)
        ratio = stats.p50 / base.p50
        check = "" if case == floor else f"<= {target:g}x: {verdict(ratio, target)}"
        rows.append(
            [
                case,
                stats.n,
                f"{stats.p50:.3f}",
                f"{stats.p99:.3f}",
                f"{stats.mean:.3f}",
                f"{ratio:.2f}x",
                f"{stats.p99 / base.p99:.2f}x",
                check,
            ]
        )
    headers = ["case", "n", "p50 ms", "p99 ms", "mean ms", "p50 / floor p50", "p99 / floor p99", "target"]
    return markdown_table(headers, rows)


def round_trip_table(counts: Mapping[str, RoundTrips], target: int) -> str:
    rows = []
    for case, found in counts.items():
        worst = max(max(found.statements), max(found.wire))
        db_ms, total_ms = statistics.median(found.db_ms), statistics.median(found.total_ms)
        rows.append(
            [
                case,
                f"{min(found.statements)}-{max(found.statements)}",
                f"{min(found.wire)}-{max(found.wire)}",
                f"{db_ms:.3f} of {total_ms:.3f} ({db_ms / total_ms:.0%})",
                f"<= {target}: {verdict(worst, target)}",
            ]
        )
    headers = ["warm request", "statements (min-max)", "wire round trips (min-max)", "median ms in psycopg"]
    return markdown_table([*headers, "target"], rows)


def layer_table(samples: Mapping[str, Sequence[float]], *, floor_first: bool = True) -> str:
    """Layers from the innermost (first) outwards, with what each adds at the median; with
    floor_first, also each layer's p50 as a multiple of the first row's."""
    rows = []
    previous: float | None = None
    first = Latency.of(next(iter(samples.values()))).p50
    for name, values in samples.items():
        stats = Latency.of(values)
        added = "" if previous is None else f"{stats.p50 - previous:+.3f}"
        ratio = [f"{stats.p50 / first:.2f}x"] if floor_first else []
        rows.append([name, f"{stats.p50:.3f}", added, *ratio, f"{stats.p99:.3f}"])
        previous = stats.p50
    headers = ["layer", "p50 ms", "added to p50 ms", *(["x floor p50"] if floor_first else []), "p99 ms"]
    return markdown_table(headers, rows)


def explain_table(plans: Mapping[str, Mapping[str, float]]) -> str:
    rows = [
        [case, f"{found['planning']:.3f}", f"{found['execution']:.3f}", f"{found['fk triggers']:.3f}"]
        for case, found in plans.items()
    ]
    return markdown_table(["statement", "planning ms", "execution ms", "of which FK triggers ms"], rows)


def environment_line(url: str | None = None) -> str:
    """Python, PostgreSQL and CPU facts for the report."""
    parts = [
        f"Python {platform.python_version()}",
        f"{platform.machine()}",
        f"{os.cpu_count()} CPUs",
    ]
    if url is not None:
        import psycopg

        with psycopg.connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            commit = conn.execute("SHOW synchronous_commit").fetchone()
        parts.append(f"PostgreSQL {version[0] if version else '?'}")
        parts.append(f"synchronous_commit={commit[0] if commit else '?'}")
    # Other work on the machine shows up in the tails: say how busy it was.
    parts.append("load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    parts.append(time.strftime("%Y-%m-%d"))
    return ", ".join(parts)


def profile_top(call: Callable[[], Any], repeats: int, limit: int = 25) -> str:
    """cProfile `repeats` calls and return the top functions by internal time."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        call()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(limit)
    return out.getvalue()
