"""RollupFunction: on an EventBridge schedule, fold new events into the rollup tables."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from abtest.analysis.results import srm_alerts
from abtest.delivery.dispatch import alerts_tick
from abtest.observability import cloudwatch, logger, tracer
from abtest.settings import get_settings
from abtest.storage import RollupRepository
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
    run = repository.roll_up(statement_timeout_ms=get_settings().rollup_statement_timeout_ms)
    summary = {
        "previous_horizon": run.previous_horizon,
        "horizon": run.horizon,
        "users": run.users,
        "experiments": run.experiments,
        "failed_experiments": [str(experiment_id) for experiment_id in run.failed],
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
    # The alarm's metric counts the experiments the sequential test flags (valid at every look).
    tick = _alerts_tick()
    summary["alerts"] = tick
    flagged = tick.get("srm_flagged", [])
    if flagged:
        cloudwatch.add_metric(name="SrmDetected", unit=MetricUnit.Count, value=len(flagged))
    logger.info("rollup finished", extra=summary)
    return summary


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
