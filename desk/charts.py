"""The statistics' chart per day, as numbers for an SVG the template draws (issue 25).

Server-drawn, no script: the desk's Content-Security-Policy allows neither inline script nor inline
style, so the SVG carries geometry as attributes and its colours as classes of desk/static/desk.css.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from usecases.stats import Statistics, days_of

WIDTH, HEIGHT = 960, 300
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 16, 44
# (figure, the bar's class in desk.css, legend)
SERIES = (
    ("issued", "bar-issued", "签发 issued"),
    ("endorsed", "bar-endorsed", "批改 endorsed"),
    ("rejected", "bar-rejected", "拒绝 rejected"),
)
MAX_X_LABELS = 16


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str  # shown on hover (an SVG <title>, no script)


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    bars: tuple[Bar, ...]
    y_ticks: tuple[tuple[float, int], ...]  # (y, value)
    x_labels: tuple[tuple[float, str], ...]  # (x of the day's middle, MM-DD)
    legend: tuple[tuple[str, str], ...]  # (class, text)


def day_chart(stats: Statistics) -> Chart:
    """Bars per day for issued, endorsed and rejected, on one scale from 0."""
    days = list(days_of(stats))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    highest = max((getattr(f, name) for _, f in days for name, _, _ in SERIES), default=0)
    step = _nice_step(highest)
    top_value = max(step, math.ceil(highest / step) * step)
    slot = plot_w / max(1, len(days))
    bar_w = slot * 0.8 / len(SERIES)
    bars: list[Bar] = []
    labels: list[tuple[float, str]] = []
    every = max(1, math.ceil(len(days) / MAX_X_LABELS))
    for i, (day, figures) in enumerate(days):
        x0 = LEFT + i * slot + slot * 0.1
        for j, (name, css, legend) in enumerate(SERIES):
            value = getattr(figures, name)
            height = plot_h * value / top_value
            bars.append(
                Bar(
                    x=round(x0 + j * bar_w, 2),
                    y=round(TOP + plot_h - height, 2),
                    width=round(bar_w, 2),
                    height=round(height, 2),
                    css=css,
                    title=f"{day} {legend}: {value}",
                )
            )
        if i % every == 0:
            labels.append((round(LEFT + (i + 0.5) * slot, 2), f"{day:%m-%d}"))
    ticks = tuple((round(TOP + plot_h - plot_h * v / top_value, 2), v) for v in range(0, top_value + 1, step))
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        top=TOP,
        plot_width=plot_w,
        plot_height=plot_h,
        bars=tuple(bars),
        y_ticks=ticks,
        x_labels=tuple(labels),
        legend=tuple((css, legend) for _, css, legend in SERIES),
    )


def _nice_step(highest: int) -> int:
    """A step of 1, 2 or 5 times a power of ten giving at most five gridlines above 0."""
    if highest <= 4:
        return 1
    magnitude = 10 ** int(math.log10(highest / 4))
    for factor in (1, 2, 5, 10):
        if highest / (factor * magnitude) <= 5:
            return factor * magnitude
    return 10 * magnitude
