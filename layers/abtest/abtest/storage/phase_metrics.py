"""Per-phase statistics: one config phase of an experiment read from its raw events (the rollups pool
every phase). The users exposed in the phase, their exposures in it, and per metric their conversions
dated in the phase: attributed from their first exposure in the phase on, unattributed before it. One
statement; its cost follows the phase's exposed users (the exposures' phase index)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from abtest.analysis.defined_rollup import add_deltas
from abtest.analysis.phases import PhaseBoundary, PhaseLabel, chosen_phase, label
from abtest.analysis.rollup import UserMetric, UserState, VariantMetrics, fold
from abtest.domain.experiments import Experiment
from abtest.storage.database import Connection, Database
from abtest.storage.defined_rollups import kept_definitions, phase_defined
from abtest.storage.experiments import fetch_experiment
from abtest.storage.rollups import _apply, _empty_with

_PHASE_USERS = """
WITH users AS (
    SELECT e.user_id, a.variant_id, count(*) AS exposures, min(e.occurred_at) AS first_at
    FROM exposures e
    JOIN assignments a ON a.experiment_id = e.experiment_id AND a.user_id = e.user_id
    WHERE e.experiment_id = %(experiment_id)s AND e.phase = %(phase)s
    GROUP BY e.user_id, a.variant_id
)
SELECT u.user_id, u.variant_id, u.exposures, m.metric_name, m.n, m.total, m.unattributed
FROM users u
LEFT JOIN LATERAL (
    SELECT metric_name,
           count(*) FILTER (WHERE occurred_at >= u.first_at) AS n,
           COALESCE(sum(value::numeric) FILTER (WHERE occurred_at >= u.first_at), 0) AS total,
           count(*) FILTER (WHERE occurred_at < u.first_at) AS unattributed
    FROM conversions c
    WHERE c.experiment_id = %(experiment_id)s AND c.user_id = u.user_id
      AND c.occurred_at >= COALESCE(%(since)s::timestamptz, '-infinity')
      AND c.occurred_at < COALESCE(%(until)s::timestamptz, 'infinity')
    GROUP BY metric_name
) m ON true
"""


def boundaries(conn: Connection, experiment: Experiment) -> list[PhaseBoundary]:
    """Every phase's start (phase 1: the experiment's), oldest first."""
    rows = conn.execute(
        "SELECT phase, started_at FROM experiment_phases WHERE experiment_id = %s ORDER BY phase",
        (experiment.id,),
    ).fetchall()
    return [PhaseBoundary(phase=1, started_at=experiment.started_at)] + [
        PhaseBoundary(phase=r["phase"], started_at=r["started_at"]) for r in rows
    ]


def _fallbacks(conn: Connection, experiment: Experiment, phase: int | None) -> dict[str, int]:
    names = {v.id: v.name for v in experiment.variants}
    rows = conn.execute(
        "SELECT variant_id, count(*) AS n FROM exposures WHERE experiment_id = %(e)s AND config_fallback"
        " AND (%(phase)s::int IS NULL OR phase = %(phase)s::int) GROUP BY variant_id",
        {"e": experiment.id, "phase": phase},
    ).fetchall()
    return {names[r["variant_id"]]: int(r["n"]) for r in rows if r["variant_id"] in names}


class PhaseMetricsRepository:
    """Statistics of one config phase, and the phase labels of results."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def phase_view(
        self, experiment_id: UUID, asked: str | None
    ) -> tuple[int | None, PhaseLabel, list[PhaseBoundary]]:
        """The phase a read analyses (`?phase=`: None = the latest, N, or all -> None), its label, and
        every phase's start; 404 for an unknown experiment, 422 for a phase it does not have."""

        def work(conn: Connection) -> tuple[int | None, PhaseLabel, list[PhaseBoundary]]:
            experiment = fetch_experiment(conn, experiment_id)
            phase = chosen_phase(asked, experiment.phase)
            starts = boundaries(conn, experiment)
            since: datetime | None = None
            until: datetime | None = None
            if phase is not None:
                since = starts[phase - 1].started_at
                until = starts[phase].started_at if phase < len(starts) else None
            return (
                phase,
                PhaseLabel(
                    phase=phase if phase is not None else "all",
                    current_phase=experiment.phase,
                    label=label(phase, experiment.phase),
                    started_at=since,
                    ended_at=until,
                    config_invalid_exposures=_fallbacks(conn, experiment, phase),
                ),
                starts,
            )

        return self._db.run(work, transaction=False)

    def phase_metrics(self, experiment_id: UUID, phase: int) -> VariantMetrics:
        """The experiment's statistics over one phase (exact, from the raw events, in one snapshot)."""

        def work(conn: Connection) -> VariantMetrics:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            experiment = fetch_experiment(conn, experiment_id)
            starts = boundaries(conn, experiment)
            params: dict[str, Any] = {
                "experiment_id": experiment_id,
                "phase": phase,
                "since": starts[phase - 1].started_at if phase > 1 else None,
                "until": starts[phase].started_at if phase < len(starts) else None,
            }
            states: dict[tuple[UUID, str], UserState] = {}
            metrics: dict[tuple[UUID, str, str], UserMetric] = {}
            for r in conn.execute(_PHASE_USERS.encode(), params):
                key = (experiment_id, r["user_id"])
                states[key] = UserState(r["variant_id"], r["exposures"])
                if r["metric_name"] is not None:
                    metrics[(*key, r["metric_name"])] = UserMetric(
                        r["variant_id"], r["n"], float(r["total"]), r["unattributed"]
                    )
            kept = kept_definitions(conn, experiment_id)
            stats = _empty_with(experiment, kept)
            _apply(fold({}, {}, states, metrics, check_finite=False), stats)
            defined = phase_defined(conn, experiment_id, kept, phase, params["since"], params["until"])
            add_deltas(stats.defined, defined.deltas)
            return stats

        return self._db.run(work)
