"""A bandit's results over time, period-weighted (docs/bandits.md, "Results over time").

Every point of a bandit's series is the period-weighted estimate of its cumulative statistics at the
end of that day: each period's per-arm statistics as they were then, weighted by
abtest.analysis.bandits.period_weighted, the estimator of /results. Reading days x periods statistics
at request time could be millions of rows (MAX_BANDIT_PERIODS x MAX_VARIANTS per day of a bandit that
runs for years), so the work is split like the per-variant snapshots (abtest.storage.rollups):

- The scheduled rollup keeps each bandit's running statistics per period (rollup_bandit_period_*), by
  splitting the day's per-user fold by the period that enrolled each user (`BanditSeriesRollup.store`,
  called before the fold is stored: it reads the users' stored state); for each day it walks, it
  then writes that day's period-weighted per-variant statistics of every metric and the SRM's expected
  users (`BanditSeriesRollup.snapshot`: snapshot_bandit_metrics, snapshot_bandit_variants).
- A read (`period_weighted_days`) takes the stored days as they are (one row per day and variant and
  metric asked for), walks the tail above the horizon day by day exactly as daily_metrics does, with
  the running per-period statistics plus the tail's per-period folds (estimating only the days the
  series shows: at most MAX_SERIES_POINTS + 1), and makes the last day exactly what /results shows:
  period_weighted of the statistics now and `period_stats` now.

Fixed-allocation experiments are left alone by both: nothing is read or written for them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import date
from typing import Any
from uuid import UUID

from abtest.analysis.bandits import (
    PeriodStats,
    PeriodWeightedMetrics,
    add_period_folds,
    period_folds,
    weighted_day,
)
from abtest.analysis.rollup import ExposureTotals, Fold, MetricStats, UserKey, VariantMetrics
from abtest.analysis.timeseries import DailyMetrics, source_days
from abtest.domain.experiments import Experiment
from abtest.storage.bandits import period_stats
from abtest.storage.database import Connection
from abtest.storage.experiments import fetch_experiment
from abtest.storage.rollups import (
    _end_of,
    _recompute,
    _rolled_up,
    _stored,
    _tail_touched,
    _users_by_day,
)


def _period_numbers(conn: Connection, experiment_id: UUID, users: Iterable[str]) -> dict[str, int]:
    """The period that enrolled each of these users (NULL: period 1)."""
    return {
        r["user_id"]: r["period"]
        for r in conn.execute(
            "SELECT user_id, COALESCE(bandit_period, 1) AS period FROM assignments"
            " WHERE experiment_id = %s AND user_id = ANY(%s)",
            (experiment_id, sorted(set(users))),
        )
    }


def _period_weights(conn: Connection, experiment_id: UUID) -> dict[int, list[float]]:
    """The weights each closed period's users were bucketed with (the open one uses the current ones)."""
    return {
        r["number"]: list(r["weights_before"])
        for r in conn.execute(
            "SELECT number, weights_before FROM bandit_periods WHERE experiment_id = %s", (experiment_id,)
        )
    }


def _running(
    conn: Connection, experiment: Experiment, metrics: Collection[str] | None
) -> dict[int, PeriodStats]:
    """The rolled-up statistics per period (`metrics`: only these; None: all)."""
    periods: dict[int, PeriodStats] = {}

    def period(number: int) -> PeriodStats:
        if number not in periods:
            periods[number] = PeriodStats(
                {v.id: ExposureTotals() for v in experiment.variants}, {v.id: {} for v in experiment.variants}
            )
        return periods[number]

    params = {"e": experiment.id, "m": list(metrics) if metrics is not None else None}
    for r in conn.execute(
        "SELECT period, variant_id, exposures, users FROM rollup_bandit_period_variants"
        " WHERE experiment_id = %(e)s",
        params,
    ):
        totals = period(r["period"]).variants.setdefault(r["variant_id"], ExposureTotals())
        totals.exposures, totals.users = int(r["exposures"]), int(r["users"])
    for r in conn.execute(
        "SELECT period, variant_id, metric_name, count, sum, sum_squares, users, unattributed"
        " FROM rollup_bandit_period_metrics WHERE experiment_id = %(e)s"
        " AND (%(m)s::text[] IS NULL OR metric_name = ANY(%(m)s::text[]))",
        params,
    ):
        period(r["period"]).metrics.setdefault(r["variant_id"], {})[r["metric_name"]] = MetricStats(
            int(r["count"]), r["sum"], r["sum_squares"], int(r["users"]), int(r["unattributed"])
        )
    return periods


class BanditSeriesRollup:
    """The scheduled rollup's part for a bandit's series, for one experiment (a no-op for a fixed one).

    Called by RollupRepository.roll_up inside the experiment's savepoint, for each day it walks: `store`
    just before the day's fold is stored (it reads the users' stored state), `snapshot` after the day's
    per-variant snapshot. A failure rolls it back with the rest of the experiment.
    """

    def __init__(self, conn: Connection, experiment_id: UUID) -> None:
        self._conn = conn
        row = conn.execute(
            "SELECT allocation ->> 'type' = 'bandit' AS bandit FROM experiments WHERE id = %s",
            (experiment_id,),
        ).fetchone()
        self._experiment = (
            fetch_experiment(conn, experiment_id) if row is not None and row["bandit"] else None
        )

    def store(self, users: set[UserKey], result: Fold) -> None:
        """Add the fold's deltas, split by the period that enrolled each user, to the running per-period
        statistics. Raises FoldError (the experiment's savepoint is undone) for a non-finite delta."""
        experiment = self._experiment
        if experiment is None or not result.users:
            return
        old_states, old_metrics = _stored(self._conn, users)
        numbers = _period_numbers(self._conn, experiment.id, (user for _, user in result.users))
        folds = period_folds(numbers, old_states, old_metrics, result.users, result.user_metrics)
        variants: list[tuple[Any, ...]] = []
        metrics: list[tuple[Any, ...]] = []
        for number, delta in folds.items():
            for (_, variant_id), totals in delta.variants.items():
                variants.append((number, variant_id, totals.exposures, totals.users))
            for (_, variant_id, name), m in delta.metrics.items():
                metrics.append(
                    (number, variant_id, name, m.count, m.sum, m.sum_squares, m.users, m.unattributed)
                )
        if variants:
            self._conn.execute(
                "INSERT INTO rollup_bandit_period_variants AS r"
                " (experiment_id, period, variant_id, exposures, users)"
                " SELECT %s, * FROM unnest(%s::int[], %s::uuid[], %s::bigint[], %s::bigint[])"
                " ON CONFLICT (experiment_id, period, variant_id) DO UPDATE"
                " SET exposures = r.exposures + EXCLUDED.exposures, users = r.users + EXCLUDED.users",
                (experiment.id, *[list(c) for c in zip(*variants, strict=True)]),
            )
        if metrics:
            self._conn.execute(
                "INSERT INTO rollup_bandit_period_metrics AS r (experiment_id, period, variant_id,"
                " metric_name, count, sum, sum_squares, users, unattributed)"
                " SELECT %s, * FROM unnest(%s::int[], %s::uuid[], %s::text[], %s::bigint[],"
                " %s::float8[], %s::float8[], %s::bigint[], %s::bigint[])"
                " ON CONFLICT (experiment_id, period, variant_id, metric_name) DO UPDATE"
                " SET count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum,"
                " sum_squares = r.sum_squares + EXCLUDED.sum_squares, users = r.users + EXCLUDED.users,"
                " unattributed = r.unattributed + EXCLUDED.unattributed",
                (experiment.id, *[list(c) for c in zip(*metrics, strict=True)]),
            )

    def snapshot(self, day: date) -> None:
        """Write `day`'s period-weighted per-variant statistics of every metric and its expected users,
        from the current rollups (the state at the end of `day`: see abtest.storage.rollups)."""
        experiment = self._experiment
        if experiment is None:
            return
        stats = weighted_day(
            _rolled_up(self._conn, experiment),
            _running(self._conn, experiment, None),
            _period_weights(self._conn, experiment.id),
        )
        ids = [v.id for v in experiment.variants]
        self._conn.execute(
            "INSERT INTO snapshot_bandit_variants (experiment_id, day, variant_id, expected_users)"
            " SELECT %s, %s, * FROM unnest(%s::uuid[], %s::float8[])"
            " ON CONFLICT (experiment_id, day, variant_id) DO UPDATE"
            " SET expected_users = EXCLUDED.expected_users",
            (experiment.id, day, ids, list(stats.expected_users)),
        )
        rows = [
            (variant_id, name, m.count, m.sum, m.sum_squares, m.users, m.unattributed)
            for variant_id, per in stats.metrics.items()
            for name, m in per.items()
        ]
        if rows:
            self._conn.execute(
                "INSERT INTO snapshot_bandit_metrics (experiment_id, day, variant_id, metric_name, count,"
                " sum, sum_squares, users, unattributed)"
                " SELECT %s, %s, * FROM unnest(%s::uuid[], %s::text[], %s::bigint[], %s::float8[],"
                " %s::float8[], %s::bigint[], %s::bigint[])"
                " ON CONFLICT (experiment_id, day, variant_id, metric_name) DO UPDATE"
                " SET count = EXCLUDED.count, sum = EXCLUDED.sum, sum_squares = EXCLUDED.sum_squares,"
                " users = EXCLUDED.users, unattributed = EXCLUDED.unattributed",
                (experiment.id, day, *[list(c) for c in zip(*rows, strict=True)]),
            )


def period_weighted_days(
    conn: Connection,
    experiment: Experiment,
    horizon: int,
    days: dict[date, VariantMetrics],
    metrics: Collection[str],
) -> None:
    """A bandit's days of RollupRepository.daily_metrics (pooled, in the caller's snapshot) replaced, in
    place, by their period-weighted statistics of `metrics` (module docstring); nothing for a fixed
    allocation. The last day is what /results computes now, exactly."""
    if not experiment.allocation.is_bandit or not days:
        return
    wanted = list(metrics)
    weights = _period_weights(conn, experiment.id)
    stored: dict[date, tuple[dict[UUID, dict[str, MetricStats]], list[float]]] = {}
    index = {v.id: i for i, v in enumerate(experiment.variants)}
    for r in conn.execute(
        "SELECT day, variant_id, expected_users FROM snapshot_bandit_variants WHERE experiment_id = %s",
        (experiment.id,),
    ):
        if r["day"] not in stored:
            stored[r["day"]] = ({v.id: {} for v in experiment.variants}, [0.0] * len(index))
        stored[r["day"]][1][index[r["variant_id"]]] = r["expected_users"]
    for r in conn.execute(
        "SELECT day, variant_id, metric_name, count, sum, sum_squares, users, unattributed"
        " FROM snapshot_bandit_metrics WHERE experiment_id = %s AND metric_name = ANY(%s)",
        (experiment.id, wanted),
    ):
        if r["day"] in stored:
            stored[r["day"]][0].setdefault(r["variant_id"], {})[r["metric_name"]] = MetricStats(
                r["count"], r["sum"], r["sum_squares"], r["users"], r["unattributed"]
            )
    last = max(days)
    current = days[last]  # the statistics now (daily_metrics' last day), what /results reads
    for day, (day_metrics, expected) in stored.items():
        if day in days:
            days[day] = PeriodWeightedMetrics.of(days[day], day_metrics, expected)
    row = conn.execute(
        "SELECT max(day) AS day FROM snapshot_variants WHERE experiment_id = %s", (experiment.id,)
    ).fetchone()
    latest = row["day"] if row is not None else None
    # Only the days the series can show get an estimate (at most MAX_SERIES_POINTS + 1, however long the
    # tail: all of a bandit's history is tail until the rollup rebuilds it); the others are left out,
    # and no shown day repeats one of them (abtest.analysis.timeseries.source_days).
    shown = source_days(DailyMetrics(current, sorted(days.items())))
    # The tail, day by day as daily_metrics walks it: at each shown day, the users with events since the
    # previous one recomputed up to its end (the state at that moment: a user without events since keeps
    # the state last recomputed), their fold split by period and added to the running statistics.
    touched = _tail_touched(conn, experiment.id, horizon)
    running = _running(conn, experiment, wanted)
    states, user_metrics = _stored(conn, set(touched))
    numbers = _period_numbers(conn, experiment.id, (user for _, user in touched))
    pending: set[UserKey] = set()
    for tail_day, users in _users_by_day(touched, latest):
        if tail_day == last:
            break  # the last day is /results' (below)
        pending |= users
        if tail_day not in shown:
            del days[tail_day]
            continue
        new_states, new_metrics = _recompute(conn, pending, None, _end_of(tail_day))
        folds = period_folds(numbers, states, user_metrics, new_states, new_metrics, check_finite=False)
        add_period_folds(experiment, running, folds, wanted)
        for key in [k for k in user_metrics if (k[0], k[1]) in pending]:
            del user_metrics[key]
        states.update(new_states)
        user_metrics.update(new_metrics)
        pending = set()
        days[tail_day] = weighted_day(days[tail_day], running, weights, wanted)
    days[last] = weighted_day(current, period_stats(conn, experiment, wanted), weights, wanted)
