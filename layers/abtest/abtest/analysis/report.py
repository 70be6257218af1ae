"""The HTML results page and the index of experiments (pure: Jinja2 templates and server-side SVG).

The templates ship inside the layer (abtest/analysis/templates). Pages reference nothing on another
host and need no JavaScript: every chart is inline SVG, and every number it draws is also printed as
text. Numbers are formatted here, in one place, so the page and its tests agree on the rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from abtest.analysis.charts import PALETTE, BandSeries, ForestRow, forest_plot, lift_over_time, progress_bar
from abtest.analysis.charts import users_over_time as users_chart
from abtest.analysis.report_pages import metric_summaries
from abtest.analysis.results import ExperimentResults
from abtest.analysis.rollup import VariantMetrics
from abtest.analysis.timeseries import Analysis, ExperimentTimeseries
from abtest.domain.experiments import Experiment
from abtest.stats.moments import (
    NEGATIVE_BASELINE,
    NO_USERS,
    NUMERICAL_ERROR,
    TOO_FEW_USERS,
    ZERO_BASELINE,
    ZERO_VARIANCE,
)
from abtest.stats.outputs import MetricAnalysis, PowerBlock

if TYPE_CHECKING:
    from jinja2 import Environment

DASH = "\u2013"  # shown where a number cannot be computed
MINUS = "\u2212"  # typographic minus sign, as wide as the plus
MIN_USERS_PER_VARIANT = 100  # below this, a health warning: intervals are wide and unstable
DEFAULT_MDE = 0.1  # relative minimum detectable effect for the progress bar when ?mde= is not given
ANALYSIS_LABELS = {"conversion": "Conversion rate", "value": "Value per user"}


@cache
def _environment() -> Environment:
    # Jinja2 (~30 ms to import) is loaded by the first page rendered, not by the metrics function's
    # cold start: most of its requests are JSON.
    from jinja2 import Environment, PackageLoader, select_autoescape

    environment = Environment(
        loader=PackageLoader("abtest.analysis", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(pct=pct, pvalue=pvalue, chance=chance, number=number, interval=interval)
    return environment


def pct(value: float | None, digits: int = 2) -> str:
    """A relative quantity as a signed percentage: 0.12345 -> '+12.35%'; None -> a dash."""
    if value is None:
        return DASH
    sign = "+" if value > 0 else (MINUS if value < 0 else "")
    return f"{sign}{abs(value) * 100:.{digits}f}%"


def rate(value: float | None) -> str:
    """A rate as an unsigned percentage with two decimals."""
    return DASH if value is None else f"{value * 100:.2f}%"


def interval(bounds: list[float] | None) -> str:
    """An interval of relative lifts: '[-1.23%, +4.56%]' (with a true minus sign)."""
    if not bounds:
        return DASH
    return f"[{pct(bounds[0])}, {pct(bounds[1])}]"


def pvalue(value: float | None) -> str:
    """A p-value with four decimals ('<0.0001' below that)."""
    if value is None:
        return DASH
    return "<0.0001" if value < 0.0001 else f"{value:.4f}"


def chance(value: float | None) -> str:
    """A chance to win as a percentage with one decimal."""
    return DASH if value is None else f"{value * 100:.1f}%"


def number(value: float | None, digits: int = 4) -> str:
    """A mean with `digits` decimals; an integer with thousands separators."""
    if value is None:
        return DASH
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _svg(markup: str) -> Markup:
    """Chart markup built by abtest.analysis.charts, which escapes every text it draws."""
    return Markup(markup)  # noqa: S704 - escaped where built


@dataclass(frozen=True)
class Waiting:
    """Conversions recorded for users who have not been exposed yet (they do not count yet)."""

    users: int = 0
    conversions: int = 0


@dataclass
class HealthWarning:
    kind: str
    message: str


@dataclass
class _MetricSection:
    name: str
    analyses: list[dict[str, Any]] = field(default_factory=list)
    forest: Markup = field(default_factory=Markup)
    lift_chart: Markup = field(default_factory=Markup)
    series_rows: list[dict[str, Any]] = field(default_factory=list)


def _variant_rows(
    results: ExperimentResults, stats: VariantMetrics, metric: str, analysis: Analysis
) -> list[dict[str, Any]]:
    """Table rows of one metric and analysis: per variant users, rate or mean, and the comparison."""
    block: MetricAnalysis = getattr(results.metrics[metric], analysis)
    comparisons = {c.treatment_index: c for c in block.comparisons}
    rows = []
    for index, variant in enumerate(results.variants):
        comparison = comparisons.get(index)
        relative = comparison.relative if comparison else None
        metric_stats = stats.metrics.get(variant.id, {}).get(metric)
        converted = metric_stats.users if metric_stats else 0
        total = metric_stats.sum if metric_stats else 0.0
        value = None
        if variant.users:
            value = converted / variant.users if analysis == "conversion" else total / variant.users
        rows.append(
            {
                "name": variant.name,
                "control": index == 0,
                "users": variant.users,
                "converted": converted,
                "sum": total,
                "value": value,
                "relative": relative,
                "bayes": comparison.bayes_relative if comparison else None,
                "sequential": comparison.sequential_relative if comparison else None,
            }
        )
    return rows


def _forest_rows(results: ExperimentResults, metric: str) -> list[ForestRow]:
    rows = []
    for analysis in ("conversion", "value"):
        block: MetricAnalysis = getattr(results.metrics[metric], analysis)
        for comparison in block.comparisons:
            variant = results.variants[comparison.treatment_index]
            relative = comparison.relative
            low, high = relative.ci if relative.ci is not None else (None, None)
            rows.append(
                ForestRow(
                    f"{variant.name} · {ANALYSIS_LABELS[analysis].lower()}",
                    relative.estimate,
                    low,
                    high,
                    PALETTE[comparison.treatment_index % len(PALETTE)],
                )
            )
    return rows


def _lift_series(series: ExperimentTimeseries) -> tuple[list[date], list[BandSeries]]:
    days = [point.date for point in series.points]
    treatments = series.points[0].comparisons if series.points else []
    bands = []
    for number_, treatment in enumerate(treatments, start=1):
        comparisons = [
            next(c for c in point.comparisons if c.variant_id == treatment.variant_id)
            for point in series.points
        ]
        bands.append(
            BandSeries(
                treatment.variant_name,
                [c.lift for c in comparisons],
                [c.ci[0] if c.ci else None for c in comparisons],
                [c.ci[1] if c.ci else None for c in comparisons],
                PALETTE[number_ % len(PALETTE)],
            )
        )
    return days, bands


def report_page(
    experiment: Experiment,
    stats: VariantMetrics,
    results: ExperimentResults,
    series: dict[str, ExperimentTimeseries],
    *,
    mde: float,
    waiting: Waiting,
    analysis: Analysis = "conversion",
    in_full: list[str] | None = None,
    bandit_section: Markup | None = None,
) -> str:
    """The results page of one experiment: `stats` are its statistics now, `results` their verdict
    computed with `mde`, `series` the time series of each metric shown. `in_full` (default: every
    metric) names the metrics shown in full; when it is not all of them the page also shows a summary
    line per metric, each linking to its own page (abtest.analysis.report_pages)."""
    shown = (
        list(results.metrics) if in_full is None else [name for name in in_full if name in results.metrics]
    )
    summary = metric_summaries(results) if len(shown) < len(results.metrics) else None
    metrics = []
    for name in shown:
        section = _MetricSection(name)
        for kind in ("conversion", "value"):
            section.analyses.append(
                {
                    "kind": kind,
                    "label": ANALYSIS_LABELS[kind],
                    "rows": _variant_rows(results, stats, name, kind),
                }
            )
        section.forest = _svg(forest_plot(_forest_rows(results, name), f"Relative lift of {name}"))
        if name in series and series[name].points:
            days, bands = _lift_series(series[name])
            section.lift_chart = _svg(
                lift_over_time(
                    days, bands, f"Cumulative {ANALYSIS_LABELS[analysis].lower()} lift of {name} over time"
                )
            )
            section.series_rows = [
                {"date": point.date, "comparisons": point.comparisons} for point in series[name].points
            ]
        metrics.append(section)

    any_series = next((s for s in series.values() if s.points), None)
    users_svg = Markup()
    users_rows: list[dict[str, Any]] = []
    if any_series is not None:
        days = [point.date for point in any_series.points]
        users_svg = _svg(
            users_chart(
                days,
                [
                    BandSeries(
                        variant.name, [p.variants[i].users for p in any_series.points], color=PALETTE[i % 8]
                    )
                    for i, variant in enumerate(any_series.points[0].variants)
                ],
                "Exposed users per variant by day (cumulative)",
            )
        )
        users_rows = [{"date": p.date, "users": [v.users for v in p.variants]} for p in any_series.points]

    progress = _progress(results, mde)
    warnings = _warnings(results, waiting)
    data_days = None
    if users_rows:
        data_days = {"first": users_rows[0]["date"], "last": users_rows[-1]["date"], "count": len(users_rows)}
    thinning = None
    if any_series is not None and any_series.daily_until is not None:
        thinning = {"daily_until": any_series.daily_until, "step": any_series.step_days}
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            experiment=experiment,
            results=results,
            bandit_section=bandit_section,
            metrics=metrics,
            users_svg=users_svg,
            users_rows=users_rows,
            variant_names=[v.name for v in results.variants],
            progress=progress,
            mde=mde,
            warnings=warnings,
            waiting=waiting,
            data_days=data_days,
            analysis_label=ANALYSIS_LABELS[analysis],
            rate=rate,
            summary=summary,
            thinning=thinning,
            single_metric=shown[0] if summary is not None and len(shown) == 1 else None,
        )
    )


def _progress(results: ExperimentResults, mde: float) -> dict[str, Any] | None:
    """Progress toward the sample size of the first metric's conversion analysis at `mde`."""
    if not results.metrics:
        return None
    metric = next(iter(results.metrics))
    power = results.metrics[metric].conversion.power
    if not isinstance(power, PowerBlock):  # absent: /results computes it only when given an mde
        return None
    required = power.required_total_users
    users = sum(v.users for v in results.variants)
    fraction = power.progress
    label = (
        f"{users:,} of {required:,} users ({fraction * 100:.0f}%) to detect a {mde * 100:g}% relative "
        f"change in the {metric} conversion rate with 80% power"
        if required is not None and fraction is not None
        else f"sample size not computable yet for a {mde * 100:g}% change in {metric} ({power.error})"
    )
    return {
        "metric": metric,
        "required": required,
        "users": users,
        "fraction": fraction,
        "label": label,
        "svg": _svg(progress_bar(fraction or 0.0, label)),
    }


def _warnings(results: ExperimentResults, waiting: Waiting) -> list[HealthWarning]:
    warnings = []
    if results.srm.sequential_flag and not results.srm.flag:
        warnings.append(
            HealthWarning(
                "srm",
                f"Sample ratio mismatch (sequential test, p = {pvalue(results.srm.sequential_p_value)}): "
                "the users per variant drifted from the weights. Do not trust these results until the "
                "cause is found.",
            )
        )
    if results.srm.flag:
        warnings.append(
            HealthWarning(
                "srm",
                f"Sample ratio mismatch: the users per variant do not match the weights "
                f"(p = {pvalue(results.srm.p_value)}). Do not trust these results until the cause is found.",
            )
        )
    few = [v.name for v in results.variants if v.weight > 0 and v.users < MIN_USERS_PER_VARIANT]
    if few:
        warnings.append(
            HealthWarning(
                "too_few_users",
                f"Too few users: {', '.join(few)} ha{'s' if len(few) == 1 else 've'} fewer than "
                f"{MIN_USERS_PER_VARIANT} exposed users; intervals are wide and unstable.",
            )
        )
    if waiting.users:
        warnings.append(
            HealthWarning(
                "waiting_for_exposure",
                f"{waiting.conversions:,} conversions of {waiting.users:,} users wait for an exposure: "
                "they count once an exposure dated at or before them arrives.",
            )
        )
    return warnings


@dataclass(frozen=True)
class IndexEntry:
    """One experiment on the index page, with its headline result (None without data).

    `stats` (the statistics the results came from) lets a headline without a lift show each variant's
    converted users, so a treatment at 0% reads as a result, not as missing data."""

    experiment: Experiment
    results: ExperimentResults | None
    stats: VariantMetrics | None = None


# Why the headline has no lift, by the comparison's error (stats.moments), in words for the index.
_NO_LIFT = {
    NO_USERS: "no lift yet: a variant has no exposed users",
    TOO_FEW_USERS: "no lift yet: a variant has fewer than 2 exposed users",
    ZERO_BASELINE: "no relative lift: the control has no conversions",
    NEGATIVE_BASELINE: "no relative lift: the control's mean is negative",
    ZERO_VARIANCE: "no test: a variant converted none or all of its users",
    NUMERICAL_ERROR: "no test: the numbers are too extreme to compute",
}


def _conversions(results: ExperimentResults, stats: VariantMetrics | None, metric: str) -> str | None:
    """'control 3/124 (2.42%) · treatment 0/134 (0.00%)': converted of exposed users per variant."""
    if stats is None:
        return None
    parts = []
    for variant in results.variants:
        metric_stats = stats.metrics.get(variant.id, {}).get(metric)
        converted = min(metric_stats.users if metric_stats else 0, variant.users)
        share = rate(converted / variant.users) if variant.users else DASH
        parts.append(f"{variant.name} {converted:,}/{variant.users:,} ({share})")
    return " \u00b7 ".join(parts)


def _headline(
    results: ExperimentResults | None, stats: VariantMetrics | None = None
) -> dict[str, Any] | None:
    """The first metric's best treatment by conversion lift; without one, why not and the raw counts."""
    if results is None or not results.metrics:
        return None
    metric = next(iter(results.metrics))
    comparisons = results.metrics[metric].conversion.comparisons
    scored = [(c, c.relative.estimate) for c in comparisons if c.relative.estimate is not None]
    if not scored:
        errors = [c.relative.error for c in comparisons if c.relative.error]
        reason = _NO_LIFT.get(errors[0], f"no lift: {errors[0]}") if errors else "no lift yet"
        return {
            "metric": metric,
            "variant": None,
            "reason": reason,
            "conversions": _conversions(results, stats, metric),
        }
    best, lift = max(scored, key=lambda scored_comparison: scored_comparison[1])
    return {
        "metric": metric,
        "variant": results.variants[best.treatment_index].name,
        "lift": lift,
        "ci": best.relative.ci,
        "p_value": best.relative.p_value,
        "chance_to_win": best.bayes_relative.chance_to_win,
    }


def index_page(entries: list[IndexEntry], *, truncated: bool = False) -> str:
    """The list of experiments, each with status, dates, users, SRM and headline, linking to its report."""
    rows = []
    for entry in entries:
        results = entry.results
        rows.append(
            {
                "experiment": entry.experiment,
                "users": sum(v.users for v in results.variants) if results else 0,
                "srm": results.srm if results else None,
                "decision": results.decision if results else None,
                "headline": _headline(results, entry.stats),
            }
        )
    return _environment().get_template("index.html.j2").render(rows=rows, truncated=truncated)
