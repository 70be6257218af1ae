"""AssignmentsFunction: recommendations tagged with their variant, assignments, and read-only lookups."""

from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import unquote
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from abtest.api import API_PREFIX, create_app, documented, refuse
from abtest.assignment import Reason, experiment_variant_tag
from abtest.auth import Scope
from abtest.db import get_database
from abtest.models import RECOMMENDATIONS_SURFACE, Context, Surface, UserId
from abtest.observability import logger, metrics, tracer
from abtest.repository import AssignmentRepository
from abtest.serving import Assignment, Server
from abtest.settings import get_settings

app = create_app()

# Scope each route needs (the template's JWT authorizer declares the same; a test checks it).
ROUTE_SCOPES: dict[str, Scope] = {
    "POST /api/v1/recommendations": "ingest",
    "POST /api/v1/assignments": "ingest",
    "GET /api/v1/experiments/{experiment_id}/assignments/{user_id}": "read",
}


class RecommendationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    limit: int = Field(default=10, ge=1, le=100)
    context: Context | None = None
    surface: Surface = RECOMMENDATIONS_SURFACE


class RecommendedItem(BaseModel):
    item_id: str
    title: str
    score: float
    experiment_variant: str | None = Field(description='"experiment_name:variant_name"; null if not enrolled')


class RecommendationResponse(BaseModel):
    user_id: str
    experiment_id: UUID | None = Field(description="The experiment the user is enrolled in, if any")
    experiment_variant: str | None
    recommendations: list[RecommendedItem]
    degraded: bool = Field(description="true when served without the database (untagged, popularity)")


class AssignmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    experiment_id: UUID
    context: Context | None = None
    record_exposure: bool = True


class AssignedVariant(BaseModel):
    id: UUID
    name: str
    config: dict[str, Any]


class AssignmentResponse(BaseModel):
    experiment_id: UUID
    experiment_name: str
    user_id: str
    enrolled: bool
    reason: Reason
    variant: AssignedVariant | None
    experiment_variant: str | None
    new_assignment: bool
    exposure_recorded: bool


class StoredAssignmentResponse(BaseModel):
    experiment_id: UUID
    experiment_name: str
    user_id: str
    enrolled: bool
    variant: AssignedVariant | None
    experiment_variant: str | None


@lru_cache(maxsize=1)
def server() -> Server:
    settings = get_settings()
    return Server(
        AssignmentRepository(get_database()),
        experiment_ttl=settings.experiment_cache_ttl_seconds,
        catalog_ttl=settings.catalog_cache_ttl_seconds,
    )


def _count(assignment: Assignment | None) -> None:
    if assignment is None or assignment.variant is None:
        return
    metrics.add_metric(name="AssignmentServed", unit=MetricUnit.Count, value=1)
    if assignment.exposure_recorded:
        metrics.add_metric(name="ExposureRecorded", unit=MetricUnit.Count, value=1)


# The two hot routes carry no per-method trace subsegment (the handler's own subsegment covers them):
# each costs tens of microseconds even with tracing disabled (bench/README.md).
@app.post(f"{API_PREFIX}/recommendations", responses=documented(200, RecommendationResponse, 400, 415))
def recommendations(body: RecommendationRequest) -> RecommendationResponse:
    result = server().recommendations(body.user_id, body.limit, surface=body.surface, context=body.context)
    _count(result.assignment)
    enrolled = result.assignment if result.assignment is not None and result.assignment.variant else None
    tag = enrolled.tag if enrolled is not None else None
    experiment_id = enrolled.experiment.id if enrolled is not None else None
    logger.info(
        "recommendations served",
        extra={"experiment_id": str(experiment_id), "variant": tag, "degraded": result.degraded},
    )
    return RecommendationResponse(
        user_id=body.user_id,
        experiment_id=experiment_id,
        experiment_variant=tag,
        recommendations=[
            RecommendedItem(item_id=item.item_id, title=item.title, score=item.score, experiment_variant=tag)
            for item in result.items
        ],
        degraded=result.degraded,
    )


@app.post(f"{API_PREFIX}/assignments", responses=documented(200, AssignmentResponse, 400, 404, 415))
def assign(body: AssignmentRequest) -> AssignmentResponse:
    result = server().assign(
        body.experiment_id, body.user_id, context=body.context, record_exposure=body.record_exposure
    )
    _count(result)
    variant = result.variant
    return AssignmentResponse(
        experiment_id=result.experiment.id,
        experiment_name=result.experiment.name,
        user_id=body.user_id,
        enrolled=variant is not None,
        reason=result.reason,
        variant=AssignedVariant(id=variant.id, name=variant.name, config=variant.config) if variant else None,
        experiment_variant=result.tag,
        new_assignment=result.new_assignment,
        exposure_recorded=result.exposure_recorded,
    )


@app.get(
    f"{API_PREFIX}/experiments/<experiment_id>/assignments/<user_id>",
    responses=documented(200, StoredAssignmentResponse, 404),
)
@tracer.capture_method
def stored_assignment(
    experiment_id: Annotated[UUID, Path()],
    user_id: Annotated[str, Path(min_length=1, max_length=256)],
) -> StoredAssignmentResponse:
    # Path parameters arrive percent-encoded in the raw path ("user%40example.com").
    user_id = unquote(user_id)
    stored = AssignmentRepository(get_database()).stored_assignment(experiment_id, user_id)
    enrolled = stored.variant_id is not None and stored.variant_name is not None
    return StoredAssignmentResponse(
        experiment_id=experiment_id,
        experiment_name=stored.experiment_name,
        user_id=user_id,
        enrolled=enrolled,
        variant=AssignedVariant(
            id=stored.variant_id, name=stored.variant_name, config=stored.variant_config or {}
        )
        if stored.variant_id is not None and stored.variant_name is not None
        else None,
        experiment_variant=experiment_variant_tag(stored.experiment_name, stored.variant_name)
        if stored.variant_name is not None
        else None,
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return refuse(event, ROUTE_SCOPES) or app.resolve(event, context)
