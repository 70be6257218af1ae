"""MetricsFunction: per-variant metrics and statistical results (exact: rollups plus the tail)."""

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from abtest.analysis.metrics_report import ExperimentMetrics, metrics_report
from abtest.analysis.results import ExperimentResults, results_report
from abtest.http.app import API_PREFIX, create_app, documented
from abtest.http.entrypoint import entrypoint
from abtest.http.scopes import Scope
from abtest.observability import logger, tracer
from abtest.stats import Correction
from abtest.storage import RollupRepository
from abtest.storage.database import get_database

app = create_app()

# Scope each route needs (the template's JWT authorizer declares the same; a test checks it).
ROUTE_SCOPES: dict[str, Scope] = {
    "GET /api/v1/experiments/{experiment_id}/metrics": "read",
    "GET /api/v1/experiments/{experiment_id}/results": "read",
}


@app.get(
    f"{API_PREFIX}/experiments/<experiment_id>/metrics", responses=documented(200, ExperimentMetrics, 404)
)
@tracer.capture_method(capture_response=False)
def experiment_metrics(experiment_id: Annotated[UUID, Path()]) -> ExperimentMetrics:
    return metrics_report(RollupRepository(get_database()).variant_metrics(experiment_id))


@app.get(
    f"{API_PREFIX}/experiments/<experiment_id>/results", responses=documented(200, ExperimentResults, 404)
)
@tracer.capture_method(capture_response=False)
def experiment_results(
    experiment_id: Annotated[UUID, Path()],
    alpha: Annotated[float, Query(gt=0, le=0.5, description="Significance level")] = 0.05,
    correction: Annotated[
        Correction | None, Query(description="Adjust p-values across treatments and metrics")
    ] = None,
    mde: Annotated[
        float | None,
        Query(gt=0, le=10, description="Relative minimum detectable effect for the power section"),
    ] = None,
) -> ExperimentResults:
    stats = RollupRepository(get_database()).variant_metrics(experiment_id)
    report = results_report(stats, alpha=alpha, correction=correction, mde=mde)
    if report.srm.flag:
        logger.warning(
            "sample ratio mismatch",
            extra={"experiment_id": str(experiment_id), "p_value": report.srm.p_value},
        )
    return report


lambda_handler = entrypoint(app, ROUTE_SCOPES)
