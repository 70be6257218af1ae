"""Results by dimension and post-stratified estimates (pure; no SQL).

A breakdown analyses each value ("slice") of one dimension on its own: the users whose value at
enrollment was that value (abtest.domain.breakdowns), per variant, every metric, both analyses
(conversion, value), each treatment against the control. At most MAX_BREAKDOWN_SLICES values by
exposed users are shown; the others (and values past the capture cap) are summed into "(other)".

- Multiple testing: the relative p-values are adjusted together across slices x metrics x treatments,
  per analysis (`correction`, holm unless bh is asked).
- Heterogeneity (Statsig's differential impact detection): for each slice, metric, analysis and
  treatment, Welch's test of the slice's absolute effect against the effect in the rest of the
  experiment (every other user), with Satterthwaite's degrees of freedom counting each effect's
  smaller arm. A slice is flagged when p < alpha / k, k = slices x metrics x treatments x 2 analyses
  (Bonferroni over everything tested), so an A/A experiment flags any slice at most alpha of the time.
- Bounds: slices <= MAX_BREAKDOWN_SLICES + 1, metrics <= MAX_BREAKDOWN_METRICS and fewer with many
  variants (slices x metrics x treatments <= MAX_BREAKDOWN_COMPARISONS, at least one metric);
  `metric=` picks one, and the answer names the metrics it left out.

Post-stratification (stratified experiments): abtest.stats.post_stratification over the strata.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from abtest.analysis.phases import PhasedResults
from abtest.analysis.results import metric_analysis, srm_verdict
from abtest.analysis.rollup import (
    ExposureTotals,
    Fold,
    MetricStats,
    UserKey,
    UserMetric,
    UserMetricKey,
    UserState,
    VariantMetrics,
    fold,
)
from abtest.domain.breakdowns import NONE_VALUE, OTHER_VALUE, StratifiedAssignment
from abtest.domain.experiments import Experiment
from abtest.limits import MAX_BREAKDOWN_COMPARISONS, MAX_BREAKDOWN_METRICS, MAX_BREAKDOWN_SLICES
from abtest.stats import Correction, adjust_p_values
from abtest.stats.distributions import t_sf
from abtest.stats.outputs import FrequentistBlock
from abtest.stats.post_stratification import (
    CellStat,
    PostStratifiedBlock,
    post_stratified,
    post_stratified_block,
)

Kind = Literal["conversion", "value"]
KINDS: tuple[Kind, Kind] = ("conversion", "value")


@dataclass
class SliceMetrics:
    """An experiment's sufficient statistics per value of one dimension."""

    experiment: Experiment
    dimension: str
    slices: dict[str, VariantMetrics] = field(default_factory=dict)

    def slice(self, value: str) -> VariantMetrics:
        """The statistics of one value (created empty on first use)."""
        if value not in self.slices:
            self.slices[value] = empty_stats(self.experiment)
        return self.slices[value]


def empty_stats(experiment: Experiment) -> VariantMetrics:
    return VariantMetrics(
        experiment,
        {v.id: ExposureTotals() for v in experiment.variants},
        {v.id: {} for v in experiment.variants},
    )


def add_fold(stats: VariantMetrics, delta: Fold) -> None:
    """Add a fold's per-variant deltas to one slice's statistics, in place."""
    for (_, variant_id), totals in delta.variants.items():
        stats.variants.setdefault(variant_id, ExposureTotals()).add(totals)
    for (_, variant_id, name), metric in delta.metrics.items():
        stats.metrics.setdefault(variant_id, {}).setdefault(name, MetricStats()).add(metric)


def _add_into(into: VariantMetrics, more: VariantMetrics) -> None:
    for variant_id, totals in more.variants.items():
        into.variants.setdefault(variant_id, ExposureTotals()).add(totals)
    for variant_id, per in more.metrics.items():
        for name, metric in per.items():
            into.metrics.setdefault(variant_id, {}).setdefault(name, MetricStats()).add(metric)


def _minus(total: VariantMetrics, part: VariantMetrics) -> VariantMetrics:
    rest = empty_stats(total.experiment)
    _add_into(rest, total)
    for variant_id, totals in part.variants.items():
        rest.variants[variant_id].add(ExposureTotals(-totals.exposures, -totals.users))
    for variant_id, per in part.metrics.items():
        for name, m in per.items():
            rest.metrics.setdefault(variant_id, {}).setdefault(name, MetricStats()).add(
                MetricStats(-m.count, -m.sum, -m.sum_squares, -m.users, -m.unattributed)
            )
    return rest


def _users(stats: VariantMetrics) -> int:
    return sum(t.users for t in stats.variants.values())


def top_slices(slices: SliceMetrics) -> list[tuple[str, VariantMetrics]]:
    """The values with the most exposed users (at most MAX_BREAKDOWN_SLICES, then by value), and
    "(other)" holding every other value, last, if there is any."""
    ranked = sorted(
        ((v, s) for v, s in slices.slices.items() if v != OTHER_VALUE),
        key=lambda item: (-_users(item[1]), item[0]),
    )
    shown = ranked[:MAX_BREAKDOWN_SLICES]
    folded = ranked[MAX_BREAKDOWN_SLICES:]
    if OTHER_VALUE in slices.slices:
        folded.append((OTHER_VALUE, slices.slices[OTHER_VALUE]))
    if folded:
        other = empty_stats(slices.experiment)
        for _, stats in folded:
            _add_into(other, stats)
        shown.append((OTHER_VALUE, other))
    return shown


class Heterogeneity(BaseModel):
    effect_rest: float | None = Field(description="Absolute effect among every other user")
    p_value: float | None = Field(description="Welch's test of the slice's effect against the rest's")
    flag: bool = Field(description="p < alpha / k (Bonferroni over slices x metrics x treatments x analyses)")


class SliceComparison(BaseModel):
    treatment: str
    relative: FrequentistBlock
    absolute: FrequentistBlock
    heterogeneity: Heterogeneity


class SliceVariantMetric(BaseModel):
    converted: int = Field(description="Exposed users of the slice with at least one attributed conversion")
    total: float | None = Field(description="Sum of the per-user totals (null if not a finite number)")


class SliceVariant(BaseModel):
    name: str
    users: int = Field(description="Exposed users of the slice in this variant")
    metrics: dict[str, SliceVariantMetric]


class SliceMetricResults(BaseModel):
    conversion: list[SliceComparison]
    value: list[SliceComparison]


class Slice(BaseModel):
    value: str = Field(description='The captured value; "(other)" holds every value not shown')
    users: int
    srm_p_value: float | None
    variants: list[SliceVariant]
    metrics: dict[str, SliceMetricResults]
    heterogeneity_flag: bool = Field(description="Any of the slice's comparisons flagged")


class Breakdown(BaseModel):
    dimension: str
    correction: Correction = Field(description="Adjustment across slices x metrics x treatments")
    heterogeneity_tests: int = Field(description="k of the Bonferroni heterogeneity threshold alpha / k")
    values: int = Field(description="Distinct captured values, before folding into (other)")
    slices: list[Slice]
    metrics_omitted: list[str] = Field(
        description=f"Metrics left out: at most {MAX_BREAKDOWN_METRICS} are shown, fewer with many variants "
        "(ask for one with metric=)"
    )


def _arm(stats: VariantMetrics, variant_id: UUID, name: str, kind: Kind) -> tuple[int, float, float]:
    """(users, mean, variance) of one arm, as the analyses see it."""
    n = stats.variants[variant_id].users
    metric = stats.metrics.get(variant_id, {}).get(name)
    if n <= 0:
        return max(n, 0), 0.0, 0.0
    if kind == "conversion":
        p = min(metric.users if metric else 0, n) / n
        return n, p, p * (1 - p)
    total = metric.sum if metric else 0.0
    squares = metric.sum_squares if metric else 0.0
    mean = total / n
    variance = (squares - total * total / n) / (n - 1) if n > 1 else 0.0
    return n, mean, max(variance, 0.0)


def _effect(stats: VariantMetrics, control: UUID, treatment: UUID, name: str, kind: Kind):  # type: ignore[no-untyped-def]
    n_c, m_c, v_c = _arm(stats, control, name, kind)
    n_t, m_t, v_t = _arm(stats, treatment, name, kind)
    if n_c < 2 or n_t < 2:
        return None
    return m_t - m_c, v_t / n_t + v_c / n_c, min(n_c, n_t)


def heterogeneity(
    piece: VariantMetrics, rest: VariantMetrics, control: UUID, treatment: UUID, name: str, kind: Kind
) -> tuple[float | None, float | None]:
    """(rest's absolute effect, Welch p-value of slice effect vs rest effect); None where untestable."""
    mine = _effect(piece, control, treatment, name, kind)
    theirs = _effect(rest, control, treatment, name, kind)
    if mine is None or theirs is None:
        return (theirs[0] if theirs else None), None
    (e_s, v_s, n_s), (e_r, v_r, n_r) = mine, theirs
    variance = v_s + v_r
    if not math.isfinite(variance) or variance <= 0:
        return e_r, None
    t = (e_s - e_r) / math.sqrt(variance)
    df = variance**2 / (v_s**2 / (n_s - 1) + v_r**2 / (n_r - 1))
    if not math.isfinite(df) or df <= 0:
        return e_r, None
    return e_r, min(1.0, 2 * t_sf(abs(t), df))


def breakdown_metrics(names: list[str], variants: int, metric: str | None) -> tuple[list[str], list[str]]:
    """The metrics a breakdown shows (the first by name, as many as MAX_BREAKDOWN_COMPARISONS allows
    over MAX_BREAKDOWN_SLICES + 1 slices and the treatments, at most MAX_BREAKDOWN_METRICS, at least
    one) and the ones it leaves out; `metric`: that one alone."""
    if metric is not None:
        return [metric], []
    treatments = max(1, variants - 1)
    room = max(
        1, min(MAX_BREAKDOWN_METRICS, MAX_BREAKDOWN_COMPARISONS // ((MAX_BREAKDOWN_SLICES + 1) * treatments))
    )
    ordered = sorted(names)
    return ordered[:room], ordered[room:]


def breakdown_report(
    slices: SliceMetrics,
    *,
    alpha: float = 0.05,
    correction: Correction | None = None,
    metric: str | None = None,
) -> Breakdown:
    """The per-slice analysis of one dimension (see the module docstring). A slice's rest is every
    other value (the slices add up to the experiment: each user has exactly one value)."""
    experiment = slices.experiment
    variants = experiment.variants
    control = variants[0]
    names = sorted({n for s in slices.slices.values() for per in s.metrics.values() for n in per})
    shown_names, omitted = breakdown_metrics(names, len(variants), metric)
    # Only the metrics shown are summed (the rest, the overall and "(other)"): bounded work.
    keep = set(shown_names)
    slices = SliceMetrics(
        experiment,
        slices.dimension,
        {
            value: VariantMetrics(
                experiment,
                stats.variants,
                {vid: {n: m for n, m in per.items() if n in keep} for vid, per in stats.metrics.items()},
            )
            for value, stats in slices.slices.items()
        },
    )
    overall = empty_stats(experiment)
    for stats in slices.slices.values():
        _add_into(overall, stats)
    shown = top_slices(slices)
    tests = max(1, len(shown) * len(shown_names) * (len(variants) - 1) * len(KINDS))
    method: Correction = correction or "holm"
    out: list[Slice] = []
    for value, stats in shown:
        rest = _minus(overall, stats)
        results: dict[str, SliceMetricResults] = {}
        flagged = False
        for name in shown_names:
            per_kind: dict[str, list[SliceComparison]] = {}
            for kind in KINDS:
                analysis = metric_analysis(stats, name, kind, alpha=alpha, mde=None)
                comparisons = []
                for comparison in analysis.comparisons:
                    treatment = variants[comparison.treatment_index]
                    effect_rest, p = heterogeneity(stats, rest, control.id, treatment.id, name, kind)
                    flag = p is not None and p < alpha / tests
                    flagged = flagged or flag
                    comparisons.append(
                        SliceComparison(
                            treatment=treatment.name,
                            relative=comparison.relative,
                            absolute=comparison.absolute,
                            heterogeneity=Heterogeneity(effect_rest=effect_rest, p_value=p, flag=flag),
                        )
                    )
                per_kind[kind] = comparisons
            results[name] = SliceMetricResults(**per_kind)
        users = [stats.variants[v.id].users for v in variants]
        out.append(
            Slice(
                value=value,
                users=sum(users),
                srm_p_value=srm_verdict(users, [v.weight for v in variants]).p_value,
                variants=[
                    SliceVariant(
                        name=v.name,
                        users=n,
                        metrics={
                            name: _variant_metric(stats.metrics.get(v.id, {}).get(name), n)
                            for name in shown_names
                        },
                    )
                    for v, n in zip(variants, users, strict=True)
                ],
                metrics=results,
                heterogeneity_flag=flagged,
            )
        )
    _adjust(out, method)
    return Breakdown(
        dimension=slices.dimension,
        correction=method,
        heterogeneity_tests=tests,
        values=len(slices.slices),
        slices=out,
        metrics_omitted=omitted,
    )


def _variant_metric(metric: MetricStats | None, users: int) -> SliceVariantMetric:
    if metric is None:
        return SliceVariantMetric(converted=0, total=0.0)
    return SliceVariantMetric(
        converted=min(metric.users, users), total=metric.sum if math.isfinite(metric.sum) else None
    )


def _adjust(slices: list[Slice], method: Correction) -> None:
    """Adjust the relative and the absolute p-values across slices x metrics x treatments, per analysis
    (each family apart). In small slices the relative (delta-method) p-values run low; the absolute
    ones keep the family-wise rate (bench/bench_breakdowns_aa.py measures both)."""
    for kind in KINDS:
        for difference in ("relative", "absolute"):
            _adjust_blocks(
                [
                    getattr(comparison, difference)
                    for piece in slices
                    for results in piece.metrics.values()
                    for comparison in getattr(results, kind)
                ],
                method,
            )


def _adjust_blocks(blocks: list[FrequentistBlock], method: Correction) -> None:
    if blocks:
        adjusted = adjust_p_values([block.p_value for block in blocks], method)
        for block, value in zip(blocks, adjusted, strict=True):
            block.p_value_adjusted = value


# -- post-stratification ------------------------------------------------------------------------------


class PostStratifiedComparison(BaseModel):
    treatment: str
    relative: PostStratifiedBlock
    absolute: PostStratifiedBlock


class PostStratifiedMetric(BaseModel):
    conversion: list[PostStratifiedComparison]
    value: list[PostStratifiedComparison]


class PostStratified(BaseModel):
    """Estimates combined over the strata of a stratified experiment, weighted by stratum share."""

    stratum: str = Field(description="The stratum's attribute path")
    strata: int = Field(description="Strata with exposed users")
    metrics: dict[str, PostStratifiedMetric]


def _cell(stats: VariantMetrics, variant_id: UUID, name: str, kind: Kind) -> CellStat:
    n = stats.variants[variant_id].users
    metric = stats.metrics.get(variant_id, {}).get(name)
    if kind == "conversion":
        converted = min(metric.users if metric else 0, n)
        return CellStat(n, converted, converted, proportion=True)
    return CellStat(n, metric.sum if metric else 0.0, metric.sum_squares if metric else 0.0)


def post_stratified_report(
    strata: SliceMetrics, *, alpha: float = 0.05, metrics: list[str] | None = None
) -> PostStratified | None:
    """The post-stratified estimates of a stratified experiment (None for any other)."""
    experiment = strata.experiment
    if not isinstance(experiment.assignment, StratifiedAssignment):
        return None
    cells = [s for s in strata.slices.values() if _users(s) > 0]
    names = (
        metrics
        if metrics is not None
        else sorted({n for s in cells for per in s.metrics.values() for n in per})
    )
    names = names[:MAX_BREAKDOWN_METRICS]
    control = experiment.variants[0]
    out: dict[str, PostStratifiedMetric] = {}
    for name in names:
        per_kind: dict[str, list[PostStratifiedComparison]] = {}
        for kind in KINDS:
            comparisons = []
            for treatment in experiment.variants[1:]:
                pairs = [
                    (_cell(s, control.id, name, kind), _cell(s, treatment.id, name, kind)) for s in cells
                ]
                blocks = {}
                for difference in ("relative", "absolute"):
                    if not pairs:
                        blocks[difference] = PostStratifiedBlock(
                            estimate=None, se=None, ci=None, p_value=None, error="no_users"
                        )
                        continue
                    moments = post_stratified(pairs, relative=difference == "relative")
                    blocks[difference] = post_stratified_block(moments, alpha)
                comparisons.append(PostStratifiedComparison(treatment=treatment.name, **blocks))
            per_kind[kind] = comparisons
        out[name] = PostStratifiedMetric(**per_kind)
    return PostStratified(stratum=experiment.assignment.stratum, strata=len(cells), metrics=out)


class ResultsWithBreakdown(PhasedResults):
    """/results: the experiment's results (of a phase, labelled), with a breakdown when `dimension` is
    asked and the post-stratified estimates of a stratified experiment."""

    breakdown: Breakdown | None = Field(default=None, description="Only with ?dimension=")
    post_stratified: PostStratified | None = Field(
        default=None, description="Only for a stratified experiment"
    )


# -- the rollup per slice ---------------------------------------------------------------------------

SliceKey = tuple[str, str]  # (dimension, value)
_FoldInputs = tuple[
    dict[UserKey, UserState],
    dict[UserMetricKey, UserMetric],
    dict[UserKey, UserState],
    dict[UserMetricKey, UserMetric],
]


def slice_folds(
    dimensions: list[str],
    values: dict[str, dict[str, str]],
    old_users: dict[UserKey, UserState],
    old_metrics: dict[UserMetricKey, UserMetric],
    new_users: dict[UserKey, UserState],
    new_metrics: dict[UserMetricKey, UserMetric],
    *,
    check_finite: bool = True,
) -> dict[SliceKey, Fold]:
    """The rollup's fold (stored -> recomputed per-user state) grouped by each user's value of each
    dimension (`values`: user id -> {dimension: value}; a user without one is "(none)")."""
    old_by_user: dict[UserKey, dict[UserMetricKey, UserMetric]] = {}
    for mkey, metric in old_metrics.items():
        old_by_user.setdefault((mkey[0], mkey[1]), {})[mkey] = metric
    new_by_user: dict[UserKey, dict[UserMetricKey, UserMetric]] = {}
    for mkey, metric in new_metrics.items():
        new_by_user.setdefault((mkey[0], mkey[1]), {})[mkey] = metric
    groups: dict[SliceKey, _FoldInputs] = {}
    for key, state in new_users.items():
        captured = values.get(key[1]) or {}
        for dimension in dimensions:
            group = groups.setdefault((dimension, captured.get(dimension, NONE_VALUE)), ({}, {}, {}, {}))
            if key in old_users:
                group[0][key] = old_users[key]
            group[1].update(old_by_user.get(key, {}))
            group[2][key] = state
            group[3].update(new_by_user.get(key, {}))
    return {slice_key: fold(*inputs, check_finite=check_finite) for slice_key, inputs in groups.items()}


def with_breakdown(page: str, breakdown: Breakdown) -> str:
    """The report page with the breakdown's section added at the end of its body."""
    from abtest.analysis.report import _environment

    names = sorted({name for piece in breakdown.slices for name in piece.metrics})
    variants = [v.name for v in breakdown.slices[0].variants] if breakdown.slices else []
    section = (
        _environment()
        .get_template("breakdown.html.j2")
        .render(breakdown=breakdown, metric_names=names, variant_names=variants)
    )
    head, tail = page.rsplit("</body>", 1)
    return head + section + "</body>" + tail
