"""The plugin's pure geometry: SVG lines from Krita's vector layers -> handle/target pairs, rectangles, pixels."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "krita"))

from draggan_krita import geometry as g  # noqa: E402

# What Krita 5.1.5 returned from Shape.toSvg() for lines added at (10,20)->(50,60) and (100,100)->(120,80).
KRITA_LINE = (
    '<path id="shape0" transform="translate(10, 20)" fill="none" stroke="#ff0000" stroke-width="2" '
    'stroke-linecap="butt" stroke-linejoin="miter" stroke-miterlimit="2" marker-end="url(#lineMarker0)" '
    'd="M0 0L40 40" sodipodi:nodetypes="cc"/>'
)
KRITA_LINE2 = (
    '<path id="shape0" transform="translate(100, 80)" fill="none" stroke="#00ff00" stroke-width="2" '
    'd="M0 20L20 0" sodipodi:nodetypes="cc"/>'
)


def test_krita_shapes_become_pairs_at_72_and_300_dpi():
    assert g.line_from_shape_svg(KRITA_LINE, None, 1.0) == g.Pair(10, 20, 50, 60)
    assert g.line_from_shape_svg(KRITA_LINE2, None, 1.0) == g.Pair(100, 100, 120, 80)
    p = g.line_from_shape_svg(KRITA_LINE, (1, 0, 0, 1, 10, 20), 300 / 72)
    assert p.as_list() == pytest.approx([10 * 300 / 72, 20 * 300 / 72, 50 * 300 / 72, 60 * 300 / 72])


@pytest.mark.parametrize(
    ("d", "points", "closed"),
    [
        ("M0 0L40 40", [(0, 0), (40, 40)], False),
        ("m 5,5 l 10,0 0,10", [(5, 5), (15, 5), (15, 15)], False),
        ("M1 1 2 2 3 3", [(1, 1), (2, 2), (3, 3)], False),
        ("M0 0H10V-5", [(0, 0), (10, 0), (10, -5)], False),
        ("M0 0C1 1 2 2 9 9", [(0, 0), (9, 9)], False),
        ("M0 0L4 0L4 4Z", [(0, 0), (4, 0), (4, 4)], True),
        ("M0 0L1 1M5 5L6 6", [(0, 0), (1, 1)], False),
        ("M1e1 -2.5e0L.5 .25", [(10, -2.5), (0.5, 0.25)], False),
    ],
)
def test_path_points(d, points, closed):
    got, is_closed = g.path_points(d)
    assert [tuple(p) for p in got] == [tuple(map(float, p)) for p in points] and is_closed == closed


def test_not_pairs():
    assert g.line_from_shape_svg('<path d="M0 0L4 0L4 4Z"/>', None, 1.0) is None  # closed shape
    assert g.line_from_shape_svg('<path d="M3 3"/>', None, 1.0) is None  # a dot
    assert g.line_from_shape_svg('<path d="M3 3L3.1 3"/>', None, 1.0) is None  # too short to mean anything
    assert g.line_from_shape_svg('<rect x="1" y="2" width="3" height="4"/>', None, 1.0) is None
    assert g.line_from_shape_svg('<path d="L 3"/>', None, 1.0) is None


def test_transforms_compose_in_svg_order():
    m = g.parse_transform("translate(10, 0) rotate(90) scale(2)")
    assert g.apply(m, 1, 0) == pytest.approx((10, 2))
    m = g.parse_transform("matrix(1 0 0 1 5 6)")
    assert g.apply(m, 1, 1) == pytest.approx((6, 7))
    m = g.parse_transform("rotate(180, 5, 5)")
    assert g.apply(m, 0, 0) == pytest.approx((10, 10))
    assert g.parse_transform(None) == g.IDENTITY


def test_arrow_svg_round_trips_through_the_parser():
    pairs = [g.Pair(12.5, 30, 40, 33.25), g.Pair(1, 2, 3, 4)]
    svg = g.arrow_svg(pairs, pt_per_px=72 / 300)
    paths = [p for p in svg.split("<path")[1:] if "marker-end" in p]
    back = [g.line_from_shape_svg("<path" + p, None, 300 / 72) for p in paths]
    for a, b in zip(back, pairs, strict=True):
        assert a.as_list() == pytest.approx(b.as_list(), abs=1e-3)
    assert 'id="draggan-arrow"' in svg


def test_session_rect_is_a_square_around_the_selection_clipped_to_the_canvas():
    canvas = (0, 0, 1000, 800)
    assert g.session_rect(canvas, None) == canvas
    x, y, w, h = g.session_rect(canvas, (400, 300, 100, 50))
    assert (w, h) == (200, 200) and x <= 400 and y <= 300 and x + w >= 500 and y + h >= 350
    x, y, w, h = g.session_rect(canvas, (0, 0, 100, 100))
    assert (x, y) == (0, 0) and w == h == 150
    assert g.intersect((0, 0, 5, 5), (10, 10, 5, 5)) is None


def test_rgba_bgra_swap():
    data = bytes([1, 2, 3, 4, 5, 6, 7, 8])
    assert g.rgba_to_bgra(data) == bytes([3, 2, 1, 4, 7, 6, 5, 8])
    assert g.rgba_to_bgra(g.rgba_to_bgra(data)) == data


def test_pair_helpers():
    p = g.Pair(1, 2, 4, 6)
    assert p.length == pytest.approx(5) and p.shifted(-1, -2).as_list() == [0, 0, 3, 4]
    assert math.isclose(g.Pair(0, 0, 0, 0).length, 0)
