"""The pure parts of results over time and of the HTML report: the series builder, the SVG charts, the
number formatting and the page templates."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from abtest.analysis.charts import (
    BandSeries,
    ForestRow,
    forest_plot,
    lift_over_time,
    progress_bar,
    users_over_time,
)
from abtest.analysis.report import IndexEntry, Waiting, index_page, interval, pct, pvalue, report_page
from abtest.analysis.results import results_report
from abtest.analysis.rollup import ExposureTotals, MetricStats, VariantMetrics
from abtest.analysis.timeseries import DailyMetrics, filled_days, timeseries_report
from abtest.domain.experiments import Experiment, Status, Variant

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
STARTED = datetime(2026, 3, 1, 8, tzinfo=UTC)  # the series below starts on the start day


def experiment(description: str = "") -> Experiment:
    return Experiment(
        id=uuid4(),
        name="checkout",
        description=description,
        status=Status.RUNNING,
        traffic_allocation=1.0,
        salt="s",
        surface="checkout",
        variants=[
            Variant(id=uuid4(), name=name, description="", weight=0.5, config={}, position=i)
            for i, name in enumerate(("control", "treatment"))
        ],
        created_at=NOW,
        updated_at=NOW,
        started_at=STARTED,
        completed_at=None,
    )


def stats(exp: Experiment, users: tuple[int, int], converted: tuple[int, int]) -> VariantMetrics:
    control, treatment = exp.variants
    return VariantMetrics(
        exp,
        {control.id: ExposureTotals(users[0], users[0]), treatment.id: ExposureTotals(users[1], users[1])},
        {
            control.id: {
                "buy": MetricStats(converted[0], 2.0 * converted[0], 4.0 * converted[0], converted[0])
            },
            treatment.id: {
                "buy": MetricStats(converted[1], 2.0 * converted[1], 4.0 * converted[1], converted[1])
            },
        },
    )


def daily(exp: Experiment) -> DailyMetrics:
    day = date(2026, 3, 1)
    days = [
        (day, stats(exp, (100, 104), (10, 14))),
        (day + timedelta(days=1), stats(exp, (210, 200), (20, 30))),
        (day + timedelta(days=3), stats(exp, (400, 410), (40, 60))),
    ]
    return DailyMetrics(days[-1][1], days)


def test_missing_days_repeat_the_day_before() -> None:
    exp = experiment()
    filled = filled_days(daily(exp).days)
    assert [d.day for d, _ in filled] == [1, 2, 3, 4]
    assert filled[2][1] is filled[1][1]


@pytest.mark.parametrize("analysis", ["conversion", "value"])
def test_the_last_point_is_the_results_report_of_the_current_statistics(analysis: str) -> None:
    exp = experiment()
    data = daily(exp)
    series = timeseries_report(data, "buy", analysis)  # type: ignore[arg-type]
    assert len(series.points) == 4
    assert [sum(v.users for v in p.variants) for p in series.points] == [204, 410, 410, 810]
    results = results_report(data.current)
    expected = getattr(results.metrics["buy"], analysis).comparisons[0]
    last = series.points[-1].comparisons[0]
    assert expected.relative.ci is not None
    assert expected.sequential_relative.ci is not None
    assert last.lift == expected.relative.estimate
    assert last.ci == list(expected.relative.ci)
    assert last.sequential_ci == list(expected.sequential_relative.ci)
    assert last.chance_to_win == expected.bayes_relative.chance_to_win
    assert series.points[-1].srm_p_value == results.srm.p_value


def test_an_unknown_metric_is_refused_and_the_default_is_the_first() -> None:
    data = daily(experiment())
    assert timeseries_report(data).metric == "buy"
    with pytest.raises(KeyError):
        timeseries_report(data, "nope")


def test_formatting_rounds_and_signs() -> None:
    assert pct(0.12345) == "+12.35%"
    assert pct(-0.5) == "\u221250.00%"
    assert pct(None) == "\u2013"
    assert interval([-0.01, 0.02]) == "[\u22121.00%, +2.00%]"
    assert pvalue(0.00001) == "<0.0001"
    assert pvalue(0.04567) == "0.0457"


def test_charts_are_svg_with_escaped_text_and_drawn_marks() -> None:
    svg = forest_plot([ForestRow("<b>x</b>", 0.1, -0.05, 0.25), ForestRow("none", None, None, None)])
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert "<b>" not in svg
    assert "&lt;b&gt;" in svg
    assert svg.count('class="interval"') == 1
    assert "not computable" in svg
    days = [date(2026, 3, d) for d in (1, 2, 3)]
    chart = lift_over_time(
        days, [BandSeries("t", [0.1, 0.2, None], [0.0, 0.1, None], [0.2, 0.3, None])], "lift"
    )
    assert 'class="band"' in chart
    assert chart.count('class="point"') == 2
    bar = progress_bar(1.7, "done")
    assert re.search(r'class="filled" x="0" y="0" width="720.0"', bar)  # clamped to the full width


def test_the_page_escapes_what_users_wrote_and_warns_about_srm() -> None:
    exp = experiment(description="<script>alert(1)</script>")
    current = stats(exp, (1000, 700), (100, 90))
    data = DailyMetrics(current, [(date(2026, 3, 1), current)])
    results = results_report(current, mde=0.1)
    page = report_page(
        exp,
        current,
        results,
        {"buy": timeseries_report(data, "buy")},
        mde=0.1,
        waiting=Waiting(2, 3),
    )
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert 'data-warning="srm"' in page
    assert "3 conversions of 2 users wait for an exposure" in page
    assert "1,000" in page
    index = index_page([IndexEntry(exp, results)])
    assert f'href="experiments/{exp.id}/report"' in index


def test_the_index_headline_says_why_there_is_no_lift_and_shows_the_conversions() -> None:
    # Treatment 0 of 134 against control 3 of 124 (zero_variance) used to read "no conversions yet".
    exp = experiment()
    current = stats(exp, (124, 134), (3, 0))
    results = results_report(current)
    assert results.metrics["buy"].conversion.comparisons[0].relative.error == "zero_variance"
    index = index_page([IndexEntry(exp, results, current)])
    assert "no conversions yet" not in index
    assert "no test: a variant converted none or all of its users" in index
    assert "control 3/124 (2.42%) \u00b7 treatment 0/134 (0.00%)" in index

    no_baseline = stats(exp, (124, 134), (0, 5))
    index = index_page([IndexEntry(exp, results_report(no_baseline), no_baseline)])
    assert "no relative lift: the control has no conversions" in index
    assert "treatment 5/134 (3.73%)" in index

    draft = exp.model_copy(update={"status": Status.DRAFT})
    assert "not started" in index_page([IndexEntry(draft, None)])


def _point_ys(svg: str) -> list[float]:
    return [float(y) for y in re.findall(r'class="point" cx="[^"]+" cy="([^"]+)"', svg)]


def _tick_ys(svg: str) -> list[float]:
    return [float(y) for y in re.findall(r'<line x1="64" x2="590" y1="([^"]+)"', svg)]


@pytest.mark.parametrize(
    ("values", "kind"),
    [([124.0, 134.0], "users"), ([0.031, 0.047], "lift"), ([-0.2, 0.07], "lift"), ([1.0, 7.0], "users")],
)
def test_every_point_lies_between_the_lowest_and_the_top_tick(values: list[float], kind: str) -> None:
    # One-day experiments drew their points above the top tick (134 users above a top tick of 125).
    day = [date(2026, 3, 1)]
    series = [BandSeries(f"v{i}", [v], None, None) for i, v in enumerate(values)]
    svg = users_over_time(day, series, "users") if kind == "users" else lift_over_time(day, series, "lift")
    ticks = _tick_ys(svg)  # SVG y grows downwards: the top tick has the smallest y
    assert len(ticks) >= 2
    for y in _point_ys(svg):
        assert min(ticks) <= y <= max(ticks), (y, ticks)


def test_day_labels_carry_the_year_when_the_span_crosses_one() -> None:
    days = [date(2025, 11, 1) + timedelta(days=n) for n in range(120)]
    series = [BandSeries("t", [0.01] * len(days), None, None)]
    svg = lift_over_time(days, series, "lift")
    assert "2025-11-01" in svg
    assert "2026-02-28" in svg
    short = lift_over_time(days[:10], [BandSeries("t", [0.01] * 10, None, None)], "lift")
    assert "Nov 01" in short


def test_the_progress_label_has_a_light_halo_over_the_dark_fill() -> None:
    bar = progress_bar(0.8, "80% of 10,000 users")
    label = re.search(r"<text [^>]*>80% of 10,000 users</text>", bar)
    assert label is not None
    assert 'stroke="#fff"' in label.group(0)
    assert 'paint-order="stroke"' in label.group(0)
