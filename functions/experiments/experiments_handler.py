"""ExperimentsFunction: create, list, read, edit, delete experiments and change their status; per-user
overrides (forced variants); read the surfaces' namespaces (which experiment holds which buckets, and
the free share)."""

from typing import Annotated, Literal
from urllib.parse import unquote
from uuid import UUID

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

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
from abtest.domain.overrides import OverrideIn, OverrideList, OverrideWritten, check_user_id
from abtest.errors import BadRequest
from abtest.http.app import API_PREFIX, create_app, documented
from abtest.http.entrypoint import entrypoint
from abtest.http.scopes import Scope
from abtest.observability import logger, tracer
from abtest.storage import ExperimentRepository, NamespaceRepository, OverrideRepository
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
    "GET /api/v1/experiments/{experiment_id}/overrides": "read",
    "PUT /api/v1/experiments/{experiment_id}/overrides/{user_id}": "admin",
    "DELETE /api/v1/experiments/{experiment_id}/overrides/{user_id}": "admin",
    "GET /api/v1/surfaces": "read",
    "GET /api/v1/surfaces/{surface}": "read",
}

ExperimentId = Annotated[UUID, Path(description="Experiment id (UUID)")]
OverrideUserId = Annotated[
    str, Path(min_length=1, max_length=3072, description="User id, percent-encoded (1..256 decoded)")
]
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


def _path_user_id(raw: str) -> str:
    # Path parameters arrive percent-encoded ("user%40example.com"); bytes that are not UTF-8 name no
    # user. Decoded, the id meets the limits of user ids in bodies (1..256 characters, no NUL).
    try:
        user_id = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(
            "user_id: percent-encoded bytes must be UTF-8", code="invalid_path", field="user_id"
        ) from None
    return check_user_id(user_id)


@app.get(f"{API_PREFIX}/experiments/<experiment_id>/overrides", responses=documented(200, OverrideList, 404))
@tracer.capture_method(capture_response=False)
def list_overrides(experiment_id: ExperimentId) -> OverrideList:
    return OverrideRepository(get_database()).list(experiment_id)


@app.put(
    f"{API_PREFIX}/experiments/<experiment_id>/overrides/<user_id>",
    responses=documented(200, OverrideWritten, 400, 404, 409, 415),
)
@tracer.capture_method(capture_response=False)
def put_override(experiment_id: ExperimentId, user_id: OverrideUserId, body: OverrideIn) -> OverrideWritten:
    override = OverrideRepository(get_database()).put(experiment_id, _path_user_id(user_id), body.variant)
    logger.info(
        "override written",
        extra={"experiment_id": str(experiment_id), "variant": override.variant, "warning": override.warning},
    )
    return override


@app.delete(
    f"{API_PREFIX}/experiments/<experiment_id>/overrides/<user_id>",
    responses=documented(204, None, 400, 404),
)
@tracer.capture_method(capture_response=False)
def delete_override(experiment_id: ExperimentId, user_id: OverrideUserId) -> Response[None]:
    OverrideRepository(get_database()).delete(experiment_id, _path_user_id(user_id))
    logger.info("override deleted", extra={"experiment_id": str(experiment_id)})
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


lambda_handler = entrypoint(app, ROUTE_SCOPES)
