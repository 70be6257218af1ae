"""Per-user overrides of an experiment: forced variants for QA, never stored as assignments."""

from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path

from abtest import wiring
from abtest.domain.overrides import OverrideIn, OverrideList, OverrideWritten, check_user_id
from abtest.errors import BadRequest
from abtest.http.actor import current_actor
from abtest.http.app import API_PREFIX, create_router, documented
from abtest.http.params import ExperimentId
from abtest.http.scopes import Scope
from abtest.observability import logger, tracer

router = create_router()

# The scope each route needs (the template's JWT authorizer declares the same; a test checks it).
SCOPES: dict[str, Scope] = {
    "GET /api/v1/experiments/{experiment_id}/overrides": "read",
    "PUT /api/v1/experiments/{experiment_id}/overrides/{user_id}": "admin",
    "DELETE /api/v1/experiments/{experiment_id}/overrides/{user_id}": "admin",
}

OverrideUserId = Annotated[
    str, Path(min_length=1, max_length=3072, description="User id, percent-encoded (1..256 decoded)")
]


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


@router.get(
    f"{API_PREFIX}/experiments/<experiment_id>/overrides", responses=documented(200, OverrideList, 404)
)
@tracer.capture_method(capture_response=False)
def list_overrides(experiment_id: ExperimentId) -> OverrideList:
    return wiring.overrides().list(experiment_id)


@router.put(
    f"{API_PREFIX}/experiments/<experiment_id>/overrides/<user_id>",
    responses=documented(200, OverrideWritten, 400, 404, 409, 415),
)
@tracer.capture_method(capture_response=False)
def put_override(experiment_id: ExperimentId, user_id: OverrideUserId, body: OverrideIn) -> OverrideWritten:
    override = wiring.overrides().put(
        experiment_id, _path_user_id(user_id), body.variant, actor=current_actor(router)
    )
    logger.info(
        "override written",
        extra={"experiment_id": str(experiment_id), "variant": override.variant, "warning": override.warning},
    )
    return override


@router.delete(
    f"{API_PREFIX}/experiments/<experiment_id>/overrides/<user_id>",
    responses=documented(204, None, 400, 404),
)
@tracer.capture_method(capture_response=False)
def delete_override(experiment_id: ExperimentId, user_id: OverrideUserId) -> Response[None]:
    wiring.overrides().delete(experiment_id, _path_user_id(user_id), actor=current_actor(router))
    logger.info("override deleted", extra={"experiment_id": str(experiment_id)})
    return Response(status_code=204, body=None)
