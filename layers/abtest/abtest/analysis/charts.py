"""Server-side SVG charts for the HTML report (pure; no JavaScript, nothing fetched from another host).

Each function returns one self-contained `<svg>` element as text, with a `<title>` and `<desc>` for
screen readers; the page also prints every number it draws as text. Coordinates are rounded to 0.1 px.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

PALETTE = ("#4c6a92", "#d1603d", "#3f9b6b", "#8d5fae", "#c2a13a", "#2f8ea3", "#b5477a", "#6b6b6b")
FONT = 'font-family="system-ui, -apple-system, \'Segoe UI\', Roboto, sans-serif" font-size="12"'


@dataclass(frozen=True)
class ForestRow:
    """One interval of a forest plot: a label, the estimate and its interval (None when not computable)."""

    label: str
    estimate: float | None
    low: float | None
    high: float | None
    color: str = PALETTE[1]


@dataclass(frozen=True)
class BandSeries:
    """A line over days with an optional interval band (None values leave a gap)."""

    name: str
    values: Sequence[float | None]
    low: Sequence[float | None] | None = None
    high: Sequence[float | None] | None = None
    color: str = PALETTE[1]


def _f(x: float) -> str:
    return f"{x:.1f}"


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _percent(x: float) -> str:
    text = f"{x * 100:.1f}".rstrip("0").rstrip(".")
    return f"{'+' if x > 0 else ''}{text}%"


def _svg_open(width: int, height: int, title: str, desc: str, css_class: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css_class}" role="img" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" {FONT}>'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>"
    )


def forest_plot(rows: Sequence[ForestRow], title: str = "Relative lift with its interval") -> str:
    """Each row's relative lift as a dot on its interval, against a zero line (x axis in percent)."""
    width, label_width, row_height, top, bottom = 720, 220, 30, 14, 34
    plot_left, plot_right = label_width + 10, width - 20
    height = top + row_height * max(len(rows), 1) + bottom
    values = [v for row in rows for v in (row.low, row.high, row.estimate) if v is not None]
    low, high = (min([*values, 0.0]), max([*values, 0.0])) if values else (-0.1, 0.1)
    pad = (high - low) * 0.08 or 0.05
    low, high = low - pad, high + pad

    def x(value: float) -> float:
        return plot_left + (value - low) / (high - low) * (plot_right - plot_left)

    desc = "; ".join(
        f"{row.label}: {_percent(row.estimate)} [{_percent(row.low)}, {_percent(row.high)}]"
        if row.estimate is not None and row.low is not None and row.high is not None
        else f"{row.label}: not computable"
        for row in rows
    )
    parts = [_svg_open(width, height, title, desc or "no comparisons", "forest-plot")]
    axis_y = top + row_height * max(len(rows), 1)
    for tick in _nice_ticks(low, high):
        parts.append(
            f'<line x1="{_f(x(tick))}" x2="{_f(x(tick))}" y1="{top}" y2="{axis_y}" stroke="#e3e3e3"/>'
            f'<text x="{_f(x(tick))}" y="{axis_y + 16}" text-anchor="middle" fill="#555">'
            f"{_percent(tick)}</text>"
        )
    parts.append(
        f'<line class="zero" x1="{_f(x(0.0))}" x2="{_f(x(0.0))}" y1="{top - 6}" y2="{axis_y}" '
        'stroke="#333" stroke-dasharray="4 3"/>'
    )
    for index, row in enumerate(rows):
        y = top + row_height * index + row_height / 2
        parts.append(
            f'<text x="{label_width}" y="{_f(y + 4)}" text-anchor="end" fill="#222">'
            f"{escape(row.label)}</text>"
        )
        if row.estimate is None or row.low is None or row.high is None:
            parts.append(f'<text x="{plot_left + 4}" y="{_f(y + 4)}" fill="#888">not computable</text>')
            continue
        parts.append(
            f'<line class="interval" x1="{_f(x(row.low))}" x2="{_f(x(row.high))}" y1="{_f(y)}" y2="{_f(y)}" '
            f'stroke="{row.color}" stroke-width="3" stroke-linecap="round"/>'
            f'<circle class="estimate" cx="{_f(x(row.estimate))}" cy="{_f(y)}" r="5" fill="{row.color}" '
            'stroke="#fff" stroke-width="1.5"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _line_chart(
    days: Sequence[date],
    series: Sequence[BandSeries],
    *,
    title: str,
    desc: str,
    css_class: str,
    y_format: str,
    zero_line: bool,
) -> str:
    width, height, left, right, top, bottom = 720, 260, 64, 130, 14, 36
    plot_right, plot_bottom = width - right, height - bottom
    values = [
        v
        for s in series
        for seq in (s.values, s.low or (), s.high or ())
        for v in seq
        if v is not None and math.isfinite(v)
    ]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if zero_line:
        low, high = min(low, 0.0), max(high, 0.0)
    if y_format == "count":
        low = 0.0
    pad = (high - low) * 0.06 or 1.0
    low, high = (low - pad if y_format != "count" else 0.0), high + pad
    ticks = _nice_ticks(low, high)
    if len(ticks) > 1:
        # The axis ends on ticks, so no point is drawn above the top one (or below the lowest).
        tick_step = ticks[1] - ticks[0]
        ticks = _nice_ticks(math.floor(low / tick_step) * tick_step, math.ceil(high / tick_step) * tick_step)
        low, high = min(low, ticks[0]), max(high, ticks[-1])

    def x(index: int) -> float:
        return left + (index / max(len(days) - 1, 1)) * (plot_right - left)

    def y(value: float) -> float:
        return plot_bottom - (value - low) / (high - low) * (plot_bottom - top)

    def label(value: float) -> str:
        return _percent(value) if y_format == "percent" else f"{value:,.0f}"

    parts = [_svg_open(width, height, title, desc, css_class)]
    for tick in ticks:
        parts.append(
            f'<line x1="{left}" x2="{plot_right}" y1="{_f(y(tick))}" y2="{_f(y(tick))}" stroke="#e6e6e6"/>'
            f'<text x="{left - 6}" y="{_f(y(tick) + 4)}" text-anchor="end" fill="#555">{label(tick)}</text>'
        )
    if zero_line:
        parts.append(
            f'<line class="zero" x1="{left}" x2="{plot_right}" y1="{_f(y(0.0))}" y2="{_f(y(0.0))}" '
            'stroke="#333" stroke-dasharray="4 3"/>'
        )
    step = max(1, math.ceil(len(days) / 8))
    # Within one year the month and day say it; across years each label carries its year.
    day_format = "%b %d" if not days or days[0].year == days[-1].year else "%Y-%m-%d"
    for index, day in enumerate(days):
        if index % step == 0 or index == len(days) - 1:
            parts.append(
                f'<text x="{_f(x(index))}" y="{plot_bottom + 18}" text-anchor="middle" fill="#555">'
                f"{day.strftime(day_format)}</text>"
            )
    parts.append(f'<line x1="{left}" x2="{plot_right}" y1="{plot_bottom}" y2="{plot_bottom}" stroke="#999"/>')
    for number, s in enumerate(series):
        if s.low is not None and s.high is not None:
            upper = [(x(i), y(h)) for i, h in enumerate(s.high) if h is not None]
            lower = [(x(i), y(lo)) for i, lo in enumerate(s.low) if lo is not None]
            if len(upper) > 1 and len(lower) > 1:
                points = " ".join(f"{_f(px)},{_f(py)}" for px, py in [*upper, *reversed(lower)])
                parts.append(
                    f'<polygon class="band" points="{points}" fill="{s.color}" fill-opacity="0.18"/>'
                )
            elif len(upper) == 1 and len(lower) == 1:  # one day: the interval as a bar
                (px, top_y), (_, low_y) = upper[0], lower[0]
                parts.append(
                    f'<rect class="band" x="{_f(px - 6)}" y="{_f(top_y)}" width="12" '
                    f'height="{_f(max(low_y - top_y, 1.0))}" fill="{s.color}" fill-opacity="0.18"/>'
                )
        line = [(x(i), y(v)) for i, v in enumerate(s.values) if v is not None]
        if len(line) > 1:
            path = " ".join(f"{_f(px)},{_f(py)}" for px, py in line)
            parts.append(
                f'<polyline class="line" points="{path}" fill="none" stroke="{s.color}" stroke-width="2.2"/>'
            )
        for px, py in line:
            parts.append(f'<circle class="point" cx="{_f(px)}" cy="{_f(py)}" r="2.6" fill="{s.color}"/>')
        legend_y = top + 10 + number * 18
        parts.append(
            f'<rect x="{plot_right + 14}" y="{legend_y - 9}" width="12" height="12" fill="{s.color}"/>'
            f'<text x="{plot_right + 32}" y="{legend_y + 1}" fill="#222">{escape(s.name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def lift_over_time(days: Sequence[date], series: Sequence[BandSeries], title: str) -> str:
    """Cumulative relative lift per treatment with its interval band, one point per day."""
    desc = "; ".join(
        f"{s.name} on {days[-1].isoformat()}: {_percent(s.values[-1])}"
        for s in series
        if days and s.values and s.values[-1] is not None
    )
    return _line_chart(
        days,
        series,
        title=title,
        desc=desc or "no data",
        css_class="lift-over-time",
        y_format="percent",
        zero_line=True,
    )


def users_over_time(days: Sequence[date], series: Sequence[BandSeries], title: str) -> str:
    """Cumulative exposed users per variant, one point per day."""
    desc = "; ".join(
        f"{s.name}: {s.values[-1]:,.0f} users" for s in series if s.values and s.values[-1] is not None
    )
    return _line_chart(
        days,
        series,
        title=title,
        desc=desc or "no data",
        css_class="users-over-time",
        y_format="count",
        zero_line=False,
    )


def progress_bar(fraction: float, label: str) -> str:
    """A horizontal bar filled to `fraction` (clamped to [0, 1])."""
    width, height = 720, 26
    filled = max(0.0, min(1.0, fraction)) * width
    color = PALETTE[2] if fraction >= 1 else PALETTE[0]
    return (
        f"{_svg_open(width, height, 'Progress toward the sample size', label, 'progress-bar')}"
        f'<rect x="0" y="0" width="{width}" height="{height}" rx="5" fill="#e9edf2"/>'
        f'<rect class="filled" x="0" y="0" width="{_f(filled)}" height="{height}" rx="5" fill="{color}"/>'
        # A white halo behind dark text: legible on the empty track and on the dark filled part alike.
        f'<text x="{width / 2}" y="17" text-anchor="middle" fill="#111" stroke="#fff" stroke-width="3" '
        f'paint-order="stroke">{escape(label)}</text></svg>'
    )
