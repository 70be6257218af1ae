"""MetricsFunction: per-variant metrics (exact: rollups plus the tail not yet rolled up)."""

from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from abtest.api import API_PREFIX, create_app, forbidden
from abtest.auth import Scope
from abtest.db import get_database
from abtest.metrics import ExperimentMetrics, metrics_report
from abtest.observability import logger, metrics, tracer
from abtest.repository import MetricsRepository

app = create_app()

# Scope each route needs (the template's JWT authorizer declares the same; a test checks it).
ROUTE_SCOPES: dict[str, Scope] = {
    "GET /api/v1/experiments/{experiment_id}/metrics": "read",
}


@app.get(f"{API_PREFIX}/experiments/<experiment_id>/metrics")
@tracer.capture_method
def experiment_metrics(experiment_id: Annotated[UUID, Path()]) -> ExperimentMetrics:
    return metrics_report(MetricsRepository(get_database()).variant_metrics(experiment_id))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return forbidden(event, ROUTE_SCOPES) or app.resolve(event, context)
