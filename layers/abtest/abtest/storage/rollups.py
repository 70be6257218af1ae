"""The scheduled rollup and the metrics read: sufficient statistics behind a transaction-id horizon.

A run folds the events of every transaction with an id in [stored horizon, new horizon), where the new
horizon is the xmin of the run's snapshot (all transactions below it have finished), so each event
lands in exactly one run. Runs take an advisory lock: a second concurrent run waits, then finds the
horizon moved and folds only what is newer. Reads combine the rollups with the tail above the horizon
in one repeatable-read snapshot, so they are exact and current.

Daily snapshots (migration 0006): a run folds its window day by day (the UTC day of each event's
timestamp, never earlier than the experiment's latest snapshot day, so days before the latest are
never rewritten) and after each day copies the touched experiments' per-variant totals into that day's
snapshot rows. Its cost follows the new events, never the history.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from uuid import UUID

from abtest.analysis.rollup import (
    ExposureTotals,
    Fold,
    MetricKey,
    MetricStats,
    NewConversions,
    NewExposures,
    UserKey,
    UserMetric,
    UserMetricKey,
    UserState,
    VariantKey,
    VariantMetrics,
    fold,
)
from abtest.analysis.timeseries import DailyMetrics
from abtest.domain.lifecycle import ENROLLING
from abtest.domain.models import Experiment
from abtest.storage.database import Connection, Database
from abtest.storage.experiments import fetch_experiment, fetch_running, statuses_sql

_ROLLUP_LOCK = 7_412_039_552

# {day} is the UTC day of the event's timestamp (grouped by it) or NULL (one group per user).
_EVENT_DAY = "(occurred_at AT TIME ZONE 'UTC')::date"

_WINDOW_EXPOSURES = """
SELECT experiment_id, user_id, variant_id, {day} AS day, count(*) AS n
FROM exposures WHERE txid >= %(low)s AND txid < %(high)s {scope}
GROUP BY experiment_id, user_id, variant_id, day
"""

_WINDOW_CONVERSIONS = """
SELECT experiment_id, user_id, metric_name, variant_id, {day} AS day, count(*) AS n, sum(value) AS total
FROM conversions WHERE txid >= %(low)s AND txid < %(high)s {scope}
GROUP BY experiment_id, user_id, metric_name, variant_id, day
"""


@dataclass(frozen=True)
class RollupRun:
    """What one rollup run did."""

    previous_horizon: int
    horizon: int
    exposure_groups: int
    conversion_groups: int
    seconds: float
    snapshot_days: int = 0


def _window(
    conn: Connection, low: int, high: int | None, experiment_id: UUID | None
) -> tuple[list[NewExposures], list[NewConversions]]:
    days = _window_by_day(conn, low, high, experiment_id, by_day=False)
    return days[0].exposures, days[0].conversions


@dataclass
class DayWindow:
    """The events of a window dated one UTC day (None: the whole window), grouped per user."""

    day: date | None
    exposures: list[NewExposures] = field(default_factory=list)
    conversions: list[NewConversions] = field(default_factory=list)

    @property
    def experiment_ids(self) -> set[UUID]:
        return {e.experiment_id for e in self.exposures} | {c.experiment_id for c in self.conversions}


def _window_by_day(
    conn: Connection,
    low: int,
    high: int | None,
    experiment_id: UUID | None,
    *,
    by_day: bool = True,
    not_before: Callable[[set[UUID]], dict[UUID, date]] | None = None,
) -> list[DayWindow]:
    """The window's events, split by UTC day in day order (one DayWindow with day None unless by_day).

    `not_before(experiment ids)` gives days before which an experiment's events may not be dated:
    an older event counts on that day instead (earlier days stay as they are).
    """
    scope = " AND experiment_id = %(experiment_id)s" if experiment_id is not None else ""
    day_sql = _EVENT_DAY if by_day else "NULL::date"
    # No upper bound (the tail): everything above the horizon that this snapshot sees.
    upper = high if high is not None else 2**63 - 1
    params = {"low": str(low), "high": str(upper), "experiment_id": experiment_id}
    exposures = [
        (r["day"], NewExposures(r["experiment_id"], r["user_id"], r["variant_id"], r["n"]))
        for r in conn.execute(_WINDOW_EXPOSURES.format(scope=scope, day=day_sql).encode(), params)
    ]
    conversions = [
        (
            r["day"],
            NewConversions(
                r["experiment_id"], r["user_id"], r["metric_name"], r["variant_id"], r["n"], r["total"]
            ),
        )
        for r in conn.execute(_WINDOW_CONVERSIONS.format(scope=scope, day=day_sql).encode(), params)
    ]
    if not by_day:
        return [DayWindow(None, [e for _, e in exposures], [c for _, c in conversions])]
    touched = {e.experiment_id for _, e in exposures} | {c.experiment_id for _, c in conversions}
    floors = not_before(touched) if not_before is not None and touched else {}
    days: dict[date, DayWindow] = {}

    def day_of(experiment: UUID, day: date) -> DayWindow:
        if experiment in floors:
            day = max(day, floors[experiment])
        return days.setdefault(day, DayWindow(day))

    for day, exposure in exposures:
        day_of(exposure.experiment_id, day).exposures.append(exposure)
    for day, conversion in conversions:
        day_of(conversion.experiment_id, day).conversions.append(conversion)
    # A clamped day may hold one user's events from two dates: regroup per user and metric.
    return [_regrouped(days[day]) if floors else days[day] for day in sorted(days)]


def _regrouped(window: DayWindow) -> DayWindow:
    """Merge entries of the same user (and metric): fold needs one entry per user and metric."""
    exposures: dict[tuple[UUID, str, UUID], int] = defaultdict(int)
    for e in window.exposures:
        exposures[(e.experiment_id, e.user_id, e.variant_id)] += e.count
    conversions: dict[tuple[UUID, str, str, UUID], tuple[int, float]] = {}
    for c in window.conversions:
        key = (c.experiment_id, c.user_id, c.metric_name, c.variant_id)
        count, total = conversions.get(key, (0, 0.0))
        conversions[key] = (count + c.count, total + c.total)
    return DayWindow(
        window.day,
        [NewExposures(*key, n) for key, n in exposures.items()],
        [NewConversions(*key, n, total) for key, (n, total) in conversions.items()],
    )


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


def _record_snapshots(conn: Connection, experiment_ids: set[UUID], day: date) -> None:
    """Copy the experiments' current per-variant totals into their snapshot rows of `day`."""
    ids = sorted(experiment_ids)
    conn.execute(
        "INSERT INTO snapshot_variants (experiment_id, variant_id, day, exposures, users)"
        " SELECT experiment_id, variant_id, %(day)s, exposures, users FROM rollup_variants"
        " WHERE experiment_id = ANY(%(ids)s)"
        " ON CONFLICT (experiment_id, day, variant_id) DO UPDATE"
        " SET exposures = EXCLUDED.exposures, users = EXCLUDED.users",
        {"day": day, "ids": ids},
    )
    conn.execute(
        "INSERT INTO snapshot_metrics"
        " (experiment_id, variant_id, metric_name, day, count, sum, sum_squares, users)"
        " SELECT experiment_id, variant_id, metric_name, %(day)s, count, sum, sum_squares, users"
        " FROM rollup_metrics WHERE experiment_id = ANY(%(ids)s)"
        " ON CONFLICT (experiment_id, day, variant_id, metric_name) DO UPDATE"
        " SET count = EXCLUDED.count, sum = EXCLUDED.sum, sum_squares = EXCLUDED.sum_squares,"
        " users = EXCLUDED.users",
        {"day": day, "ids": ids},
    )


def _old_state(
    conn: Connection, exposures: list[NewExposures], conversions: list[NewConversions]
) -> tuple[dict[UserKey, UserState], dict[UserMetricKey, UserMetric]]:
    """Stored per-user state of every user the window touches."""
    pairs = {(e.experiment_id, e.user_id) for e in exposures} | {
        (c.experiment_id, c.user_id) for c in conversions
    }
    if not pairs:
        return {}, {}
    experiment_ids, user_ids = zip(*pairs, strict=True)
    params = {"experiment_ids": list(experiment_ids), "user_ids": list(user_ids)}
    # One primary-key probe per touched user (LATERAL ... OFFSET 0 keeps the planner from choosing a
    # hash join over a full scan), so the cost follows the new events, not the size of the rollups.
    touched = "unnest(%(experiment_ids)s::uuid[], %(user_ids)s::text[]) AS t(experiment_id, user_id)"
    users = {
        (r["experiment_id"], r["user_id"]): UserState(r["variant_id"], r["exposures"])
        for r in conn.execute(
            f"SELECT s.experiment_id, s.user_id, s.variant_id, s.exposures FROM {touched}"
            " CROSS JOIN LATERAL (SELECT * FROM rollup_users r"
            " WHERE r.experiment_id = t.experiment_id AND r.user_id = t.user_id OFFSET 0) s".encode(),
            params,
        )
    }
    metrics = {
        (r["experiment_id"], r["user_id"], r["metric_name"]): UserMetric(
            r["variant_id"], r["count"], r["total"]
        )
        for r in conn.execute(
            "SELECT s.experiment_id, s.user_id, s.metric_name, s.variant_id, s.count, s.total"
            f" FROM {touched} CROSS JOIN LATERAL (SELECT * FROM rollup_user_metrics m"
            " WHERE m.experiment_id = t.experiment_id AND m.user_id = t.user_id OFFSET 0) s".encode(),
            params,
        )
    }
    return users, metrics


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
            "INSERT INTO rollup_user_metrics (experiment_id, user_id, metric_name, variant_id, count, total)"
            " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::uuid[],"
            " %s::bigint[], %s::float8[])"
            " ON CONFLICT (experiment_id, user_id, metric_name)"
            " DO UPDATE SET count = EXCLUDED.count, total = EXCLUDED.total",
            (
                [k[0] for k in keys3],
                [k[1] for k in keys3],
                [k[2] for k in keys3],
                [v.variant_id for v in values],
                [v.count for v in values],
                [v.total for v in values],
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
            " (experiment_id, variant_id, metric_name, count, sum, sum_squares, users)"
            " SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::text[], %s::bigint[], %s::float8[],"
            " %s::float8[], %s::bigint[])"
            " ON CONFLICT (experiment_id, variant_id, metric_name) DO UPDATE"
            " SET count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum,"
            " sum_squares = r.sum_squares + EXCLUDED.sum_squares, users = r.users + EXCLUDED.users",
            (
                [k[0] for k in mkeys],
                [k[1] for k in mkeys],
                [k[2] for k in mkeys],
                [d.count for d in mdeltas],
                [d.sum for d in mdeltas],
                [d.sum_squares for d in mdeltas],
                [d.users for d in mdeltas],
            ),
        )


class RollupRepository:
    """Rollup runs and exact metric reads."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def roll_up(self, statement_timeout_ms: int | None = None) -> RollupRun:
        """Fold every finished transaction's events since the last run into the rollup tables.

        A backlog can take longer than a request may: pass the rollup's own statement timeout.
        """
        started = time.perf_counter()

        def work(conn: Connection) -> RollupRun:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ROLLUP_LOCK,))
            row = conn.execute(
                "SELECT horizon::text::bigint AS low,"
                " pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS high"
                " FROM rollup_state FOR UPDATE"
            ).fetchone()
            assert row is not None, "migration 0003 inserts the rollup_state row"
            low, high = int(row["low"]), int(row["high"])
            exposure_groups = conversion_groups = 0
            days = _window_by_day(
                conn, low, high, None, not_before=lambda ids: _latest_snapshot_days(conn, ids)
            )
            for day in days:
                old_users, old_metrics = _old_state(conn, day.exposures, day.conversions)
                _store(conn, fold(old_users, old_metrics, day.exposures, day.conversions))
                assert day.day is not None
                _record_snapshots(conn, day.experiment_ids, day.day)
                exposure_groups += len(day.exposures)
                conversion_groups += len(day.conversions)
            conn.execute(
                "UPDATE rollup_state SET horizon = %s::text::xid8, runs = runs + 1, updated_at = now()",
                (str(high),),
            )
            return RollupRun(
                low, high, exposure_groups, conversion_groups, time.perf_counter() - started, len(days)
            )

        return self._db.run(work, statement_timeout_ms=statement_timeout_ms)

    def running_allocations(self) -> list[tuple[Experiment, list[int]]]:
        """Every running experiment with its rolled-up exposed users per variant, in stored order."""

        def work(conn: Connection) -> list[tuple[Experiment, list[int]]]:
            experiments = fetch_running(conn)
            users: dict[UUID, int] = {
                r["variant_id"]: r["users"]
                for r in conn.execute(
                    "SELECT r.variant_id, r.users FROM rollup_variants r JOIN experiments e"
                    f" ON e.id = r.experiment_id WHERE e.status IN {statuses_sql(ENROLLING)}"
                )
            }
            return [(e, [users.get(v.id, 0) for v in e.variants]) for e in experiments]

        return self._db.run(work, transaction=False)

    def variant_metrics(self, experiment_id: UUID) -> VariantMetrics:
        """Exact statistics now: the rollups plus the events above the horizon, in one snapshot."""

        def work(conn: Connection) -> VariantMetrics:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            experiment = fetch_experiment(conn, experiment_id)
            return _current(conn, experiment, _horizon(conn))

        return self._db.run(work)

    def daily_metrics(self, experiment_id: UUID) -> DailyMetrics:
        """The cumulative statistics at the end of every UTC day with events, and now, in one snapshot.

        Days come from the stored snapshots plus the tail above the horizon folded day by day as the
        next rollup will fold it, so the series is current whether or not the rollup has run. The
        last day's statistics are exactly `variant_metrics` (what /metrics and /results read).
        """

        def work(conn: Connection) -> DailyMetrics:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            experiment = fetch_experiment(conn, experiment_id)
            horizon = _horizon(conn)
            days: dict[date, VariantMetrics] = {}
            for r in conn.execute(
                "SELECT day, variant_id, exposures, users FROM snapshot_variants WHERE experiment_id = %s",
                (experiment_id,),
            ):
                day = days.setdefault(r["day"], _empty(experiment))
                day.variants[r["variant_id"]] = ExposureTotals(r["exposures"], r["users"])
            for r in conn.execute(
                "SELECT day, variant_id, metric_name, count, sum, sum_squares, users"
                " FROM snapshot_metrics WHERE experiment_id = %s",
                (experiment_id,),
            ):
                day = days.setdefault(r["day"], _empty(experiment))
                day.metrics.setdefault(r["variant_id"], {})[r["metric_name"]] = MetricStats(
                    r["count"], r["sum"], r["sum_squares"], r["users"]
                )
            last = max(days) if days else None
            tail_days = _window_by_day(
                conn,
                horizon,
                None,
                experiment_id,
                not_before=lambda _ids: {experiment_id: last} if last is not None else {},
            )
            running = _rolled_up(conn, experiment)
            users, user_metrics = _old_state(
                conn,
                [e for d in tail_days for e in d.exposures],
                [c for d in tail_days for c in d.conversions],
            )
            for tail_day in tail_days:
                step = fold(users, user_metrics, tail_day.exposures, tail_day.conversions)
                users.update(step.users)
                user_metrics.update(step.user_metrics)
                _apply(step, running.variants, running.metrics)
                assert tail_day.day is not None
                days[tail_day.day] = _copy(running)
            current = _current(conn, experiment, horizon)
            if days:
                days[max(days)] = current
            waiting_users, waiting_conversions = _waiting(conn, experiment_id, users, user_metrics)
            return DailyMetrics(current, sorted(days.items()), waiting_users, waiting_conversions)

        return self._db.run(work)


def _waiting(
    conn: Connection,
    experiment_id: UUID,
    tail_users: dict[UserKey, UserState],
    tail_metrics: dict[UserMetricKey, UserMetric],
) -> tuple[int, int]:
    """Users with conversions but no exposure yet, and their conversions: the rolled-up ones from the
    rollup tables (one scan of the experiment's converting users), those the tail touches from its fold."""
    touched = {user for (_, user, _) in tail_metrics} | {user for (_, user) in tail_users}
    row = conn.execute(
        "SELECT count(*) AS users, coalesce(sum(m.count), 0)::bigint AS conversions FROM"
        " (SELECT user_id, sum(count) AS count FROM rollup_user_metrics"
        "  WHERE experiment_id = %(e)s AND NOT (user_id = ANY(%(touched)s)) GROUP BY user_id) m"
        " LEFT JOIN rollup_users u ON u.experiment_id = %(e)s AND u.user_id = m.user_id"
        " WHERE coalesce(u.exposures, 0) = 0",
        {"e": experiment_id, "touched": sorted(touched)},
    ).fetchone()
    assert row is not None
    users, conversions = int(row["users"]), int(row["conversions"])
    waiting: dict[str, int] = {}
    for (_, user, _), metric in tail_metrics.items():
        state = tail_users.get((experiment_id, user))
        if (state is None or state.exposures == 0) and metric.count > 0:
            waiting[user] = waiting.get(user, 0) + metric.count
    return users + len(waiting), conversions + sum(waiting.values())


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


def _copy(stats: VariantMetrics) -> VariantMetrics:
    return VariantMetrics(
        stats.experiment,
        {k: ExposureTotals(v.exposures, v.users) for k, v in stats.variants.items()},
        {
            k: {name: MetricStats(m.count, m.sum, m.sum_squares, m.users) for name, m in per.items()}
            for k, per in stats.metrics.items()
        },
    )


def _rolled_up(conn: Connection, experiment: Experiment) -> VariantMetrics:
    """The experiment's rollup totals (below the horizon)."""
    stats = _empty(experiment)
    for r in conn.execute(
        "SELECT variant_id, exposures, users FROM rollup_variants WHERE experiment_id = %s",
        (experiment.id,),
    ):
        stats.variants[r["variant_id"]] = ExposureTotals(r["exposures"], r["users"])
    for r in conn.execute(
        "SELECT variant_id, metric_name, count, sum, sum_squares, users"
        " FROM rollup_metrics WHERE experiment_id = %s",
        (experiment.id,),
    ):
        stats.metrics.setdefault(r["variant_id"], {})[r["metric_name"]] = MetricStats(
            r["count"], r["sum"], r["sum_squares"], r["users"]
        )
    return stats


def _current(conn: Connection, experiment: Experiment, horizon: int) -> VariantMetrics:
    """The rollup totals plus the whole tail above the horizon: exact statistics now."""
    stats = _rolled_up(conn, experiment)
    exposures, conversions = _window(conn, horizon, None, experiment.id)
    old_users, old_metrics = _old_state(conn, exposures, conversions)
    _apply(fold(old_users, old_metrics, exposures, conversions), stats.variants, stats.metrics)
    return stats


def _apply(
    tail: Fold, variants: dict[UUID, ExposureTotals], metrics: dict[UUID, dict[str, MetricStats]]
) -> None:
    variant_key: VariantKey
    for variant_key, delta in tail.variants.items():
        variants.setdefault(variant_key[1], ExposureTotals()).add(delta)
    metric_key: MetricKey
    for metric_key, mdelta in tail.metrics.items():
        metrics.setdefault(metric_key[1], {}).setdefault(metric_key[2], MetricStats()).add(mdelta)
