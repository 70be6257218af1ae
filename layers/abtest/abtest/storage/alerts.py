"""Alerts' storage: the rollup's evaluation (monitor, conditions, alerts, outbox and history entries in
one transaction), the alerts listing, and the relay's side of the outbox.

`evaluate` runs after each rollup: for every running experiment it checks the sequential SRM
(abtest.analysis.srm_monitor), the failed rollups, the exposures' recency and the results (decision,
guardrails, significance), and stores each alert that a transition raises together with its outbox row
and an `alert.<kind>` entry in the experiment's history, all in one transaction: an alert is either
stored with everything that hands it on, or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from abtest.analysis.results import ExperimentResults, results_report, srm_verdict
from abtest.analysis.roles import analyse_roles
from abtest.analysis.rollup import VariantMetrics
from abtest.analysis.srm_monitor import Monitor, SrmPeriod, check
from abtest.domain.alerts import (
    Alert,
    AlertKind,
    Condition,
    NewAlert,
    StoredCondition,
    decision_of,
    guardrail_breaches,
    transitions,
)
from abtest.domain.audit import SYSTEM_ACTOR, AuditEntry
from abtest.domain.digests import HEALTH_KINDS, Digest, DigestExperiment, headline
from abtest.domain.experiments import Experiment
from abtest.domain.lifecycle import ENROLLING
from abtest.domain.paging import Listing, decode_cursor, encode_cursor
from abtest.limits import MAX_DIGEST_ALERTS, MAX_DIGEST_EXPERIMENTS
from abtest.observability import logger
from abtest.storage.audit import AuditWriteFailed, record
from abtest.storage.database import Connection, Database
from abtest.storage.defined_rollups import kept_definitions
from abtest.storage.experiments import fetch_running, statuses_sql
from abtest.storage.metric_definitions import role_inputs
from abtest.storage.rollups import _rolled_up

_EVALUATION_LOCK = 7_412_039_553
_COLUMNS = "a.id, a.kind, a.experiment_id, e.name AS experiment_name, a.subject, a.evidence, a.created_at"
_FROM = "alerts a LEFT JOIN experiments e ON e.id = a.experiment_id"

# Bandits (issue 21) give the periods of a check: experiment -> periods since the last check.
PeriodSource = Callable[[Experiment, Monitor | None], Sequence[SrmPeriod] | None]


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation stored: the new alerts, and every running experiment whose sequential SRM
    p-value is below the threshold now (the SrmDetected metric counts them at every tick)."""

    alerts: list[Alert]
    srm_flagged: list[UUID]


@dataclass(frozen=True)
class EvaluationSettings:
    srm_threshold: float = 0.001
    no_exposures_hours: float = 24.0


def _alert(row: dict[str, Any]) -> Alert:
    return Alert.model_validate(row)


def conditions_of(
    experiment: Experiment,
    monitor: Monitor,
    results: ExperimentResults | None,
    *,
    failed_rollup: dict[str, Any] | None,
    now: datetime,
    settings: EvaluationSettings,
) -> list[Condition]:
    """Every condition of a running experiment as it stands now."""
    conditions = []
    p = monitor.sequential_p
    users = list(monitor.seen_users)
    conditions.append(
        Condition(
            AlertKind.SRM_DETECTED,
            "",
            p is not None and p < settings.srm_threshold,
            {
                "sequential_p": p,
                "threshold": settings.srm_threshold,
                "chi2_p": monitor.chi2_p,
                "users": dict(zip((str(v) for v in monitor.variant_ids), users, strict=True)),
                "checks": None if monitor.srm is None else monitor.srm.checks,
            },
        )
    )
    conditions.append(
        Condition(
            AlertKind.EXPERIMENT_FAILED_ROLLUP, "", failed_rollup is not None, dict(failed_rollup or {})
        )
    )
    since = monitor.last_exposure_at or experiment.started_at
    silent = since is not None and now - since >= timedelta(hours=settings.no_exposures_hours)
    conditions.append(
        Condition(
            AlertKind.NO_EXPOSURES,
            "",
            silent,
            {
                "hours": settings.no_exposures_hours,
                "last_exposure_at": None
                if monitor.last_exposure_at is None
                else monitor.last_exposure_at.isoformat(),
                "exposures": monitor.seen_exposures,
            },
        )
    )
    if results is None:
        return conditions
    decision, full = decision_of(results)
    if decision is not None:
        conditions.append(Condition(AlertKind.DECISION_CHANGED, "", True, {"decision": full}, value=decision))
    else:
        for name, metric in results.metrics.items():
            significant = [
                {
                    "variant": results.variants[c.treatment_index].name,
                    "analysis": kind,
                    "sequential_p": c.sequential_relative.p_value,
                    "lift": c.relative.estimate,
                }
                for kind, analysis in (("conversion", metric.conversion), ("value", metric.value))
                for c in analysis.comparisons
                if c.sequential_relative.p_value is not None and c.sequential_relative.p_value < results.alpha
            ]
            conditions.append(
                Condition(
                    AlertKind.SIGNIFICANCE_REACHED,
                    name,
                    bool(significant),
                    {"metric": name, "alpha": results.alpha, "comparisons": significant},
                )
            )
    breached = {str(item.get("metric", "")): item for item in guardrail_breaches(results)}
    for name, item in breached.items():
        conditions.append(Condition(AlertKind.GUARDRAIL_BREACHED, name, True, {"guardrail": item}))
    return conditions


class AlertRepository:
    """Alert evaluation (after each rollup), the listing, and the outbox."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def evaluate(
        self,
        now: datetime,
        settings: EvaluationSettings | None = None,
        periods: PeriodSource | None = None,
    ) -> Evaluation:
        """Check every running experiment once; store and return the alerts that transitions raised."""
        settings = settings or EvaluationSettings()
        flagged: list[UUID] = []

        def work(conn: Connection) -> list[Alert]:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_EVALUATION_LOCK,))
            experiments = fetch_running(conn)
            ids = [e.id for e in experiments]
            totals: dict[UUID, tuple[int, int]] = {
                r["variant_id"]: (r["users"], r["exposures"])
                for r in conn.execute(
                    "SELECT r.variant_id, r.users, r.exposures FROM rollup_variants r JOIN experiments e"
                    f" ON e.id = r.experiment_id WHERE e.status IN {statuses_sql(ENROLLING)}"
                )
            }
            conversions: dict[UUID, int] = {
                r["experiment_id"]: int(r["n"])
                for r in conn.execute(
                    "SELECT m.experiment_id, sum(m.count)::bigint AS n FROM rollup_metrics m"
                    " WHERE m.experiment_id = ANY(%s) GROUP BY m.experiment_id",
                    (ids,),
                )
            }
            monitors = {
                r["experiment_id"]: Monitor.from_row(r)
                for r in conn.execute(
                    "SELECT * FROM experiment_monitor WHERE experiment_id = ANY(%s)", (ids,)
                )
            }
            pending = conn.execute(
                "SELECT experiment_id, failures, error, failed_at FROM rollup_failures"
                " WHERE experiment_id = ANY(%s)",
                (ids,),
            ).fetchall()
            failures = {
                r["experiment_id"]: {
                    "failures": r["failures"],
                    "error": r["error"],
                    "failed_at": r["failed_at"].isoformat(),
                }
                for r in pending
                if r["failures"] > 0  # 0: deferred or restarted, not a failure
            }
            # The rollups of a pending experiment are partial (a failure, a rebuild under way): its
            # results are not judged from them, and their conditions stay as stored until it is done.
            partial = {r["experiment_id"] for r in pending}
            stored: dict[UUID, dict[tuple[str, str], StoredCondition]] = {}
            for r in conn.execute(
                "SELECT experiment_id, kind, subject, active, value FROM alert_conditions"
                " WHERE experiment_id = ANY(%s)",
                (ids,),
            ):
                stored.setdefault(r["experiment_id"], {})[(r["kind"], r["subject"])] = StoredCondition(
                    r["active"], r["value"]
                )
            raised: list[Alert] = []
            for experiment in experiments:
                # A savepoint each: one experiment that cannot be evaluated (its data refused by the
                # database) is logged and skipped; the others' alerts are stored.
                try:
                    with conn.transaction():
                        raised.extend(
                            self._evaluate_one(
                                conn,
                                experiment,
                                totals,
                                conversions.get(experiment.id, 0),
                                monitors.get(experiment.id),
                                failures.get(experiment.id),
                                stored.get(experiment.id, {}),
                                now,
                                settings,
                                periods,
                                flagged,
                                partial=experiment.id in partial,
                            )
                        )
                except (psycopg.errors.DataError, AuditWriteFailed) as exc:
                    logger.error(
                        "alert evaluation of an experiment failed",
                        extra={"experiment_id": str(experiment.id), "error": type(exc).__name__},
                    )
            return raised

        return Evaluation(self._db.run(work), flagged)

    @staticmethod
    def _evaluate_one(
        conn: Connection,
        experiment: Experiment,
        totals: dict[UUID, tuple[int, int]],
        conversions: int,
        previous: Monitor | None,
        failed_rollup: dict[str, Any] | None,
        stored: dict[tuple[str, str], StoredCondition],
        now: datetime,
        settings: EvaluationSettings,
        periods: PeriodSource | None,
        flagged: list[UUID],
        *,
        partial: bool = False,
    ) -> list[Alert]:
        variant_ids = [v.id for v in experiment.variants]
        weights = [v.weight for v in experiment.variants]
        users = [totals.get(v, (0, 0))[0] for v in variant_ids]
        exposures = sum(totals.get(v, (0, 0))[1] for v in variant_ids)
        chi2 = srm_verdict(users, weights).p_value
        # A bandit's shares move: tested against its stored weights it would look mismatched. Until its
        # periods are given (`periods`), it gets no sequential SRM check here (the rollup checks it
        # against each period's weights), and its pooled statistics are not analysed for alerts.
        bandit = experiment.allocation.is_bandit
        given = None if periods is None else periods(experiment, previous)
        if bandit and given is None:
            given = []
        try:
            monitor = check(
                previous,
                variant_ids=variant_ids,
                weights=weights,
                users=users,
                exposures=exposures,
                chi2_p=chi2,
                now=now,
                periods=given,
            )
        except ValueError as exc:  # unusable shares from a period source: keep the last state
            logger.error(
                "sequential SRM check skipped", extra={"experiment_id": str(experiment.id), "error": str(exc)}
            )
            return []
        # The results are analysed again only when their statistics moved (users, exposures or
        # attributed conversions): unchanged statistics cannot change a decision or a significance.
        moved = previous is None or (
            monitor.seen_users,
            monitor.seen_exposures,
            conversions,
        ) != (previous.seen_users, previous.seen_exposures, previous.seen_conversions)
        monitor = replace(monitor, seen_conversions=conversions)
        if monitor.sequential_p is not None and monitor.sequential_p < settings.srm_threshold:
            flagged.append(experiment.id)
        row = monitor.to_row()
        conn.execute(
            "INSERT INTO experiment_monitor (experiment_id, variant_ids, srm_state, seen_users,"
            " seen_exposures, chi2_p, last_exposure_at, checked_at, seen_conversions)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (experiment_id) DO UPDATE SET srm_state = EXCLUDED.srm_state,"
            " seen_users = EXCLUDED.seen_users, seen_exposures = EXCLUDED.seen_exposures,"
            " chi2_p = EXCLUDED.chi2_p, last_exposure_at = EXCLUDED.last_exposure_at,"
            " checked_at = EXCLUDED.checked_at, seen_conversions = EXCLUDED.seen_conversions",
            (
                experiment.id,
                row["variant_ids"],
                None if row["srm_state"] is None else Jsonb(row["srm_state"]),
                row["seen_users"],
                row["seen_exposures"],
                row["chi2_p"],
                row["last_exposure_at"],
                now,
                conversions,
            ),
        )
        if monitor.sequential_p is not None:
            conn.execute(
                "INSERT INTO srm_daily (experiment_id, day, sequential_p, chi2_p) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (experiment_id, day) DO UPDATE"
                " SET sequential_p = EXCLUDED.sequential_p, chi2_p = EXCLUDED.chi2_p",
                (experiment.id, now.date(), monitor.sequential_p, chi2),
            )
        results = None
        if moved and sum(users) > 0 and not bandit and not partial:
            try:
                rolled = _rolled_up(conn, experiment, kept_definitions(conn, experiment.id))
                results = _with_decision(conn, results_report(rolled), rolled)
            except (ArithmeticError, ValueError) as exc:
                logger.warning(
                    "results not evaluated for alerts",
                    extra={"experiment_id": str(experiment.id), "error": type(exc).__name__},
                )
        conditions = conditions_of(
            experiment, monitor, results, failed_rollup=failed_rollup, now=now, settings=settings
        )
        new_alerts = transitions(experiment.id, conditions, stored)
        for condition in conditions:
            before = stored.get((condition.kind.value, condition.subject))
            if before is not None and (before.active, before.value) == (condition.active, condition.value):
                continue  # unchanged: nothing to write
            conn.execute(
                "INSERT INTO alert_conditions (experiment_id, kind, subject, active, value, changed_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (experiment_id, kind, subject) DO UPDATE"
                " SET active = EXCLUDED.active, value = EXCLUDED.value, changed_at = CASE"
                "  WHEN alert_conditions.active IS DISTINCT FROM EXCLUDED.active"
                "   OR alert_conditions.value IS DISTINCT FROM EXCLUDED.value"
                "  THEN EXCLUDED.changed_at ELSE alert_conditions.changed_at END",
                (
                    experiment.id,
                    condition.kind.value,
                    condition.subject,
                    condition.active,
                    None if condition.value is None else Jsonb(condition.value),
                    now,
                ),
            )
        return [store_alert(conn, alert, experiment.name) for alert in new_alerts]

    def page(
        self,
        *,
        experiment_id: UUID | None = None,
        kind: AlertKind | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Listing[Alert]:
        """Alerts newest first, filtered by experiment and kind."""
        conditions: list[str] = []
        params: list[Any] = []
        if experiment_id is not None:
            conditions.append("a.experiment_id = %s")
            params.append(experiment_id)
        if kind is not None:
            conditions.append("a.kind = %s")
            params.append(kind.value)
        if cursor is not None:
            conditions.append("(a.created_at, a.id) < (%s, %s)")
            params.extend(decode_cursor(cursor, datetime, UUID))
        where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
        query = f"SELECT {_COLUMNS} FROM {_FROM}{where} ORDER BY a.created_at DESC, a.id DESC LIMIT %s"

        def work(conn: Connection) -> Listing[Alert]:
            rows = conn.execute(query.encode(), [*params, limit + 1]).fetchall()
            alerts = [_alert(r) for r in rows[:limit]]
            more = len(rows) > limit
            return Listing(alerts, encode_cursor(alerts[-1].created_at, alerts[-1].id) if more else None)

        return self._db.run(work, transaction=False)

    def monitor(self, experiment_id: UUID) -> Monitor | None:
        """The experiment's monitor as of the last rollup (None before its first check)."""
        row = self._db.run(
            lambda conn: conn.execute(
                "SELECT * FROM experiment_monitor WHERE experiment_id = %s", (experiment_id,)
            ).fetchone(),
            transaction=False,
        )
        return None if row is None else Monitor.from_row(row)

    def srm_by_day(self, experiment_id: UUID) -> dict[Any, tuple[float, float | None]]:
        """Sequential and chi-squared SRM p-values at each day's last check."""
        rows = self._db.run(
            lambda conn: conn.execute(
                "SELECT day, sequential_p, chi2_p FROM srm_daily WHERE experiment_id = %s", (experiment_id,)
            ).fetchall(),
            transaction=False,
        )
        return {r["day"]: (r["sequential_p"], r["chi2_p"]) for r in rows}

    def digest(self, since: datetime, now: datetime) -> Digest:
        """The digest of the period [since, now]: running experiments (newest started first, bounded)
        with users, headline, health and alerts, and the period's alerts."""

        def work(conn: Connection) -> Digest:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            rows = conn.execute(
                "SELECT e.id, e.name, e.status, e.started_at,"
                " (SELECT coalesce(sum(users), 0)::bigint FROM rollup_variants r"
                "  WHERE r.experiment_id = e.id)"
                "  AS users,"
                " (SELECT (m.srm_state ->> 'p_value')::float8 FROM experiment_monitor m"
                "  WHERE m.experiment_id = e.id) AS sequential_p,"
                " (SELECT count(*)::int FROM alerts a WHERE a.experiment_id = e.id AND a.created_at >= %s)"
                "  AS alerts"
                f" FROM experiments e WHERE e.status IN {statuses_sql(ENROLLING)}"
                " ORDER BY e.started_at DESC NULLS LAST, e.id LIMIT %s".encode(),
                (since, MAX_DIGEST_EXPERIMENTS + 1),
            ).fetchall()
            ids = [r["id"] for r in rows[:MAX_DIGEST_EXPERIMENTS]]
            active: dict[UUID, list[tuple[str, str, Any]]] = {}
            for r in conn.execute(
                "SELECT experiment_id, kind, subject, value FROM alert_conditions"
                " WHERE experiment_id = ANY(%s) AND (active OR value IS NOT NULL)",
                (ids,),
            ):
                active.setdefault(r["experiment_id"], []).append((r["kind"], r["subject"], r["value"]))
            experiments = []
            for r in rows[:MAX_DIGEST_EXPERIMENTS]:
                held = active.get(r["id"], [])
                decision = next(
                    (value for kind, _, value in held if kind == AlertKind.DECISION_CHANGED), None
                )
                significant = [subject for kind, subject, _ in held if kind == AlertKind.SIGNIFICANCE_REACHED]
                started = r["started_at"]
                experiments.append(
                    DigestExperiment(
                        id=r["id"],
                        name=r["name"],
                        status=r["status"],
                        days_running=None
                        if started is None
                        else round((now - started).total_seconds() / 86400, 1),
                        users=r["users"],
                        headline=headline(decision, significant),
                        health=sorted({kind for kind, _, _ in held if kind in HEALTH_KINDS}),
                        sequential_srm_p_value=r["sequential_p"],
                        alerts=r["alerts"],
                    )
                )
            alert_rows = conn.execute(
                f"SELECT {_COLUMNS} FROM {_FROM} WHERE a.created_at >= %s AND a.created_at <= %s"
                " ORDER BY a.created_at DESC, a.id DESC LIMIT %s".encode(),
                (since, now, MAX_DIGEST_ALERTS),
            ).fetchall()
            counts = {
                r["kind"]: r["n"]
                for r in conn.execute(
                    "SELECT kind, count(*)::int AS n FROM alerts WHERE created_at >= %s AND created_at <= %s"
                    " GROUP BY kind",
                    (since, now),
                )
            }
            return Digest(
                period_start=since,
                period_end=now,
                experiments=experiments,
                experiments_truncated=len(rows) > MAX_DIGEST_EXPERIMENTS,
                alert_counts=counts,
                alerts=[_alert(r) for r in alert_rows],
            )

        return self._db.run(work)


def _with_decision(conn: Connection, results: ExperimentResults, rolled: VariantMetrics) -> ExperimentResults:
    """The results with the analysis by role and its `decision` (issue 22) when the experiment names
    metric definitions, so `decision_changed` can fire; unchanged otherwise."""
    roles = rolled.experiment.metrics
    if roles is None or not roles.names():
        return results
    inputs = role_inputs(conn, rolled.experiment, rolled)
    if inputs is None:
        return results
    return results.with_roles(analyse_roles(inputs, srm_flag=results.srm.flag))


def store_alert(conn: Connection, alert: NewAlert, experiment_name: str | None) -> Alert:
    """Store an alert, its outbox row and its history entry in the transaction open on `conn`."""
    alert_id = uuid.uuid4()
    row = conn.execute(
        "INSERT INTO alerts (id, experiment_id, kind, subject, evidence) VALUES (%s, %s, %s, %s, %s)"
        " RETURNING created_at",
        (alert_id, alert.experiment_id, alert.kind.value, alert.subject, Jsonb(alert.evidence)),
    ).fetchone()
    assert row is not None
    conn.execute("INSERT INTO alert_outbox (alert_id) VALUES (%s)", (alert_id,))
    stored = Alert(
        id=alert_id,
        kind=alert.kind,
        experiment_id=alert.experiment_id,
        experiment_name=experiment_name,
        subject=alert.subject,
        evidence=alert.evidence,
        created_at=row["created_at"],
    )
    record(
        conn,
        AuditEntry(
            actor=SYSTEM_ACTOR,
            action=f"alert.{alert.kind.value}",
            entity_type="alert",
            entity_id=str(alert_id),
            parent_type="experiment",
            parent_id=str(alert.experiment_id),
            after=stored.model_dump(mode="json"),
        ),
    )
    return stored


class OutboxRepository:
    """The relay's side of the outbox: alerts not handed on yet, and marking them handed on."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def unrelayed(self, limit: int) -> list[Alert]:
        """Alerts whose outbox row was not relayed yet, oldest first."""
        rows = self._db.run(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM alert_outbox o JOIN {_FROM} ON a.id = o.alert_id"
                " WHERE o.relayed_at IS NULL ORDER BY o.created_at, o.alert_id LIMIT %s".encode(),
                (limit,),
            ).fetchall(),
            transaction=False,
        )
        return [_alert(r) for r in rows]

    def mark_relayed(self, alert_ids: Sequence[UUID]) -> None:
        if not alert_ids:
            return
        self._db.run(
            lambda conn: conn.execute(
                "UPDATE alert_outbox SET relayed_at = clock_timestamp()"
                " WHERE alert_id = ANY(%s) AND relayed_at IS NULL",
                (list(alert_ids),),
            )
        )
