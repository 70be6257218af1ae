"""AssignmentsFunction: recommendations tagged with their variant, assignments, and read-only lookups."""

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.metrics import MetricUnit

import ofrep_routes
from abtest import wiring
from abtest.domain.assignment import AssignedVariant, Reason, experiment_variant_tag
from abtest.domain.experiments import SURFACE_PATTERN
from abtest.domain.served import Assignment
from abtest.http.app import API_PREFIX, create_app, documented, hot_route
from abtest.http.entrypoint import entrypoint
from abtest.http.path_params import PathUserId
from abtest.http.schemas import (
    AssignmentRequest,
    AssignmentResponse,
    RecommendationRequest,
    RecommendationResponse,
    RecommendedItem,
    StoredAssignmentResponse,
    SurfaceAssignmentResponse,
)
from abtest.http.scopes import Scope
from abtest.observability import cloudwatch, logger, tracer
from ofrep_routes import refuse_ofrep
from ofrep_routes import router as ofrep_router

app = create_app()

# Scope each route needs (the template's JWT authorizer declares the same; a test checks it).
ROUTE_SCOPES: dict[str, Scope] = {
    "POST /api/v1/recommendations": "ingest",
    "POST /api/v1/assignments": "ingest",
    "GET /api/v1/experiments/{experiment_id}/assignments/{user_id}": "read",
    "GET /api/v1/surfaces/{surface}/assignments/{user_id}": "read",
}


def _count(assignment: Assignment | None) -> None:
    if assignment is not None and assignment.reason == Reason.CONFIG_INVALID:
        # A stored config that fails its surface's current schema: control's config (or defaults) served.
        cloudwatch.add_metric(name="ConfigInvalidServed", unit=MetricUnit.Count, value=1)
    if assignment is None or assignment.variant is None:
        return
    if assignment.source == "override":  # forced users are counted apart, as they are analysed apart
        cloudwatch.add_metric(name="OverrideServed", unit=MetricUnit.Count, value=1)
        return
    cloudwatch.add_metric(name="AssignmentServed", unit=MetricUnit.Count, value=1)
    if assignment.exposure_recorded:
        cloudwatch.add_metric(name="ExposureRecorded", unit=MetricUnit.Count, value=1)


# The two hot routes carry no per-method trace subsegment (the handler's own subsegment covers them):
# each costs tens of microseconds even with tracing disabled (bench/README.md). `hot_route`: their
# bodies are parsed by their models straight from the JSON text (abtest.http.app).
@app.post(f"{API_PREFIX}/recommendations", responses=documented(200, RecommendationResponse, 400, 415))
@hot_route
def recommendations(body: RecommendationRequest) -> RecommendationResponse:
    result = wiring.assignment_service().recommendations(
        body.user_id, body.limit, surface=body.surface, context=body.context, attributes=body.attributes
    )
    _count(result.assignment)
    enrolled = result.assignment if result.assignment is not None and result.assignment.variant else None
    tag = enrolled.tag if enrolled is not None else None
    experiment_id = enrolled.experiment.id if enrolled is not None and enrolled.experiment else None
    reason = result.assignment.reason if result.assignment is not None else Reason.NO_EXPERIMENT
    logger.info(
        "recommendations served",
        extra={
            "experiment_id": str(experiment_id),
            "variant": tag,
            "reason": reason.value,
            "degraded": result.degraded,
        },
    )
    return RecommendationResponse(
        user_id=body.user_id,
        experiment_id=experiment_id,
        experiment_variant=tag,
        reason=reason,
        source=enrolled.source if enrolled is not None else None,
        config_version=enrolled.served.config_version if enrolled is not None and enrolled.served else None,
        schema_version=enrolled.served.schema_version if enrolled is not None and enrolled.served else None,
        recommendations=[
            RecommendedItem(item_id=item.item_id, title=item.title, score=item.score, experiment_variant=tag)
            for item in result.items
        ],
        degraded=result.degraded,
    )


def _assigned_variant(result: Assignment) -> AssignedVariant:
    variant, served = result.variant, result.served
    assert variant is not None
    assert served is not None
    return AssignedVariant(
        id=variant.id,
        name=variant.name,
        config=served.config,
        config_version=served.config_version,
        schema_version=served.schema_version,
        config_from=served.name if served is not variant else None,
    )


@app.post(f"{API_PREFIX}/assignments", responses=documented(200, AssignmentResponse, 400, 404, 415))
@hot_route
def assign(body: AssignmentRequest) -> AssignmentResponse:
    result = wiring.assignment_service().assign(
        body.experiment_id,
        body.user_id,
        context=body.context,
        record_exposure=body.record_exposure,
        attributes=body.attributes,
    )
    _count(result)
    variant = result.variant
    experiment = result.experiment
    assert experiment is not None  # assign() always names the experiment asked for
    return AssignmentResponse(
        experiment_id=experiment.id,
        experiment_name=experiment.name,
        user_id=body.user_id,
        enrolled=variant is not None,
        reason=result.reason,
        variant=_assigned_variant(result) if variant else None,
        experiment_variant=result.tag,
        new_assignment=result.new_assignment,
        exposure_recorded=result.exposure_recorded,
        source=result.source,
    )


@app.get(
    f"{API_PREFIX}/experiments/<experiment_id>/assignments/<user_id>",
    responses=documented(200, StoredAssignmentResponse, 404),
)
@tracer.capture_method(capture_response=False)
def stored_assignment(
    experiment_id: Annotated[UUID, Path()],
    user_id: PathUserId,
) -> StoredAssignmentResponse:
    stored = wiring.assignments().stored_assignment(experiment_id, user_id)
    enrolled = stored.variant_id is not None and stored.variant_name is not None
    return StoredAssignmentResponse(
        experiment_id=experiment_id,
        experiment_name=stored.experiment_name,
        user_id=user_id,
        enrolled=enrolled,
        variant=AssignedVariant(
            id=stored.variant_id,
            name=stored.variant_name,
            config=stored.variant_config or {},
            config_version=stored.variant_config_version or 1,
            schema_version=stored.variant_schema_version,
        )
        if stored.variant_id is not None and stored.variant_name is not None
        else None,
        experiment_variant=experiment_variant_tag(stored.experiment_name, stored.variant_name)
        if stored.variant_name is not None
        else None,
    )


@app.get(
    f"{API_PREFIX}/surfaces/<surface>/assignments/<user_id>",
    responses=documented(200, SurfaceAssignmentResponse, 404),
)
@tracer.capture_method(capture_response=False)
def surface_assignment(
    surface: Annotated[str, Path(min_length=1, max_length=64, pattern=SURFACE_PATTERN)],
    user_id: PathUserId,
) -> SurfaceAssignmentResponse:
    membership = wiring.namespaces().lookup(surface, user_id)
    return SurfaceAssignmentResponse.model_validate(membership, from_attributes=True)


# OpenFeature evaluation (OFREP): its own Router, scopes and error shape (ofrep_routes).
app.include_router(ofrep_router)
ROUTE_SCOPES.update(ofrep_routes.SCOPES)

lambda_handler = entrypoint(app, ROUTE_SCOPES, refuse_ofrep)
