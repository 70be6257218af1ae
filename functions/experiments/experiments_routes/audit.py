"""The audit log: an experiment's history and the filtered feed."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

from abtest import wiring
from abtest.domain.audit import ACTION_PATTERN, ENTITY_TYPE_PATTERN, AuditFilter, parse_instant
from abtest.errors import InvalidInput
from abtest.http.app import API_PREFIX, create_router, documented
from abtest.http.paging import Cursor, PageLimit
from abtest.http.params import ExperimentId
from abtest.http.schemas import AuditPage
from abtest.http.scopes import Scope
from abtest.limits import text_problem
from abtest.observability import tracer

router = create_router()

# The scope each route needs (the template's JWT authorizer declares the same; a test checks it).
SCOPES: dict[str, Scope] = {
    "GET /api/v1/experiments/{experiment_id}/history": "read",
    "GET /api/v1/audit": "read",
}

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


@router.get(f"{API_PREFIX}/experiments/<experiment_id>/history", responses=documented(200, AuditPage, 404))
@tracer.capture_method(capture_response=False)
def experiment_history(
    experiment_id: ExperimentId, limit: PageLimit = 50, cursor: Cursor = None
) -> AuditPage:
    listing = wiring.audit().history(experiment_id, limit=limit, cursor=cursor)
    return AuditPage(events=listing.items, next_cursor=listing.next_cursor)


@router.get(f"{API_PREFIX}/audit", responses=documented(200, AuditPage))
@tracer.capture_method(capture_response=False)
def audit_log(
    since: Instant = None,
    until: Instant = None,
    entity_type: EntityTypeFilter = None,
    entity_id: Filter = None,
    actor: Filter = None,
    action: ActionFilter = None,
    limit: PageLimit = 50,
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
    listing = wiring.audit().search(filters, limit=limit, cursor=cursor)
    return AuditPage(events=listing.items, next_cursor=listing.next_cursor)
