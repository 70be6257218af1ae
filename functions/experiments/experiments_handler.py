"""ExperimentsFunction: create, list, read, edit, delete experiments and change their status; read
the surfaces' namespaces (which experiment holds which buckets, and the free share); read the audit
log (an experiment's history, the filtered feed). Every write records who made it (the token's
subject) in the audit log, in its own transaction."""

from typing import Annotated, Literal
from uuid import UUID

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from abtest.domain.audit import ACTION_PATTERN, ENTITY_TYPE_PATTERN, AuditFilter, AuditPage, parse_instant
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
    text_problem,
)
from abtest.errors import InvalidInput
from abtest.http.actor import current_actor
from abtest.http.app import API_PREFIX, create_app, documented
from abtest.http.entrypoint import entrypoint
from abtest.http.scopes import Scope
from abtest.observability import logger, tracer
from abtest.storage import ExperimentRepository, NamespaceRepository
from abtest.storage.audit import AuditRepository
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
    "GET /api/v1/experiments/{experiment_id}/history": "read",
    "GET /api/v1/audit": "read",
}

ExperimentId = Annotated[UUID, Path(description="Experiment id (UUID)")]
StatusFilter = Literal["draft", "running", "paused", "completed", "all"]


def experiments() -> ExperimentRepository:
    # Cheap: the Database behind it is the container's cached one.
    return ExperimentRepository(get_database())


@app.post(f"{API_PREFIX}/experiments", responses=documented(201, Experiment, 400, 409, 415))
@tracer.capture_method(capture_response=False)
def create_experiment(body: ExperimentCreate) -> Response[Experiment]:
    experiment = experiments().create(body, actor=current_actor(app))
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
    experiment = experiments().update(experiment_id, body, actor=current_actor(app))
    logger.info("experiment updated", extra={"experiment_id": str(experiment_id)})
    return experiment


@app.put(
    f"{API_PREFIX}/experiments/<experiment_id>/status",
    responses=documented(200, Experiment, 400, 404, 409, 415),
)
@tracer.capture_method(capture_response=False)
def change_status(experiment_id: ExperimentId, body: StatusChange) -> Experiment:
    experiment = experiments().change_status(experiment_id, body.status, actor=current_actor(app))
    logger.info(
        "experiment status changed",
        extra={"experiment_id": str(experiment_id), "status": experiment.status.value},
    )
    return experiment


@app.delete(f"{API_PREFIX}/experiments/<experiment_id>", responses=documented(204, None, 404, 409))
@tracer.capture_method(capture_response=False)
def delete_experiment(experiment_id: ExperimentId) -> Response[None]:
    experiments().delete(experiment_id, actor=current_actor(app))
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


Limit = Annotated[int, Query(ge=1, le=100, description="Entries per page (a page also ends after 2 MB)")]
Cursor = Annotated[
    str | None, Query(min_length=1, max_length=512, description="The previous page's next_cursor")
]
Instant = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        description="ISO 8601 date-time with a UTC offset, e.g. 2026-05-01T10:00:00Z",
    ),
]
Filter = Annotated[str | None, Query(min_length=1, max_length=256)]
EntityTypeFilter = Annotated[str | None, Query(max_length=64, pattern=ENTITY_TYPE_PATTERN)]
ActionFilter = Annotated[str | None, Query(max_length=128, pattern=ACTION_PATTERN)]


@app.get(f"{API_PREFIX}/experiments/<experiment_id>/history", responses=documented(200, AuditPage, 404))
@tracer.capture_method(capture_response=False)
def experiment_history(experiment_id: ExperimentId, limit: Limit = 50, cursor: Cursor = None) -> AuditPage:
    return AuditRepository(get_database()).history(experiment_id, limit=limit, cursor=cursor)


@app.get(f"{API_PREFIX}/audit", responses=documented(200, AuditPage))
@tracer.capture_method(capture_response=False)
def audit_log(
    since: Instant = None,
    until: Instant = None,
    entity_type: EntityTypeFilter = None,
    entity_id: Filter = None,
    actor: Filter = None,
    action: ActionFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AuditPage:
    for field, value in (("entity_id", entity_id), ("actor", actor)):
        problem = None if value is None else text_problem(value)
        if problem is not None:  # NUL cannot even be sent to PostgreSQL
            raise InvalidInput(f"{field}: {problem}", field=field)
    filters = AuditFilter(
        since=None if since is None else parse_instant(since, "since"),
        until=None if until is None else parse_instant(until, "until"),
        entity_type=entity_type,
        entity_id=entity_id,
        actor=actor,
        action=action,
    )
    return AuditRepository(get_database()).search(filters, limit=limit, cursor=cursor)


lambda_handler = entrypoint(app, ROUTE_SCOPES)
