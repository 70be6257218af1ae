"""The scheduled rollup and the metrics read: sufficient statistics behind a transaction-id horizon.

A run folds the users touched by every transaction with an id in [stored horizon, new horizon), where
the new horizon is the lowest id of this database's transactions in progress in the run's snapshot
(all of this database's transactions below it have finished; see _HORIZONS), so each event is seen by
a run. Each touched user's state is recomputed from their raw events below the new
horizon (attribution needs the first exposure, which a late event can move) and folded in as "stored
-> recomputed" deltas, so folding a user again is harmless. Runs take an advisory lock: a second
concurrent run waits, then finds the horizon moved and folds only what is newer. Reads combine the
rollups with the users touched above the horizon in one repeatable-read snapshot, so they are exact
and current.

Failure isolation: each experiment is folded in its own savepoint. One whose statistics cannot be
computed or stored (legacy values that overflow) is skipped, logged and counted, and remembered in
rollup_failures with the horizon it failed from: later runs and reads treat its events from there on
as not yet rolled up, so nothing of it is lost, and every other experiment proceeds.

Daily snapshots (migration 0006), combined with the recomputation above: within an experiment's
savepoint the run walks the UTC days of its touched users' new events in order (an event dated before
the experiment's latest snapshot day counts on that day: days before the latest are never rewritten).
For each day it recomputes the users with events on that day from their raw events below the new
horizon AND dated up to the end of that day, stores them, and copies the experiment's per-variant
totals into that day's snapshot rows. Every stored user is then exact as of the end of the day just
done: users with events on that day were recomputed up to its end; users whose new events come later
still hold their previous state, built from events dated at most the latest snapshot day, which is not
after this day; users done on an earlier day have no events after it. After the last day every touched
user holds the full recomputation, exactly what harden's single fold stored. The cost follows the new
events (each touched user is recomputed once per day they have new events), never the history.

The same walk folds, per experiment, the slices of its dimensions (abtest.storage.breakdowns) and the
metric definitions it pinned whose per-user values are the users' own (a window, an absolute cap, a
ratio: abtest.storage.defined_rollups), so every read of them is exact the same way.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from typing import Any
from uuid import UUID

import psycopg

from abtest.analysis.defined_rollup import DefinedFoldError, DefinedStats, KeptDefinition, add_deltas
from abtest.analysis.rollup import (
    ExposureTotals,
    Fold,
    FoldError,
    MetricKey,
    MetricStats,
    RunningAllocation,
    UserKey,
    UserMetric,
    UserMetricKey,
    UserState,
    VariantKey,
    VariantMetrics,
    fold,
)
from abtest.analysis.timeseries import DailyMetrics
from abtest.domain.experiments import Experiment
from abtest.domain.lifecycle import ENROLLING
from abtest.observability import logger
from abtest.storage.database import Connection, Database
from abtest.storage.defined_rollups import (
    DefinedTailDays,
    DefinitionRollup,
    defined_tail,
    kept_definitions,
    mark_built,
    rolled_up_defined,
    snapshot_defined,
)
from abtest.storage.experiments import fetch_experiment, fetch_running, statuses_sql

_ROLLUP_LOCK = 7_412_039_552
_NO_UPPER_BOUND = 2**63 - 1

# The stored horizon and the new one: the lowest transaction id of THIS database that the run's snapshot
# sees in progress, or the snapshot's xmax when there is none (never below the stored horizon). The
# snapshot's xmin would do, but it counts every database of the server, so one open transaction of
# another tenant (or another checkout's tests) would stop every rollup here.
# Sound because: every id below xmax is either finished before the snapshot (its events are visible to
# this run and every later one) or in the snapshot's xip list; ids not assigned yet will be >= xmax. An
# xip id is skipped only when pg_stat_activity or pg_prepared_xacts shows it held, right now, by a
# backend or prepared transaction of ANOTHER database, which cannot write this database's tables. Those
# are read after the snapshot was taken, so an id whose transaction ended in between is simply not
# found and is kept: unknown ids hold the horizon back, as xmin did (conservative, never lossy).
# Types: the snapshot holds xid8 (64 bits, with the epoch); backend_xid and pg_prepared_xacts.transaction
# are 32-bit xid. They are compared as xid (xip::xid drops the epoch), which is exact here: ids in
# progress all lie within 2^31 of the next id (wraparound protection), so no two share their low 32
# bits. The epoch is never rebuilt from a 32-bit id: the horizon is always one of the xid8 values.
_HORIZONS = """
WITH snapshot AS (SELECT pg_current_snapshot() AS s),
elsewhere AS (
    SELECT backend_xid AS xid FROM pg_stat_activity
    WHERE backend_xid IS NOT NULL AND datname IS NOT NULL AND datname <> current_database()
    UNION ALL
    SELECT transaction FROM pg_prepared_xacts WHERE database <> current_database()
)
SELECT horizon::text::bigint AS low,
    GREATEST(horizon, LEAST(pg_snapshot_xmax(s), (
        SELECT min(x) FROM pg_snapshot_xip(s) AS x WHERE x::xid NOT IN (SELECT xid FROM elsewhere)
    )))::text::bigint AS high
FROM rollup_state, snapshot FOR UPDATE OF rollup_state
"""

# Touched users with the UTC day of each of their new events (one row per user and day).
_TOUCHED = """
SELECT experiment_id, user_id, (occurred_at AT TIME ZONE 'UTC')::date AS day FROM exposures
WHERE txid >= %(low)s AND txid < %(high)s {scope}
UNION
SELECT experiment_id, user_id, (occurred_at AT TIME ZONE 'UTC')::date AS day FROM conversions
WHERE txid >= %(low)s AND txid < %(high)s {scope}
"""

_TOUCHED_USERS = "unnest(%(experiment_ids)s::uuid[], %(user_ids)s::text[]) AS t(experiment_id, user_id)"

# Every touched user's state from their raw events below the horizon and dated before %(until)s (the
# end of a snapshot day; NULL: no bound): exposures and the first one's
# time, then per metric the conversions at or after it (attributed: count and exact numeric total)
# and the others (unattributed). Primary-key and index probes per user (LATERAL ... OFFSET 0).
_RECOMPUTE = f"""
WITH users AS (
    SELECT t.experiment_id, t.user_id, a.variant_id, x.n AS exposures, x.first_at
    FROM {_TOUCHED_USERS}
    JOIN assignments a ON a.experiment_id = t.experiment_id AND a.user_id = t.user_id
    CROSS JOIN LATERAL (
        SELECT count(*) AS n, min(occurred_at) AS first_at FROM exposures e
        WHERE e.experiment_id = t.experiment_id AND e.user_id = t.user_id AND e.txid < %(high)s
          AND e.occurred_at < COALESCE(%(until)s::timestamptz, 'infinity')
        OFFSET 0
    ) x
)
SELECT u.experiment_id, u.user_id, u.variant_id, u.exposures,
       m.metric_name, m.n, m.total, m.unattributed
FROM users u
LEFT JOIN LATERAL (
    SELECT metric_name,
           count(*) FILTER (WHERE occurred_at >= u.first_at) AS n,
           COALESCE(sum(value::numeric) FILTER (WHERE occurred_at >= u.first_at), 0) AS total,
           count(*) FILTER (WHERE u.first_at IS NULL OR occurred_at < u.first_at) AS unattributed
    FROM conversions c
    WHERE c.experiment_id = u.experiment_id AND c.user_id = u.user_id AND c.txid < %(high)s
      AND c.occurred_at < COALESCE(%(until)s::timestamptz, 'infinity')
    GROUP BY metric_name
) m ON true
"""


@dataclass(frozen=True)
class RollupRun:
    """What one rollup run did."""

    previous_horizon: int
    horizon: int
    users: int
    experiments: int
    seconds: float
    failed: list[UUID] = field(default_factory=list)
    snapshot_days: int = 0  # (experiment, UTC day) snapshots written
    deferred: list[UUID] = field(default_factory=list)  # days left for the next run (time budget)


TouchedDays = dict[UserKey, set[date]]  # touched users and the UTC days of their new events


def _touched(
    conn: Connection, low: int, high: int | None, experiment_id: UUID | None, after: date | None = None
) -> TouchedDays:
    """Users with events in [low, high) (of one experiment, or all), with their days (only days after
    `after`, if given)."""
    scope = " AND experiment_id = %(experiment_id)s" if experiment_id is not None else ""
    if after is not None:
        scope += " AND occurred_at >= %(after_end)s"
    params: dict[str, Any] = {"low": str(low), "high": str(high if high is not None else _NO_UPPER_BOUND)}
    params["experiment_id"] = experiment_id
    params["after_end"] = _end_of(after) if after is not None else None
    touched: TouchedDays = defaultdict(set)
    for r in conn.execute(_TOUCHED.format(scope=scope).encode(), params):
        touched[(r["experiment_id"], r["user_id"])].add(r["day"])
    return touched


def _merge(into: TouchedDays, more: TouchedDays) -> None:
    for key, days in more.items():
        into.setdefault(key, set()).update(days)


def _users_by_day(touched: TouchedDays, not_before: date | None) -> list[tuple[date, set[UserKey]]]:
    """The days to fold in order, each with the users that have new events dated that day; a day
    before `not_before` (the latest snapshot day) counts as that day."""
    by_day: dict[date, set[UserKey]] = defaultdict(set)
    for key, days in touched.items():
        for day in days:
            by_day[max(day, not_before) if not_before is not None else day].add(key)
    return sorted(by_day.items())


def _end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), day_time(0), tzinfo=UTC)


def _recompute(
    conn: Connection, users: set[UserKey], high: int | None, until: datetime | None = None
) -> tuple[dict[UserKey, UserState], dict[UserMetricKey, UserMetric]]:
    """The recomputed state of `users` from their events below `high` (None: all this snapshot sees)
    dated before `until` (None: any date)."""
    if not users:
        return {}, {}
    experiment_ids, user_ids = zip(*users, strict=True)
    params = {
        "experiment_ids": list(experiment_ids),
        "user_ids": list(user_ids),
        "high": str(high if high is not None else _NO_UPPER_BOUND),
        "until": until,
    }
    states: dict[UserKey, UserState] = {}
    metrics: dict[UserMetricKey, UserMetric] = {}
    for r in conn.execute(_RECOMPUTE.encode(), params):
        key = (r["experiment_id"], r["user_id"])
        states[key] = UserState(r["variant_id"], r["exposures"])
        if r["metric_name"] is not None:
            # numeric sums cannot overflow in SQL; a legacy total beyond a double becomes inf here,
            # and the fold refuses that experiment alone.
            metrics[(*key, r["metric_name"])] = UserMetric(
                r["variant_id"], r["n"], float(r["total"]), r["unattributed"]
            )
    return states, metrics


def _stored(
    conn: Connection, users: set[UserKey]
) -> tuple[dict[UserKey, UserState], dict[UserMetricKey, UserMetric]]:
    """Stored per-user state of `users`."""
    if not users:
        return {}, {}
    experiment_ids, user_ids = zip(*users, strict=True)
    params = {"experiment_ids": list(experiment_ids), "user_ids": list(user_ids)}
    # One primary-key probe per touched user (LATERAL ... OFFSET 0 keeps the planner from choosing a
    # hash join over a full scan), so the cost follows the new events, not the size of the rollups.
    states = {
        (r["experiment_id"], r["user_id"]): UserState(r["variant_id"], r["exposures"])
        for r in conn.execute(
            f"SELECT s.experiment_id, s.user_id, s.variant_id, s.exposures FROM {_TOUCHED_USERS}"
            " CROSS JOIN LATERAL (SELECT * FROM rollup_users r"
            " WHERE r.experiment_id = t.experiment_id AND r.user_id = t.user_id OFFSET 0) s".encode(),
            params,
        )
    }
    metrics = {
        (r["experiment_id"], r["user_id"], r["metric_name"]): UserMetric(
            r["variant_id"], r["count"], r["total"], r["unattributed"]
        )
        for r in conn.execute(
            "SELECT s.experiment_id, s.user_id, s.metric_name, s.variant_id, s.count, s.total,"
            f" s.unattributed FROM {_TOUCHED_USERS} CROSS JOIN LATERAL (SELECT * FROM rollup_user_metrics m"
            " WHERE m.experiment_id = t.experiment_id AND m.user_id = t.user_id OFFSET 0) s".encode(),
            params,
        )
    }
    return states, metrics


def _fold_users(
    conn: Connection, users: set[UserKey], high: int | None, until: datetime | None = None
) -> Fold:
    """Fold the touched users; a read (high None) lets non-finite sums through for the report."""
    new_states, new_metrics = _recompute(conn, users, high, until)
    old_states, old_metrics = _stored(conn, users)
    return fold(old_states, old_metrics, new_states, new_metrics, check_finite=high is not None)


def _latest_snapshot_days(conn: Connection, experiment_ids: Iterable[UUID]) -> dict[UUID, date]:
    """The latest recorded snapshot day of each experiment that has one."""
    ids = sorted(set(experiment_ids))
    if not ids:
        return {}
    return {
        r["experiment_id"]: r["day"]
        for r in conn.execute(
            "SELECT t.experiment_id, s.day FROM unnest(%s::uuid[]) AS t(experiment_id)"
            " CROSS JOIN LATERAL (SELECT day FROM snapshot_variants v"
            " WHERE v.experiment_id = t.experiment_id ORDER BY day DESC LIMIT 1) s",
            (ids,),
        )
    }


def _record_snapshot(conn: Connection, experiment_id: UUID, day: date) -> None:
    """Copy the experiment's current per-variant totals into its snapshot rows of `day`."""
    params = {"day": day, "experiment_id": experiment_id}
    conn.execute(
        "INSERT INTO snapshot_variants (experiment_id, variant_id, day, exposures, users)"
        " SELECT experiment_id, variant_id, %(day)s, exposures, users FROM rollup_variants"
        " WHERE experiment_id = %(experiment_id)s"
        " ON CONFLICT (experiment_id, day, variant_id) DO UPDATE"
        " SET exposures = EXCLUDED.exposures, users = EXCLUDED.users",
        params,
    )
    conn.execute(
        "INSERT INTO snapshot_metrics"
        " (experiment_id, variant_id, metric_name, day, count, sum, sum_squares, users, unattributed)"
        " SELECT experiment_id, variant_id, metric_name, %(day)s, count, sum, sum_squares, users,"
        " unattributed FROM rollup_metrics WHERE experiment_id = %(experiment_id)s"
        " ON CONFLICT (experiment_id, day, variant_id, metric_name) DO UPDATE"
        " SET count = EXCLUDED.count, sum = EXCLUDED.sum, sum_squares = EXCLUDED.sum_squares,"
        " users = EXCLUDED.users, unattributed = EXCLUDED.unattributed",
        params,
    )


def _store(conn: Connection, result: Fold) -> None:
    """Write a fold: new per-user states, and deltas added to the per-variant statistics."""
    if result.users:
        keys, states = zip(*result.users.items(), strict=True)
        conn.execute(
            "INSERT INTO rollup_users (experiment_id, user_id, variant_id, exposures)"
            " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::uuid[], %s::bigint[])"
            " ON CONFLICT (experiment_id, user_id) DO UPDATE SET exposures = EXCLUDED.exposures",
            (
                [k[0] for k in keys],
                [k[1] for k in keys],
                [s.variant_id for s in states],
                [s.exposures for s in states],
            ),
        )
    if result.user_metrics:
        keys3, values = zip(*result.user_metrics.items(), strict=True)
        conn.execute(
            "INSERT INTO rollup_user_metrics"
            " (experiment_id, user_id, metric_name, variant_id, count, total, unattributed)"
            " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::uuid[],"
            " %s::bigint[], %s::float8[], %s::bigint[])"
            " ON CONFLICT (experiment_id, user_id, metric_name) DO UPDATE"
            " SET count = EXCLUDED.count, total = EXCLUDED.total, unattributed = EXCLUDED.unattributed",
            (
                [k[0] for k in keys3],
                [k[1] for k in keys3],
                [k[2] for k in keys3],
                [v.variant_id for v in values],
                [v.count for v in values],
                [v.total for v in values],
                [v.unattributed for v in values],
            ),
        )
    if result.variants:
        vkeys, deltas = zip(*result.variants.items(), strict=True)
        conn.execute(
            "INSERT INTO rollup_variants AS r (experiment_id, variant_id, exposures, users)"
            " SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::bigint[], %s::bigint[])"
            " ON CONFLICT (experiment_id, variant_id) DO UPDATE"
            " SET exposures = r.exposures + EXCLUDED.exposures, users = r.users + EXCLUDED.users",
            (
                [k[0] for k in vkeys],
                [k[1] for k in vkeys],
                [d.exposures for d in deltas],
                [d.users for d in deltas],
            ),
        )
    if result.metrics:
        mkeys, mdeltas = zip(*result.metrics.items(), strict=True)
        conn.execute(
            "INSERT INTO rollup_metrics AS r"
            " (experiment_id, variant_id, metric_name, count, sum, sum_squares, users, unattributed)"
            " SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::text[], %s::bigint[], %s::float8[],"
            " %s::float8[], %s::bigint[], %s::bigint[])"
            " ON CONFLICT (experiment_id, variant_id, metric_name) DO UPDATE"
            " SET count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum,"
            " sum_squares = r.sum_squares + EXCLUDED.sum_squares, users = r.users + EXCLUDED.users,"
            " unattributed = r.unattributed + EXCLUDED.unattributed",
            (
                [k[0] for k in mkeys],
                [k[1] for k in mkeys],
                [k[2] for k in mkeys],
                [d.count for d in mdeltas],
                [d.sum for d in mdeltas],
                [d.sum_squares for d in mdeltas],
                [d.users for d in mdeltas],
                [d.unattributed for d in mdeltas],
            ),
        )


class RollupRepository:
    """Rollup runs and exact metric reads."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def roll_up(
        self, statement_timeout_ms: int | None = None, budget_seconds: float | None = None
    ) -> RollupRun:
        """Fold every finished transaction's events since the last run into the rollup tables.

        Each experiment is folded in its own savepoint: one that fails is skipped (and retried from
        where it failed on later runs), the rest are stored and the horizon advances. A backlog can
        take longer than a request may: pass the rollup's own statement timeout.

        `budget_seconds` bounds the run (None: no bound): once it is spent, each experiment still to
        walk folds one more day and keeps the rest for the next run, marked pending in rollup_failures
        (failures 0, "deferred"), exactly as a failed one is retried: folding is idempotent and days
        already recorded are never rewritten, so a long rebuild (a restart of a large experiment's
        rollups) advances by whole days over several runs instead of outliving the function. The
        experiments with nothing pending go first, the pending ones after, oldest first; reads stay
        exact meanwhile (they fold what is pending from the raw events).
        """
        started = time.perf_counter()
        deadline = started + budget_seconds if budget_seconds is not None else None
        from abtest.storage.bandit_series import BanditSeriesRollup  # it imports this module
        from abtest.storage.breakdowns import SliceRollup  # it imports this module

        def work(conn: Connection) -> RollupRun:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ROLLUP_LOCK,))
            row = conn.execute(_HORIZONS).fetchone()
            assert row is not None, "migration 0003 inserts the rollup_state row"
            low, high = int(row["low"]), int(row["high"])
            touched = _touched(conn, low, high, None)
            by_experiment: dict[UUID, TouchedDays] = defaultdict(dict)
            for key, user_days in touched.items():
                by_experiment[key[0]][key] = user_days
            # Pending experiments (failed, deferred or to restart): read when their turn comes.
            pending_since = _failures(conn)
            failed: list[UUID] = []
            deferred: list[UUID] = []
            snapshot_days = 0
            current = sorted(by_experiment.keys() - pending_since.keys())
            pending = sorted(pending_since, key=lambda e: (pending_since[e], e))
            moved = False  # some experiment recorded a day after its recorded ones in this run
            for experiment_id in current + pending:
                if moved and deadline is not None and time.perf_counter() > deadline:
                    # The budget is spent: a pending experiment keeps its mark as it is (it covers this
                    # run's events too); a current one is marked pending from this run's events.
                    deferred.append(experiment_id)
                    if experiment_id not in pending_since:
                        _defer(conn, experiment_id, low, None, None)
                    continue
                walked, progressed = 0, False
                try:
                    with conn.transaction():  # a savepoint: a failure undoes this experiment only
                        users_days = by_experiment.get(experiment_id, {})
                        if experiment_id in pending_since:
                            users_days = _pending_days(
                                conn, experiment_id, pending_since[experiment_id], high
                            )
                        latest = _latest_snapshot_days(conn, [experiment_id]).get(experiment_id)
                        # Day by day (see the module docstring): each day's snapshot is exact per user.
                        walk = _users_by_day(users_days, latest)
                        slices = SliceRollup(conn, experiment_id)  # per dimension value (breakdowns)
                        defined = DefinitionRollup(conn, experiment_id)  # kept metric definitions
                        bandit = BanditSeriesRollup(conn, experiment_id)  # per period (a bandit's series)
                        for day, users in walk:
                            if progressed and deadline is not None and time.perf_counter() > deadline:
                                break  # the budget is spent: the days left wait for the next run
                            walked += 1
                            # A day after the recorded ones: the experiment advanced in this run.
                            progressed = latest is None or day > latest
                            moved = moved or progressed
                            before = slices.before(users)  # the stored per-user state, before _store
                            result = _fold_users(conn, users, high, _end_of(day))
                            bandit.store(users, result)  # reads the stored per-user state: before _store
                            _store(conn, result)
                            slices.store(before, result)
                            defined.fold({user for _, user in users}, high, _end_of(day))
                            _record_snapshot(conn, experiment_id, day)
                            slices.snapshot(day)
                            defined.snapshot(day)
                            bandit.snapshot(day)
                        if walked < len(walk):
                            deferred.append(experiment_id)
                            _defer(conn, experiment_id, low, walk[walked - 1][0], high)
                        elif experiment_id in pending_since:
                            conn.execute(
                                "DELETE FROM rollup_failures WHERE experiment_id = %s AND NOT restart",
                                (experiment_id,),
                            )
                except (FoldError, DefinedFoldError, psycopg.errors.DataError) as exc:
                    failed.append(experiment_id)
                    logger.error(
                        "rollup of an experiment failed; its events stay pending",
                        extra={"experiment_id": str(experiment_id), "error": type(exc).__name__},
                    )
                    conn.execute(
                        "INSERT INTO rollup_failures (experiment_id, since, error)"
                        " VALUES (%s, %s::text::xid8, %s) ON CONFLICT (experiment_id) DO UPDATE"
                        " SET failures = rollup_failures.failures + 1, error = EXCLUDED.error,"
                        " failed_at = now()",
                        (experiment_id, str(low), type(exc).__name__),
                    )
                else:
                    snapshot_days += walked
            conn.execute(
                "UPDATE rollup_state SET horizon = %s::text::xid8, runs = runs + 1, updated_at = now()",
                (str(high),),
            )
            return RollupRun(
                low,
                high,
                len(touched),
                len(by_experiment),
                time.perf_counter() - started,
                failed,
                snapshot_days,
                deferred,
            )

        return self._db.run(work, statement_timeout_ms=statement_timeout_ms)

    def running_allocations(self) -> list[RunningAllocation]:
        """Every running experiment with its rolled-up exposed users per variant, in stored order."""

        def work(conn: Connection) -> list[RunningAllocation]:
            experiments = fetch_running(conn)
            users: dict[UUID, int] = {
                r["variant_id"]: r["users"]
                for r in conn.execute(
                    "SELECT r.variant_id, r.users FROM rollup_variants r JOIN experiments e"
                    f" ON e.id = r.experiment_id WHERE e.status IN {statuses_sql(ENROLLING)}"
                )
            }
            return [RunningAllocation(e, [users.get(v.id, 0) for v in e.variants]) for e in experiments]

        return self._db.run(work, transaction=False)

    def variant_metrics(self, experiment_id: UUID) -> VariantMetrics:
        """Exact statistics now: the rollups plus the events above the horizon, in one snapshot."""

        def work(conn: Connection) -> VariantMetrics:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            experiment = fetch_experiment(conn, experiment_id)
            return _current(conn, experiment, _horizon(conn))

        return self._db.run(work)

    def daily_metrics(
        self, experiment_id: UUID, metrics: Callable[[VariantMetrics], Collection[str]] | None = None
    ) -> DailyMetrics:
        """The cumulative statistics at the end of every UTC day with events, and now, in one snapshot.

        Days come from the stored snapshots plus the users touched above the horizon, recomputed day by
        day exactly as the next rollup will (module docstring), so the series is current whether or not
        the rollup has run. The last day's statistics are exactly `variant_metrics` (what /metrics and
        /results read). `metrics` picks, from the statistics now, the metrics whose stored daily rows
        are read (default: all): a read of one metric's series never loads the
        snapshots of a hundred. A bandit's days are period-weighted (abtest.storage.bandit_series).
        """

        from abtest.storage.bandit_series import period_weighted_days  # it imports this module

        def work(conn: Connection) -> DailyMetrics:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            experiment = fetch_experiment(conn, experiment_id)
            horizon = _horizon(conn)
            kept = kept_definitions(conn, experiment_id)
            current = _current(conn, experiment, horizon, kept)
            wanted = (
                list(metrics(current))
                if metrics is not None
                else sorted({name for per in current.metrics.values() for name in per} | kept.keys())
            )
            kept = {name: d for name, d in kept.items() if name in wanted}  # a definition is asked by name
            days: dict[date, VariantMetrics] = {}
            for r in conn.execute(
                "SELECT day, variant_id, exposures, users FROM snapshot_variants WHERE experiment_id = %s",
                (experiment_id,),
            ):
                day = days.setdefault(r["day"], _empty(experiment))
                day.variants[r["variant_id"]] = ExposureTotals(r["exposures"], r["users"])
            for r in conn.execute(
                "SELECT day, variant_id, metric_name, count, sum, sum_squares, users, unattributed"
                " FROM snapshot_metrics WHERE experiment_id = %s AND metric_name = ANY(%s)",
                (experiment_id, wanted),
            ):
                day = days.setdefault(r["day"], _empty(experiment))
                day.metrics.setdefault(r["variant_id"], {})[r["metric_name"]] = MetricStats(
                    r["count"], r["sum"], r["sum_squares"], r["users"], r["unattributed"]
                )
            for snapshot_day, defined in snapshot_defined(conn, experiment_id, kept).items():
                days.setdefault(snapshot_day, _empty(experiment)).defined.update(defined)
            touched = _tail_touched(conn, experiment_id, horizon)
            running = _rolled_up(conn, experiment, kept)
            states, user_metrics = _stored(conn, set(touched))
            tail_defined = DefinedTailDays(conn, experiment_id, kept, [user for _, user in touched])
            for tail_day, users in _users_by_day(touched, max(days) if days else None):
                new_states, new_metrics = _recompute(conn, users, None, _end_of(tail_day))
                _apply(fold(states, user_metrics, new_states, new_metrics, check_finite=False), running)
                tail_defined.step({user for _, user in users}, _end_of(tail_day), running.defined)
                for key in [k for k in user_metrics if (k[0], k[1]) in users]:
                    del user_metrics[key]
                states.update(new_states)
                user_metrics.update(new_metrics)
                days[tail_day] = _copy(running)
            if days:
                days[max(days)] = current
            period_weighted_days(conn, experiment, horizon, days, wanted)  # a bandit's (docs/bandits.md)
            waiting_users, waiting_conversions = _waiting(conn, experiment_id, states, user_metrics)
            return DailyMetrics(current, sorted(days.items()), waiting_users, waiting_conversions)

        return self._db.run(work)


def _horizon(conn: Connection) -> int:
    row = conn.execute("SELECT horizon::text::bigint AS horizon FROM rollup_state").fetchone()
    assert row is not None, "migration 0003 inserts the rollup_state row"
    return int(row["horizon"])


def _empty(experiment: Experiment) -> VariantMetrics:
    return VariantMetrics(
        experiment,
        {v.id: ExposureTotals() for v in experiment.variants},
        {v.id: {} for v in experiment.variants},
    )


def _empty_with(experiment: Experiment, kept: Collection[str]) -> VariantMetrics:
    """No statistics yet, with every `kept` definition at zero for every variant (a read that asked for
    them has them all)."""
    stats = _empty(experiment)
    for variant in experiment.variants:
        stats.defined[variant.id] = {name: DefinedStats() for name in kept}
    return stats


def _copy(stats: VariantMetrics) -> VariantMetrics:
    return VariantMetrics(
        stats.experiment,
        {k: ExposureTotals(v.exposures, v.users) for k, v in stats.variants.items()},
        {
            k: {
                name: MetricStats(m.count, m.sum, m.sum_squares, m.users, m.unattributed)
                for name, m in per.items()
            }
            for k, per in stats.metrics.items()
        },
        {k: {name: d.copy() for name, d in per.items()} for k, per in stats.defined.items()},
    )


def _rolled_up(
    conn: Connection, experiment: Experiment, kept: dict[str, KeptDefinition] | None = None
) -> VariantMetrics:
    """The experiment's rollup totals (below the horizon), with those of the `kept` definitions (every
    one for every variant, zeros included: a read that asked for them has them all)."""
    stats = _empty_with(experiment, kept or {})
    for variant_id, per in rolled_up_defined(conn, experiment.id, kept or {}).items():
        stats.defined.setdefault(variant_id, {}).update(per)
    for r in conn.execute(
        "SELECT variant_id, exposures, users FROM rollup_variants WHERE experiment_id = %s",
        (experiment.id,),
    ):
        stats.variants[r["variant_id"]] = ExposureTotals(r["exposures"], r["users"])
    for r in conn.execute(
        "SELECT variant_id, metric_name, count, sum, sum_squares, users, unattributed"
        " FROM rollup_metrics WHERE experiment_id = %s",
        (experiment.id,),
    ):
        stats.metrics.setdefault(r["variant_id"], {})[r["metric_name"]] = MetricStats(
            r["count"], r["sum"], r["sum_squares"], r["users"], r["unattributed"]
        )
    return stats


def _current(
    conn: Connection, experiment: Experiment, horizon: int, kept: dict[str, KeptDefinition] | None = None
) -> VariantMetrics:
    """The rollup totals plus the users touched above the horizon: exact statistics now, with every
    kept definition's (`kept`: the experiment's, when the caller has read them already)."""
    kept = kept if kept is not None else kept_definitions(conn, experiment.id)
    stats = _rolled_up(conn, experiment, kept)
    users = set(_tail_touched(conn, experiment.id, horizon))
    _apply(_fold_users(conn, users, None), stats)
    add_deltas(stats.defined, defined_tail(conn, experiment.id, kept, [user for _, user in users]).deltas)
    return stats


def _waiting(
    conn: Connection,
    experiment_id: UUID,
    tail_users: dict[UserKey, UserState],
    tail_metrics: dict[UserMetricKey, UserMetric],
) -> tuple[int, int]:
    """Users with conversions but no exposure yet, and their conversions (all unattributed): the
    rolled-up ones from the rollup tables (one scan of the experiment's converting users), those the
    tail touches from their recomputed state."""
    touched = sorted({user for (_, user) in tail_users})
    row = conn.execute(
        "SELECT count(*) AS users, coalesce(sum(m.unattributed), 0)::bigint AS conversions FROM"
        " (SELECT user_id, sum(unattributed) AS unattributed FROM rollup_user_metrics"
        "  WHERE experiment_id = %(e)s AND NOT (user_id = ANY(%(touched)s)) GROUP BY user_id"
        "  HAVING sum(unattributed) > 0) m"
        " LEFT JOIN rollup_users u ON u.experiment_id = %(e)s AND u.user_id = m.user_id"
        " WHERE coalesce(u.exposures, 0) = 0",
        {"e": experiment_id, "touched": touched},
    ).fetchone()
    assert row is not None
    users, conversions = int(row["users"]), int(row["conversions"])
    waiting: dict[str, int] = {}
    for (_, user, _), metric in tail_metrics.items():
        state = tail_users.get((experiment_id, user))
        if (state is None or state.exposures == 0) and metric.unattributed > 0:
            waiting[user] = waiting.get(user, 0) + metric.unattributed
    return users + len(waiting), conversions + sum(waiting.values())


def _tail_touched(conn: Connection, experiment_id: UUID, horizon: int) -> TouchedDays:
    """The experiment's users touched above the horizon (or since its rollup failed), with days."""
    # A failed experiment's rollup stopped where it failed: its tail starts there.
    since = _failures(conn, experiment_id).get(experiment_id, horizon)
    return _touched(conn, min(horizon, since), None, experiment_id)


def _apply(tail: Fold, stats: VariantMetrics) -> None:
    variant_key: VariantKey
    for variant_key, delta in tail.variants.items():
        stats.variants.setdefault(variant_key[1], ExposureTotals()).add(delta)
    metric_key: MetricKey
    for metric_key, mdelta in tail.metrics.items():
        stats.metrics.setdefault(metric_key[1], {}).setdefault(metric_key[2], MetricStats()).add(mdelta)


def _defer(
    conn: Connection, experiment_id: UUID, low: int, walked_until: date | None, high: int | None
) -> None:
    """Keep for the next run what a budgeted run did not walk of the experiment: its events from `low`
    (or from where it was pending) dated after `walked_until` (None: all of them), and everything from
    `high` on (migration 0018). Not a failure: failures 0, which raises no alert. A restart marked
    meanwhile (by a request) wins: the next run starts the experiment over."""
    conn.execute(
        "INSERT INTO rollup_failures (experiment_id, since, error, failures, walked_until, walked_below)"
        " VALUES (%s, %s::text::xid8, 'deferred: the run''s time budget', 0, %s, %s::text::xid8)"
        " ON CONFLICT (experiment_id) DO UPDATE SET failures = 0, error = EXCLUDED.error,"
        " since = LEAST(rollup_failures.since, EXCLUDED.since), walked_until = EXCLUDED.walked_until,"
        " walked_below = EXCLUDED.walked_below WHERE NOT rollup_failures.restart",
        (experiment_id, str(low), walked_until, str(high) if high is not None else None),
    )


def _pending_days(conn: Connection, experiment_id: UUID, since: int, high: int) -> TouchedDays:
    """A pending experiment's users and days to fold (below `high`): all its events since `since`; for
    one a budgeted run walked in part, what it did not walk and everything newer; for one to restart,
    its whole history, after its rows are dropped here (abtest_clear_rollups; inside its savepoint)."""
    row = conn.execute(
        "SELECT restart, walked_until, walked_below::text::bigint AS walked_below FROM rollup_failures"
        " WHERE experiment_id = %s",
        (experiment_id,),
    ).fetchone()
    if row is not None and row["restart"]:
        conn.execute("SELECT abtest_clear_rollups(%s)", (experiment_id,))
        mark_built(conn, experiment_id)  # every definition it pinned, rebuilt from here
        conn.execute(
            "UPDATE rollup_failures SET restart = false, since = '0'::xid8, walked_until = NULL,"
            " walked_below = NULL WHERE experiment_id = %s",
            (experiment_id,),
        )
        return _touched(conn, 0, high, experiment_id)
    if row is not None and row["walked_until"] is not None:
        below = int(row["walked_below"])
        touched = _touched(conn, since, below, experiment_id, after=row["walked_until"])
        _merge(touched, _touched(conn, below, high, experiment_id))
        return touched
    return _touched(conn, since, high, experiment_id)


def _failures(conn: Connection, experiment_id: UUID | None = None) -> dict[UUID, int]:
    """Experiments whose rollup failed, with the horizon their pending events start from."""
    query = "SELECT experiment_id, since::text::bigint AS since FROM rollup_failures"
    if experiment_id is not None:
        rows = conn.execute((query + " WHERE experiment_id = %s").encode(), (experiment_id,))
    else:
        rows = conn.execute(query.encode())
    return {r["experiment_id"]: int(r["since"]) for r in rows}


def tail_users(
    conn: Connection, experiment_id: UUID
) -> tuple[dict[UserKey, UserState], dict[UserMetricKey, UserMetric]]:
    """The experiment's users touched above the horizon (or since its rollup failed), recomputed from
    their raw events in the caller's snapshot. With the stored per-user rows (rollup_users,
    rollup_user_metrics) of every other user, this is each user's exact state now: the per-user reads of
    metric definitions (abtest.storage.metric_definitions) combine the two."""
    return _recompute(conn, set(_tail_touched(conn, experiment_id, _horizon(conn))), None)
