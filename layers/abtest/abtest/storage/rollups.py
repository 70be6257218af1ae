"""The scheduled rollup and the metrics read: sufficient statistics behind a transaction-id horizon.

A run folds the events of every transaction with an id in [stored horizon, new horizon), where the new
horizon is the xmin of the run's snapshot (all transactions below it have finished), so each event
lands in exactly one run. Runs take an advisory lock: a second concurrent run waits, then finds the
horizon moved and folds only what is newer. Reads combine the rollups with the tail above the horizon
in one repeatable-read snapshot, so they are exact and current.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

from abtest.analysis.rollup import (
    ExposureTotals,
    Fold,
    MetricKey,
    MetricStats,
    NewConversions,
    NewExposures,
    RunningAllocation,
    UserKey,
    UserMetric,
    UserMetricKey,
    UserState,
    VariantKey,
    VariantMetrics,
    fold,
)
from abtest.domain.lifecycle import ENROLLING
from abtest.storage.database import Connection, Database
from abtest.storage.experiments import fetch_experiment, fetch_running, statuses_sql

_ROLLUP_LOCK = 7_412_039_552

_WINDOW_EXPOSURES = """
SELECT experiment_id, user_id, variant_id, count(*) AS n
FROM exposures WHERE txid >= %(low)s AND txid < %(high)s {scope}
GROUP BY experiment_id, user_id, variant_id
"""

_WINDOW_CONVERSIONS = """
SELECT experiment_id, user_id, metric_name, variant_id, count(*) AS n, sum(value) AS total
FROM conversions WHERE txid >= %(low)s AND txid < %(high)s {scope}
GROUP BY experiment_id, user_id, metric_name, variant_id
"""


@dataclass(frozen=True)
class RollupRun:
    """What one rollup run did."""

    previous_horizon: int
    horizon: int
    exposure_groups: int
    conversion_groups: int
    seconds: float


def _window(
    conn: Connection, low: int, high: int | None, experiment_id: UUID | None
) -> tuple[list[NewExposures], list[NewConversions]]:
    scope = " AND experiment_id = %(experiment_id)s" if experiment_id is not None else ""
    # No upper bound (the tail): everything above the horizon that this snapshot sees.
    upper = high if high is not None else 2**63 - 1
    params = {"low": str(low), "high": str(upper), "experiment_id": experiment_id}
    exposures = [
        NewExposures(r["experiment_id"], r["user_id"], r["variant_id"], r["n"])
        for r in conn.execute(_WINDOW_EXPOSURES.format(scope=scope).encode(), params)
    ]
    conversions = [
        NewConversions(
            r["experiment_id"], r["user_id"], r["metric_name"], r["variant_id"], r["n"], r["total"]
        )
        for r in conn.execute(_WINDOW_CONVERSIONS.format(scope=scope).encode(), params)
    ]
    return exposures, conversions


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
            exposures, conversions = _window(conn, low, high, None)
            old_users, old_metrics = _old_state(conn, exposures, conversions)
            _store(conn, fold(old_users, old_metrics, exposures, conversions))
            conn.execute(
                "UPDATE rollup_state SET horizon = %s::text::xid8, runs = runs + 1, updated_at = now()",
                (str(high),),
            )
            return RollupRun(low, high, len(exposures), len(conversions), time.perf_counter() - started)

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
            row = conn.execute("SELECT horizon::text::bigint AS horizon FROM rollup_state").fetchone()
            assert row is not None
            variants: dict[UUID, ExposureTotals] = {v.id: ExposureTotals() for v in experiment.variants}
            metrics: dict[UUID, dict[str, MetricStats]] = {v.id: {} for v in experiment.variants}
            for r in conn.execute(
                "SELECT variant_id, exposures, users FROM rollup_variants WHERE experiment_id = %s",
                (experiment_id,),
            ):
                variants[r["variant_id"]] = ExposureTotals(r["exposures"], r["users"])
            for r in conn.execute(
                "SELECT variant_id, metric_name, count, sum, sum_squares, users"
                " FROM rollup_metrics WHERE experiment_id = %s",
                (experiment_id,),
            ):
                metrics[r["variant_id"]][r["metric_name"]] = MetricStats(
                    r["count"], r["sum"], r["sum_squares"], r["users"]
                )
            _add_tail(conn, experiment_id, int(row["horizon"]), variants, metrics)
            return VariantMetrics(experiment, variants, metrics)

        return self._db.run(work)


def _add_tail(
    conn: Connection,
    experiment_id: UUID,
    horizon: int,
    variants: dict[UUID, ExposureTotals],
    metrics: dict[UUID, dict[str, MetricStats]],
) -> None:
    """Fold the experiment's events above the horizon into its rolled-up statistics, in place."""
    exposures, conversions = _window(conn, horizon, None, experiment_id)
    old_users, old_metrics = _old_state(conn, exposures, conversions)
    _apply(fold(old_users, old_metrics, exposures, conversions), variants, metrics)


def _apply(
    tail: Fold, variants: dict[UUID, ExposureTotals], metrics: dict[UUID, dict[str, MetricStats]]
) -> None:
    variant_key: VariantKey
    for variant_key, delta in tail.variants.items():
        variants.setdefault(variant_key[1], ExposureTotals()).add(delta)
    metric_key: MetricKey
    for metric_key, mdelta in tail.metrics.items():
        metrics.setdefault(metric_key[1], {}).setdefault(metric_key[2], MetricStats()).add(mdelta)
