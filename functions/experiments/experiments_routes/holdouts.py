"""Holdouts: create, list, read, change status."""

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path

from abtest import wiring
from abtest.domain.experiments import StatusChange
from abtest.domain.holdouts import Holdout, HoldoutCreate
from abtest.http.actor import current_actor
from abtest.http.app import API_PREFIX, create_router, documented
from abtest.http.paging import Cursor, PageLimit
from abtest.http.schemas import HoldoutPage
from abtest.http.scopes import Scope
from abtest.observability import logger, tracer

router = create_router()

# The scope each route needs (the template's JWT authorizer declares the same; a test checks it).
SCOPES: dict[str, Scope] = {
    "POST /api/v1/holdouts": "admin",
    "GET /api/v1/holdouts": "read",
    "GET /api/v1/holdouts/{holdout_id}": "read",
    "PUT /api/v1/holdouts/{holdout_id}/status": "admin",
}

HoldoutId = Annotated[UUID, Path(description="Holdout id (UUID)")]


@router.post(f"{API_PREFIX}/holdouts", responses=documented(201, Holdout, 400, 409, 415))
@tracer.capture_method(capture_response=False)
def create_holdout(body: HoldoutCreate) -> Response[Holdout]:
    holdout = wiring.holdouts().create(body, actor=current_actor(router))
    logger.info("holdout created", extra={"holdout_id": str(holdout.id)})
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=holdout,
        headers={"Location": f"{API_PREFIX}/holdouts/{holdout.id}"},
    )


@router.get(f"{API_PREFIX}/holdouts", responses=documented(200, HoldoutPage))
@tracer.capture_method(capture_response=False)
def list_holdouts(
    limit: PageLimit = 100,
    cursor: Cursor = None,
) -> HoldoutPage:
    listing = wiring.holdouts().list(limit=limit, cursor=cursor)
    return HoldoutPage(holdouts=listing.items, next_cursor=listing.next_cursor)


@router.get(f"{API_PREFIX}/holdouts/<holdout_id>", responses=documented(200, Holdout, 404))
@tracer.capture_method(capture_response=False)
def get_holdout(holdout_id: HoldoutId) -> Holdout:
    return wiring.holdouts().get(holdout_id)


@router.put(
    f"{API_PREFIX}/holdouts/<holdout_id>/status", responses=documented(200, Holdout, 400, 404, 409, 415)
)
@tracer.capture_method(capture_response=False)
def change_holdout_status(holdout_id: HoldoutId, body: StatusChange) -> Holdout:
    holdout = wiring.holdouts().change_status(holdout_id, body.status, actor=current_actor(router))
    logger.info(
        "holdout status changed", extra={"holdout_id": str(holdout_id), "status": holdout.status.value}
    )
    return holdout
