"""MetricsFunction: per-variant metrics and statistical results (exact: rollups plus the tail)."""

from typing import Annotated, Any, Literal
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from abtest.api import API_PREFIX, create_app, documented, refuse
from abtest.auth import Scope
from abtest.db import get_database
from abtest.metrics import ExperimentMetrics, metrics_report
from abtest.observability import logger, metrics, tracer
from abtest.repository import MetricsRepository
from abtest.results import ExperimentResults, results_report

app = create_app()

# Scope each route needs (the template's JWT authorizer declares the same; a test checks it).
ROUTE_SCOPES: dict[str, Scope] = {
    "GET /api/v1/experiments/{experiment_id}/metrics": "read",
    "GET /api/v1/experiments/{experiment_id}/results": "read",
}


@app.get(
    f"{API_PREFIX}/experiments/<experiment_id>/metrics", responses=documented(200, ExperimentMetrics, 404)
)
@tracer.capture_method
def experiment_metrics(experiment_id: Annotated[UUID, Path()]) -> ExperimentMetrics:
    return metrics_report(MetricsRepository(get_database()).variant_metrics(experiment_id))


@app.get(
    f"{API_PREFIX}/experiments/<experiment_id>/results", responses=documented(200, ExperimentResults, 404)
)
@tracer.capture_method
def experiment_results(
    experiment_id: Annotated[UUID, Path()],
    alpha: Annotated[float, Query(gt=0, le=0.5, description="Significance level")] = 0.05,
    correction: Annotated[
        Literal["holm", "bh"] | None, Query(description="Adjust p-values across treatments and metrics")
    ] = None,
    mde: Annotated[
        float | None,
        Query(gt=0, le=10, description="Relative minimum detectable effect for the power section"),
    ] = None,
) -> ExperimentResults:
    stats = MetricsRepository(get_database()).variant_metrics(experiment_id)
    report = results_report(stats, alpha=alpha, correction=correction, mde=mde)
    if report.srm.flag:
        logger.warning(
            "sample ratio mismatch",
            extra={"experiment_id": str(experiment_id), "p_value": report.srm.p_value},
        )
    return report


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return refuse(event, ROUTE_SCOPES) or app.resolve(event, context)
