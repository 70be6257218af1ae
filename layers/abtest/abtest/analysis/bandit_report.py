"""The bandit section of the HTML report: weights over time (a stacked chart) and P(best) (pure).

One stacked bar per period: the weights its users were bucketed with (each closed period's
`weights_before`, then the open period's current weights), each arm a coloured segment. The page
prints the same numbers as a table, and P(best) at the latest reweight per arm.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from abtest.analysis.bandits import BanditEstimates
from abtest.analysis.charts import FONT, PALETTE
from abtest.domain.bandits import BanditPeriod


def weights_chart(names: Sequence[str], periods: Sequence[tuple[str, Sequence[float]]]) -> str:
    """A stacked bar per (label, weights) in order, arms bottom-up in variant order; y from 0 to 100%."""
    width, height, left, right, top, bottom = 720, 260, 48, 130, 14, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(len(periods), 1)
    bar = max(step * 0.8, 1.0)
    desc = "; ".join(
        f"period {label}: " + ", ".join(f"{n} {w * 100:.1f}%" for n, w in zip(names, weights, strict=True))
        for label, weights in periods
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart bandit-weights" role="img" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" {FONT}>'
        f"<title>Weights over time</title><desc>{escape(desc or 'no periods')}</desc>"
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_h * (1 - tick)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{tick * 100:.0f}%</text>'
        )
    for index, (label, weights) in enumerate(periods):
        x = left + step * index + (step - bar) / 2
        base = 0.0
        for arm, weight in enumerate(weights):
            y = top + plot_h * (1 - base - weight)
            parts.append(
                f'<rect class="weight" data-period="{escape(label)}" data-arm="{escape(names[arm])}" '
                f'data-weight="{weight!r}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{plot_h * weight:.1f}" fill="{PALETTE[arm % len(PALETTE)]}"/>'
            )
            base += weight
        if len(periods) <= 24 or index % max(len(periods) // 12, 1) == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" fill="#555">'
                f"{escape(label)}</text>"
            )
    for arm, name in enumerate(names):
        y = top + 14 + arm * 18
        parts.append(
            f'<rect x="{width - right + 12}" y="{y - 10}" width="12" height="12" '
            f'fill="{PALETTE[arm % len(PALETTE)]}"/>'
            f'<text x="{width - right + 30}" y="{y}" fill="#222">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bandit_section(
    names: Sequence[str], periods: Sequence[BanditPeriod], estimates: BanditEstimates
) -> Markup:
    """The report's bandit section: the stacked weights chart, its table, P(best) and the estimates.

    `periods` are the closed periods shown (the latest ones, in order); the open period is drawn last.
    """
    bars: list[tuple[str, Sequence[float]]] = [(str(p.number), p.weights_before) for p in periods]
    bars.append((f"{estimates.period} (open)", [arm.weight for arm in estimates.arms]))
    rows = "".join(
        f'<tr data-period="{p.number}"><td>{p.number}</td>'
        + "".join(f"<td>{w * 100:.1f}%</td>" for w in p.weights_before)
        + f'<td class="outcome">{escape(p.outcome)}</td></tr>'
        for p in periods
    )
    arms = "".join(
        f'<tr data-arm="{escape(arm.name)}"><td>{escape(arm.name)}</td>'
        f'<td class="weight">{arm.weight * 100:.1f}%</td>'
        f'<td class="p-best">{"-" if arm.p_best is None else f"{arm.p_best * 100:.1f}%"}</td>'
        f'<td class="mean">{"-" if arm.mean is None else f"{arm.mean:.4g}"}</td>'
        f'<td class="se">{"-" if arm.standard_error is None else f"{arm.standard_error:.3g}"}</td>'
        f"<td>{arm.users}</td><td>{arm.expected_users:.1f}</td></tr>"
        for arm in estimates.arms
    )
    header = "".join(f"<th>{escape(name)}</th>" for name in names)
    return Markup(  # noqa: S704 - every value is escaped where it is put in
        '<section id="bandit"><h2>Bandit</h2>'
        f'<p class="note">Traffic moves to the best arm of <code>{escape(estimates.metric)}</code> '
        f"({escape(estimates.analysis)}, {escape(estimates.direction)} is better); period "
        f"{estimates.period} is open. Estimates are period-weighted, and the sample ratio check expects "
        "each arm's users from the weights of each period.</p>"
        f"<h3>Weights over time</h3>{weights_chart(names, bars)}"
        '<table id="bandit-arms"><thead><tr><th>Arm</th><th>Weight now</th><th>P(best)</th>'
        "<th>Period-weighted mean</th><th>Standard error</th><th>Users</th><th>Expected users</th>"
        f"</tr></thead><tbody>{arms}</tbody></table>"
        "<details><summary>Weights per period as a table</summary>"
        f'<table id="bandit-periods"><thead><tr><th>Period</th>{header}<th>Outcome</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></details></section>"
    )
