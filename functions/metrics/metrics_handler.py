"""MetricsFunction: per-variant metrics, statistical results, results over time and the HTML report
(all exact: rollups plus the tail)."""

from typing import Annotated, Literal
from uuid import UUID

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from abtest import wiring
from abtest.analysis.breakdowns import (
    ResultsWithBreakdown,
    breakdown_metrics,
    breakdown_report,
    post_stratified_report,
    with_breakdown,
)
from abtest.analysis.holdouts import HoldoutResults, holdout_results
from abtest.analysis.metrics_report import ExperimentMetrics, metrics_report
from abtest.analysis.report import DEFAULT_MDE, IndexEntry, Waiting, index_page, report_page
from abtest.analysis.report_pages import metrics_in_full
from abtest.analysis.results import results_report
from abtest.analysis.rollup import VariantMetrics
from abtest.analysis.timeseries import ExperimentTimeseries, metric_names, timeseries_report
from abtest.domain.breakdowns import StratifiedAssignment
from abtest.domain.experiments import Status
from abtest.errors import ErrorCode, InvalidInput, NotFound
from abtest.http.app import API_PREFIX, create_app, documented, documented_html, html_response
from abtest.http.entrypoint import entrypoint
from abtest.http.scopes import Scope
from abtest.limits import MAX_DIMENSION_PATH_LENGTH, MAX_DIMENSION_VALUE_LENGTH
from abtest.observability import logger, tracer
from abtest.stats import Correction

app = create_app()

# Scope each route needs (the template's JWT authorizer declares the same; a test checks it).
ROUTE_SCOPES: dict[str, Scope] = {
    "GET /api/v1/experiments/{experiment_id}/metrics": "read",
    "GET /api/v1/experiments/{experiment_id}/results": "read",
    "GET /api/v1/experiments/{experiment_id}/results/timeseries": "read",
    "GET /api/v1/experiments/{experiment_id}/report": "read",
    "GET /api/v1/report": "read",
    "GET /api/v1/holdouts/{holdout_id}/results": "read",
}

INDEX_LIMIT = 50  # experiments on the index page, newest first

Alpha = Annotated[float, Query(gt=0, le=0.5, description="Significance level")]
AnalysisKind = Annotated[
    Literal["conversion", "value"], Query(description="conversion (binomial) or value (mean per user)")
]


@app.get(
    f"{API_PREFIX}/experiments/<experiment_id>/metrics", responses=documented(200, ExperimentMetrics, 404)
)
@tracer.capture_method(capture_response=False)
def experiment_metrics(experiment_id: Annotated[UUID, Path()]) -> ExperimentMetrics:
    stats = wiring.rollups().variant_metrics(experiment_id)
    return metrics_report(stats, overrides=wiring.overrides().counts(experiment_id))


@app.get(
    f"{API_PREFIX}/experiments/<experiment_id>/results", responses=documented(200, ResultsWithBreakdown, 404)
)
@tracer.capture_method(capture_response=False)
def experiment_results(
    experiment_id: Annotated[UUID, Path()],
    alpha: Alpha = 0.05,
    correction: Annotated[
        Correction | None, Query(description="Adjust p-values across treatments and metrics")
    ] = None,
    mde: Annotated[
        float | None,
        Query(gt=0, le=10, description="Relative minimum detectable effect for the power section"),
    ] = None,
    dimension: Annotated[
        str | None,
        Query(max_length=MAX_DIMENSION_PATH_LENGTH, description="Break the results down by this dimension"),
    ] = None,
    metric: Annotated[
        str | None, Query(max_length=64, description="Only this metric in the breakdown")
    ] = None,
) -> ResultsWithBreakdown:
    stats = wiring.rollups().variant_metrics(experiment_id)
    overrides = wiring.overrides().counts(experiment_id)
    report = results_report(stats, alpha=alpha, correction=correction, mde=mde, overrides=overrides)
    if report.srm.flag:
        logger.warning(
            "sample ratio mismatch",
            extra={"experiment_id": str(experiment_id), "p_value": report.srm.p_value},
        )
    if metric is not None and metric not in report.metrics:
        raise NotFound(
            f"experiment {experiment_id} has no conversions of metric {metric!r}",
            code=ErrorCode.METRIC_NOT_FOUND,
            field="metric",
        )
    # Only the metrics a breakdown can show are read (bounded for any number of metrics and values).
    picked, _ = breakdown_metrics(list(report.metrics), len(report.variants), metric)
    breakdown = None
    if dimension is not None:
        slices = wiring.breakdowns().slice_metrics(experiment_id, dimension, picked)
        breakdown = breakdown_report(slices, alpha=alpha, correction=correction, metric=metric)
        breakdown.metrics_omitted = breakdown_metrics(list(report.metrics), len(report.variants), metric)[1]
    design = stats.experiment.assignment
    strata = None
    if isinstance(design, StratifiedAssignment):
        by_stratum = wiring.breakdowns().slice_metrics(experiment_id, design.stratum, picked)
        strata = post_stratified_report(by_stratum, alpha=alpha, metrics=picked)
    return ResultsWithBreakdown(**dict(report), breakdown=breakdown, post_stratified=strata)


@app.get(
    f"{API_PREFIX}/experiments/<experiment_id>/results/timeseries",
    responses=documented(200, ExperimentTimeseries, 404),
)
@tracer.capture_method(capture_response=False)
def experiment_timeseries(
    experiment_id: Annotated[UUID, Path()],
    metric: Annotated[
        str | None, Query(max_length=64, description="Metric name (default: the first by name)")
    ] = None,
    analysis: AnalysisKind = "conversion",
    alpha: Alpha = 0.05,
    dimension: Annotated[
        str | None,
        Query(max_length=MAX_DIMENSION_PATH_LENGTH, description="The series of one slice: its dimension"),
    ] = None,
    value: Annotated[
        str | None,
        Query(max_length=MAX_DIMENSION_VALUE_LENGTH, description="The slice's value (with dimension)"),
    ] = None,
) -> ExperimentTimeseries:
    if dimension is not None or value is not None:
        if dimension is None or value is None:
            missing = "value" if value is None else "dimension"
            raise InvalidInput("dimension and value go together: the series of one slice", field=missing)
        daily = wiring.breakdowns().daily_slice_metrics(experiment_id, dimension, value, metric)
    else:
        # Only the asked metric's daily rows are read (default: the first by name, as timeseries_report).
        daily = wiring.rollups().daily_metrics(
            experiment_id, lambda current: [metric] if metric is not None else metric_names(current)[:1]
        )
    try:
        return timeseries_report(daily, metric, analysis, alpha)
    except KeyError:
        raise NotFound(
            f"experiment {experiment_id} has no conversions of metric {metric!r}",
            code=ErrorCode.METRIC_NOT_FOUND,
            field="metric",
        ) from None


@app.get(f"{API_PREFIX}/experiments/<experiment_id>/report", responses=documented_html(404))
@tracer.capture_method(capture_response=False)
def experiment_report(
    experiment_id: Annotated[UUID, Path()],
    mde: Annotated[
        float,
        Query(gt=0, le=10, description="Relative minimum detectable effect for the progress bar"),
    ] = DEFAULT_MDE,
    analysis: AnalysisKind = "conversion",
    alpha: Alpha = 0.05,
    metric: Annotated[
        str | None,
        Query(max_length=64, description="Show this metric in full (a page over many metrics links to each)"),
    ] = None,
    dimension: Annotated[
        str | None,
        Query(max_length=MAX_DIMENSION_PATH_LENGTH, description="Add the results by this dimension"),
    ] = None,
) -> Response[str]:
    in_full: list[str] = []

    def pick(current: VariantMetrics) -> list[str]:
        # Bounded page (abtest.analysis.report_pages): every metric, the one asked for, or a summary.
        nonlocal in_full
        names = metric_names(current)
        if metric is not None and metric not in names:
            raise NotFound(
                f"experiment {experiment_id} has no conversions of metric {metric!r}",
                code=ErrorCode.METRIC_NOT_FOUND,
                field="metric",
            )
        in_full = metrics_in_full(names, len(current.experiment.variants), metric)
        return in_full

    daily = wiring.rollups().daily_metrics(experiment_id, pick)
    overrides = wiring.overrides().counts(experiment_id)
    results = results_report(daily.current, alpha=alpha, mde=mde, overrides=overrides)
    # The users chart needs one series even when no metric is shown in full (its users are per variant).
    series = {name: timeseries_report(daily, name, analysis, alpha) for name in in_full}
    if not series:
        series = {"": timeseries_report(daily, None, analysis, alpha)}
    page = report_page(
        daily.current.experiment,
        daily.current,
        results,
        series,
        mde=mde,
        waiting=Waiting(daily.waiting_users, daily.waiting_conversions),
        analysis=analysis,
        in_full=in_full,
    )
    if dimension is not None:
        picked, _ = breakdown_metrics(
            metric_names(daily.current), len(daily.current.experiment.variants), metric
        )
        slices = wiring.breakdowns().slice_metrics(experiment_id, dimension, picked)
        page = with_breakdown(page, breakdown_report(slices, alpha=alpha, metric=metric))
    return html_response(page)


@app.get(f"{API_PREFIX}/report", responses=documented_html())
@tracer.capture_method(capture_response=False)
def report_index() -> Response[str]:
    experiments = wiring.experiments().newest(INDEX_LIMIT + 1)
    rollups = wiring.rollups()
    entries = []
    for experiment in experiments[:INDEX_LIMIT]:
        stats = None if experiment.status == Status.DRAFT else rollups.variant_metrics(experiment.id)
        entries.append(IndexEntry(experiment, results_report(stats) if stats else None, stats))
    return html_response(index_page(entries, truncated=len(experiments) > INDEX_LIMIT))


@app.get(f"{API_PREFIX}/holdouts/<holdout_id>/results", responses=documented(200, HoldoutResults, 404))
@tracer.capture_method(capture_response=False)
def holdout_results_route(holdout_id: Annotated[UUID, Path()], alpha: Alpha = 0.05) -> HoldoutResults:
    report = holdout_results(wiring.holdouts().stats(holdout_id), alpha=alpha)
    if report.srm.flag:
        logger.warning(
            "sample ratio mismatch in a holdout",
            extra={"holdout_id": str(holdout_id), "p_value": report.srm.p_value},
        )
    return report


lambda_handler = entrypoint(app, ROUTE_SCOPES)
