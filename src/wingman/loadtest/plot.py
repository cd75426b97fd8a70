"""A capacity search as a picture: latency percentiles and CPU per component against users.

``wingmanctl bench capacity`` writes this SVG next to its Markdown. The SVG is written by hand:
two line charts that share the users axis are a few dozen elements, not worth a plotting
library on the appliance. Every series is one ``<polyline>`` with one point per step, named by a
``data-series`` attribute and a ``<title>`` (a tooltip in browsers), so scripts and tests can read
the picture back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

WIDTH = 760
CHART_HEIGHT = 330
# Room around each chart's plot area: axis labels left and below, the legend on the right.
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 44, 56
# Colour-blind-safe (Okabe-Ito, without its yellow, too faint on white), black, grey.
COLOURS = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#000000",
    "#999999",
)
PERCENTILES = (("p50", "p50_ms"), ("p95", "p95_ms"), ("p99", "p99_ms"))


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


@dataclass(frozen=True)
class Chart:
    title: str
    y_label: str
    series: Sequence[Series]


def nice_ticks(low: float, high: float, intervals: int = 5) -> list[float]:
    """Round tick values covering ``low``..``high``: steps of 1, 2 or 5 times a power of ten."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    span = high - low
    if span < 1e-3:
        # One value (or a run of equal ones: a single step, an idle component): a scale from
        # around it, never a step finer than the figures' own precision.
        span = max(abs(high), 1.0)
    raw = span / intervals
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9)
    last = max(math.ceil(high / step - 1e-9), first + 1)
    return [round(i * step, 10) for i in range(first, last + 1)]


def _label(value: float) -> str:
    return f"{value:g}"


def _chart(chart: Chart, users: Sequence[float], top: float) -> list[str]:
    """One chart's elements, its frame ``top`` pixels from the picture's top."""
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = CHART_HEIGHT - TOP - BOTTOM
    # Users from the first step to the last; values from zero, so heights compare honestly.
    x_ticks = nice_ticks(min(users, default=0), max(users, default=1))
    y_ticks = nice_ticks(0, max((v for s in chart.series for v in s.values), default=1))
    x_min, x_max, y_max = x_ticks[0], x_ticks[-1], y_ticks[-1]
    y0 = top + TOP + plot_h

    def x(value: float) -> float:
        return LEFT + plot_w * (value - x_min) / (x_max - x_min)

    def y(value: float) -> float:
        return y0 - plot_h * value / y_max

    out = [
        f'<g class="chart" data-chart={quoteattr(chart.title)}>',
        f'<text class="title" x="{LEFT}" y="{top + 24}">{escape(chart.title)}</text>',
    ]
    for tick in y_ticks:
        out.append(
            f'<line class="grid" x1="{LEFT}" y1="{y(tick):.1f}" x2="{LEFT + plot_w}" '
            f'y2="{y(tick):.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y(tick) + 4:.1f}" '
            f'text-anchor="end">{_label(tick)}</text>'
        )
    for tick in x_ticks:
        out.append(
            f'<line class="grid" x1="{x(tick):.1f}" y1="{top + TOP}" x2="{x(tick):.1f}" '
            f'y2="{y0}"/>'
            f'<text class="tick" x="{x(tick):.1f}" y="{y0 + 16}" '
            f'text-anchor="middle">{_label(tick)}</text>'
        )
    out += [
        f'<line class="axis" x1="{LEFT}" y1="{y0}" x2="{LEFT + plot_w}" y2="{y0}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{top + TOP}" x2="{LEFT}" y2="{y0}"/>',
        f'<text class="label" x="{LEFT + plot_w / 2}" y="{y0 + 38}" '
        f'text-anchor="middle">users</text>',
        f'<text class="label" transform="translate({LEFT - 50},{top + TOP + plot_h / 2}) '
        f'rotate(-90)" text-anchor="middle">{escape(chart.y_label)}</text>',
    ]
    for index, series in enumerate(chart.series):
        colour = COLOURS[index % len(COLOURS)]
        points = " ".join(
            f"{x(u):.1f},{y(v):.1f}" for u, v in zip(users, series.values, strict=True)
        )
        out.append(
            f"<polyline data-series={quoteattr(series.name)} points={quoteattr(points)} "
            f'stroke="{colour}"><title>{escape(series.name)}</title></polyline>'
        )
        legend_y = top + TOP + 8 + 20 * index
        out.append(
            f'<line x1="{LEFT + plot_w + 16}" y1="{legend_y}" x2="{LEFT + plot_w + 40}" '
            f'y2="{legend_y}" stroke="{colour}" stroke-width="3"/>'
            f'<text class="legend" x="{LEFT + plot_w + 46}" y="{legend_y + 4}">'
            f"{escape(series.name)}</text>"
        )
    out.append("</g>")
    return out


def render(title: str, users: Sequence[float], charts: Sequence[Chart]) -> str:
    """An SVG document of ``charts`` stacked over one users axis."""
    height = 30 + CHART_HEIGHT * len(charts)
    body = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        "<style>.grid{stroke:#ddd}.axis{stroke:#333}.title{font-size:15px;font-weight:bold}"
        ".label{font-size:13px}polyline{fill:none;stroke-width:2}</style>",
        f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>',
        f'<text class="title" x="{LEFT}" y="22">{escape(title)}</text>',
    ]
    for index, chart in enumerate(charts):
        body += _chart(chart, users, 30 + CHART_HEIGHT * index)
    body.append("</svg>")
    return "\n".join(body) + "\n"


def capacity_charts(steps: Sequence[dict[str, Any]]) -> list[Chart]:
    """REST latency percentiles and CPU per process tree, one value per step."""
    # A step without a REST sample (every user failed to sign in) is drawn at zero.
    latency = [
        Series(name, [float(step["rest"][key] or 0.0) for step in steps])
        for name, key in PERCENTILES
    ]
    # Every process tree of any step, in the order the steps name them.
    components = list(dict.fromkeys(name for step in steps for name in step["processes"]))
    cpu = [
        Series(
            name,
            [float(step["processes"].get(name, {}).get("cpu_percent", 0.0)) for step in steps],
        )
        for name in components
    ]
    return [
        Chart("REST latency", "milliseconds", latency),
        Chart("CPU per process tree", "% of one core", cpu),
    ]


def capacity_svg(result: dict[str, Any]) -> str:
    """The picture of a ``bench capacity`` result (its ``steps``)."""
    steps = result["steps"]
    title = f"Capacity run {result['taken_at'][:10]}: held {result['capacity']} users"
    return render(title, [float(step["users"]) for step in steps], capacity_charts(steps))


def write_capacity_svg(result: dict[str, Any], path: Path) -> Path:
    path.write_text(capacity_svg(result))
    return path
