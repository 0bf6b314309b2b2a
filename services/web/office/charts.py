"""Charts drawn on the server as SVG: the shapes are worked out here, and
templates/office/reports/_chart.html writes them out with a title and a description.

No script and no stylesheet of their own (the site's Content-Security-Policy allows
neither inline): colours are SVG presentation attributes. Every chart is shown beside a
table of the same numbers, which is what a screen reader user reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

# Drawn about as wide as it is shown beside its table, so its text reads at body size.
WIDTH, HEIGHT = 480, 300
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 40, 32


@dataclass(frozen=True)
class Series:
    """One stacked part of every bar: its name, colour and a value per category."""

    name: str
    colour: str
    values: Sequence[int]


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str  # what the part is, for a tooltip


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class Label:
    x: float
    text: str


@dataclass(frozen=True)
class Key:
    x: float
    colour: str
    text: str


@dataclass(frozen=True)
class StackedBars:
    """What the template draws: bars, y-axis ticks, category labels and a key."""

    id: str
    title: str
    description: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    baseline: float = HEIGHT - BOTTOM
    boxes: list[Box] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)


def nice_step(top: int, most_ticks: int = 5) -> int:
    """A round step (1, 2 or 5 times a power of ten) giving at most ``most_ticks`` steps
    up to ``top``."""
    rough = max(top, 1) / most_ticks
    power = 10 ** math.floor(math.log10(rough)) if rough >= 1 else 1
    for multiple in (1, 2, 5, 10):
        if multiple * power >= rough:
            return max(1, multiple * power)
    return 10 * power


def stacked_bars(
    *,
    id: str,
    title: str,
    description: str,
    categories: Sequence[str],
    series: Sequence[Series],
) -> StackedBars:
    """Vertical bars, one per category, each stacked from ``series`` in order (first at
    the bottom); the y axis starts at zero and rises in round steps."""
    totals = [sum(s.values[i] for s in series) for i in range(len(categories))]
    step = nice_step(max(totals, default=0))
    top = step * max(1, math.ceil(max(totals, default=0) / step))
    plot_height = HEIGHT - TOP - BOTTOM
    band = (WIDTH - LEFT - RIGHT) / max(1, len(categories))
    bar = band * 0.6
    scale = plot_height / top
    baseline = HEIGHT - BOTTOM
    boxes = []
    for i, category in enumerate(categories):
        y = float(baseline)
        for s in series:
            value = s.values[i]
            if not value:
                continue
            height = value * scale
            y -= height
            boxes.append(
                Box(
                    x=round(LEFT + band * i + (band - bar) / 2, 1),
                    y=round(y, 1),
                    width=round(bar, 1),
                    height=round(height, 1),
                    colour=s.colour,
                    label=f"{category}: {value} {s.name}",
                )
            )
    ticks = [
        Tick(y=round(baseline - value * scale, 1), label=f"{value:,}")
        for value in range(0, top + 1, step)
    ]
    labels = [Label(x=round(LEFT + band * (i + 0.5), 1), text=c) for i, c in enumerate(categories)]
    key_width = (WIDTH - LEFT - RIGHT) / max(1, len(series))
    keys = [
        Key(x=round(LEFT + key_width * i, 1), colour=s.colour, text=s.name)
        for i, s in enumerate(series)
    ]
    return StackedBars(
        id=id,
        title=title,
        description=description,
        baseline=baseline,
        boxes=boxes,
        ticks=ticks,
        labels=labels,
        keys=keys,
    )
