"""One rollup of 100k new events: over tables already holding 5M rolled-up events, and into empty ones.

    .venv/bin/python bench/bench_rollup.py [--history 5000000] [--new 100000] [--reps 3] [--keep]

Database `abtest_bench_events` (public schema dropped and re-migrated at the start; the database is
dropped at the end unless --keep). One running experiment, two variants; assigned users `u-0` ..
`u-120010` (the history's) and `n-0` .. (never in the history).

What is timed: RollupRepository(get_database()).roll_up(), the service's code and Database (its 5 s
statement timeout included), wall time of the whole call: advisory lock, horizon, the two window
GROUP BYs, the old per-user state of the touched users, the fold in Python, the four upserts, the
horizon update, the commit. Rows are bulk-loaded before each timed rollup (INSERT ... SELECT FROM
generate_series, one transaction, foreign-key triggers skipped); nothing is ANALYZEd between that
load and the rollup.

The new events: `--new` events (60 % exposures, 40 % conversions over three metrics, the generator of
_harness.bulk_load) over 19,997 users, in two sets that differ only in the users' names:

- returning: users u-<offset> .. (present in the history: the rollup reads and rewrites their state);
- new users: users n-<offset> .. (absent from the history).

Phases:

1. empty: for each set and repetition, TRUNCATE the event and rollup tables, load the set, time one
   rollup;
2. history: TRUNCATE, load `--history` events over the 120,011 u- users, roll them up (untimed, long
   statement timeout), VACUUM ANALYZE; then for each repetition, load the returning set and time a
   rollup, load the new-users set and time a rollup (each repetition uses other users).

Target: rollup time over the history / rollup time into empty tables close to 1.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import _harness as common

SET_USERS = 19_997  # coprime with 3, 5 and 7, like the history's 120,011; 6 sets fit in the history
HISTORY_USERS = 120_011
TABLES = "exposures, conversions, rollup_users, rollup_user_metrics, rollup_variants, rollup_metrics"


# What-if (not the shipped code): the whole rollup in one statement, so that no per-user state goes
# through Python. The fold of abtest.analysis.rollup in SQL: every touched user's stored state is one LATERAL
# primary-key probe (OFFSET 0 keeps it one), then the four upserts of _store as data-modifying CTEs.
ROLLUP_SQL = """
WITH tail AS (
    SELECT experiment_id, user_id, variant_id, count(*) AS exposures, NULL::text AS metric_name,
           0::bigint AS n, 0::float8 AS total
    FROM exposures WHERE txid >= %(low)s::text::xid8 AND txid < %(high)s::text::xid8
    GROUP BY experiment_id, user_id, variant_id
    UNION ALL
    SELECT experiment_id, user_id, variant_id, 0, metric_name, count(*), sum(value)
    FROM conversions WHERE txid >= %(low)s::text::xid8 AND txid < %(high)s::text::xid8
    GROUP BY experiment_id, user_id, metric_name, variant_id
), users AS (
    SELECT experiment_id, user_id, (array_agg(variant_id ORDER BY metric_name NULLS FIRST))[1] AS variant_id,
           sum(exposures) AS exposures,
           array_agg(metric_name) FILTER (WHERE metric_name IS NOT NULL) AS metric_names,
           array_agg(n) FILTER (WHERE metric_name IS NOT NULL) AS counts,
           array_agg(total) FILTER (WHERE metric_name IS NOT NULL) AS totals
    FROM tail GROUP BY experiment_id, user_id
), u AS (
    SELECT t.*, coalesce(r.variant_id, t.variant_id) AS user_variant,
           coalesce(r.exposures, 0) AS before, coalesce(r.exposures, 0) + t.exposures AS after
    FROM users t LEFT JOIN LATERAL (
        SELECT variant_id, exposures FROM rollup_users
        WHERE experiment_id = t.experiment_id AND user_id = t.user_id OFFSET 0
    ) r ON true
), m AS (
    SELECT u.experiment_id, u.user_id, u.before > 0 AS counted_before, u.after > 0 AS counted_after, x.*
    FROM u CROSS JOIN LATERAL (
        SELECT coalesce(o.metric_name, n.metric_name) AS metric_name,
               coalesce(o.variant_id, u.variant_id) AS variant_id, n.metric_name IS NOT NULL AS converted,
               coalesce(o.count, 0) AS count_before, coalesce(o.total, 0) AS total_before,
               coalesce(o.count, 0) + coalesce(n.n, 0) AS count_after,
               coalesce(o.total, 0) + coalesce(n.total, 0) AS total_after
        FROM (
            SELECT metric_name, variant_id, count, total FROM rollup_user_metrics
            WHERE experiment_id = u.experiment_id AND user_id = u.user_id OFFSET 0
        ) o
        FULL JOIN unnest(u.metric_names, u.counts, u.totals) AS n(metric_name, n, total)
               ON n.metric_name = o.metric_name
    ) x
), new_users AS (
    INSERT INTO rollup_users (experiment_id, user_id, variant_id, exposures)
    SELECT experiment_id, user_id, user_variant, after FROM u WHERE exposures > 0
    ON CONFLICT (experiment_id, user_id) DO UPDATE SET exposures = EXCLUDED.exposures
), new_user_metrics AS (
    INSERT INTO rollup_user_metrics (experiment_id, user_id, metric_name, variant_id, count, total)
    SELECT experiment_id, user_id, metric_name, variant_id, count_after, total_after FROM m WHERE converted
    ON CONFLICT (experiment_id, user_id, metric_name)
    DO UPDATE SET count = EXCLUDED.count, total = EXCLUDED.total
), new_variants AS (
    INSERT INTO rollup_variants AS r (experiment_id, variant_id, exposures, users)
    SELECT experiment_id, user_variant, sum(after - before), count(*) FILTER (WHERE before = 0)
    FROM u WHERE exposures > 0 GROUP BY experiment_id, user_variant
    ON CONFLICT (experiment_id, variant_id) DO UPDATE
    SET exposures = r.exposures + EXCLUDED.exposures, users = r.users + EXCLUDED.users
), new_metrics AS (
    INSERT INTO rollup_metrics AS r (experiment_id, variant_id, metric_name, count, sum, sum_squares, users)
    SELECT experiment_id, variant_id, metric_name,
           sum(count_after - CASE WHEN counted_before THEN count_before ELSE 0 END),
           sum(total_after - CASE WHEN counted_before THEN total_before ELSE 0 END),
           sum(total_after * total_after
               - CASE WHEN counted_before THEN total_before * total_before ELSE 0 END),
           sum(CASE WHEN count_after > 0 THEN 1 ELSE 0 END
               - CASE WHEN counted_before AND count_before > 0 THEN 1 ELSE 0 END)
    FROM m WHERE counted_after AND (converted OR NOT counted_before)
    GROUP BY experiment_id, variant_id, metric_name
    ON CONFLICT (experiment_id, variant_id, metric_name) DO UPDATE
    SET count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum,
        sum_squares = r.sum_squares + EXCLUDED.sum_squares, users = r.users + EXCLUDED.users
)
SELECT (SELECT count(*) FROM tail WHERE metric_name IS NULL) AS exposure_groups,
       (SELECT count(*) FROM tail WHERE metric_name IS NOT NULL) AS conversion_groups
"""


def proposed_roll_up(database: Any) -> Any:
    """RollupRepository.roll_up with ROLLUP_SQL in place of _window + _old_state + fold + _store."""
    from abtest.storage import rollups as module

    def work(conn: Any) -> Any:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (module._ROLLUP_LOCK,))
        row = conn.execute(
            "SELECT horizon::text::bigint AS low,"
            " pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS high"
            " FROM rollup_state FOR UPDATE"
        ).fetchone()
        groups = conn.execute(
            ROLLUP_SQL.encode(), {"low": str(row["low"]), "high": str(row["high"])}
        ).fetchone()
        conn.execute(
            "UPDATE rollup_state SET horizon = %s::text::xid8, runs = runs + 1, updated_at = now()",
            (str(row["high"]),),
        )
        return groups

    return database.run(work)


CHECKSUMS = """
SELECT (SELECT row(count(*), sum(exposures),
                   sum(hashtext(user_id || variant_id::text)::numeric * exposures))::text
        FROM rollup_users) AS users,
       (SELECT row(count(*), sum(count),
                   sum(hashtext(user_id || metric_name || variant_id::text)::numeric * count))::text
        FROM rollup_user_metrics) AS user_metrics,
       (SELECT sum(total) FROM rollup_user_metrics) AS user_totals,
       (SELECT json_agg(json_build_array(variant_id, exposures, users) ORDER BY variant_id)::text
        FROM rollup_variants) AS variants,
       (SELECT json_agg(json_build_array(variant_id, metric_name, count, users)
                        ORDER BY variant_id, metric_name)::text
        FROM rollup_metrics) AS metric_counts,
       (SELECT json_agg(json_build_array(sum, sum_squares) ORDER BY variant_id, metric_name)
        FROM rollup_metrics) AS metric_sums
"""


def checksums(conn: Any) -> tuple[Any, ...]:
    return tuple(conn.execute(CHECKSUMS).fetchone())


def same_checksums(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    def close(x: Any, y: Any) -> bool:
        if isinstance(x, list) and isinstance(y, list):
            return len(x) == len(y) and all(close(i, j) for i, j in zip(x, y, strict=True))
        if isinstance(x, float) or isinstance(y, float):
            return x is not None and y is not None and math.isclose(x, y, rel_tol=1e-9)
        return bool(x == y)

    return a[:2] == b[:2] and close(a[2], b[2]) and a[3:5] == b[3:5] and close(a[5], b[5])


class _RolledBack:
    """A Database stand-in that runs the work in one transaction, records the rollup tables' checksums
    and rolls back: the shipped rollup's result, without keeping it."""

    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg.rows import dict_row

        self._url = url
        self._dict_row = dict_row
        self._connect = psycopg.connect
        self.checksums: tuple[Any, ...] = ()

    def run(
        self,
        work: Any,
        *,
        transaction: bool = True,
        retry: bool = True,
        statement_timeout_ms: int | None = None,
    ) -> Any:
        """Database.run's signature; the timeout is always off here (SET LOCAL statement_timeout = 0)."""
        with self._connect(
            self._url, autocommit=True, row_factory=self._dict_row, prepare_threshold=None
        ) as conn:
            with conn.transaction(force_rollback=True):
                conn.execute("SET LOCAL statement_timeout = 0")
                result = work(conn)
                row = conn.execute(CHECKSUMS).fetchone()
                assert row is not None
                self.checksums = tuple(row.values())
            return result


def timed_proposed_rollup(admin: Any, url: str) -> tuple[float, Any, dict[str, float]]:
    """The shipped rollup in a rolled-back transaction (its checksums), then the what-if for real on the
    service's Database, timed; their checksums must agree."""
    from abtest.storage import RollupRepository
    from abtest.storage.database import get_database

    common.wait_until_rollup_can_see_everything(admin)
    shipped = _RolledBack(url)
    RollupRepository(shipped).roll_up()  # type: ignore[arg-type]
    start = time.perf_counter()
    groups = proposed_roll_up(get_database())
    seconds = time.perf_counter() - start
    left = common.events_above_horizon(admin)
    assert left == 0, f"the what-if rollup left {left} events above its horizon"
    if not same_checksums(shipped.checksums, checksums(admin)):
        raise AssertionError("the what-if rollup disagrees with the shipped one")
    return seconds, groups, {}


def truncate(admin: Any) -> None:
    admin.execute(f"TRUNCATE {TABLES}")


def load_set(admin: Any, experiment: common.Experiment, kind: str, slot: int, count: int) -> None:
    """Event set number `slot` of a kind: the same events (ids, users, values) in every phase."""
    prefix = "u-" if kind == "returning" else "n-"
    common.bulk_load(
        admin,
        experiment,
        tag=f"{prefix}{slot}-",
        first=0,
        count=count,
        users=SET_USERS,
        user_prefix=prefix,
        user_offset=slot * SET_USERS,
    )


def timed_rollup(admin: Any) -> tuple[float, Any, dict[str, float]]:
    """Wall seconds of one roll_up() on the service's Database, the run, and seconds per statement.
    Checks that the run folded every stored event."""
    from abtest.storage import RollupRepository
    from abtest.storage.database import get_database

    common.wait_until_rollup_can_see_everything(admin)
    repository = RollupRepository(get_database())
    with common.time_statements() as times:
        start = time.perf_counter()
        run = repository.roll_up()
        seconds = time.perf_counter() - start
    left = common.events_above_horizon(admin)
    assert left == 0, f"the timed rollup left {left} events above its horizon"
    return seconds, run, {name: sum(values) for name, values in times.seconds.items()}


def explain_rollup_selects(url: str, run_statements: list[tuple[Any, Any]]) -> str:
    """EXPLAIN ANALYZE the SELECTs a rollup sent (after it: the old-state lookups now find the rows it
    wrote, so their row counts differ; the plan shapes are what matter)."""
    out = []
    with common.admin_connection(url) as conn, conn.transaction(force_rollback=True):
        for query, params in run_statements:
            text = query.decode() if isinstance(query, bytes) else str(query)
            if not text.lstrip().upper().startswith("SELECT") or "rollup_state" in text or "advisory" in text:
                continue
            data = query if isinstance(query, bytes) else text.encode()
            lines = [row[0] for row in conn.execute(b"EXPLAIN (ANALYZE, BUFFERS) " + data, params)]
            keys = (*common.PLAN_KEYS, "Sort Method", "Batches", "Aggregate")
            out.append(f"-- {common.label(query)}\n{common.condensed_plan(lines, keys)}")
    return "```\n" + "\n\n".join(out) + "\n```"


def captured_rollup() -> tuple[float, list[tuple[Any, Any]]]:
    """One timed rollup that also records the statements it sent, with their parameters."""
    import psycopg

    from abtest.storage import RollupRepository
    from abtest.storage.database import get_database

    sent: list[tuple[Any, Any]] = []
    original = psycopg.Cursor.execute

    def capture(cursor: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        sent.append((query, params))
        return original(cursor, query, params, **kwargs)

    psycopg.Cursor.execute = capture  # type: ignore[method-assign,assignment]
    try:
        start = time.perf_counter()
        RollupRepository(get_database()).roll_up()
        seconds = time.perf_counter() - start
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]
    return seconds, sent


MODES = ("shipped", "what-if")
KINDS = ("returning", "new users")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--history", type=int, default=5_000_000, help="events already rolled up")
    parser.add_argument("--new", type=int, default=100_000, help="new events per timed rollup")
    parser.add_argument("--reps", type=int, default=3, help="repetitions, at most 3 (medians are reported)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    args = parser.parse_args(argv)
    if not 1 <= args.reps <= 3:
        parser.error("--reps must be 1 to 3 (each repetition uses two sets of users of the history)")

    started = time.perf_counter()
    url = common.prepare(common.EVENTS_DATABASE)
    experiment = common.create_events_experiment("bench-rollup")
    loader = common.long_timeout_database()
    results: dict[tuple[str, str, str], list[tuple[float, Any, dict[str, float]]]] = {}

    def measure(admin: Any, phase: str, rep: int) -> None:
        # Shipped and what-if take turns going first; each has its own event sets (slots 2 rep and
        # 2 rep + 1), the same ones in both phases.
        modes = MODES if rep % 2 == 0 else MODES[::-1]
        for kind in KINDS:
            for mode in modes:
                if phase == "empty":
                    truncate(admin)
                load_set(admin, experiment, kind, 2 * rep + MODES.index(mode), args.new)
                result = timed_rollup(admin) if mode == "shipped" else timed_proposed_rollup(admin, url)
                results.setdefault((phase, kind, mode), []).append(result)

    with common.admin_connection(url) as admin:
        common.assign_users(admin, experiment, "u-", 0, HISTORY_USERS)
        common.assign_users(admin, experiment, "n-", 0, SET_USERS * 2 * args.reps)
        admin.execute("VACUUM (ANALYZE) assignments")

        for rep in range(args.reps):
            measure(admin, "empty", rep)
        print(f"(empty phase done at {time.perf_counter() - started:.0f} s)", file=sys.stderr)

        truncate(admin)
        load_start = time.perf_counter()
        common.bulk_load(admin, experiment, tag="h-", first=0, count=args.history, users=HISTORY_USERS)
        load_seconds = time.perf_counter() - load_start
        backfill = time.perf_counter()
        common.roll_up_everything(loader, admin)
        backfill_seconds = time.perf_counter() - backfill
        common.vacuum_analyze(admin)
        history_rows = admin.execute(
            "SELECT (SELECT count(*) FROM exposures) + (SELECT count(*) FROM conversions),"
            " (SELECT count(*) FROM rollup_users), (SELECT count(*) FROM rollup_user_metrics)"
        ).fetchone()
        print(f"(history loaded and rolled up at {time.perf_counter() - started:.0f} s)", file=sys.stderr)

        for rep in range(args.reps):
            measure(admin, "history", rep)
        # One more returning set (users of the history not used above), its statements recorded.
        load_set(admin, experiment, "returning", 2 * args.reps, args.new)
        common.wait_until_rollup_can_see_everything(admin)
        _, sent = captured_rollup()
        plans = explain_rollup_selects(url, sent)

    print("## Rollup cost (bench/bench_rollup.py)\n")
    print(common.server_facts(url))
    print(
        f"\nOne rollup of {args.new:,} new events (60 % exposures, 40 % conversions) over "
        f"{SET_USERS:,} users, timed on the service's Database; median of {args.reps}. "
        f"History: {history_rows[0]:,} events over "
        f"{HISTORY_USERS:,} users ({history_rows[1]:,} rollup_users, {history_rows[2]:,} "
        f"rollup_user_metrics rows), loaded in {load_seconds:.0f} s, rolled up in {backfill_seconds:.0f} s. "
        "shipped = RollupRepository.roll_up(); what-if = the same rollup as one SQL statement (not "
        "shipped; each run checked against the shipped rollup of the same events).\n"
    )

    def median(key: tuple[str, str, str]) -> float:
        return statistics.median(r[0] for r in results[key])

    rows = []
    for mode in MODES:
        for kind in KINDS:
            for phase in ("empty", "history"):
                runs = results[(phase, kind, mode)]
                rows.append(
                    [
                        mode,
                        kind,
                        "empty tables" if phase == "empty" else f"{history_rows[0]:,} events rolled up",
                        f"{median((phase, kind, mode)) * 1000:,.0f}",
                        " / ".join(f"{r[0] * 1000:,.0f}" for r in runs),
                        f"{median((phase, kind, mode)) / median(('empty', kind, mode)):.2f}",
                    ]
                )
    print(
        common.markdown_table(
            ["rollup", "users of the new events", "tables", "median ms", "runs ms", "x empty"], rows
        )
    )
    print("\nShipped rollup: median ms per statement (psycopg Cursor.execute: dumping the parameters,")
    print("server work, receiving the rows); the last row is the rest (decoding rows, fold, Python):\n")
    keys = [key for key in results if key[2] == "shipped"]
    names = sorted({name for key in keys for r in results[key] for name in r[2]})

    def per(key: tuple[str, str, str], name: str) -> float:
        return statistics.median(r[2].get(name, 0.0) for r in results[key]) * 1000

    table = [[name, *(f"{per(key, name):,.1f}" for key in keys)] for name in names]
    table.append(
        [
            "(outside statements)",
            *(
                f"{statistics.median(r[0] - sum(r[2].values()) for r in results[key]) * 1000:,.1f}"
                for key in keys
            ),
        ]
    )
    print(common.markdown_table(["statement", *(f"{phase}, {kind}" for phase, kind, _ in keys)], table))
    print()
    for mode in MODES:
        for kind in KINDS:
            ratio = median(("history", kind, mode)) / median(("empty", kind, mode))
            print(f"Ratio history / empty, {mode}, {kind}: {ratio:.2f} (target: close to 1).")
    print(
        "\nPlans of the shipped rollup's SELECTs, history, returning users (EXPLAIN ANALYZE after the run):\n"
    )
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
