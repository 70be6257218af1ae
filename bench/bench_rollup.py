"""One rollup of 100k new events: over tables already holding 5M rolled-up events, and into empty ones.

    .venv/bin/python bench/bench_rollup.py [--history 5000000] [--new 100000] [--reps 3] [--keep]

Database `abtest_bench_events` (public schema dropped and re-migrated at the start; the database is
dropped at the end unless --keep). One running experiment, two variants; assigned users `u-0` ..
`u-120010` (the history's) and `n-0` .. (never in the history).

What is timed: RollupRepository(get_database()).roll_up(), the service's code and Database (its 5 s
statement timeout included), wall time of the whole call: advisory lock, horizon, the touched users
with the days of their new events, per experiment (a savepoint) and per UTC day: the touched users
recomputed from their raw events, their stored state, the fold in Python, the four upserts, the
day's snapshot copy; the horizon update, the commit. Rows are bulk-loaded before each timed rollup
(INSERT ... SELECT FROM generate_series, one transaction, foreign-key triggers skipped); nothing is
ANALYZEd between that load and the rollup.

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
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import _harness as common

SET_USERS = 19_997  # coprime with 3, 5 and 7, like the history's 120,011; 6 sets fit in the history
HISTORY_USERS = 120_011
TABLES = (
    "exposures, conversions, rollup_users, rollup_user_metrics, rollup_variants, rollup_metrics,"
    " rollup_failures, snapshot_variants, snapshot_metrics"
)


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


# The what-if row (the whole rollup as one SQL statement) is gone: it implemented the fold before
# issue 10 (every conversion of an exposed user, the window's sums), which no longer gives the shipped
# answer (attribution from the first exposure, users recomputed from their raw events, daily snapshots).
MODES = ("shipped",)
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
        # Each repetition has its own event sets (slot 2 rep), the same ones in both phases.
        for kind in KINDS:
            for mode in MODES:
                if phase == "empty":
                    truncate(admin)
                load_set(admin, experiment, kind, 2 * rep, args.new)
                results.setdefault((phase, kind, mode), []).append(timed_rollup(admin))

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
        "shipped = RollupRepository.roll_up() (each touched user recomputed from their raw events, "
        "per UTC day of the new events, with that day's snapshot).\n"
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
