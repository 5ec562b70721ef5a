"""One handle → target pair, the type every client uses (Krita's lines, GIMP's path strokes, `draggan edit`).

Coordinates: a pair is in one frame, said by whoever holds it. The convention: pairs a person reads (a docker's
list, a dialog, an error) are in the image's coordinates, as the editor's rulers show them; pairs on the wire are
in the edited layer's pixels (PROTOCOL.md §6, drag). `shifted` goes from one to the other by the layer's offset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pair:
    """Move what is at (hx, hy) to (tx, ty). `index`: which line or stroke it came from (0-based, for messages;
    not part of equality, so a pair read back from the document equals the pair drawn)."""

    hx: float
    hy: float
    tx: float
    ty: float
    index: int = field(default=0, compare=False)

    @property
    def handle(self) -> tuple[float, float]:
        return (self.hx, self.hy)

    @property
    def target(self) -> tuple[float, float]:
        return (self.tx, self.ty)

    @property
    def length(self) -> float:
        return math.hypot(self.tx - self.hx, self.ty - self.hy)

    def shifted(self, dx: float, dy: float) -> Pair:
        return Pair(self.hx + dx, self.hy + dy, self.tx + dx, self.ty + dy, self.index)

    def as_list(self) -> list[float]:
        """As a drag request's `points` entry."""
        return [float(self.hx), float(self.hy), float(self.tx), float(self.ty)]

    def text(self, arrow: str = "→") -> str:
        """E.g. "(380, 270) → (392, 258)": whole pixels, as a person reads rulers."""
        return f"({self.hx:.0f}, {self.hy:.0f}) {arrow} ({self.tx:.0f}, {self.ty:.0f})"
