"""Saved groups of targeting: named lists of values conditions refer to with $inGroup."""

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path

from abtest import wiring
from abtest.domain.saved_groups import SavedGroup, SavedGroupIn, SavedGroupList, SavedGroupPut
from abtest.http.actor import current_actor
from abtest.http.app import API_PREFIX, create_router, documented
from abtest.http.scopes import Scope
from abtest.observability import logger, tracer

router = create_router()

# The scope each route needs (the template's JWT authorizer declares the same; a test checks it).
SCOPES: dict[str, Scope] = {
    "POST /api/v1/saved-groups": "admin",
    "GET /api/v1/saved-groups": "read",
    "GET /api/v1/saved-groups/{group_id}": "read",
    "PUT /api/v1/saved-groups/{group_id}": "admin",
    "DELETE /api/v1/saved-groups/{group_id}": "admin",
}

GroupId = Annotated[UUID, Path(description="Saved group id (UUID)")]


@router.post(f"{API_PREFIX}/saved-groups", responses=documented(201, SavedGroup, 400, 409, 415))
@tracer.capture_method(capture_response=False)
def create_saved_group(body: SavedGroupIn) -> Response[SavedGroup]:
    group = wiring.saved_groups().create(body, actor=current_actor(router))
    logger.info("saved group created", extra={"saved_group_id": str(group.id)})
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=group,
        headers={"Location": f"{API_PREFIX}/saved-groups/{group.id}"},
    )


@router.get(f"{API_PREFIX}/saved-groups", responses=documented(200, SavedGroupList))
@tracer.capture_method(capture_response=False)
def list_saved_groups() -> SavedGroupList:
    return SavedGroupList(saved_groups=list(wiring.saved_groups().summaries()))


@router.get(f"{API_PREFIX}/saved-groups/<group_id>", responses=documented(200, SavedGroup, 404))
@tracer.capture_method(capture_response=False)
def get_saved_group(group_id: GroupId) -> SavedGroup:
    return wiring.saved_groups().get(group_id)


@router.put(
    f"{API_PREFIX}/saved-groups/<group_id>", responses=documented(200, SavedGroup, 400, 404, 409, 415)
)
@tracer.capture_method(capture_response=False)
def replace_saved_group(group_id: GroupId, body: SavedGroupPut) -> SavedGroup:
    group = wiring.saved_groups().replace(group_id, body, actor=current_actor(router))
    logger.info("saved group replaced", extra={"saved_group_id": str(group_id)})
    return group


@router.delete(f"{API_PREFIX}/saved-groups/<group_id>", responses=documented(204, None, 404, 409))
@tracer.capture_method(capture_response=False)
def delete_saved_group(group_id: GroupId) -> Response[None]:
    wiring.saved_groups().delete(group_id, actor=current_actor(router))
    logger.info("saved group deleted", extra={"saved_group_id": str(group_id)})
    return Response(status_code=204, body=None)
