"""Which metrics the results page shows in full, so that a page stays small for any legal experiment.

A metric shown in full costs a forest plot, two tables of every variant, and its lift over time (a
chart and a table with one row per treatment and point of the series, at most MAX_SERIES_POINTS + 1
points). With up to MAX_VARIANTS variants and MAX_METRICS_PER_EXPERIMENT metrics that is far more than
a Lambda response can carry (6 MB), so the page shows every metric in full only while the metrics times
the treatments are at most INLINE_COMPARISONS. Otherwise it shows a summary (one row per metric: its
best treatment by conversion lift) and each metric links to its own page (`?metric=`), which shows that
metric in full.
"""

from __future__ import annotations

from dataclasses import dataclass

from abtest.analysis.results import ExperimentResults

INLINE_COMPARISONS = 20  # (metrics x treatments) shown in full on one page


def metrics_in_full(names: list[str], variants: int, metric: str | None = None) -> list[str]:
    """The metrics the page shows in full: the one asked for (`?metric=`), or every metric when they fit
    (metrics x treatments <= INLINE_COMPARISONS), else none (the page is a summary with links)."""
    if metric is not None:
        return [metric]
    if len(names) * max(variants - 1, 1) <= INLINE_COMPARISONS:
        return names
    return []


@dataclass(frozen=True)
class MetricSummary:
    """One metric's line in the summary: its best treatment by relative conversion lift."""

    name: str
    variant: str | None  # None: no treatment's lift is computable yet
    lift: float | None
    ci: list[float] | None
    p_value: float | None
    chance_to_win: float | None
    error: str | None  # why no lift is computable (e.g. zero_variance, no_data)


def metric_summaries(results: ExperimentResults) -> list[MetricSummary]:
    """One line per metric (sorted by name, as /results): the treatment with the highest conversion lift."""
    lines = []
    for name, metric in results.metrics.items():
        comparisons = metric.conversion.comparisons
        scored = [c for c in comparisons if c.relative.estimate is not None]
        if not scored:
            errors = [c.relative.error for c in comparisons if c.relative.error]
            lines.append(MetricSummary(name, None, None, None, None, None, errors[0] if errors else None))
            continue
        best = max(scored, key=lambda c: c.relative.estimate or 0.0)
        ci = list(best.relative.ci) if best.relative.ci is not None else None
        lines.append(
            MetricSummary(
                name,
                results.variants[best.treatment_index].name,
                best.relative.estimate,
                ci,
                best.relative.p_value,
                best.bayes_relative.chance_to_win,
                None,
            )
        )
    return lines
