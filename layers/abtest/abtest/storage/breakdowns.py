"""Per-slice sufficient statistics: kept by the scheduled rollup (rollup_slice_variants,
rollup_slice_metrics and their daily snapshots), read exactly (the rollups plus the users touched above
the horizon, in one repeatable-read snapshot), as abtest.storage.rollups does per variant.

A slice is one value of one dimension: the users whose value at enrollment it was (assignments.dimensions;
"(none)" when absent). The rollup folds each touched user's "stored -> recomputed" per-user state into
every slice the user belongs to (one per dimension), with the same fold as the per-variant totals
(abtest.analysis.rollup), so the slices of a dimension always add up to the experiment.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from abtest.analysis.breakdowns import SliceKey, SliceMetrics, add_fold, empty_stats, slice_folds
from abtest.analysis.rollup import (
    ExposureTotals,
    Fold,
    MetricStats,
    UserKey,
    UserMetric,
    UserMetricKey,
    UserState,
    VariantMetrics,
)
from abtest.analysis.timeseries import DailyMetrics
from abtest.errors import ErrorCode, InvalidInput
from abtest.storage.database import Connection, Database
from abtest.storage.experiments import fetch_experiment
from abtest.storage.rollups import (
    _end_of,
    _horizon,
    _recompute,
    _stored,
    _tail_touched,
    _users_by_day,
)


def _values(conn: Connection, experiment_id: UUID, users: Iterable[str]) -> dict[str, dict[str, str]]:
    """The values captured at enrollment of these users, by user id."""
    return {
        r["user_id"]: r["dimensions"] or {}
        for r in conn.execute(
            "SELECT user_id, dimensions FROM assignments WHERE experiment_id = %s AND user_id = ANY(%s)",
            (experiment_id, sorted(set(users))),
        )
    }


def _folds(
    conn: Connection,
    experiment_id: UUID,
    dimensions: list[str],
    users: set[UserKey],
    high: int | None,
    until: Any = None,
) -> dict[SliceKey, Fold]:
    """The touched users' slice deltas: their stored state replaced by their recomputed one."""
    old_states, old_metrics = _stored(conn, users)
    new_states, new_metrics = _recompute(conn, users, high, until)
    values = _values(conn, experiment_id, (user for _, user in users))
    return slice_folds(
        dimensions, values, old_states, old_metrics, new_states, new_metrics, check_finite=high is not None
    )


@dataclass(frozen=True)
class _Before:
    states: dict[UserKey, UserState]
    metrics: dict[UserMetricKey, UserMetric]
    values: dict[str, dict[str, str]]


class SliceRollup:
    """The scheduled rollup's part per slice, for one experiment (a no-op without dimensions).

    Called by RollupRepository.roll_up inside the experiment's savepoint, for each day it walks:
    `before` ahead of storing the per-user state (it reads the stored state), `store` with the stored
    fold (whose per-user state is the recomputed one), and `snapshot` with the day's per-variant
    snapshot. A failure rolls the slices back with the rest of the experiment.
    """

    def __init__(self, conn: Connection, experiment_id: UUID) -> None:
        self._conn = conn
        self._experiment_id = experiment_id
        row = conn.execute("SELECT dimensions FROM experiments WHERE id = %s", (experiment_id,)).fetchone()
        self._dimensions: list[str] = list(row["dimensions"]) if row is not None else []

    def before(self, users: set[UserKey]) -> _Before | None:
        """What the slices need from before the fold is stored: the users' stored state and values."""
        if not self._dimensions or not users:
            return None
        old_states, old_metrics = _stored(self._conn, users)
        values = _values(self._conn, self._experiment_id, (user for _, user in users))
        return _Before(old_states, old_metrics, values)

    def store(self, before: _Before | None, result: Fold) -> None:
        """Add the slice deltas of a stored fold (its new per-user state against `before`) to
        rollup_slice_variants and rollup_slice_metrics."""
        if before is None:
            return
        folds = slice_folds(
            self._dimensions, before.values, before.states, before.metrics, result.users, result.user_metrics
        )
        variants: list[tuple[Any, ...]] = []
        metrics: list[tuple[Any, ...]] = []
        for (dimension, value), delta in folds.items():
            for (_, variant_id), totals in delta.variants.items():
                variants.append((dimension, value, variant_id, totals.exposures, totals.users))
            for (_, variant_id, name), m in delta.metrics.items():
                metrics.append(
                    (
                        dimension,
                        value,
                        variant_id,
                        name,
                        m.count,
                        m.sum,
                        m.sum_squares,
                        m.users,
                        m.unattributed,
                    )
                )
        e = self._experiment_id
        if variants:
            cols = list(zip(*variants, strict=True))
            self._conn.execute(
                "INSERT INTO rollup_slice_variants AS r"
                " (experiment_id, dimension, value, variant_id, exposures, users)"
                " SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::uuid[], %s::bigint[], %s::bigint[])"
                " ON CONFLICT (experiment_id, dimension, value, variant_id) DO UPDATE"
                " SET exposures = r.exposures + EXCLUDED.exposures, users = r.users + EXCLUDED.users",
                (e, *[list(c) for c in cols]),
            )
        if metrics:
            cols = list(zip(*metrics, strict=True))
            self._conn.execute(
                "INSERT INTO rollup_slice_metrics AS r (experiment_id, dimension, value, variant_id,"
                " metric_name, count, sum, sum_squares, users, unattributed)"
                " SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::uuid[], %s::text[], %s::bigint[],"
                " %s::float8[], %s::float8[], %s::bigint[], %s::bigint[])"
                " ON CONFLICT (experiment_id, dimension, value, variant_id, metric_name) DO UPDATE"
                " SET count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum,"
                " sum_squares = r.sum_squares + EXCLUDED.sum_squares, users = r.users + EXCLUDED.users,"
                " unattributed = r.unattributed + EXCLUDED.unattributed",
                (e, *[list(c) for c in cols]),
            )

    def snapshot(self, day: date) -> None:
        """Copy the slices' current totals into their snapshot rows of `day`."""
        if not self._dimensions:
            return
        params = {"day": day, "e": self._experiment_id}
        self._conn.execute(
            "INSERT INTO snapshot_slice_variants"
            " (experiment_id, dimension, value, day, variant_id, exposures, users)"
            " SELECT experiment_id, dimension, value, %(day)s, variant_id, exposures, users"
            " FROM rollup_slice_variants WHERE experiment_id = %(e)s"
            " ON CONFLICT (experiment_id, dimension, value, day, variant_id) DO UPDATE"
            " SET exposures = EXCLUDED.exposures, users = EXCLUDED.users",
            params,
        )
        self._conn.execute(
            "INSERT INTO snapshot_slice_metrics (experiment_id, dimension, value, day, variant_id,"
            " metric_name, count, sum, sum_squares, users, unattributed)"
            " SELECT experiment_id, dimension, value, %(day)s, variant_id, metric_name, count, sum,"
            " sum_squares, users, unattributed FROM rollup_slice_metrics WHERE experiment_id = %(e)s"
            " ON CONFLICT (experiment_id, dimension, value, day, variant_id, metric_name) DO UPDATE"
            " SET count = EXCLUDED.count, sum = EXCLUDED.sum, sum_squares = EXCLUDED.sum_squares,"
            " users = EXCLUDED.users, unattributed = EXCLUDED.unattributed",
            params,
        )


def _add_rows(target: Any, rows: Iterable[Any], metrics: Collection[str] | None, key: str = "value") -> None:
    """Add rollup or snapshot rows into `target(row[key])`'s statistics."""
    for r in rows:
        stats: VariantMetrics = target(r[key])
        if "metric_name" in r:
            if metrics is not None and r["metric_name"] not in metrics:
                continue
            stats.metrics.setdefault(r["variant_id"], {}).setdefault(r["metric_name"], MetricStats()).add(
                MetricStats(r["count"], r["sum"], r["sum_squares"], r["users"], r["unattributed"])
            )
        else:
            stats.variants.setdefault(r["variant_id"], ExposureTotals()).add(
                ExposureTotals(r["exposures"], r["users"])
            )


def _apply(stats: VariantMetrics, delta: Fold, metrics: Collection[str] | None) -> None:
    if metrics is not None:
        delta = Fold(
            variants=delta.variants, metrics={k: v for k, v in delta.metrics.items() if k[2] in metrics}
        )
    add_fold(stats, delta)


class BreakdownRepository:
    """Exact per-slice statistics now (rollups plus the tail), for /results?dimension= and its series."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def slice_metrics(
        self, experiment_id: UUID, dimension: str, metrics: list[str] | None = None
    ) -> SliceMetrics:
        """Every captured value of `dimension` with its per-variant statistics (`metrics`: only those
        metrics; None: all). NotFound for an unknown experiment; 422 for a dimension it does not have."""

        def work(conn: Connection) -> SliceMetrics:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            slices = SliceMetrics(_checked(conn, experiment_id, dimension), dimension)
            params = {"e": experiment_id, "d": dimension, "m": metrics}
            _add_rows(
                slices.slice,
                conn.execute(
                    "SELECT value, variant_id, exposures, users FROM rollup_slice_variants"
                    " WHERE experiment_id = %(e)s AND dimension = %(d)s",
                    params,
                ),
                metrics,
            )
            _add_rows(
                slices.slice,
                conn.execute(
                    "SELECT value, variant_id, metric_name, count, sum, sum_squares, users, unattributed"
                    " FROM rollup_slice_metrics WHERE experiment_id = %(e)s AND dimension = %(d)s"
                    " AND (%(m)s::text[] IS NULL OR metric_name = ANY(%(m)s::text[]))",
                    params,
                ),
                metrics,
            )
            tail = set(_tail_touched(conn, experiment_id, _horizon(conn)))
            for (_, value), delta in _folds(conn, experiment_id, [dimension], tail, None).items():
                _apply(slices.slice(value), delta, metrics)
            return slices

        return self._db.run(work)

    def daily_slice_metrics(
        self, experiment_id: UUID, dimension: str, value: str, metric: str | None = None
    ) -> DailyMetrics:
        """One slice's cumulative statistics at the end of every UTC day with events, and now, in one
        snapshot (as RollupRepository.daily_metrics does for the whole experiment), for one metric
        (default: the slice's first by name), so the read stays bounded."""

        def work(conn: Connection) -> DailyMetrics:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            experiment = _checked(conn, experiment_id, dimension)
            params: dict[str, Any] = {"e": experiment_id, "d": dimension, "v": value}
            if metric is None:
                row = conn.execute(
                    "SELECT min(metric_name) AS name FROM rollup_slice_metrics"
                    " WHERE experiment_id = %(e)s AND dimension = %(d)s AND value = %(v)s",
                    params,
                ).fetchone()
                first = row["name"] if row is not None else None
                wanted = [first] if first is not None else []
            else:
                wanted = [metric]
            params["m"] = wanted
            running = empty_stats(experiment)
            days: dict[date, VariantMetrics] = {}

            def day_stats(day: date) -> VariantMetrics:
                return days.setdefault(day, empty_stats(experiment))

            for target, table, column, extra in (
                (day_stats, "snapshot_slice", "day", "day, "),
                (lambda _: running, "rollup_slice", "value", ""),
            ):
                _add_rows(
                    target,
                    conn.execute(
                        f"SELECT {extra}value, variant_id, exposures, users FROM {table}_variants"
                        " WHERE experiment_id = %(e)s AND dimension = %(d)s AND value = %(v)s".encode(),
                        params,
                    ),
                    wanted,
                    key=column,
                )
                _add_rows(
                    target,
                    conn.execute(
                        f"SELECT {extra}value, variant_id, metric_name, count, sum, sum_squares, users,"
                        f" unattributed FROM {table}_metrics WHERE experiment_id = %(e)s"
                        " AND dimension = %(d)s AND value = %(v)s AND metric_name = ANY(%(m)s)".encode(),
                        params,
                    ),
                    wanted,
                    key=column,
                )
            touched = _tail_touched(conn, experiment_id, _horizon(conn))
            # Day by day as daily_metrics does: each tail day's users recomputed up to its end; the
            # fold replaces what the previous step left for them (the rollup's state at first).
            states, user_metrics = _stored(conn, set(touched))
            values = _values(conn, experiment_id, (user for _, user in touched))
            for tail_day, users in _users_by_day(touched, max(days) if days else None):
                new_states, new_metrics = _recompute(conn, users, None, _end_of(tail_day))
                folds = slice_folds(
                    [dimension],
                    values,
                    {k: v for k, v in states.items() if k in users},
                    {k: v for k, v in user_metrics.items() if (k[0], k[1]) in users},
                    new_states,
                    new_metrics,
                    check_finite=False,
                )
                if (dimension, value) in folds:
                    _apply(running, folds[(dimension, value)], wanted)
                for key in [k for k in user_metrics if (k[0], k[1]) in users]:
                    del user_metrics[key]
                states.update(new_states)
                user_metrics.update(new_metrics)
                days[tail_day] = _copy(running)
            current = _copy(running)
            if days:
                days[max(days)] = current
            return DailyMetrics(current, sorted(days.items()))

        return self._db.run(work)


def _copy(stats: VariantMetrics) -> VariantMetrics:
    out = empty_stats(stats.experiment)
    add_fold(
        out,
        Fold(
            variants={(stats.experiment.id, k): v for k, v in stats.variants.items()},
            metrics={
                (stats.experiment.id, vid, name): m
                for vid, per in stats.metrics.items()
                for name, m in per.items()
            },
        ),
    )
    return out


def _checked(conn: Connection, experiment_id: UUID, dimension: str) -> Any:
    experiment = fetch_experiment(conn, experiment_id)
    if dimension not in experiment.dimensions:
        listed = ", ".join(experiment.dimensions) or "none"
        raise InvalidInput(
            f"the experiment has no dimension {dimension!r} (its dimensions: {listed})",
            code=ErrorCode.UNKNOWN_DIMENSION,
            field="dimension",
        )
    return experiment
