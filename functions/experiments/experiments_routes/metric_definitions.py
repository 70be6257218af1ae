"""Metric definitions: create, list, read (a version too), replace (a new version) and delete; every
write is audited (docs/metrics-and-decisions.md)."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from abtest import wiring
from abtest.domain.metric_definitions import (
    METRIC_NAME_PATTERN,
    MetricDefinition,
    MetricDefinitionIn,
    MetricDefinitionPut,
    MetricDefinitionWrite,
)
from abtest.http.actor import current_actor
from abtest.http.app import API_PREFIX, create_router, documented
from abtest.http.paging import Cursor, PageLimit
from abtest.http.schemas import MetricDefinitionPage
from abtest.http.scopes import Scope
from abtest.observability import logger, tracer

router = create_router()

# The scope each route needs (the template's JWT authorizer declares the same; a test checks it).
SCOPES: dict[str, Scope] = {
    "POST /api/v1/metric-definitions": "admin",
    "GET /api/v1/metric-definitions": "read",
    "GET /api/v1/metric-definitions/{name}": "read",
    "PUT /api/v1/metric-definitions/{name}": "admin",
    "DELETE /api/v1/metric-definitions/{name}": "admin",
}

DefinitionName = Annotated[
    str, Path(min_length=1, max_length=64, pattern=METRIC_NAME_PATTERN, description="Definition name")
]


@router.post(f"{API_PREFIX}/metric-definitions", responses=documented(201, MetricDefinition, 400, 409, 415))
@tracer.capture_method(capture_response=False)
def create_metric_definition(body: MetricDefinitionIn) -> Response[MetricDefinition]:
    definition = wiring.metric_definitions().create(body, actor=current_actor(router))
    logger.info("metric definition created", extra={"metric_definition": definition.name})
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=definition,
        headers={"Location": f"{API_PREFIX}/metric-definitions/{definition.name}"},
    )


@router.get(f"{API_PREFIX}/metric-definitions", responses=documented(200, MetricDefinitionPage))
@tracer.capture_method(capture_response=False)
def list_metric_definitions(limit: PageLimit = 50, cursor: Cursor = None) -> MetricDefinitionPage:
    listing = wiring.metric_definitions().list(limit=limit, cursor=cursor)
    return MetricDefinitionPage(metric_definitions=listing.items, next_cursor=listing.next_cursor)


@router.get(f"{API_PREFIX}/metric-definitions/<name>", responses=documented(200, MetricDefinition, 404))
@tracer.capture_method(capture_response=False)
def get_metric_definition(
    name: DefinitionName,
    version: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="One version (default: current)")
    ] = None,
) -> MetricDefinition:
    return wiring.metric_definitions().get(name, version)


@router.put(
    f"{API_PREFIX}/metric-definitions/<name>",
    responses=documented(200, MetricDefinitionWrite, 400, 404, 415),
)
@tracer.capture_method(capture_response=False)
def replace_metric_definition(name: DefinitionName, body: MetricDefinitionPut) -> MetricDefinitionWrite:
    definition = wiring.metric_definitions().replace(name, body.body(name), actor=current_actor(router))
    logger.info(
        "metric definition replaced", extra={"metric_definition": name, "version": definition.version}
    )
    return definition


@router.delete(f"{API_PREFIX}/metric-definitions/<name>", responses=documented(204, None, 404, 409))
@tracer.capture_method(capture_response=False)
def delete_metric_definition(name: DefinitionName) -> Response[None]:
    wiring.metric_definitions().delete(name, actor=current_actor(router))
    logger.info("metric definition deleted", extra={"metric_definition": name})
    return Response(status_code=204, body=None)
