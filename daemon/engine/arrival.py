"""How far each handle really went: the arrival figures a client shows, from measured positions.

Pure geometry on lists of points, so the daemon, the benchmarks and the tests compute the same numbers. The
measured positions come from the motion field (`transfer.measure_points`), never from the point tracker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]


@dataclass(frozen=True)
class Arrival:
    """Per handle: where its content is (`measured`), how far from the target (`remaining`), how far it advanced
    along the start→target line (`moved`), how far it was asked to go (`asked`); all in one unit (layer pixels)."""

    measured: list[Point]
    remaining: list[float]
    moved: list[float]
    asked: list[float]
    stop_distance: float

    @property
    def reached(self) -> bool:
        return bool(self.remaining) and all(r <= self.stop_distance for r in self.remaining)

    def fields(self) -> dict:
        """The protocol's arrival fields (PROTOCOL.md, drag, 1.1), rounded to what a person can see."""
        return {
            "measured": [[round(x, 3), round(y, 3)] for x, y in self.measured],
            "remaining": [round(v, 3) for v in self.remaining],
            "moved": [round(v, 3) for v in self.moved],
            "asked": [round(v, 3) for v in self.asked],
            "stop_distance": round(self.stop_distance, 3),
        }


def arrival(
    starts: Sequence[Sequence[float]],
    targets: Sequence[Sequence[float]],
    measured: Sequence[Sequence[float]],
    stop_distance: float,
) -> Arrival:
    """Arrival figures for handles that started at `starts` and whose content was measured at `measured`."""
    remaining, moved, asked = [], [], []
    for (sx, sy), (tx, ty), (mx, my) in zip(starts, targets, measured, strict=True):
        dx, dy = tx - sx, ty - sy
        length = math.hypot(dx, dy)
        asked.append(length)
        remaining.append(math.hypot(tx - mx, ty - my))
        if length > 0:
            moved.append(((mx - sx) * dx + (my - sy) * dy) / length)
        else:
            moved.append(0.0)
    return Arrival(
        measured=[(float(x), float(y)) for x, y in measured],
        remaining=remaining,
        moved=moved,
        asked=asked,
        stop_distance=float(stop_distance),
    )
