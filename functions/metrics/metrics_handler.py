"""MetricsFunction: per-variant metrics, statistical results, results over time and the HTML report
(all exact: rollups plus the tail)."""

from typing import Annotated, Literal
from uuid import UUID

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from abtest import wiring
from abtest.analysis.bandit_report import bandit_section
from abtest.analysis.bandits import BanditEstimates, bandit_estimates, period_weighted
from abtest.analysis.breakdowns import (
    ResultsWithBreakdown,
    breakdown_metrics,
    breakdown_report,
    post_stratified_report,
    with_breakdown,
)
from abtest.analysis.holdouts import HoldoutResults, holdout_results
from abtest.analysis.metrics_report import ExperimentMetrics, metrics_report
from abtest.analysis.phases import (
    PhaseBoundary,
    PhasedResults,
    PhasedTimeseries,
    PhaseLabel,
    pooled,
    with_phase_banner,
)
from abtest.analysis.report import DEFAULT_MDE, IndexEntry, Waiting, index_page, report_page
from abtest.analysis.report_pages import metrics_in_full
from abtest.analysis.results import ExperimentResults, SrmVerdict, results_report
from abtest.analysis.roles import analyse_roles
from abtest.analysis.rollup import VariantMetrics
from abtest.analysis.srm_monitor import sequential_by_day, with_sequential
from abtest.analysis.timeseries import DailyMetrics, metric_names, timeseries_report
from abtest.domain.bandits import decode_period_cursor
from abtest.domain.breakdowns import StratifiedAssignment
from abtest.domain.experiments import Status
from abtest.domain.metric_definitions import MetricDefinition
from abtest.errors import ErrorCode, InvalidInput, NotFound
from abtest.http.actor import current_actor
from abtest.http.app import API_PREFIX, create_app, documented, documented_html, html_response
from abtest.http.entrypoint import entrypoint
from abtest.http.paging import Cursor, PageLimit
from abtest.http.schemas import BanditPage, BanditReweightResponse
from abtest.http.scopes import Scope
from abtest.limits import MAX_DIMENSION_PATH_LENGTH, MAX_DIMENSION_VALUE_LENGTH, MAX_SERIES_POINTS
from abtest.observability import logger, tracer
from abtest.settings import get_settings
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
    "POST /api/v1/experiments/{experiment_id}/bandit/reweight": "admin",
    "GET /api/v1/experiments/{experiment_id}/bandit": "read",
}

INDEX_LIMIT = 50  # experiments on the index page, newest first

Alpha = Annotated[float, Query(gt=0, le=0.5, description="Significance level")]
Phase = Annotated[
    str | None,
    Query(
        max_length=8,
        description="Config phase: a number, or all (every phase pooled); default the latest phase",
    ),
]
AnalysisKind = Annotated[
    Literal["conversion", "value"], Query(description="conversion (binomial) or value (mean per user)")
]


def _phase_stats(
    experiment_id: UUID, asked: str | None
) -> tuple[VariantMetrics, PhaseLabel, list[PhaseBoundary]]:
    """The statistics of the phase a read asks for (abtest.analysis.phases): the rollups when they are
    the phase (all pooled, or an experiment with one phase), else that phase from its raw events."""
    phase, label, starts = wiring.phase_metrics().phase_view(experiment_id, asked)
    if phase is None or label.current_phase == 1:
        return wiring.rollups().variant_metrics(experiment_id), label, starts
    return wiring.phase_metrics().phase_metrics(experiment_id, phase), label, starts


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
    phase: Phase = None,
    dimension: Annotated[
        str | None,
        Query(max_length=MAX_DIMENSION_PATH_LENGTH, description="Break the results down by this dimension"),
    ] = None,
    metric: Annotated[
        str | None, Query(max_length=64, description="Only this metric in the breakdown")
    ] = None,
) -> ResultsWithBreakdown:
    stats, label, _ = _phase_stats(experiment_id, phase)
    overrides = wiring.overrides().counts(experiment_id)
    bandit = None
    if stats.experiment.allocation.is_bandit:
        # A bandit's period-weighted estimate spans every phase: it is labelled as pooled.
        stats, bandit = bandit_results(experiment_id)
        label = pooled(label)
    report = results_report(
        stats, alpha=alpha, correction=correction, mde=mde, overrides=overrides, bandit=bandit
    )
    report.srm = _with_sequential(report.srm, experiment_id)
    report = _with_roles(report, stats, alpha=alpha, correction=correction)
    report = PhasedResults(**dict(report), phase=label)
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


def _with_roles(
    report: ExperimentResults,
    stats: VariantMetrics,
    *,
    alpha: float,
    correction: Correction | None = None,
) -> ExperimentResults:
    """The results with goals, guardrails, secondary metrics and the decision, when the experiment has
    metric roles (docs/metrics-and-decisions.md); unchanged otherwise (and nothing more is read)."""
    named = stats.experiment.metrics
    if named is None or not named.names():
        return report
    inputs = wiring.metric_definitions().role_inputs(report.experiment_id, stats)
    if inputs is None:
        return report
    roles = analyse_roles(inputs, srm_flag=report.srm.flag, alpha=alpha, correction=correction)
    return report.with_roles(roles)


@app.get(
    f"{API_PREFIX}/experiments/<experiment_id>/results/timeseries",
    responses=documented(200, PhasedTimeseries, 404),
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
) -> PhasedTimeseries:
    if dimension is not None or value is not None:
        if dimension is None or value is None:
            missing = "value" if value is None else "dimension"
            raise InvalidInput("dimension and value go together: the series of one slice", field=missing)
        daily = wiring.breakdowns().daily_slice_metrics(experiment_id, dimension, value, metric)
        definition = None  # a slice's series is of event metrics only
    else:
        # Only the asked metric's daily rows are read (default: the first by name, as timeseries_report).
        daily = wiring.rollups().daily_metrics(
            experiment_id, lambda current: [metric] if metric is not None else metric_names(current)[:1]
        )
        definition = _kept_definition(daily, metric)
    _, _, starts = wiring.phase_metrics().phase_view(experiment_id, "all")
    try:
        series = timeseries_report(daily, metric, analysis, alpha, definition=definition)
    except KeyError:
        raise NotFound(
            f"experiment {experiment_id} has no conversions of metric {metric!r}",
            code=ErrorCode.METRIC_NOT_FOUND,
            field="metric",
        ) from None
    days = {day: p for day, (p, _) in wiring.alerts().srm_by_day(experiment_id).items()}
    for point in series.points:
        point.srm_sequential_p_value = sequential_by_day(days, point.date)
    return PhasedTimeseries(**dict(series), phases=starts)  # the pooled series, phase starts marked


def _kept_definition(daily: DailyMetrics, metric: str | None) -> MetricDefinition | None:
    """The metric definition named `metric` if the rollup keeps it for this experiment (its series is
    the definition's, docs/metrics-and-decisions.md), else None."""
    if metric is None or not any(metric in per for per in daily.current.defined.values()):
        return None
    version = daily.current.experiment.pinned_metrics[metric]
    return wiring.metric_definitions().get(metric, version)


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
    phase: Phase = None,
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
    stats, label, _ = _phase_stats(experiment_id, phase)
    if label.current_phase == 1 or label.phase == "all":
        stats = daily.current  # the same numbers, from the same snapshot as the charts
    section = None
    if daily.current.experiment.allocation.is_bandit:
        weighted, estimates = bandit_results(experiment_id)
        label = pooled(label)
        results = results_report(weighted, alpha=alpha, mde=mde, overrides=overrides, bandit=estimates)
        names = [v.name for v in weighted.experiment.variants]
        section = bandit_section(
            names, wiring.bandits().latest_periods(experiment_id, MAX_SERIES_POINTS), estimates
        )
        current = weighted
    else:
        results = results_report(stats, alpha=alpha, mde=mde, overrides=overrides)
        current = stats
    results.srm = _with_sequential(results.srm, experiment_id)
    results = _with_roles(results, current, alpha=alpha)
    # The users chart needs one series even when no metric is shown in full (its users are per variant).
    series = {name: timeseries_report(daily, name, analysis, alpha) for name in in_full}
    if not series:
        series = {"": timeseries_report(daily, None, analysis, alpha)}
    page = report_page(
        daily.current.experiment,
        stats,
        results,
        series,
        mde=mde,
        waiting=Waiting(daily.waiting_users, daily.waiting_conversions),
        analysis=analysis,
        in_full=in_full,
        bandit_section=section,
    )
    if dimension is not None:
        picked, _ = breakdown_metrics(
            metric_names(daily.current), len(daily.current.experiment.variants), metric
        )
        slices = wiring.breakdowns().slice_metrics(experiment_id, dimension, picked)
        page = with_breakdown(page, breakdown_report(slices, alpha=alpha, metric=metric))
    return html_response(with_phase_banner(page, label))


@app.get(f"{API_PREFIX}/report", responses=documented_html())
@tracer.capture_method(capture_response=False)
def report_index() -> Response[str]:
    experiments = wiring.experiments().newest(INDEX_LIMIT + 1)
    rollups = wiring.rollups()
    entries = []
    for experiment in experiments[:INDEX_LIMIT]:
        stats = None if experiment.status == Status.DRAFT else rollups.variant_metrics(experiment.id)
        results = _with_roles(results_report(stats), stats, alpha=0.05) if stats else None
        entries.append(IndexEntry(experiment, results, stats))
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


def bandit_results(experiment_id: UUID) -> tuple[VariantMetrics, BanditEstimates]:
    """A bandit's period-weighted statistics and estimates (docs/bandits.md), in one snapshot."""
    inputs = wiring.bandits().results_inputs(experiment_id)
    estimates = bandit_estimates(
        inputs.pooled.experiment, inputs.periods, inputs.period_weights, inputs.p_best
    )
    return period_weighted(inputs.pooled, inputs.periods), estimates


@app.post(
    f"{API_PREFIX}/experiments/<experiment_id>/bandit/reweight",
    responses=documented(200, BanditReweightResponse, 404, 409),
)
@tracer.capture_method(capture_response=False)
def bandit_reweight(experiment_id: Annotated[UUID, Path()]) -> BanditReweightResponse:
    """Close the bandit's open period now ("update now"): two at once close one period."""
    repository = wiring.bandits()
    period, created = repository.reweight(experiment_id, actor=current_actor(app), trigger="api")
    logger.info(
        "bandit reweight",
        extra={
            "experiment_id": str(experiment_id),
            "period": period.number,
            "outcome": period.outcome,
            "period_created": created,
        },
    )
    return BanditReweightResponse(
        created=created, period=period, open_period=period.number + 1, weights=period.weights_after
    )


@app.get(f"{API_PREFIX}/experiments/<experiment_id>/bandit", responses=documented(200, BanditPage, 404, 409))
@tracer.capture_method(capture_response=False)
def bandit_state(
    experiment_id: Annotated[UUID, Path()],
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> BanditPage:
    after = decode_period_cursor(cursor)
    experiment, periods, latest, more = wiring.bandits().periods(experiment_id, limit=limit, after=after)
    assert experiment.bandit is not None
    return BanditPage(
        experiment_id=experiment.id,
        allocation=experiment.allocation,
        open_period=experiment.bandit.period,
        period_started_at=experiment.bandit.period_started_at,
        weights=experiment.serving_weights(),
        variants=[v.name for v in experiment.variants],
        p_best=latest.p_best if latest is not None else None,
        periods=periods,
        next_cursor=str(periods[-1].number) if more and periods else None,
    )


def _with_sequential(verdict: SrmVerdict, experiment_id: UUID) -> SrmVerdict:
    """The sequential SRM p-value of the last rollup beside the chi-squared one (docs/alerts.md)."""
    return with_sequential(
        verdict, wiring.alerts().monitor(experiment_id), get_settings().srm_alert_threshold
    )


lambda_handler = entrypoint(app, ROUTE_SCOPES)
