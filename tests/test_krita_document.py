"""The plugin's document adapter against the fake `krita` module: layers, selection, points, preview, undo."""

from __future__ import annotations

import pytest
from fake_krita.support import gradient_bgra, use_fake_krita

use_fake_krita()

import krita  # noqa: E402  (the fake)
from draggan_krita import document as kd  # noqa: E402
from draggan_krita.geometry import Pair  # noqa: E402
from PyQt5.QtCore import QByteArray  # noqa: E402


@pytest.fixture
def doc():
    app = krita.Krita.reset()
    d = app.createDocument(40, 30, "t", "RGBA", "U8", "", 72.0)
    app.setActiveDocument(d)
    bg = d.rootNode().childNodes()[0]
    bg.setPixelData(QByteArray(gradient_bgra(40, 30)), 0, 0, 40, 30)
    return d


def test_capture_whole_layer_without_selection(doc):
    kdoc = kd.KritaDocument(doc)
    src = kdoc.pick_source(None)
    cap = kdoc.capture(src)
    assert cap.rect == (0, 0, 40, 30) and cap.selection is None and cap.region is None
    assert cap.pixels == gradient_bgra(40, 30)
    assert cap.layer_name == "Background" and "whole layer" in kdoc.describe_region()
    assert kdoc.capture(src).key == cap.key  # same pixels, same key: the daemon session is reused


def test_capture_with_selection_sends_a_square_the_mask_and_the_region(doc):
    sel = krita.Selection()
    sel.select(20, 10, 8, 6, 255)
    doc.setSelection(sel)
    kdoc = kd.KritaDocument(doc)
    cap = kdoc.capture(kdoc.pick_source(None))
    x, y, w, h = cap.rect
    assert w == h == 16 and x <= 20 and y <= 10
    assert cap.region == (20 - x, 10 - y, 8, 6)
    mask = cap.selection
    assert len(mask) == w * h and mask.count(255) == 48 and mask.count(0) == w * h - 48
    assert mask[(10 - y) * w + (20 - x)] == 255 and mask[0] == 0
    row = gradient_bgra(40, 30)[(y * 40 + x) * 4 : (y * 40 + x + w) * 4]
    assert cap.pixels[: w * 4] == row
    assert "selection, 8×6 at (20, 10)" in kdoc.describe_region()


def test_key_changes_when_pixels_change(doc):
    kdoc = kd.KritaDocument(doc)
    src = kdoc.pick_source(None)
    k1 = kdoc.capture(src).key
    src.setPixelData(QByteArray(bytes([1, 2, 3, 255])), 5, 5, 1, 1)
    assert kdoc.capture(src).key != k1


@pytest.mark.parametrize(("model", "depth", "words"), [("CMYKA", "U8", "CMYKA U8"), ("RGBA", "U16", "RGBA U16")])
def test_unsupported_colour_models_are_refused_in_plain_words(model, depth, words):
    app = krita.Krita.reset()
    d = app.createDocument(8, 8, "c", model, depth, "", 72.0)
    kdoc = kd.KritaDocument(d)
    with pytest.raises(kd.DocumentError, match=words) as err:
        kdoc.capture(kdoc.pick_source(None))
    assert "8-bit RGB" in str(err.value)


def test_too_large_and_missing_layers(doc):
    kdoc = kd.KritaDocument(doc)
    with pytest.raises(kd.DocumentError, match="megapixels"):
        kdoc.capture(kdoc.pick_source(None), max_pixels=100)
    with pytest.raises(kd.DocumentError, match="no paint layer"):
        kdoc.check_source(None)
    vl = doc.createVectorLayer("shapes")
    with pytest.raises(kd.DocumentError, match="vectorlayer"):
        kdoc.check_source(vl)


def test_source_is_remembered_while_the_points_layer_is_active(doc):
    kdoc = kd.KritaDocument(doc)
    top = doc.createNode("Paint 2", "paintlayer")
    doc.rootNode().addChildNode(top, None)
    bg = doc.rootNode().childNodes()[0]
    doc.setActiveNode(bg)
    assert kdoc.pick_source(None) is bg
    points = kdoc.ensure_points_layer()
    doc.setActiveNode(points)
    assert kdoc.pick_source(kd.node_id(bg)) is bg
    assert kdoc.pick_source(None) is top  # nothing remembered: the topmost paint layer


@pytest.mark.parametrize("dpi", [72.0, 300.0])
def test_points_layer_lines_are_pairs_in_pixels(dpi):
    app = krita.Krita.reset()
    d = app.createDocument(200, 150, "p", "RGBA", "U8", "", dpi)
    kdoc = kd.KritaDocument(d)
    assert kdoc.pairs() == [] and kdoc.points_layer() is None
    pairs = [Pair(10, 20, 50, 60), Pair(100.5, 100, 120, 80.25)]
    kdoc.add_arrows(pairs)
    layer = kdoc.points_layer()
    assert layer is not None and layer.type() == "vectorlayer" and layer.name() == kd.POINTS_LAYER
    got = kdoc.pairs()
    assert len(got) == 2
    for a, b in zip(got, pairs, strict=True):
        assert a.as_list() == pytest.approx(b.as_list(), abs=1e-3)
    assert kdoc.clear_points() == 2 and kdoc.pairs() == []


def test_arrowize_gives_plain_lines_heads_and_keeps_their_ends(doc):
    kdoc = kd.KritaDocument(doc)
    layer = kdoc.ensure_points_layer()
    layer.addShapesFromSvg('<svg><path stroke="#00a0ff" d="M5 5L15 9"/></svg>')
    assert "marker-end" not in layer.shapes()[0].toSvg()
    assert kdoc.arrowize() == 1
    shapes = layer.shapes()
    assert len(shapes) == 1 and "marker-end" in shapes[0].toSvg() and 'stroke="#00a0ff"' in shapes[0].toSvg()
    assert kdoc.pairs()[0].as_list() == pytest.approx([5, 5, 15, 9])
    assert kdoc.arrowize() == 0


def test_preview_then_result_never_touches_the_source_and_undo_removes_it(doc):
    app = krita.Krita.instance()
    kdoc = kd.KritaDocument(doc)
    src = kdoc.pick_source(None)
    before = bytes(src.pixelData(0, 0, 40, 30))
    preview = kdoc.ensure_preview(src)
    assert preview.name() == kd.PREVIEW_LAYER and kdoc.ensure_preview(src) is preview
    assert [n.name() for n in doc.rootNode().childNodes()] == ["Background", kd.PREVIEW_LAYER]
    assert bytes(preview.pixelData(0, 0, 40, 30)) == before  # starts as a copy of the source
    kdoc.write_pixels(preview, bytes([9, 9, 9, 255]) * 4, 3, 4, 2, 2)
    result = kdoc.finish_preview("Background")
    assert result.name() == "Background (DragGAN)" and kdoc.preview_layer() is None
    assert bytes(result.pixelData(3, 4, 1, 1)) == bytes([9, 9, 9, 255])
    assert bytes(src.pixelData(0, 0, 40, 30)) == before
    app.action("edit_undo").trigger()
    assert [n.name() for n in doc.rootNode().childNodes()] == ["Background"]
    app.action("edit_redo").trigger()
    assert bytes(doc.rootNode().childNodes()[1].pixelData(3, 4, 1, 1)) == bytes([9, 9, 9, 255])
    # A second result gets a unique name.
    kdoc.ensure_preview(src)
    assert kdoc.finish_preview("Background").name() == "Background (DragGAN) 2"
    assert kdoc.remove_preview() is False
