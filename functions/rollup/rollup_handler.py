"""RollupFunction: on an EventBridge schedule, fold new events into the rollup tables."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from abtest.analysis.results import srm_verdict
from abtest.observability import cloudwatch, logger, tracer
from abtest.settings import get_settings
from abtest.storage import RollupRepository
from abtest.storage.database import get_database


@logger.inject_lambda_context
@cloudwatch.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run one rollup (which also records the daily snapshots of the experiments it touches), then
    check every running experiment for a sample ratio mismatch.

    Safe to run twice or concurrently: runs serialise and never double count.
    """
    repository = RollupRepository(get_database())
    run = repository.roll_up(statement_timeout_ms=get_settings().rollup_statement_timeout_ms)
    summary = {
        "previous_horizon": run.previous_horizon,
        "horizon": run.horizon,
        "exposure_groups": run.exposure_groups,
        "conversion_groups": run.conversion_groups,
        "snapshot_days": run.snapshot_days,
        "seconds": round(run.seconds, 3),
        "scheduled_at": event.get("time"),
    }
    cloudwatch.add_metric(name="RollupRun", unit=MetricUnit.Count, value=1)
    mismatched = []
    for experiment, users in repository.running_allocations():
        verdict = srm_verdict(users, [variant.weight for variant in experiment.variants])
        if verdict.flag:
            mismatched.append(str(experiment.id))
            logger.warning(
                "sample ratio mismatch",
                extra={"experiment_id": str(experiment.id), "p_value": verdict.p_value, "users": users},
            )
    if mismatched:
        cloudwatch.add_metric(name="SrmDetected", unit=MetricUnit.Count, value=len(mismatched))
    summary["srm_detected"] = mismatched
    logger.info("rollup finished", extra=summary)
    return summary
