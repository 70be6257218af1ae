"""EventsFunction: conversions (idempotent by event_id) and batches of exposures and conversions."""

from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from abtest.api import API_PREFIX, create_app, documented, refuse
from abtest.auth import Scope
from abtest.db import get_database
from abtest.errors import Conflict, InvalidInput
from abtest.models import BatchResult, Conversion, ConversionIn, EventBatch
from abtest.observability import logger, metrics, tracer
from abtest.repository import EventRepository

app = create_app()

# Scope each route needs (the template's JWT authorizer declares the same; a test checks it).
ROUTE_SCOPES: dict[str, Scope] = {
    "POST /api/v1/experiments/conversions": "ingest",
    "POST /api/v1/events": "ingest",
}


def events() -> EventRepository:
    return EventRepository(get_database())


@app.post(f"{API_PREFIX}/experiments/conversions", responses=documented(201, Conversion, 400, 404, 409, 415))
@tracer.capture_method
def record_conversion(body: ConversionIn) -> Response[Conversion]:
    try:
        recorded = events().record_conversion(body)
    except (InvalidInput, Conflict) as exc:
        metrics.add_metric(name="ConversionRejected", unit=MetricUnit.Count, value=1)
        logger.info(
            "conversion rejected", extra={"experiment_id": str(body.experiment_id), "reason": exc.code}
        )
        raise
    if not recorded.replayed:
        metrics.add_metric(name="ConversionRecorded", unit=MetricUnit.Count, value=1)
    logger.info(
        "conversion recorded",
        extra={
            "experiment_id": str(body.experiment_id),
            "metric": body.metric_name,
            "replayed": recorded.replayed,
        },
    )
    # A retried request gets the stored conversion with the same status: retries are safe to make.
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=recorded.conversion,
        headers={"Idempotent-Replayed": "true" if recorded.replayed else "false"},
    )


@app.post(f"{API_PREFIX}/events", responses=documented(200, BatchResult, 400, 415))
@tracer.capture_method
def record_events(body: EventBatch) -> BatchResult:
    results = events().record_batch(body.events)
    counts = {
        status: sum(r.status == status for r in results) for status in ("accepted", "duplicate", "rejected")
    }
    accepted_kinds: list[str] = [body.events[r.index].type for r in results if r.status == "accepted"]
    for kind, name in (("exposure", "ExposureRecorded"), ("conversion", "ConversionRecorded")):
        if count := accepted_kinds.count(kind):
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    rejected_conversions = sum(
        1 for r in results if r.status == "rejected" and body.events[r.index].type == "conversion"
    )
    if rejected_conversions:
        metrics.add_metric(name="ConversionRejected", unit=MetricUnit.Count, value=rejected_conversions)
    logger.info("event batch recorded", extra=counts)
    return BatchResult(
        accepted=counts["accepted"],
        duplicates=counts["duplicate"],
        rejected=counts["rejected"],
        results=results,
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return refuse(event, ROUTE_SCOPES) or app.resolve(event, context)
