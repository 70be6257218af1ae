"""Experiments: create, list, read, edit, change status, delete (each write records its actor in the
audit log)."""

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Query

from abtest import wiring
from abtest.domain.experiments import (
    EXPERIMENT_NAME_PATTERN,
    Experiment,
    ExperimentCreate,
    ExperimentPatch,
    Status,
    StatusChange,
)
from abtest.http.actor import current_actor
from abtest.http.app import API_PREFIX, create_router, documented
from abtest.http.paging import Cursor, PageLimit
from abtest.http.params import ExperimentId
from abtest.http.schemas import ExperimentPage
from abtest.http.scopes import Scope
from abtest.observability import logger, tracer

router = create_router()

# The scope each route needs (the template's JWT authorizer declares the same; a test checks it).
SCOPES: dict[str, Scope] = {
    "POST /api/v1/experiments": "admin",
    "GET /api/v1/experiments": "read",
    "GET /api/v1/experiments/{experiment_id}": "read",
    "PATCH /api/v1/experiments/{experiment_id}": "admin",
    "DELETE /api/v1/experiments/{experiment_id}": "admin",
    "PUT /api/v1/experiments/{experiment_id}/status": "admin",
}

StatusFilter = Literal["draft", "running", "paused", "completed", "all"]


@router.post(f"{API_PREFIX}/experiments", responses=documented(201, Experiment, 400, 409, 415))
@tracer.capture_method(capture_response=False)
def create_experiment(body: ExperimentCreate) -> Response[Experiment]:
    experiment = wiring.experiments().create(body, actor=current_actor(router))
    logger.info("experiment created", extra={"experiment_id": str(experiment.id)})
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=experiment,
        headers={"Location": f"{API_PREFIX}/experiments/{experiment.id}"},
    )


@router.get(f"{API_PREFIX}/experiments", responses=documented(200, ExperimentPage))
@tracer.capture_method(capture_response=False)
def list_experiments(
    status: Annotated[StatusFilter, Query(description="One status, or all")] = "running",
    name: Annotated[str | None, Query(min_length=1, max_length=128, pattern=EXPERIMENT_NAME_PATTERN)] = None,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> ExperimentPage:
    wanted = None if status == "all" else Status(status)
    listing = wiring.experiments().list(status=wanted, name=name, limit=limit, cursor=cursor)
    return ExperimentPage(experiments=listing.items, next_cursor=listing.next_cursor)


@router.get(f"{API_PREFIX}/experiments/<experiment_id>", responses=documented(200, Experiment, 404))
@tracer.capture_method(capture_response=False)
def get_experiment(experiment_id: ExperimentId) -> Experiment:
    return wiring.experiments().get(experiment_id)


@router.patch(
    f"{API_PREFIX}/experiments/<experiment_id>", responses=documented(200, Experiment, 400, 404, 409, 415)
)
@tracer.capture_method(capture_response=False)
def update_experiment(experiment_id: ExperimentId, body: ExperimentPatch) -> Experiment:
    experiment = wiring.experiments().update(experiment_id, body, actor=current_actor(router))
    logger.info("experiment updated", extra={"experiment_id": str(experiment_id)})
    return experiment


@router.put(
    f"{API_PREFIX}/experiments/<experiment_id>/status",
    responses=documented(200, Experiment, 400, 404, 409, 415),
)
@tracer.capture_method(capture_response=False)
def change_status(experiment_id: ExperimentId, body: StatusChange) -> Experiment:
    experiment = wiring.experiments().change_status(experiment_id, body.status, actor=current_actor(router))
    logger.info(
        "experiment status changed",
        extra={"experiment_id": str(experiment_id), "status": experiment.status.value},
    )
    return experiment


@router.delete(f"{API_PREFIX}/experiments/<experiment_id>", responses=documented(204, None, 404, 409))
@tracer.capture_method(capture_response=False)
def delete_experiment(experiment_id: ExperimentId) -> Response[None]:
    wiring.experiments().delete(experiment_id, actor=current_actor(router))
    logger.info("experiment deleted", extra={"experiment_id": str(experiment_id)})
    return Response(status_code=204, body=None)
