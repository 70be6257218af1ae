"""Per-slice sufficient statistics of an experiment by one dimension: the rollup's per-user state
(rollup_users, rollup_user_metrics) grouped by the value captured at enrollment, plus the users touched
above the horizon recomputed from their raw events, in one repeatable-read snapshot.

Each user's contribution is exactly the one the rollup folds into the per-variant totals (exposed
users only; abtest.analysis.rollup), so the slices of a dimension add up to the experiment's totals.
"""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID

from abtest.analysis.breakdowns import SliceMetrics, add_fold
from abtest.analysis.rollup import MetricStats, UserMetric, UserMetricKey, UserState, fold
from abtest.domain.breakdowns import NONE_VALUE
from abtest.errors import ErrorCode, InvalidInput
from abtest.storage.database import Connection, Database
from abtest.storage.experiments import fetch_experiment
from abtest.storage.rollups import _horizon, _recompute, _tail_touched

_VALUE = f"COALESCE(a.dimensions ->> %(dimension)s, '{NONE_VALUE}')"

_ROLLED_UP_USERS = f"""
SELECT {_VALUE} AS value, r.variant_id,
       sum(r.exposures)::bigint AS exposures, count(*) FILTER (WHERE r.exposures > 0) AS users
FROM rollup_users r
JOIN assignments a ON a.experiment_id = r.experiment_id AND a.user_id = r.user_id
WHERE r.experiment_id = %(experiment_id)s AND NOT (r.user_id = ANY(%(tail)s))
GROUP BY 1, 2
"""

_ROLLED_UP_METRICS = f"""
SELECT {_VALUE} AS value, m.variant_id, m.metric_name,
       COALESCE(sum(m.count) FILTER (WHERE u.exposures > 0), 0)::bigint AS count,
       COALESCE(sum(m.total) FILTER (WHERE u.exposures > 0), 0)::float8 AS sum,
       COALESCE(sum(m.total * m.total) FILTER (WHERE u.exposures > 0), 0)::float8 AS sum_squares,
       count(*) FILTER (WHERE u.exposures > 0 AND m.count > 0) AS users,
       sum(m.unattributed)::bigint AS unattributed
FROM rollup_user_metrics m
JOIN assignments a ON a.experiment_id = m.experiment_id AND a.user_id = m.user_id
LEFT JOIN rollup_users u ON u.experiment_id = m.experiment_id AND u.user_id = m.user_id
WHERE m.experiment_id = %(experiment_id)s AND NOT (m.user_id = ANY(%(tail)s))
  AND (%(metrics)s::text[] IS NULL OR m.metric_name = ANY(%(metrics)s::text[]))
GROUP BY 1, 2, 3
"""


class BreakdownRepository:
    """Exact per-slice statistics now (rollups plus the tail), for /results?dimension=."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def slice_metrics(
        self, experiment_id: UUID, dimension: str, metrics: list[str] | None = None
    ) -> SliceMetrics:
        """Every captured value of `dimension` with its per-variant statistics (`metrics`: only those
        metrics; None: all). NotFound for an unknown experiment; 422 for a dimension it does not have."""

        def work(conn: Connection) -> SliceMetrics:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            experiment = fetch_experiment(conn, experiment_id)
            if dimension not in experiment.dimensions:
                listed = ", ".join(experiment.dimensions) or "none"
                raise InvalidInput(
                    f"the experiment has no dimension {dimension!r} (its dimensions: {listed})",
                    code=ErrorCode.UNKNOWN_DIMENSION,
                    field="dimension",
                )
            slices = SliceMetrics(experiment, dimension)
            tail = sorted(_tail_touched(conn, experiment_id, _horizon(conn)))
            params = {
                "experiment_id": experiment_id,
                "dimension": dimension,
                "tail": [user for _, user in tail],
                "metrics": metrics,
            }
            for r in conn.execute(_ROLLED_UP_USERS.encode(), params):
                totals = slices.slice(r["value"]).variants[r["variant_id"]]
                totals.exposures += r["exposures"]
                totals.users += r["users"]
            for r in conn.execute(_ROLLED_UP_METRICS.encode(), params):
                per = slices.slice(r["value"]).metrics.setdefault(r["variant_id"], {})
                per.setdefault(r["metric_name"], MetricStats()).add(
                    MetricStats(r["count"], r["sum"], r["sum_squares"], r["users"], r["unattributed"])
                )
            if tail:
                _add_tail(conn, slices, set(tail), params, metrics)
            return slices

        return self._db.run(work)


def _add_tail(
    conn: Connection,
    slices: SliceMetrics,
    tail: set[tuple[UUID, str]],
    params: dict[str, object],
    metrics: list[str] | None,
) -> None:
    """The users touched above the horizon, recomputed from their raw events, folded per slice."""
    states, user_metrics = _recompute(conn, tail, None)
    values = {
        r["user_id"]: r["value"]
        for r in conn.execute(
            f"SELECT a.user_id, {_VALUE} AS value FROM assignments a"
            " WHERE a.experiment_id = %(experiment_id)s AND a.user_id = ANY(%(tail)s)".encode(),
            params,
        )
    }
    by_value: dict[str, tuple[dict[tuple[UUID, str], UserState], dict[UserMetricKey, UserMetric]]] = (
        defaultdict(lambda: ({}, {}))
    )
    for key, state in states.items():
        by_value[values.get(key[1], NONE_VALUE)][0][key] = state
    for mkey, metric in user_metrics.items():
        if metrics is None or mkey[2] in metrics:
            by_value[values.get(mkey[1], NONE_VALUE)][1][mkey] = metric
    for value, (group_states, group_metrics) in by_value.items():
        add_fold(slices.slice(value), fold({}, {}, group_states, group_metrics, check_finite=False))
