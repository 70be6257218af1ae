"""Bandit periods: the reweight (close the open period, open the next), per-period statistics, reads.

A reweight runs in one transaction holding the experiment's row lock (SELECT ... FOR UPDATE): it
reads the period it means to close before taking the lock, and if, once it holds the lock, that
period has been closed already (a concurrent reweight won), it answers the stored period instead of
closing another. So two reweights at once make one period. The primary key (experiment_id, number)
of bandit_periods is the last line of defence. Stored assignments are never touched: the new
weights apply to users enrolled from then on.

Per-period statistics are exact and current like every other read (abtest.storage.rollups): the
rolled-up per-user state of the users not touched above the horizon, grouped in SQL by the period
their assignment records and their variant, plus the touched users recomputed from their raw events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from psycopg.types.json import Jsonb

from abtest.analysis.bandit_srm import srm_periods
from abtest.analysis.bandits import PeriodStats, arm_stats
from abtest.analysis.rollup import ExposureTotals, MetricStats, VariantMetrics
from abtest.analysis.srm_monitor import Monitor, SrmPeriod, tested_variants
from abtest.domain.audit import SYSTEM_ACTOR, Actor, AuditEntry
from abtest.domain.bandit_reweight import PeriodDecision, decide
from abtest.domain.bandits import BanditPeriod
from abtest.domain.experiments import Experiment
from abtest.domain.lifecycle import ENROLLING, HOLDING_BUCKETS
from abtest.errors import Conflict, ErrorCode
from abtest.limits import MAX_BANDIT_PERIODS
from abtest.storage.audit import record
from abtest.storage.database import Connection, Database
from abtest.storage.experiments import fetch_experiment, statuses_sql
from abtest.storage.rollups import _current, _horizon, _recompute, _tail_touched

Trigger = Literal["api", "schedule"]
# The alerts' hook (abtest.storage.alerts.PeriodSource): experiment, last check -> periods to test.
PeriodSource = Callable[[Experiment, Monitor | None], Sequence[SrmPeriod] | None]


@dataclass(frozen=True)
class BanditInputs:
    """A bandit's pooled statistics, the same per period, closed periods' weights, latest P(best)."""

    pooled: VariantMetrics
    periods: dict[int, PeriodStats]
    period_weights: dict[int, list[float]]
    p_best: list[float] | None


@dataclass(frozen=True)
class PeriodAllocation:
    """Per period (1..open period) the exposed users of each arm and the weights they were bucketed
    with, in variant order: what a per-period SRM test needs (N_t = sum of period_users[t])."""

    experiment: Experiment
    periods: list[int]
    period_users: list[list[int]]
    period_weights: list[list[float]]


_ROLLED_UP_USERS = """
SELECT COALESCE(a.bandit_period, 1) AS period, u.variant_id, count(*) AS users,
       sum(u.exposures)::bigint AS exposures
FROM rollup_users u
JOIN assignments a ON a.experiment_id = u.experiment_id AND a.user_id = u.user_id
WHERE u.experiment_id = %(e)s AND u.exposures > 0
  AND u.user_id NOT IN (SELECT unnest(%(touched)s::text[]))  -- a hashed anti-join
GROUP BY 1, 2
"""

_ROLLED_UP_METRICS = """
SELECT COALESCE(a.bandit_period, 1) AS period, m.variant_id, m.metric_name,
       sum(m.count)::bigint AS count, sum(m.total) AS sum, sum(m.total * m.total) AS sum_squares,
       count(*) FILTER (WHERE m.count > 0) AS users
FROM rollup_user_metrics m
JOIN rollup_users u ON u.experiment_id = m.experiment_id AND u.user_id = m.user_id
JOIN assignments a ON a.experiment_id = m.experiment_id AND a.user_id = m.user_id
WHERE m.experiment_id = %(e)s AND u.exposures > 0
  AND m.user_id NOT IN (SELECT unnest(%(touched)s::text[]))
  AND (%(metrics)s::text[] IS NULL OR m.metric_name = ANY(%(metrics)s::text[]))
GROUP BY 1, 2, 3
"""


def period_stats(
    conn: Connection, experiment: Experiment, metrics: list[str] | None = None, *, tail: bool = True
) -> dict[int, PeriodStats]:
    """Per period number the exact statistics now (rollups plus the tail), of `metrics` (None: all);
    without `tail`, the rolled-up users only (what the rollup's own checks count).

    An assignment without a period (stored before the experiment was a bandit) counts in period 1.
    """
    horizon = _horizon(conn)
    touched = set(_tail_touched(conn, experiment.id, horizon)) if tail else set()
    touched_ids = sorted(user for (_, user) in touched)
    periods: dict[int, PeriodStats] = {}

    def period(number: int) -> PeriodStats:
        if number not in periods:
            periods[number] = PeriodStats(
                {v.id: ExposureTotals() for v in experiment.variants}, {v.id: {} for v in experiment.variants}
            )
        return periods[number]

    params = {"e": experiment.id, "touched": touched_ids, "metrics": metrics}
    for r in conn.execute(_ROLLED_UP_USERS, params):
        period(r["period"]).variants[r["variant_id"]] = ExposureTotals(int(r["exposures"]), int(r["users"]))
    for r in conn.execute(_ROLLED_UP_METRICS, params):
        period(r["period"]).metrics.setdefault(r["variant_id"], {})[r["metric_name"]] = MetricStats(
            int(r["count"]), float(r["sum"]), float(r["sum_squares"]), int(r["users"])
        )
    if touched:
        states, user_metrics = _recompute(conn, touched, None)
        numbers = {
            r["user_id"]: r["period"]
            for r in conn.execute(
                "SELECT user_id, COALESCE(bandit_period, 1) AS period FROM assignments"
                " WHERE experiment_id = %s AND user_id = ANY(%s)",
                (experiment.id, touched_ids),
            )
        }
        for (_, user), state in states.items():
            if state.exposures > 0 and user in numbers:
                totals = period(numbers[user]).variants.setdefault(state.variant_id, ExposureTotals())
                totals.add(ExposureTotals(state.exposures, 1))
        for (_, user, name), metric in user_metrics.items():
            found = states.get((experiment.id, user))
            if found is None or found.exposures == 0 or user not in numbers:
                continue
            if metrics is not None and name not in metrics:
                continue
            stats = period(numbers[user]).metrics.setdefault(metric.variant_id, {})
            stats.setdefault(name, MetricStats()).add(
                MetricStats(metric.count, metric.total, metric.total * metric.total, int(metric.count > 0))
            )
    return periods


def _period_row(row: dict[str, Any]) -> BanditPeriod:
    return BanditPeriod.model_validate(row)


_SELECT_PERIOD = (
    "SELECT number, started_at, ended_at, arms, period_users, p_best, weights_before, weights_after,"
    " outcome, error, trigger FROM bandit_periods"
)


def _require_bandit(experiment: Experiment) -> None:
    if not experiment.allocation.is_bandit or experiment.bandit is None:
        raise Conflict(
            "this experiment's allocation is fixed, not a bandit",
            code=ErrorCode.NOT_A_BANDIT,
            field="allocation.type",
        )


class BanditRepository:
    """Bandit reweights and the periods they close."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def reweight(
        self,
        experiment_id: UUID,
        *,
        actor: Actor = SYSTEM_ACTOR,
        trigger: Trigger = "api",
        period: int | None = None,
    ) -> tuple[BanditPeriod, bool]:
        """Close the open period (or `period`, if given and still open) and open the next one.

        Returns the closed period and whether this call closed it (False: a concurrent or earlier
        reweight had, and this is its stored row). 409 for a fixed allocation, an experiment that is
        not running or paused, or a `period` that is neither open nor closed.
        """

        def work(conn: Connection) -> tuple[BanditPeriod, bool]:
            seen = fetch_experiment(conn, experiment_id)
            _require_bandit(seen)
            assert seen.bandit is not None
            closing = period if period is not None else seen.bandit.period
            experiment = fetch_experiment(conn, experiment_id, lock=True)  # waits for a racing reweight
            assert experiment.bandit is not None
            if closing != experiment.bandit.period:
                row = conn.execute(
                    _SELECT_PERIOD + " WHERE experiment_id = %s AND number = %s", (experiment_id, closing)
                ).fetchone()
                if row is None:
                    raise Conflict(
                        f"period {closing} is not open (the open period is {experiment.bandit.period})",
                        code=ErrorCode.CONFLICT,
                        field="period",
                    )
                return _period_row(row), False
            if experiment.bandit.period > MAX_BANDIT_PERIODS:
                raise Conflict(
                    f"this bandit has closed {MAX_BANDIT_PERIODS} periods, the most one may: complete it",
                    code=ErrorCode.CONFLICT,
                    field="period",
                )
            if experiment.status not in HOLDING_BUCKETS or experiment.bandit.period_started_at is None:
                raise Conflict(
                    f"only a running or paused bandit is reweighted (this one is {experiment.status.value})",
                    code=ErrorCode.EXPERIMENT_NOT_RUNNING,
                    field="status",
                )
            return self._close(conn, experiment, actor, trigger), True

        return self._db.run(work)

    def _close(
        self, conn: Connection, experiment: Experiment, actor: Actor, trigger: Trigger
    ) -> BanditPeriod:
        allocation = experiment.allocation
        bandit = experiment.bandit
        assert bandit is not None
        assert bandit.period_started_at is not None
        assert allocation.metric is not None
        assert allocation.analysis is not None
        number = bandit.period
        by_period = period_stats(conn, experiment, [allocation.metric])
        periods = [
            arm_stats(experiment, by_period[t], allocation.metric, allocation.analysis)
            for t in range(1, number + 1)
            if t in by_period
        ]
        before = experiment.serving_weights()
        decision: PeriodDecision = decide(periods, before, allocation)
        this_period = by_period.get(number)
        period_users = [
            this_period.variants.get(v.id, ExposureTotals()).users if this_period else 0
            for v in experiment.variants
        ]
        row = conn.execute(
            "INSERT INTO bandit_periods (experiment_id, number, started_at, ended_at, arms, period_users,"
            " p_best, weights_before, weights_after, outcome, error, trigger)"
            " VALUES (%(e)s, %(n)s, %(start)s, now(), %(arms)s, %(users)s, %(p_best)s, %(before)s,"
            " %(after)s, %(outcome)s, %(error)s, %(trigger)s)"
            " RETURNING number, started_at, ended_at, arms, period_users, p_best, weights_before,"
            " weights_after, outcome, error, trigger",
            {
                "e": experiment.id,
                "n": number,
                "start": bandit.period_started_at,
                "arms": Jsonb(
                    [{"users": a.users, "sum": a.sum, "sum_squares": a.sum_squares} for a in decision.arms]
                )
                if decision.arms is not None
                else None,
                "users": Jsonb(period_users),
                "p_best": Jsonb(decision.p_best) if decision.p_best is not None else None,
                "before": Jsonb(before),
                "after": Jsonb(decision.weights_after),
                "outcome": decision.outcome,
                "error": decision.error,
                "trigger": trigger,
            },
        ).fetchone()
        assert row is not None
        conn.execute(
            "UPDATE experiments SET bandit_period = %(next)s, bandit_period_started_at = %(ended)s,"
            " bandit_weights = %(weights)s WHERE id = %(e)s",
            {
                "next": number + 1,
                "ended": row["ended_at"],
                "weights": Jsonb(decision.weights_after),
                "e": experiment.id,
            },
        )
        closed = _period_row(row)
        record(
            conn,
            AuditEntry(
                actor=actor,
                action="experiment.bandit_reweight",
                entity_type="experiment",
                entity_id=experiment.id,
                before={"bandit": {"period": number, "weights": before}},
                after={
                    "bandit": {"period": number + 1, "weights": decision.weights_after},
                    "outcome": decision.outcome,
                    "p_best": decision.p_best,
                    "trigger": trigger,
                },
            ),
        )
        return closed

    def periods(
        self, experiment_id: UUID, *, limit: int, after: int | None = None
    ) -> tuple[Experiment, list[BanditPeriod], BanditPeriod | None, bool]:
        """The experiment, its closed periods numbered above `after` (at most `limit`, in order), its
        latest closed period, and whether more periods follow. 404 for an unknown experiment, 409 for
        a fixed allocation."""

        def work(conn: Connection) -> tuple[Experiment, list[BanditPeriod], BanditPeriod | None, bool]:
            experiment = fetch_experiment(conn, experiment_id)
            _require_bandit(experiment)
            rows = conn.execute(
                _SELECT_PERIOD + " WHERE experiment_id = %s AND number > %s ORDER BY number LIMIT %s",
                (experiment_id, after or 0, limit + 1),
            ).fetchall()
            latest = conn.execute(
                _SELECT_PERIOD + " WHERE experiment_id = %s ORDER BY number DESC LIMIT 1", (experiment_id,)
            ).fetchone()
            page = [_period_row(r) for r in rows[:limit]]
            return experiment, page, _period_row(latest) if latest else None, len(rows) > limit

        return self._db.run(work, transaction=False)

    def latest_periods(self, experiment_id: UUID, limit: int) -> list[BanditPeriod]:
        """The experiment's latest `limit` closed periods, oldest first (the report's chart)."""
        rows = self._db.run(
            lambda conn: conn.execute(
                _SELECT_PERIOD + " WHERE experiment_id = %s ORDER BY number DESC LIMIT %s",
                (experiment_id, limit),
            ).fetchall(),
            transaction=False,
        )
        return [_period_row(r) for r in reversed(rows)]

    def allocation(self, experiment_id: UUID) -> PeriodAllocation:
        """Per period the exposed users of each arm and the weights in force (for a per-period SRM test).

        Periods without any user are left out. 404 for an unknown experiment, 409 for a fixed one.
        """

        def work(conn: Connection) -> PeriodAllocation:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            experiment = fetch_experiment(conn, experiment_id)
            _require_bandit(experiment)
            return period_allocation(conn, experiment, period_stats(conn, experiment, []))

        return self._db.run(work)

    def results_inputs(self, experiment_id: UUID) -> BanditInputs:
        """What a bandit's results need, in one snapshot: the pooled statistics (as /results reads
        them), the same per period, the weights of every closed period and the latest P(best)."""

        def work(conn: Connection) -> BanditInputs:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            experiment = fetch_experiment(conn, experiment_id)
            _require_bandit(experiment)
            pooled = _current(conn, experiment, _horizon(conn))
            rows = conn.execute(
                "SELECT number, weights_before, p_best FROM bandit_periods WHERE experiment_id = %s"
                " ORDER BY number",
                (experiment_id,),
            ).fetchall()
            return BanditInputs(
                pooled,
                period_stats(conn, experiment),
                {r["number"]: list(r["weights_before"]) for r in rows},
                list(rows[-1]["p_best"]) if rows and rows[-1]["p_best"] is not None else None,
            )

        return self._db.run(work)

    def srm_source(self) -> PeriodSource:
        """The rollup's sequential SRM input for running bandits (abtest.analysis.bandit_srm): their
        rolled-up users per period and the weights of each, read now; other experiments get None (the
        monitor's default: one period at the experiment's weights)."""

        def work(conn: Connection) -> dict[UUID, PeriodAllocation]:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            found = {}
            for row in conn.execute(
                "SELECT id FROM experiments WHERE bandit_period IS NOT NULL"
                f" AND status IN {statuses_sql(ENROLLING)}"
            ).fetchall():
                experiment = fetch_experiment(conn, row["id"])
                stats = period_stats(conn, experiment, [], tail=False)
                found[experiment.id] = period_allocation(conn, experiment, stats)
            return found

        allocations = self._db.run(work)

        def source(experiment: Experiment, previous: Monitor | None) -> list[SrmPeriod] | None:
            allocation = allocations.get(experiment.id)
            if allocation is None:
                return None
            ids = [v.id for v in experiment.variants]
            tested = (
                previous.variant_ids
                if previous is not None
                else tested_variants(ids, [v.weight for v in experiment.variants])
            )
            seen = previous.seen_users if previous is not None else None
            return srm_periods(ids, tested, allocation.period_users, allocation.period_weights, seen)

        return source

    def due(self) -> list[tuple[UUID, int]]:
        """Running bandits whose open period has lasted their period_hours, with that period's number
        (the scheduled rollup closes exactly it: a reweight that raced it closed it already)."""
        rows = self._db.run(
            lambda conn: conn.execute(
                "SELECT id, bandit_period FROM experiments WHERE bandit_period IS NOT NULL"
                f" AND bandit_period <= {MAX_BANDIT_PERIODS}"
                f" AND status IN {statuses_sql(ENROLLING)} AND allocation ->> 'type' = 'bandit'"
                " AND COALESCE(bandit_period_started_at, started_at)"
                "     + make_interval(secs => (allocation ->> 'period_hours')::float8 * 3600) <= now()"
                " ORDER BY id"
            ).fetchall(),
            transaction=False,
        )
        return [(r["id"], r["bandit_period"]) for r in rows]

    def running(self) -> list[UUID]:
        """Every running bandit (the rollup checks their SRM against Σ_t N_t · weight_(a,t))."""
        rows = self._db.run(
            lambda conn: conn.execute(
                "SELECT id FROM experiments WHERE bandit_period IS NOT NULL"
                f" AND status IN {statuses_sql(ENROLLING)} ORDER BY id"
            ).fetchall(),
            transaction=False,
        )
        return [r["id"] for r in rows]


def period_allocation(
    conn: Connection, experiment: Experiment, stats: dict[int, PeriodStats]
) -> PeriodAllocation:
    """The periods with users, each with its users per arm and the weights it was bucketed with."""
    weights = {
        r["number"]: list(r["weights_before"])
        for r in conn.execute(
            "SELECT number, weights_before FROM bandit_periods WHERE experiment_id = %s", (experiment.id,)
        )
    }
    current = experiment.serving_weights()
    numbers = sorted(t for t, s in stats.items() if any(v.users for v in s.variants.values()))
    return PeriodAllocation(
        experiment,
        numbers,
        [[stats[t].variants.get(v.id, ExposureTotals()).users for v in experiment.variants] for t in numbers],
        [weights.get(t, current) for t in numbers],
    )
