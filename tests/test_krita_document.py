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
    with pytest.raises(kd.DocumentError, match="no visible paint layer"):
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
    app.setActiveDocument(d)
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
    steps = d.undo_steps()
    assert kdoc.clear_points() == 2 and kdoc.pairs() == []
    assert d.undo_steps() == steps + 1  # one step, however many lines
    app.action("edit_undo").trigger()
    assert len(kdoc.pairs()) == 2


def test_line_tool_lines_at_300_dpi_are_pairs_in_pixels():
    """The line tool stores points (translate + path in points); add_arrows goes through addShapesFromSvg, which
    reads pixels: both read back as the pixels they were drawn at."""
    app = krita.Krita.reset()
    d = app.createDocument(400, 300, "p", "RGBA", "U8", "", 300.0)
    kdoc = kd.KritaDocument(d)
    kdoc.ensure_points_layer().draw_line(380, 270, 392, 258)
    kdoc.add_arrows([Pair(100, 80, 200, 120)])
    got = [p.as_list() for p in kdoc.pairs()]
    assert got == [pytest.approx([380, 270, 392, 258]), pytest.approx([100, 80, 200, 120])]
    assert "matrix(0.24 0 0 0.24 24 19.2)" in kdoc.points_layer().shapes()[1].toSvg()  # what Krita 5.1.5 wrote


def make_layers(doc):
    """Background; a group with a visible "Inner" under a hidden "Covered"; a hidden "Hidden" on top."""
    root = doc.rootNode()
    group = doc.createGroupLayer("Group")
    root.addChildNode(group, None)
    inner = doc.createNode("Inner", "paintlayer")
    group.addChildNode(inner, None)
    covered = doc.createNode("Covered", "paintlayer")
    group.addChildNode(covered, None)
    covered.setVisible(False)
    hidden = doc.createNode("Hidden", "paintlayer")
    root.addChildNode(hidden, None)
    hidden.setVisible(False)
    return root.childNodes()[0], group, inner, covered, hidden


def test_hidden_layers_are_not_picked_and_are_refused(doc):
    kdoc = kd.KritaDocument(doc)
    bg, group, inner, covered, hidden = make_layers(doc)
    points = kdoc.ensure_points_layer()
    doc.setActiveNode(points)
    assert kdoc.choose_source(None) == (inner, "the top visible paint layer")  # not "Hidden", the top one
    assert kdoc.choose_source(kd.node_id(hidden)) == (inner, "the top visible paint layer")
    assert kdoc.choose_source(kd.node_id(bg)) == (bg, "")
    doc.setActiveNode(group)
    node, why = kdoc.choose_source(kd.node_id(bg))
    assert node is inner and "“Group”" in why
    doc.setActiveNode(hidden)  # chosen by the person: it is the source, and refused with the reason
    assert kdoc.choose_source(None) == (hidden, "")
    with pytest.raises(kd.DocumentError, match="“Hidden” is hidden"):
        kdoc.check_source(hidden)
    group.setVisible(False)  # a layer in a hidden group is hidden too
    with pytest.raises(kd.DocumentError, match="“Inner” is hidden"):
        kdoc.capture(inner)
    doc.setActiveNode(group)
    node, why = kdoc.choose_source(None)
    assert node is None and "no visible paint layer" in why
    with pytest.raises(kd.DocumentError, match="“Group” has no visible paint layer"):
        kdoc.check_source(node, why)


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
