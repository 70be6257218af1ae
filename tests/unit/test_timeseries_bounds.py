"""Results over time and the results page stay bounded for any legal experiment: the series covers only
the experiment's dates and thins past DAILY_DAYS, and the page splits per metric when it cannot hold
every metric in full. The sizes are checked on the largest legal experiment (MAX_VARIANTS variants,
MAX_METRICS_PER_EXPERIMENT metrics, a year of days) against Lambda's 6 MB response limit with margin."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from abtest.analysis.report import Waiting, report_page
from abtest.analysis.report_pages import INLINE_COMPARISONS, metric_summaries, metrics_in_full
from abtest.analysis.results import results_report
from abtest.analysis.rollup import ExposureTotals, MetricStats, VariantMetrics
from abtest.analysis.timeseries import (
    DAILY_DAYS,
    MAX_SERIES_POINTS,
    DailyMetrics,
    metric_names,
    timeseries_report,
    within,
)
from abtest.domain.experiments import Experiment, Status, Variant
from abtest.limits import MAX_METRICS_PER_EXPERIMENT, MAX_VARIANTS

BUDGET = 4_000_000  # bytes: Lambda answers at most 6 MB; keep a third of it as margin
TODAY = date(2026, 12, 7)


def experiment(variants: int, started: date, completed: date | None = None) -> Experiment:
    at = datetime(started.year, started.month, started.day, 9, tzinfo=UTC)
    return Experiment(
        id=uuid4(),
        name="largest",
        description="",
        status=Status.COMPLETED if completed else Status.RUNNING,
        traffic_allocation=1.0,
        salt="s",
        surface="s",
        variants=[
            Variant(
                id=uuid4(),
                name=f"variant_{i:02d}_with_a_long_name",
                description="",
                weight=1 / variants,
                config={},
                position=i,
            )
            for i in range(variants)
        ],
        created_at=at,
        updated_at=at,
        started_at=at,
        completed_at=datetime(completed.year, completed.month, completed.day, 18, tzinfo=UTC)
        if completed
        else None,
    )


def day_stats(exp: Experiment, day: int, metrics: list[str]) -> VariantMetrics:
    """Cumulative statistics after `day` days: 100 new users per variant a day, about 10% converting."""
    users = 100 * (day + 1)
    variants = {v.id: ExposureTotals(users + i, users + i) for i, v in enumerate(exp.variants)}
    per_metric = {
        v.id: {
            name: MetricStats(
                users // 10 + i + m, 2.5 * (users // 10 + i), 7.0 * (users // 10 + i), users // 10 + i
            )
            for m, name in enumerate(metrics)
        }
        for i, v in enumerate(exp.variants)
    }
    return VariantMetrics(exp, variants, per_metric)


def largest(days: int = 366, variants: int = MAX_VARIANTS) -> tuple[Experiment, list[str]]:
    exp = experiment(variants, TODAY - timedelta(days=days - 1))
    names = [f"metric_{m:03d}" for m in range(MAX_METRICS_PER_EXPERIMENT)]
    return exp, names


def daily_of(exp: Experiment, names: list[str], days: int, read: list[str]) -> DailyMetrics:
    """What RollupRepository.daily_metrics answers: the current statistics with every metric, and the
    daily rows of the metrics read."""
    first = exp.started_at.date() if exp.started_at else TODAY
    current = day_stats(exp, days - 1, names)
    series = [(first + timedelta(days=d), day_stats(exp, d, read)) for d in range(days)]
    series[-1] = (series[-1][0], current)
    return DailyMetrics(current, series)


def test_days_outside_the_experiment_count_on_the_nearest_day_inside() -> None:
    exp = experiment(2, date(2026, 3, 5))
    a, b, c, d = (day_stats(exp, n, ["m"]) for n in range(4))
    days = [(date(2000, 1, 2), a), (date(2026, 3, 4), b), (date(2026, 3, 6), c), (date(2026, 3, 9), d)]
    assert within(days, date(2026, 3, 5), date(2026, 3, 8)) == [
        (date(2026, 3, 5), b),
        (date(2026, 3, 6), c),
        (date(2026, 3, 8), d),
    ]
    assert within(days, None, date(2026, 3, 8))[0] == (date(2000, 1, 2), a)


def test_an_old_dated_day_does_not_stretch_the_series() -> None:
    """The issue's case: one exposure dated 2000-01-02 gave 9,837 daily points."""
    exp = experiment(3, TODAY - timedelta(days=1))
    early = day_stats(exp, 0, ["m"])
    current = day_stats(exp, 1, ["m"])
    data = DailyMetrics(current, [(date(2000, 1, 2), early), (TODAY, current)])
    series = timeseries_report(data, "m", today=TODAY)
    assert [p.date for p in series.points] == [TODAY - timedelta(days=1), TODAY]
    assert series.daily_until is None
    assert series.step_days == 1


def test_a_completed_experiment_ends_on_its_completion_day() -> None:
    exp = experiment(2, date(2026, 3, 1), completed=date(2026, 3, 3))
    stats = [day_stats(exp, n, ["m"]) for n in range(4)]
    data = DailyMetrics(stats[-1], [(date(2026, 3, 1) + timedelta(days=n), s) for n, s in enumerate(stats)])
    series = timeseries_report(data, "m", today=TODAY)
    assert [p.date.day for p in series.points] == [1, 2, 3]
    assert series.points[-1].variants[0].users == stats[-1].variants[exp.variants[0].id].users


def test_daily_then_weekly_and_always_the_last_day() -> None:
    exp, _ = largest(days=366, variants=2)
    data = daily_of(exp, ["m"], 366, ["m"])
    series = timeseries_report(data, "m", today=TODAY)
    start = exp.started_at.date() if exp.started_at else TODAY
    dates = [p.date for p in series.points]
    assert dates[:DAILY_DAYS] == [start + timedelta(days=d) for d in range(DAILY_DAYS)]
    assert series.daily_until == start + timedelta(days=DAILY_DAYS - 1)
    assert series.step_days == 7
    assert all(
        (b - a).days == 7 for a, b in zip(dates[DAILY_DAYS - 1 : -2], dates[DAILY_DAYS:-1], strict=True)
    )
    assert dates[-1] == TODAY
    # The last point is /results of the current statistics.
    last = series.points[-1].comparisons[0]
    assert last.lift == results_report(data.current).metrics["m"].conversion.comparisons[0].relative.estimate


def test_the_weekly_period_doubles_so_that_any_span_is_bounded() -> None:
    exp, _ = largest(days=3650, variants=2)
    data = daily_of(exp, ["m"], 3650, ["m"])
    series = timeseries_report(data, "m", today=TODAY)
    assert len(series.points) <= MAX_SERIES_POINTS + 1
    assert series.step_days in (14, 28, 56)
    assert series.points[-1].date == TODAY


def test_which_metrics_a_page_shows_in_full() -> None:
    names = [f"m{n}" for n in range(30)]
    assert metrics_in_full(names[:20], 2) == names[:20]
    assert metrics_in_full(names[:21], 2) == []
    assert metrics_in_full(names[:1], MAX_VARIANTS) == names[:1]
    assert metrics_in_full(names[:2], MAX_VARIANTS) == []
    assert metrics_in_full(names, MAX_VARIANTS, "m7") == ["m7"]
    assert INLINE_COMPARISONS >= MAX_VARIANTS - 1  # one metric of the largest experiment fits in full


def test_the_largest_legal_time_series_stays_under_the_budget() -> None:
    exp, names = largest()
    data = daily_of(exp, names, 366, [names[0]])  # the route reads only the asked metric's rows
    started = time.perf_counter()
    body = timeseries_report(data, names[0], today=TODAY).model_dump_json()
    seconds = time.perf_counter() - started
    assert len(body.encode()) < BUDGET, len(body)
    assert seconds < 10, seconds


@pytest.mark.parametrize("page", ["summary", "one metric"])
def test_the_largest_legal_report_stays_under_the_budget(page: str) -> None:
    exp, names = largest()
    asked = names[42] if page == "one metric" else None
    in_full = metrics_in_full(names, len(exp.variants), asked)
    data = daily_of(exp, names, 366, in_full)
    results = results_report(data.current, mde=0.1)
    series = {name: timeseries_report(data, name, today=TODAY) for name in in_full} or {
        "": timeseries_report(data, None, today=TODAY)
    }
    html = report_page(exp, data.current, results, series, mde=0.1, waiting=Waiting(), in_full=in_full)
    assert len(html.encode()) < BUDGET, len(html)
    assert 'id="metric-summary"' in html
    assert html.count('<section class="metric"') == (1 if asked else 0)
    for name in names:
        assert f'href="?metric={name}"' in html
    assert len(metric_summaries(results)) == len(metric_names(data.current)) == MAX_METRICS_PER_EXPERIMENT
