"""RollupFunction: on an EventBridge schedule, fold new events into the rollup tables."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from abtest.analysis.results import srm_alerts
from abtest.delivery.dispatch import alerts_tick
from abtest.domain.bandit_reweight import bandit_srm
from abtest.errors import DomainError
from abtest.observability import cloudwatch, logger, tracer
from abtest.settings import get_settings
from abtest.storage import BanditRepository, RollupRepository
from abtest.storage.database import get_database


@logger.inject_lambda_context
@cloudwatch.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run one rollup (which also records the daily snapshots of the experiments it touches), then
    check every running experiment for a sample ratio mismatch and evaluate the alerts.

    Safe to run twice or concurrently: runs serialise and never double count.
    """
    repository = RollupRepository(get_database())
    settings = get_settings()
    run = repository.roll_up(
        statement_timeout_ms=settings.rollup_statement_timeout_ms,
        budget_seconds=settings.rollup_budget_seconds,
    )
    summary = {
        "previous_horizon": run.previous_horizon,
        "horizon": run.horizon,
        "users": run.users,
        "experiments": run.experiments,
        "failed_experiments": [str(experiment_id) for experiment_id in run.failed],
        "deferred_experiments": [str(experiment_id) for experiment_id in run.deferred],
        "snapshot_days": run.snapshot_days,
        "seconds": round(run.seconds, 3),
        "scheduled_at": event.get("time"),
    }
    cloudwatch.add_metric(name="RollupRun", unit=MetricUnit.Count, value=1)
    if run.failed:
        # Each is logged by the repository; their events stay pending, the rest were folded.
        cloudwatch.add_metric(name="RollupExperimentFailed", unit=MetricUnit.Count, value=len(run.failed))
    # The chi-squared check of this rollup's totals: logged and listed (srm_detected), as before.
    alerts = srm_alerts(repository.running_allocations())
    for alert in alerts:
        logger.warning(
            "sample ratio mismatch",
            extra={"experiment_id": str(alert.experiment_id), "p_value": alert.p_value, "users": alert.users},
        )
    summary["srm_detected"] = [str(alert.experiment_id) for alert in alerts]
    summary.update(_bandits())
    # The alarm's metric counts the experiments the sequential test flags (valid at every look).
    tick = _alerts_tick()
    summary["alerts"] = tick
    flagged = tick.get("srm_flagged", [])
    if flagged:
        cloudwatch.add_metric(name="SrmDetected", unit=MetricUnit.Count, value=len(flagged))
    logger.info("rollup finished", extra=summary)
    return summary


def _bandits() -> dict[str, Any]:
    """Close every bandit period that has lasted its period_hours, then check every running bandit's
    users against the weights each period had (a bandit's weights move: the fixed check would flag it)."""
    bandits = BanditRepository(get_database())
    closed = []
    for experiment_id, period in bandits.due():
        try:
            row, created = bandits.reweight(experiment_id, trigger="schedule", period=period)
        except DomainError as exc:  # completed or edited in between: nothing to close
            logger.info(
                "bandit reweight skipped", extra={"experiment_id": str(experiment_id), "error": exc.code}
            )
            continue
        if created:
            closed.append({"experiment_id": str(experiment_id), "period": row.number, "outcome": row.outcome})
    flagged = []
    for experiment_id in bandits.running():
        allocation = bandits.allocation(experiment_id)
        users = [
            sum(counts[a] for counts in allocation.period_users)
            for a in range(len(allocation.experiment.variants))
        ]
        verdict = bandit_srm(users, allocation.period_users, allocation.period_weights)
        if verdict is not None and verdict.flag:
            logger.warning(
                "sample ratio mismatch in a bandit",
                extra={"experiment_id": str(experiment_id), "p_value": verdict.p_value, "users": users},
            )
            flagged.append(str(experiment_id))
    if flagged:
        cloudwatch.add_metric(name="SrmDetected", unit=MetricUnit.Count, value=len(flagged))
    return {"bandit_periods_closed": closed, "bandit_srm_detected": flagged}


def _alerts_tick() -> dict[str, Any]:
    """Alerts after the rollup (sequential SRM, transitions, digests, relay: abtest.delivery.dispatch).

    The rollup is committed by now; a failure here is logged and counted, and the next tick retries
    (the monitor and the outbox are only written in the evaluation's own transaction)."""
    try:
        return alerts_tick(get_settings(), get_database())
    except Exception:
        logger.exception("alert evaluation failed; the next tick retries")
        cloudwatch.add_metric(name="AlertTickFailed", unit=MetricUnit.Count, value=1)
        return {"failed": True}
