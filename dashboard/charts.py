"""The usage chart: a period's running billable quantity as plain SVG geometry, drawn
server-side (no script, no library) and laid out by the ``_chart.html`` template."""

from __future__ import annotations

from dataclasses import dataclass

from domain.usage import CHART_SLICES, Series

__all__ = ["Chart", "chart"]

WIDTH, HEIGHT = 640, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 24, 30
_PLOT_W = WIDTH - _LEFT - _RIGHT
_PLOT_H = HEIGHT - _TOP - _BOTTOM

_MEANING = {
    "sum": "total usage",
    "max": "highest usage",
    "last_during_period": "latest usage",
    "last_ever": "latest usage",
}


@dataclass(frozen=True, slots=True)
class Tick:
    at: float  # x or y in the viewBox
    label: str


@dataclass(frozen=True, slots=True)
class Point:
    ts: int
    value: int


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    line: str  # the polyline's points
    area: str  # the polygon under it
    now_x: float | None  # where "now" is, when inside the period
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    points: list[Point]  # the values where they changed, for the data table
    meaning: str
    latest: int


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10^n at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _short(value: int) -> str:
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if value >= size and value % (size // 10) == 0:
            shown = value / size
            return f"{shown:g}{suffix}"
    return f"{value:,}"


def chart(series: Series, *, days: tuple[str, str, str]) -> Chart:
    """The chart of ``series``; ``days``: the labels of the period's start, middle and end."""
    span = series.end - series.start
    top_value = _nice_ceiling(max(series.values, default=0))

    def x(ts: float) -> float:
        return round(_LEFT + (ts - series.start) / span * _PLOT_W, 2)

    def y(value: int) -> float:
        return round(_TOP + _PLOT_H - value / top_value * _PLOT_H, 2)

    coords = [(x(series.start), y(0))]
    points: list[Point] = []
    previous = 0
    for i, value in enumerate(series.values):
        ends = series.start + span * (i + 1) / CHART_SLICES
        at = min(ends, series.now) if i == len(series.values) - 1 else ends
        coords.append((x(at), y(value)))
        if value != previous:
            points.append(Point(int(at), value))
            previous = value
    line = " ".join(f"{a},{b}" for a, b in coords)
    baseline = y(0)
    area = f"{line} {coords[-1][0]},{baseline} {coords[0][0]},{baseline}"
    now_x = x(series.now) if series.start < series.now < series.end else None
    y_ticks = [Tick(y(v), _short(v)) for v in (0, top_value // 2, top_value)]
    x_ticks = [
        Tick(x(series.start), days[0]),
        Tick(x(series.start + span / 2), days[1]),
        Tick(x(series.end), days[2]),
    ]
    return Chart(
        WIDTH,
        HEIGHT,
        _LEFT,
        WIDTH - _RIGHT,
        _TOP,
        HEIGHT - _BOTTOM,
        line,
        area,
        now_x,
        list(dict((t.label, t) for t in y_ticks).values()),
        x_ticks,
        points,
        _MEANING.get(series.aggregate_usage or "sum", "usage"),
        series.values[-1] if series.values else 0,
    )
