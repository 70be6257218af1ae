"""Per-user overrides of an experiment: forced variants for QA, never stored as assignments."""

from aws_lambda_powertools.event_handler import Response

from abtest import wiring
from abtest.domain.overrides import OverrideIn, OverrideList, OverrideWritten
from abtest.http.actor import current_actor
from abtest.http.app import API_PREFIX, create_router, documented
from abtest.http.params import ExperimentId
from abtest.http.path_params import PathUserId
from abtest.http.scopes import Scope
from abtest.observability import logger, tracer

router = create_router()

# The scope each route needs (the template's JWT authorizer declares the same; a test checks it).
SCOPES: dict[str, Scope] = {
    "GET /api/v1/experiments/{experiment_id}/overrides": "read",
    "PUT /api/v1/experiments/{experiment_id}/overrides/{user_id}": "admin",
    "DELETE /api/v1/experiments/{experiment_id}/overrides/{user_id}": "admin",
}


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
def put_override(experiment_id: ExperimentId, user_id: PathUserId, body: OverrideIn) -> OverrideWritten:
    override = wiring.overrides().put(experiment_id, user_id, body.variant, actor=current_actor(router))
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
def delete_override(experiment_id: ExperimentId, user_id: PathUserId) -> Response[None]:
    wiring.overrides().delete(experiment_id, user_id, actor=current_actor(router))
    logger.info("override deleted", extra={"experiment_id": str(experiment_id)})
    return Response(status_code=204, body=None)
