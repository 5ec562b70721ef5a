"""Pure geometry for the plugin: SVG line shapes <-> point pairs, units, and the rectangle a session covers.

Kept free of Krita and Qt so it is tested on its own. Facts it relies on (seen in Krita 5.1.5):
- a vector layer's shapes report their SVG (`Shape.toSvg()`) in their own coordinates, with the shape's placement,
  in points (1/72 inch), in `transform=` (also `Shape.transformation()`); a document at R dpi has R/72 pixels per
  point. The line tool's lines: `translate(x, y)` in points and a path in points;
- `VectorLayer.addShapesFromSvg()` reads the SVG's user units as the document's *pixels*: a path added at 300 dpi
  comes back as `matrix(0.24 0 0 0.24 x y)` (72/300) around a path in pixels. Writing points there moves every
  point by 72/dpi on anything but a 72-dpi document.
"""

from __future__ import annotations

import math
import re

from draggan_protocol.pairs import Pair  # noqa: F401  (the one pair type; geometry makes and reads them)

Affine = tuple[float, float, float, float, float, float]  # a, b, c, d, e, f: x' = a x + c y + e, y' = b x + d y + f
IDENTITY: Affine = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TOKEN = re.compile(rf"[MmLlHhVvCcSsQqTtAaZz]|{_NUMBER}")
_ARGS = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7, "Z": 0}


def path_points(d: str) -> tuple[list[tuple[float, float]], bool]:
    """The on-curve points of an SVG path's first subpath (absolute, in path coordinates) and whether it is closed.

    Curves contribute their end points only: a handle/target pair needs the two ends of the stroke.
    """
    tokens = _TOKEN.findall(d or "")
    points: list[tuple[float, float]] = []
    closed = False
    x = y = 0.0
    cmd = ""
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.isalpha():
            cmd = tok
            i += 1
            if cmd in "Zz":
                closed = True
                break
            if cmd in "Mm" and points:
                break  # a second subpath: only the first one counts
            continue
        if not cmd:
            raise ValueError(f"path data starts with a number: {d!r}")
        n = _ARGS[cmd.upper()]
        if i + n > len(tokens) or any(t.isalpha() for t in tokens[i : i + n]):
            raise ValueError(f"truncated path data: {d!r}")
        args = [float(t) for t in tokens[i : i + n]]
        i += n
        rel = cmd.islower()
        up = cmd.upper()
        if up == "H":
            x = args[0] + (x if rel else 0.0)
        elif up == "V":
            y = args[0] + (y if rel else 0.0)
        else:
            nx, ny = args[-2], args[-1]
            x, y = (x + nx, y + ny) if rel else (nx, ny)
        points.append((x, y))
        if up == "M":
            cmd = "l" if rel else "L"  # extra coordinate pairs after a moveto are linetos
    return points, closed


def parse_transform(text: str | None) -> Affine:
    """An SVG `transform` attribute (matrix/translate/scale/rotate, chained) as one affine map."""
    result = IDENTITY
    for name, args_text in re.findall(r"(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^)]*)\)", text or ""):
        args = [float(v) for v in re.findall(_NUMBER, args_text)]
        if name == "matrix" and len(args) == 6:
            m = tuple(args)
        elif name == "translate":
            m = (1.0, 0.0, 0.0, 1.0, args[0], args[1] if len(args) > 1 else 0.0)
        elif name == "scale":
            sx = args[0]
            m = (sx, 0.0, 0.0, args[1] if len(args) > 1 else sx, 0.0, 0.0)
        elif name == "rotate":
            a = math.radians(args[0])
            ca, sa = math.cos(a), math.sin(a)
            m = (ca, sa, -sa, ca, 0.0, 0.0)
            if len(args) == 3:
                cx, cy = args[1], args[2]
                m = compose(compose((1.0, 0.0, 0.0, 1.0, cx, cy), m), (1.0, 0.0, 0.0, 1.0, -cx, -cy))
        elif name == "skewX":
            m = (1.0, 0.0, math.tan(math.radians(args[0])), 1.0, 0.0, 0.0)
        elif name == "skewY":
            m = (1.0, math.tan(math.radians(args[0])), 0.0, 1.0, 0.0, 0.0)
        else:
            raise ValueError(f"bad transform {text!r}")
        result = compose(result, m)
    return result


def compose(outer: Affine, inner: Affine) -> Affine:
    """outer ∘ inner (apply `inner` first), the order SVG lists transforms in."""
    a1, b1, c1, d1, e1, f1 = outer
    a2, b2, c2, d2, e2, f2 = inner
    return (
        a1 * a2 + c1 * b2,
        b1 * a2 + d1 * b2,
        a1 * c2 + c1 * d2,
        b1 * c2 + d1 * d2,
        a1 * e2 + c1 * f2 + e1,
        b1 * e2 + d1 * f2 + f1,
    )


def apply(m: Affine, x: float, y: float) -> tuple[float, float]:
    a, b, c, d, e, f = m
    return a * x + c * y + e, b * x + d * y + f


def attribute(svg: str, name: str) -> str | None:
    m = re.search(rf'\s{re.escape(name)}\s*=\s*"([^"]*)"', svg) or re.search(
        rf"\s{re.escape(name)}\s*=\s*'([^']*)'", svg
    )
    return m.group(1) if m else None


def line_from_shape_svg(svg: str, transform: Affine | None, px_per_pt: float) -> Pair | None:
    """A pair from one shape's SVG (`Shape.toSvg()`): first and last point of an open path, in document pixels.

    `transform` is the shape's placement (from `Shape.transformation()`); when None, the SVG's own `transform=`
    is used. Closed paths, dots and non-path shapes are not pairs (None).
    """
    if "<path" not in svg:
        return None
    d = attribute(svg, "d")
    if not d:
        return None
    try:
        points, closed = path_points(d)
    except ValueError:
        return None
    if closed or len(points) < 2:
        return None
    m = transform if transform is not None else parse_transform(attribute(svg, "transform"))
    (hx, hy), (tx, ty) = apply(m, *points[0]), apply(m, *points[-1])
    pair = Pair(hx * px_per_pt, hy * px_per_pt, tx * px_per_pt, ty * px_per_pt)
    return pair if pair.length > 0.5 else None


def arrow_svg(pairs: list[Pair], pt_per_px: float = 1.0, color: str = "#ff2a6d", width_px: float = 2.0) -> str:
    """An SVG document with one arrow (a line with an end marker) per pair, for addShapesFromSvg.

    `pt_per_px` is the SVG units per document pixel: 1 for `addShapesFromSvg` (which reads pixels, whatever the
    document's resolution); 72/dpi for SVG that Krita reads as points (a `.kra`'s content.svg)."""

    def f(v: float) -> str:
        return f"{v:.4f}".rstrip("0").rstrip(".")

    sw = max(width_px * pt_per_px, 0.05)
    body = []
    for p in pairs:
        body.append(
            f'<path fill="none" stroke="{color}" stroke-width="{f(sw)}" stroke-linecap="round" '
            f'marker-end="url(#draggan-arrow)" '
            f'd="M{f(p.hx * pt_per_px)} {f(p.hy * pt_per_px)}L{f(p.tx * pt_per_px)} {f(p.ty * pt_per_px)}"/>'
        )
    return (
        '<svg xmlns="http://www.w3.org/2000/svg">'
        '<defs><marker id="draggan-arrow" orient="auto" markerUnits="strokeWidth" markerWidth="4" markerHeight="4" '
        f'refX="2" refY="2"><path d="M0 0L4 2L0 4Z" fill="{color}"/></marker></defs>' + "".join(body) + "</svg>"
    )


# ---------------------------------------------------------------------------------------------------- rectangles
Rect = tuple[int, int, int, int]  # x, y, w, h


def intersect(a: Rect, b: Rect) -> Rect | None:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def session_rect(canvas: Rect, selection: Rect | None, margin: float = 0.5) -> Rect:
    """The part of the layer sent to the daemon: the whole canvas, or, with a selection, a square around it.

    The daemon crops a square around the region anyway; with a selection, sending only that square (grown by
    `margin` of its side for context, clipped to the canvas) keeps uploads small on big canvases.
    """
    if selection is None:
        return canvas
    sx, sy, sw, sh = selection
    side = max(sw, sh)
    grow = int(math.ceil(side * margin))
    side += 2 * grow
    cx, cy = sx + sw / 2.0, sy + sh / 2.0
    square = (int(math.floor(cx - side / 2.0)), int(math.floor(cy - side / 2.0)), side, side)
    return intersect(square, canvas) or canvas


def rgba_to_bgra(data: bytes) -> bytes:
    """Swap red and blue (RGBA8 <-> BGRA8; the same swap both ways), at C speed through slice assignment."""
    out = bytearray(data)
    out[0::4] = data[2::4]
    out[2::4] = data[0::4]
    return bytes(out)
