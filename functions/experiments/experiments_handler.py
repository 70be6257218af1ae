"""ExperimentsFunction: create, list, read, edit, delete experiments and change their status; per-user
overrides (forced variants); read the surfaces' namespaces (which experiment holds which buckets, and
the free share); saved groups for targeting, and the targeting QA route; holdouts; read the audit log
(an experiment's history, the filtered feed). Every write records who made it (the token's subject)
in the audit log, in its own transaction."""

from typing import Annotated, Literal
from uuid import UUID

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from abtest.domain.audit import ACTION_PATTERN, ENTITY_TYPE_PATTERN, AuditFilter, AuditPage, parse_instant
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
    text_problem,
)
from abtest.domain.overrides import OverrideIn, OverrideList, OverrideWritten
from abtest.domain.saved_groups import (
    SavedGroup,
    SavedGroupIn,
    SavedGroupList,
    SavedGroupPut,
    TargetingEvaluation,
    TargetingResult,
)
from abtest.domain.targeting import check_condition, evaluate, referenced_groups
from abtest.errors import InvalidInput
from abtest.http.actor import current_actor
from abtest.http.app import API_PREFIX, create_app, documented
from abtest.http.entrypoint import entrypoint
from abtest.http.path_params import PathUserId
from abtest.http.scopes import Scope
from abtest.observability import logger, tracer
from abtest.storage import (
    ExperimentRepository,
    HoldoutRepository,
    NamespaceRepository,
    OverrideRepository,
    SavedGroupRepository,
)
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
    "GET /api/v1/experiments/{experiment_id}/overrides": "read",
    "PUT /api/v1/experiments/{experiment_id}/overrides/{user_id}": "admin",
    "DELETE /api/v1/experiments/{experiment_id}/overrides/{user_id}": "admin",
    "GET /api/v1/surfaces": "read",
    "GET /api/v1/surfaces/{surface}": "read",
    "POST /api/v1/saved-groups": "admin",
    "GET /api/v1/saved-groups": "read",
    "GET /api/v1/saved-groups/{group_id}": "read",
    "PUT /api/v1/saved-groups/{group_id}": "admin",
    "DELETE /api/v1/saved-groups/{group_id}": "admin",
    "POST /api/v1/targeting/evaluate": "read",
    "POST /api/v1/holdouts": "admin",
    "GET /api/v1/holdouts": "read",
    "GET /api/v1/holdouts/{holdout_id}": "read",
    "PUT /api/v1/holdouts/{holdout_id}/status": "admin",
    "GET /api/v1/experiments/{experiment_id}/history": "read",
    "GET /api/v1/audit": "read",
}

ExperimentId = Annotated[UUID, Path(description="Experiment id (UUID)")]
GroupId = Annotated[UUID, Path(description="Saved group id (UUID)")]
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


@app.get(f"{API_PREFIX}/experiments/<experiment_id>/overrides", responses=documented(200, OverrideList, 404))
@tracer.capture_method(capture_response=False)
def list_overrides(experiment_id: ExperimentId) -> OverrideList:
    return OverrideRepository(get_database()).list(experiment_id)


@app.put(
    f"{API_PREFIX}/experiments/<experiment_id>/overrides/<user_id>",
    responses=documented(200, OverrideWritten, 400, 404, 409, 415),
)
@tracer.capture_method(capture_response=False)
def put_override(experiment_id: ExperimentId, user_id: PathUserId, body: OverrideIn) -> OverrideWritten:
    override = OverrideRepository(get_database()).put(
        experiment_id, user_id, body.variant, actor=current_actor(app)
    )
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
def delete_override(experiment_id: ExperimentId, user_id: PathUserId) -> Response[None]:
    OverrideRepository(get_database()).delete(experiment_id, user_id, actor=current_actor(app))
    logger.info("override deleted", extra={"experiment_id": str(experiment_id)})
    return Response(status_code=204, body=None)


@app.get(f"{API_PREFIX}/surfaces", responses=documented(200, SurfaceList))
@tracer.capture_method(capture_response=False)
def list_surfaces(
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
    cursor: Annotated[str | None, Query(min_length=1, max_length=512)] = None,
) -> SurfaceList:
    # Paged: one surface can weigh kilobytes (its experiments and bucket ranges).
    return NamespaceRepository(get_database()).surface_page(limit=limit, cursor=cursor)


@app.get(f"{API_PREFIX}/surfaces/<surface>", responses=documented(200, SurfaceNamespace, 404))
@tracer.capture_method(capture_response=False)
def get_surface(
    surface: Annotated[str, Path(min_length=1, max_length=64, pattern=SURFACE_PATTERN)],
) -> SurfaceNamespace:
    return NamespaceRepository(get_database()).surface(surface)


def saved_groups() -> SavedGroupRepository:
    return SavedGroupRepository(get_database())


@app.post(f"{API_PREFIX}/saved-groups", responses=documented(201, SavedGroup, 400, 409, 415))
@tracer.capture_method(capture_response=False)
def create_saved_group(body: SavedGroupIn) -> Response[SavedGroup]:
    group = saved_groups().create(body, actor=current_actor(app))
    logger.info("saved group created", extra={"saved_group_id": str(group.id)})
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=group,
        headers={"Location": f"{API_PREFIX}/saved-groups/{group.id}"},
    )


@app.get(f"{API_PREFIX}/saved-groups", responses=documented(200, SavedGroupList))
@tracer.capture_method(capture_response=False)
def list_saved_groups() -> SavedGroupList:
    return SavedGroupList(saved_groups=list(saved_groups().summaries()))


@app.get(f"{API_PREFIX}/saved-groups/<group_id>", responses=documented(200, SavedGroup, 404))
@tracer.capture_method(capture_response=False)
def get_saved_group(group_id: GroupId) -> SavedGroup:
    return saved_groups().get(group_id)


@app.put(f"{API_PREFIX}/saved-groups/<group_id>", responses=documented(200, SavedGroup, 400, 404, 409, 415))
@tracer.capture_method(capture_response=False)
def replace_saved_group(group_id: GroupId, body: SavedGroupPut) -> SavedGroup:
    group = saved_groups().replace(group_id, body, actor=current_actor(app))
    logger.info("saved group replaced", extra={"saved_group_id": str(group_id)})
    return group


@app.delete(f"{API_PREFIX}/saved-groups/<group_id>", responses=documented(204, None, 404, 409))
@tracer.capture_method(capture_response=False)
def delete_saved_group(group_id: GroupId) -> Response[None]:
    saved_groups().delete(group_id, actor=current_actor(app))
    logger.info("saved group deleted", extra={"saved_group_id": str(group_id)})
    return Response(status_code=204, body=None)


@app.post(f"{API_PREFIX}/targeting/evaluate", responses=documented(200, TargetingResult, 400, 415))
@tracer.capture_method(capture_response=False)
def evaluate_targeting(body: TargetingEvaluation) -> TargetingResult:
    # Touches no experiment: the condition is evaluated as given, against the groups given or stored.
    groups = body.saved_groups
    if groups is None:
        groups = saved_groups().values(referenced_groups(body.condition))
    problems = check_condition(body.condition, groups.keys(), root="condition")
    # An invalid condition can never be stored, so serving never matches it: say so, do not evaluate it.
    return TargetingResult(
        matches=not problems and evaluate(body.condition, body.attributes, groups),
        error=problems[0].text if problems else None,
    )


HoldoutId = Annotated[UUID, Path(description="Holdout id (UUID)")]


def holdouts() -> HoldoutRepository:
    return HoldoutRepository(get_database())


@app.post(f"{API_PREFIX}/holdouts", responses=documented(201, Holdout, 400, 409, 415))
@tracer.capture_method(capture_response=False)
def create_holdout(body: HoldoutCreate) -> Response[Holdout]:
    holdout = holdouts().create(body, actor=current_actor(app))
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


@app.put(f"{API_PREFIX}/holdouts/<holdout_id>/status", responses=documented(200, Holdout, 400, 404, 409, 415))
@tracer.capture_method(capture_response=False)
def change_holdout_status(holdout_id: HoldoutId, body: StatusChange) -> Holdout:
    holdout = holdouts().change_status(holdout_id, body.status, actor=current_actor(app))
    logger.info(
        "holdout status changed", extra={"holdout_id": str(holdout_id), "status": holdout.status.value}
    )
    return holdout


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
