"""Line charts as inline SVG, drawn in Python for the run report (no plotting library, no script).

A loss chart holds its curve twice, on a linear and on a log scale (`<g class="lin">` and
`<g class="log">`), each with the raw values (`polyline.raw`) and their moving average
(`polyline.smooth`): the page's CSS shows one scale and hides or shows the raw line, so the
toggles work from file:// with scripts off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

LOSS_SIZE, SCORE_SIZE = (260, 150), (520, 210)  # viewBox sizes: about the size they are shown at, so text stays ~9 px
LEFT, RIGHT, TOP, BOTTOM = 46, 12, 10, 22  # margins: room for the y labels on the left, the steps below
MAX_POINTS = 600  # a longer series is averaged in buckets: the chart is ~300 px wide anyway
PALETTE = ("#3b5bdb", "#e8590c", "#2f9e44", "#c2255c", "#7048e8", "#0c8599", "#e67700", "#5c940d")

Point = tuple[float, float]  # (step, value)


@dataclass(frozen=True)
class Line:
    """One series of a chart."""

    label: str
    points: tuple[Point, ...]
    colour: str


@dataclass(frozen=True)
class _Frame:
    """Where steps and values land in the chart's box."""

    x_low: float
    x_high: float
    y_low: float
    y_high: float
    log: bool = False
    width: int = LOSS_SIZE[0]
    height: int = LOSS_SIZE[1]

    def x(self, step: float) -> float:
        return LEFT + (step - self.x_low) / (self.x_high - self.x_low) * (self.width - LEFT - RIGHT)

    def y(self, value: float) -> float:
        value = math.log10(value) if self.log else value
        return TOP + (self.y_high - value) / (self.y_high - self.y_low) * (self.height - TOP - BOTTOM)


def loss_chart(points: Sequence[Point], colour: str, label: str, smooth: bool = True) -> str:
    """One loss term's chart: raw values and their EMA, on a linear and a log scale (the page picks
    one). Without `smooth` (a schedule: the learning rate), the average is the values themselves."""
    points = [(step, value) for step, value in points if math.isfinite(value)]
    if not points:
        return _empty(label, "no finite values yet", LOSS_SIZE)
    values = [value for _, value in points]
    smooth = list(zip([step for step, _ in points], smoothed(values) if smooth else values))
    raw, smooth = thinned(points), thinned(smooth)
    groups = [f'<g class="lin">{_loss_lines(_frame(points, log=False), raw, smooth, colour)}</g>']
    if all(value > 0 for _, value in points):
        groups.append(f'<g class="log">{_loss_lines(_frame(points, log=True), raw, smooth, colour)}</g>')
    else:  # a log scale cannot show zero or negative values (WGAN, hinge): say so over the linear chart
        note = f'<text class="note" x="{LOSS_SIZE[0] - RIGHT}" y="{TOP + 10}" text-anchor="end">values ≤ 0: linear scale</text>'
        groups.append(f'<g class="log">{_loss_lines(_frame(points, log=False), raw, smooth, colour)}{note}</g>')
    return _svg(label, "".join(groups), LOSS_SIZE)


def _loss_lines(frame: _Frame, raw: Sequence[Point], smooth: Sequence[Point], colour: str) -> str:
    last_step, last_value = smooth[-1]
    return (
        _axes(frame)
        + _polyline(frame, raw, "raw", colour)
        + _polyline(frame, smooth, "smooth", colour)
        + f'<circle class="last" cx="{frame.x(last_step):.1f}" cy="{frame.y(last_value):.1f}" r="2.5" fill="{colour}"/>'
    )


def score_chart(lines: Sequence[Line], label: str, best_step: float | None = None, unit: str = "") -> str:
    """Several series with a dot per value (evaluation scores), the `best_step` marked."""
    lines = [Line(line.label, tuple(p for p in line.points if math.isfinite(p[1])), line.colour) for line in lines]
    every = [point for line in lines for point in line.points]
    if not every:
        return _empty(label, "no scores yet", SCORE_SIZE)
    frame = _frame(every, log=False, size=SCORE_SIZE)
    parts = [_axes(frame)]
    if best_step is not None:
        x = frame.x(best_step)
        parts.append(f'<line class="best" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{frame.height - BOTTOM}"/>')
        anchor, shift = ("end", -3) if x > frame.width - RIGHT - 30 else ("start", 3)  # the label stays inside the box
        parts.append(f'<text class="best-label" x="{x + shift:.1f}" y="{TOP + 9}" text-anchor="{anchor}">best</text>')
    for line in lines:
        parts.append(_polyline(frame, line.points, "score", line.colour))
        for step, value in line.points:
            ring = ' stroke="#111" stroke-width="1.5"' if step == best_step else ""
            parts.append(
                f'<circle cx="{frame.x(step):.1f}" cy="{frame.y(value):.1f}" r="3" fill="{line.colour}"{ring}>'
                f"<title>{escape(line.label)} at step {step:,.0f}: {unit}{value:.4g}</title></circle>"
            )
    return _svg(label, "".join(parts), SCORE_SIZE)


def _frame(points: Sequence[Point], log: bool, size: tuple[int, int] = LOSS_SIZE) -> _Frame:
    steps = [step for step, _ in points]
    values = [math.log10(value) if log else value for _, value in points]
    x_low, x_high = min(steps), max(steps)
    if x_high == x_low:  # one point: centred
        x_low, x_high = x_low - 1, x_high + 1
    y_low, y_high = min(values), max(values)
    pad = (y_high - y_low) * 0.06 or max(abs(y_high) * 0.1, 0.05)
    return _Frame(x_low, x_high, y_low - pad, y_high + pad, log, *size)


def _axes(frame: _Frame) -> str:
    """Grid lines with their values on the left, steps below."""
    parts = []
    for value, text in _y_ticks(frame):
        y = frame.y(value)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{frame.width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{text}</text>')
    for step in nice_ticks(frame.x_low, frame.x_high, 4):
        x = frame.x(step)
        parts.append(f'<text class="tick" x="{x:.1f}" y="{frame.height - 6}" text-anchor="middle">{step_text(step)}</text>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{frame.width - RIGHT}" y1="{frame.height - BOTTOM}" y2="{frame.height - BOTTOM}"/>')
    return "".join(parts)


def _y_ticks(frame: _Frame) -> list[tuple[float, str]]:
    """(value, text) of the horizontal grid lines: nice numbers, or powers of ten (and 2x, 5x) on a log scale."""
    if not frame.log:
        return [(value, value_text(value)) for value in nice_ticks(frame.y_low, frame.y_high, 4)]
    for multiples in ((1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7)):
        ticks = [
            multiple * 10.0**decade
            for decade in range(math.floor(frame.y_low), math.ceil(frame.y_high) + 1)
            for multiple in multiples
            if frame.y_low <= math.log10(multiple * 10.0**decade) <= frame.y_high
        ]
        if len(ticks) >= 2:
            return [(value, value_text(value)) for value in ticks]
    low, high = 10**frame.y_low, 10**frame.y_high
    return [(value, value_text(value)) for value in nice_ticks(low, high, 3) if value > 0]


def _polyline(frame: _Frame, points: Sequence[Point], kind: str, colour: str) -> str:
    coordinates = " ".join(f"{frame.x(step):.1f},{frame.y(value):.1f}" for step, value in points)
    return f'<polyline class="{kind}" points="{coordinates}" stroke="{colour}"/>'


def _svg(label: str, body: str, size: tuple[int, int]) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {size[0]} {size[1]}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def _empty(label: str, why: str, size: tuple[int, int]) -> str:
    note = f'<text class="note" x="{size[0] / 2}" y="{size[1] / 2}" text-anchor="middle">{escape(why)}</text>'
    return _svg(label, note, size)


def smoothed(values: Sequence[float]) -> list[float]:
    """Exponential moving average, debiased at the start (as TensorBoard's), over a window of about a
    25th of the series: long runs get a calm line, a short one stays as it is."""
    weight = 1 - 1 / max(1.0, len(values) / 25)
    average, result = 0.0, []
    for index, value in enumerate(values):
        average = weight * average + (1 - weight) * value
        result.append(average / (1 - weight ** (index + 1)))
    return result


def thinned(points: Sequence[Point], limit: int = MAX_POINTS) -> list[Point]:
    """At most `limit` points: means of consecutive buckets when there are more."""
    if len(points) <= limit:
        return list(points)
    size = len(points) / limit
    buckets = [points[int(index * size) : int((index + 1) * size)] for index in range(limit)]
    return [(sum(s for s, _ in bucket) / len(bucket), sum(v for _, v in bucket) / len(bucket)) for bucket in buckets]


def nice_ticks(low: float, high: float, count: int) -> list[float]:
    """Round numbers (1, 2, 2.5 or 5 times a power of ten apart) between `low` and `high`, about `count` of them."""
    if not high > low:
        return [low]
    rough = (high - low) / count
    magnitude = 10.0 ** math.floor(math.log10(rough))
    spacing = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= rough)
    first = math.ceil(low / spacing - 1e-9)
    return [index * spacing for index in range(first, math.floor(high / spacing + 1e-9) + 1)]


def step_text(step: float) -> str:
    """A step count for an axis: 500, 2.5k, 1.2M."""
    if abs(step) >= 1e6:
        return f"{step / 1e6:.3g}M"
    if abs(step) >= 1e3:
        return f"{step / 1e3:.3g}k"
    return f"{step:.0f}"


def value_text(value: float) -> str:
    """A loss or score for an axis or a caption: three significant digits, exponents only when tiny or huge."""
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.3g}"
    return f"{value:.1e}"
