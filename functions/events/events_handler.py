"""EventsFunction: conversions (idempotent by event_id) and batches of exposures and conversions.

With INGEST_MODE=buffered both routes queue what they accept and answer 202 (abtest.ingest.door)."""

from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.metrics import MetricUnit

from abtest import wiring
from abtest.domain.events import BatchResult, Conversion, ConversionIn, EventBatch
from abtest.errors import Conflict, InvalidInput
from abtest.http.app import API_PREFIX, create_app, documented, hot_route
from abtest.http.entrypoint import entrypoint
from abtest.http.scopes import Scope
from abtest.ingest import door
from abtest.ingest.messages import QueuedBatch, QueuedConversion
from abtest.observability import cloudwatch, logger, tracer

app = create_app()

# Scope each route needs (the template's JWT authorizer declares the same; a test checks it).
ROUTE_SCOPES: dict[str, Scope] = {
    "POST /api/v1/experiments/conversions": "ingest",
    "POST /api/v1/events": "ingest",
    "GET /api/v1/events/outcome": "ingest",
}


def _queued(status: int, model: type) -> dict[int, Any]:
    """The 202 answer of buffered ingestion, next to a route's documented answers."""
    return {
        status: {
            "description": "Queued (INGEST_MODE=buffered)",
            "content": {"application/json": {"model": model}},
        }
    }


@app.post(
    f"{API_PREFIX}/experiments/conversions",
    responses=documented(201, Conversion, 400, 404, 409, 415) | _queued(202, QueuedConversion),
)
@hot_route
@tracer.capture_method(capture_response=False)
def record_conversion(body: ConversionIn) -> Response[Conversion | QueuedConversion]:
    if door.buffered():
        return Response(
            status_code=202, content_type=content_types.APPLICATION_JSON, body=door.queue_conversion(body)
        )
    try:
        recorded = wiring.events().record_conversion(body)
    except (InvalidInput, Conflict) as exc:
        cloudwatch.add_metric(name="ConversionRejected", unit=MetricUnit.Count, value=1)
        logger.info(
            "conversion rejected", extra={"experiment_id": str(body.experiment_id), "reason": exc.code}
        )
        raise
    if not recorded.replayed:
        cloudwatch.add_metric(name="ConversionRecorded", unit=MetricUnit.Count, value=1)
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


@app.post(
    f"{API_PREFIX}/events", responses=documented(200, BatchResult, 400, 415) | _queued(202, QueuedBatch)
)
@hot_route
@tracer.capture_method(capture_response=False)
def record_events(body: EventBatch) -> Response[BatchResult | QueuedBatch]:
    if door.buffered():
        return Response(
            status_code=202, content_type=content_types.APPLICATION_JSON, body=door.queue_batch(body.events)
        )
    results = wiring.events().record_batch(body.events)
    counts = {
        status: sum(r.status == status for r in results) for status in ("accepted", "duplicate", "rejected")
    }
    accepted_kinds: list[str] = [body.events[r.index].type for r in results if r.status == "accepted"]
    for kind, name in (("exposure", "ExposureRecorded"), ("conversion", "ConversionRecorded")):
        if count := accepted_kinds.count(kind):
            cloudwatch.add_metric(name=name, unit=MetricUnit.Count, value=count)
    rejected_conversions = sum(
        1 for r in results if r.status == "rejected" and body.events[r.index].type == "conversion"
    )
    if rejected_conversions:
        cloudwatch.add_metric(name="ConversionRejected", unit=MetricUnit.Count, value=rejected_conversions)
    logger.info("event batch recorded", extra=counts)
    result = BatchResult(
        accepted=counts["accepted"],
        duplicates=counts["duplicate"],
        rejected=counts["rejected"],
        results=results,
    )
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=result)


@app.get(f"{API_PREFIX}/events/outcome", responses=documented(200, door.EventOutcomes, 404))
@tracer.capture_method(capture_response=False)
def event_outcome(
    experiment_id: Annotated[UUID, Query(description="The event's experiment")],
    event_id: Annotated[str, Query(min_length=1, max_length=128, description="The event id (queued)")],
) -> door.EventOutcomes:
    """What the writer decided for an event queued by buffered ingestion."""
    return door.outcomes(experiment_id, event_id)


lambda_handler = entrypoint(app, ROUTE_SCOPES)
