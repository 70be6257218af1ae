"""Config phases of a started experiment: change variant configs (a new phase), list the phases, and a
variant's config versions. PATCH /experiments/{id} with the same variants and new configs does the same."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path

from abtest import wiring
from abtest.domain.config_versions import ConfigVersionList, PhaseCreate, PhaseList
from abtest.domain.experiments import VARIANT_NAME_PATTERN, Experiment
from abtest.http.actor import current_actor
from abtest.http.app import API_PREFIX, create_router, documented
from abtest.http.params import ExperimentId
from abtest.http.scopes import Scope
from abtest.observability import logger, tracer

router = create_router()

# The scope each route needs (the template's JWT authorizer declares the same; a test checks it).
SCOPES: dict[str, Scope] = {
    "POST /api/v1/experiments/{experiment_id}/phases": "admin",
    "GET /api/v1/experiments/{experiment_id}/phases": "read",
    "GET /api/v1/experiments/{experiment_id}/variants/{variant}/config-versions": "read",
}


@router.post(
    f"{API_PREFIX}/experiments/<experiment_id>/phases",
    responses=documented(201, Experiment, 400, 404, 409, 415),
)
@tracer.capture_method(capture_response=False)
def open_phase(experiment_id: ExperimentId, body: PhaseCreate) -> Response[Experiment]:
    changes = {v.name: v.config if v.config is not None else v.config_version for v in body.variants}
    experiment = wiring.config_schemas().open_phase(
        experiment_id,
        {name: change for name, change in changes.items() if change is not None},
        actor=current_actor(router),
        reason=body.reason,
    )
    logger.info("config phase opened", extra={"experiment_id": str(experiment_id), "phase": experiment.phase})
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=experiment,
        headers={"Location": f"{API_PREFIX}/experiments/{experiment_id}/phases"},
    )


@router.get(f"{API_PREFIX}/experiments/<experiment_id>/phases", responses=documented(200, PhaseList, 404))
@tracer.capture_method(capture_response=False)
def list_phases(experiment_id: ExperimentId) -> PhaseList:
    return wiring.config_schemas().phases(experiment_id)


@router.get(
    f"{API_PREFIX}/experiments/<experiment_id>/variants/<variant>/config-versions",
    responses=documented(200, ConfigVersionList, 404),
)
@tracer.capture_method(capture_response=False)
def list_config_versions(
    experiment_id: ExperimentId,
    variant: Annotated[str, Path(min_length=1, max_length=64, pattern=VARIANT_NAME_PATTERN)],
) -> ConfigVersionList:
    return wiring.config_schemas().config_versions(experiment_id, variant)
