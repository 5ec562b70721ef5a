"""Turn the strokes of a GIMP path into DragGAN handle -> target pairs.

A person draws one stroke per point to move: the stroke's first anchor is the handle, its last anchor the target.
Anything in between (extra anchors, curve handles) is ignored, so a curved stroke still means "from here to there".
This module knows nothing about GIMP; the plug-in hands it the control-point lists it read from the path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from draggan_protocol.pairs import Pair

Point = tuple[float, float]

# A handle this close to its target asks for no motion at all; such a stroke is almost certainly a stray click.
MIN_DRAG_DISTANCE = 0.5


@dataclass
class PairsResult:
    """The usable pairs plus a plain-words reason for every stroke that was left out.

    The pairs are in layer coordinates (what the daemon is sent); `offset` is the layer's offset in the image, so
    that every line a person reads is in image coordinates, as GIMP's rulers and pointer show them.
    """

    pairs: list[Pair] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    offset: Point = (0.0, 0.0)

    def summary(self) -> str:
        found = f"{len(self.pairs)} pair{'s' if len(self.pairs) != 1 else ''} found"
        if not self.skipped:
            return found
        return f"{found}, {len(self.skipped)} stroke{'s' if len(self.skipped) != 1 else ''} skipped"

    def describe(self) -> list[str]:
        """One line per pair and per skipped stroke, in image coordinates, for the dialog and for error messages."""
        lines = []
        for p in self.pairs:  # where the image's rulers put them
            lines.append(f"stroke {p.index + 1}: {p.shifted(*self.offset).text('->')}")
        lines += [f"stroke {i + 1}: skipped, {why}" for i, why in self.skipped]
        return lines


def anchors_from_bezier(control_points: Sequence[float]) -> list[Point]:
    """The anchors of a GIMP bezier stroke.

    GIMP lists a bezier stroke as (control-in, anchor, control-out) triples of (x, y), flattened to floats; the
    anchor is the middle point of each triple. A list whose length is not a multiple of 6 is not a bezier stroke.
    """
    if len(control_points) % 6:
        raise ValueError(f"a bezier stroke has 6 numbers per anchor, got {len(control_points)}")
    return [(float(control_points[i]), float(control_points[i + 1])) for i in range(2, len(control_points), 6)]


def strokes_to_pairs(
    strokes: Iterable[Sequence[Point]],
    offset: Point = (0.0, 0.0),
    size: tuple[int, int] | None = None,
    max_pairs: int | None = None,
) -> PairsResult:
    """Pairs from anchor lists given in image coordinates.

    `offset` is the layer's offset in the image: points come back in layer coordinates. With `size` (layer
    width, height), strokes that start or end outside the layer are skipped, since the daemon only sees the layer.
    `max_pairs` keeps the first that many pairs and reports the rest as skipped.
    """
    result = PairsResult(offset=(float(offset[0]), float(offset[1])))
    ox, oy = offset
    for index, anchors in enumerate(strokes):
        anchors = list(anchors)
        if len(anchors) < 2:
            result.skipped.append((index, "a stroke needs two points (handle and target)"))
            continue
        handle = (anchors[0][0] - ox, anchors[0][1] - oy)
        target = (anchors[-1][0] - ox, anchors[-1][1] - oy)
        if not all(math.isfinite(v) for v in (*handle, *target)):
            result.skipped.append((index, "its points are not finite numbers"))
            continue
        pair = Pair(*handle, *target, index)
        if pair.length < MIN_DRAG_DISTANCE:
            result.skipped.append((index, "its first and last points are the same"))
            continue
        if size is not None and not (_inside(handle, size) and _inside(target, size)):
            result.skipped.append((index, "it starts or ends outside the layer"))
            continue
        if max_pairs is not None and len(result.pairs) >= max_pairs:
            result.skipped.append((index, f"at most {max_pairs} pairs can be dragged at once"))
            continue
        result.pairs.append(pair)
    return result


def _inside(point: Point, size: tuple[int, int]) -> bool:
    return 0.0 <= point[0] <= size[0] - 1 and 0.0 <= point[1] <= size[1] - 1
