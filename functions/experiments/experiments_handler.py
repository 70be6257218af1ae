"""ExperimentsFunction: create, list, read, edit, delete experiments and change their status; read
the surfaces' namespaces (which experiment holds which buckets, and the free share); holdouts."""

from typing import Annotated, Literal
from uuid import UUID

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from abtest.domain.holdouts import Holdout, HoldoutCreate, HoldoutPage
from abtest.domain.models import (
    EXPERIMENT_NAME_PATTERN,
    SURFACE_PATTERN,
    Experiment,
    ExperimentCreate,
    ExperimentPage,
    ExperimentPatch,
    Status,
    StatusChange,
    SurfaceList,
    SurfaceNamespace,
)
from abtest.http.app import API_PREFIX, create_app, documented
from abtest.http.entrypoint import entrypoint
from abtest.http.scopes import Scope
from abtest.observability import logger, tracer
from abtest.storage import ExperimentRepository, HoldoutRepository, NamespaceRepository
from abtest.storage.database import get_database

app = create_app()

# Scope each route needs (the template's JWT authorizer declares the same; a test checks it).
ROUTE_SCOPES: dict[str, Scope] = {
    "POST /api/v1/experiments": "admin",
    "GET /api/v1/experiments": "read",
    "GET /api/v1/experiments/{experiment_id}": "read",
    "PATCH /api/v1/experiments/{experiment_id}": "admin",
    "DELETE /api/v1/experiments/{experiment_id}": "admin",
    "PUT /api/v1/experiments/{experiment_id}/status": "admin",
    "GET /api/v1/surfaces": "read",
    "GET /api/v1/surfaces/{surface}": "read",
    "POST /api/v1/holdouts": "admin",
    "GET /api/v1/holdouts": "read",
    "GET /api/v1/holdouts/{holdout_id}": "read",
    "POST /api/v1/holdouts/{holdout_id}/status": "admin",
}

ExperimentId = Annotated[UUID, Path(description="Experiment id (UUID)")]
StatusFilter = Literal["draft", "running", "paused", "completed", "all"]


def experiments() -> ExperimentRepository:
    # Cheap: the Database behind it is the container's cached one.
    return ExperimentRepository(get_database())


@app.post(f"{API_PREFIX}/experiments", responses=documented(201, Experiment, 400, 409, 415))
@tracer.capture_method(capture_response=False)
def create_experiment(body: ExperimentCreate) -> Response[Experiment]:
    experiment = experiments().create(body)
    logger.info("experiment created", extra={"experiment_id": str(experiment.id)})
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=experiment,
        headers={"Location": f"{API_PREFIX}/experiments/{experiment.id}"},
    )


@app.get(f"{API_PREFIX}/experiments", responses=documented(200, ExperimentPage))
@tracer.capture_method(capture_response=False)
def list_experiments(
    status: Annotated[StatusFilter, Query(description="One status, or all")] = "running",
    name: Annotated[str | None, Query(min_length=1, max_length=128, pattern=EXPERIMENT_NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(min_length=1, max_length=512)] = None,
) -> ExperimentPage:
    wanted = None if status == "all" else Status(status)
    return experiments().list(status=wanted, name=name, limit=limit, cursor=cursor)


@app.get(f"{API_PREFIX}/experiments/<experiment_id>", responses=documented(200, Experiment, 404))
@tracer.capture_method(capture_response=False)
def get_experiment(experiment_id: ExperimentId) -> Experiment:
    return experiments().get(experiment_id)


@app.patch(
    f"{API_PREFIX}/experiments/<experiment_id>", responses=documented(200, Experiment, 400, 404, 409, 415)
)
@tracer.capture_method(capture_response=False)
def update_experiment(experiment_id: ExperimentId, body: ExperimentPatch) -> Experiment:
    experiment = experiments().update(experiment_id, body)
    logger.info("experiment updated", extra={"experiment_id": str(experiment_id)})
    return experiment


@app.put(
    f"{API_PREFIX}/experiments/<experiment_id>/status",
    responses=documented(200, Experiment, 400, 404, 409, 415),
)
@tracer.capture_method(capture_response=False)
def change_status(experiment_id: ExperimentId, body: StatusChange) -> Experiment:
    experiment = experiments().change_status(experiment_id, body.status)
    logger.info(
        "experiment status changed",
        extra={"experiment_id": str(experiment_id), "status": experiment.status.value},
    )
    return experiment


@app.delete(f"{API_PREFIX}/experiments/<experiment_id>", responses=documented(204, None, 404, 409))
@tracer.capture_method(capture_response=False)
def delete_experiment(experiment_id: ExperimentId) -> Response[None]:
    experiments().delete(experiment_id)
    logger.info("experiment deleted", extra={"experiment_id": str(experiment_id)})
    return Response(status_code=204, body=None)


@app.get(f"{API_PREFIX}/surfaces", responses=documented(200, SurfaceList))
@tracer.capture_method(capture_response=False)
def list_surfaces() -> SurfaceList:
    return SurfaceList(surfaces=NamespaceRepository(get_database()).surfaces())


@app.get(f"{API_PREFIX}/surfaces/<surface>", responses=documented(200, SurfaceNamespace, 404))
@tracer.capture_method(capture_response=False)
def get_surface(
    surface: Annotated[str, Path(min_length=1, max_length=64, pattern=SURFACE_PATTERN)],
) -> SurfaceNamespace:
    return NamespaceRepository(get_database()).surface(surface)


HoldoutId = Annotated[UUID, Path(description="Holdout id (UUID)")]


def holdouts() -> HoldoutRepository:
    return HoldoutRepository(get_database())


@app.post(f"{API_PREFIX}/holdouts", responses=documented(201, Holdout, 400, 409, 415))
@tracer.capture_method(capture_response=False)
def create_holdout(body: HoldoutCreate) -> Response[Holdout]:
    holdout = holdouts().create(body)
    logger.info("holdout created", extra={"holdout_id": str(holdout.id)})
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=holdout,
        headers={"Location": f"{API_PREFIX}/holdouts/{holdout.id}"},
    )


@app.get(f"{API_PREFIX}/holdouts", responses=documented(200, HoldoutPage))
@tracer.capture_method(capture_response=False)
def list_holdouts(
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    cursor: Annotated[str | None, Query(min_length=1, max_length=512)] = None,
) -> HoldoutPage:
    return holdouts().list(limit=limit, cursor=cursor)


@app.get(f"{API_PREFIX}/holdouts/<holdout_id>", responses=documented(200, Holdout, 404))
@tracer.capture_method(capture_response=False)
def get_holdout(holdout_id: HoldoutId) -> Holdout:
    return holdouts().get(holdout_id)


@app.post(
    f"{API_PREFIX}/holdouts/<holdout_id>/status", responses=documented(200, Holdout, 400, 404, 409, 415)
)
@tracer.capture_method(capture_response=False)
def change_holdout_status(holdout_id: HoldoutId, body: StatusChange) -> Holdout:
    holdout = holdouts().change_status(holdout_id, body.status)
    logger.info(
        "holdout status changed", extra={"holdout_id": str(holdout_id), "status": holdout.status.value}
    )
    return holdout


lambda_handler = entrypoint(app, ROUTE_SCOPES)
