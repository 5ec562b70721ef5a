"""Region in, region out: cropping a layer into the model's square and compositing the edit back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from draggan_daemon.engine.errors import EngineInputError
from draggan_daemon.engine.region import (
    MAX_LAYER_PIXELS,
    NEUTRAL_BACKGROUND,
    changed_rect,
    check_layer_size,
    composite,
    composite_changed,
    crop_rect,
    prepare_region,
)


def smooth_layer(width: int, height: int, seed: int = 0) -> np.ndarray:
    """An opaque layer of smooth colour gradients plus a little texture (like a photo, not like noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 100 * np.sin(xx / 97.0 + 1.0)
    g = 128 + 100 * np.cos(yy / 71.0)
    b = 128 + 60 * np.sin((xx + yy) / 53.0)
    rgb = np.stack([r, g, b], axis=-1) + rng.normal(0, 4, (height, width, 3))
    alpha = np.full((height, width, 1), 255.0)
    return np.clip(np.concatenate([rgb, alpha], axis=-1), 0, 255).astype(np.uint8)


def edit_crop(prepared, value: float = 0.6) -> torch.Tensor:
    """Simulate an edit: paint a bright square in the middle of the model image."""
    img = prepared.image.clone()
    r = img.shape[-1]
    img[..., r // 3 : 2 * r // 3, r // 3 : 2 * r // 3] = value
    return img


# ----------------------------------------------------------------------------------------------------------
# The whole point: outside the region nothing changes.


def test_large_layer_edit_leaves_everything_outside_region_identical():
    layer = smooth_layer(1500, 1000)
    region = (600, 380, 300, 240)
    prepared = prepare_region(layer, 64, region)
    out = composite(layer, edit_crop(prepared), prepared)

    x, y, w, h = region
    outside = np.ones(layer.shape[:2], bool)
    outside[y : y + h, x : x + w] = False
    assert out.shape == layer.shape and out.dtype == np.uint8
    assert np.array_equal(out[outside], layer[outside])  # bit-identical
    assert np.array_equal(out[..., 3], layer[..., 3])  # alpha preserved everywhere
    inside = out[y : y + h, x : x + w, :3].astype(int) - layer[y : y + h, x : x + w, :3]
    assert np.abs(inside).max() > 50  # the edit arrived
    rect = changed_rect(layer, out)
    assert rect is not None
    rx, ry, rw, rh = rect
    assert x <= rx and y <= ry and rx + rw <= x + w and ry + rh <= y + h
    rect2, patch = composite_changed(layer, edit_crop(prepared), prepared)
    assert rect2 == rect and np.array_equal(patch, out[ry : ry + rh, rx : rx + rw])
    flat = np.full((300, 400, 4), 90, np.uint8)
    flat[..., 3] = 255
    flat_prepared = prepare_region(flat, 32, (100, 100, 100, 100))
    assert composite_changed(flat, flat_prepared.image, flat_prepared) == (None, None)  # nothing to send
    # The painted square lands where the map says: model centre -> layer centre of the square crop.
    (cx, cy) = prepared.map.model_to_layer([(31.5, 31.5)])[0]
    assert np.all(out[int(cy), int(cx), :3] > 190)


def test_unedited_round_trip_changes_the_region_only_by_resampling():
    layer = smooth_layer(800, 600, seed=1)
    prepared = prepare_region(layer, 64, (300, 200, 200, 200))
    out = composite(layer, prepared.image, prepared)
    x, y, w, h = prepared.map.region
    diff = np.abs(out[y : y + h, x : x + w, :3].astype(int) - layer[y : y + h, x : x + w, :3])
    assert diff.mean() < 6.0  # the texture (sigma 4) is lost at 64 px; the picture is not


def test_feathered_blend_has_no_seam():
    layer = np.full((400, 400, 4), 100, np.uint8)
    layer[..., 3] = 255
    prepared = prepare_region(layer, 64, (100, 100, 200, 200))
    brighter = prepared.image + 0.4  # a uniform change of ~51 levels over the whole crop
    out = composite(layer, brighter, prepared)
    row = out[200, 90:310, 0].astype(int)
    steps = np.abs(np.diff(row))
    assert row[10] == 100 and row[0] == 100  # the region edge and outside: unchanged
    assert row[110] > 145  # the middle: the full change
    assert steps.max() <= 6  # ramps up gently, no jump at the region's edge
    assert prepared.feather >= 10


def test_changed_rect_and_crop_rect_return_the_changed_pixels():
    a = np.zeros((50, 60, 4), np.uint8)
    b = a.copy()
    b[10:20, 30:35, 1] = 9
    assert changed_rect(a, a) is None
    assert changed_rect(a, b) == (30, 10, 5, 10)
    patch = crop_rect(b, (30, 10, 5, 10))
    assert patch.shape == (10, 5, 4) and patch.flags["C_CONTIGUOUS"] and (patch[..., 1] == 9).all()


# ----------------------------------------------------------------------------------------------------------
# Geometry.


def test_points_map_both_ways_and_follow_the_pixels():
    layer = np.zeros((700, 900, 4), np.uint8)
    layer[..., 3] = 255
    layer[400:420, 500:520, :3] = 255  # a white 20×20 block
    prepared = prepare_region(layer, 64, (420, 330, 180, 160))
    m = prepared.map
    pts = [(510.0, 410.0), (420.0, 330.0), (599.5, 489.25)]
    back = m.model_to_layer(m.layer_to_model(pts))
    assert np.allclose(back, pts, atol=1e-9)
    (u, v) = m.layer_to_model([(509.5, 409.5)])[0]  # the block's centre
    img = prepared.image[0, 0].numpy()
    assert img[int(round(v)), int(round(u))] > 0.9  # white in the model image too
    left, top, right, bottom = m.region_in_model()
    assert 0 <= left < right <= 64 and 0 <= top < bottom <= 64
    assert m.side >= 180 and m.x0 <= 420 and m.x0 + m.side >= 600  # the square holds the region


def test_region_at_the_layer_edge_is_padded_by_edge_replication():
    layer = smooth_layer(500, 250, seed=2)
    layer[:30, :, :3] = (200, 30, 30)  # a red band along the top edge
    prepared = prepare_region(layer, 64, (100, 0, 260, 250))
    m = prepared.map
    assert m.padding[1] > 0 and m.padding[3] > 0  # the square is taller than the layer
    assert m.padding[0] == 0 and m.padding[2] == 0  # and stays inside it sideways
    img = (prepared.image[0].permute(1, 2, 0).numpy() + 1) * 127.5
    top_row = img[0]  # padding: replicated red, not black
    assert top_row[:, 0].mean() > 170 and top_row[:, 1].mean() < 60
    assert prepared.mask is not None and float(prepared.mask[0].min()) == 1.0  # padding is kept fixed


def test_whole_layer_region_and_mask_conventions():
    square = smooth_layer(300, 300)
    prepared = prepare_region(square, 32)
    assert prepared.map.region == (0, 0, 300, 300) and prepared.mask is None  # everything may change
    wide = smooth_layer(1500, 1000)
    prepared = prepare_region(wide, 64)
    assert prepared.map.region == (0, 0, 1500, 1000)
    assert prepared.mask is not None and prepared.mask[0].min() > 0.99 and prepared.mask[32].max() < 0.01
    out = composite(wide, edit_crop(prepared), prepared)
    assert changed_rect(wide, out) is not None


def test_selection_becomes_region_and_mask():
    layer = smooth_layer(600, 400)
    selection = np.zeros((400, 600), np.uint8)
    yy, xx = np.mgrid[0:400, 0:600]
    selection[(xx - 300) ** 2 + (yy - 200) ** 2 < 80**2] = 255  # a disc
    prepared = prepare_region(layer, 64, selection=selection)
    assert prepared.map.region == (221, 121, 159, 159)
    mask = prepared.mask.numpy()
    (u, v) = prepared.map.layer_to_model([(300, 200)])[0]
    assert mask[int(v), int(u)] == 0.0  # inside the selection: free
    corner = prepared.map.layer_to_model([(225, 125)])[0]  # inside the bounds, outside the disc
    assert mask[int(corner[1]), int(corner[0])] > 0.9  # kept
    out = composite(layer, edit_crop(prepared, value=1.0), prepared)
    assert np.array_equal(out[selection == 0], layer[selection == 0])  # nothing outside the selection moves
    assert np.abs(out[200, 300, :3].astype(int) - layer[200, 300, :3]).max() > 50


def test_alpha_is_composited_for_the_model_and_preserved_in_the_output():
    layer = smooth_layer(300, 300)
    layer[:, :150, 3] = 0  # left half transparent
    layer[:, 150:200, 3] = 128  # a half-transparent band
    prepared = prepare_region(layer, 32, (0, 0, 300, 300))
    bg = np.array(NEUTRAL_BACKGROUND) / 127.5 - 1
    left = prepared.image[0, :, :, :10].mean(dim=(1, 2)).numpy()
    assert np.allclose(left, bg, atol=0.02)  # transparent -> neutral background
    assert prepared.alpha[:, :10].max() == 0 and prepared.alpha[:, -5:].min() == 1
    out = composite(layer, edit_crop(prepared, value=0.9), prepared)
    assert np.array_equal(out[..., 3], layer[..., 3])
    assert np.array_equal(out[:, :150], layer[:, :150])  # invisible pixels keep their colour too
    assert np.abs(out[150, 160:200, :3].astype(int) - layer[150, 160:200, :3]).max() > 20


def test_unedited_semi_transparent_pixels_survive_the_background_round_trip():
    layer = np.zeros((200, 200, 4), np.uint8)
    layer[..., 0], layer[..., 1], layer[..., 2], layer[..., 3] = 220, 40, 90, 100
    prepared = prepare_region(layer, 64)
    out = composite(layer, prepared.image, prepared)
    assert np.abs(out[20:180, 20:180, :3].astype(int) - layer[20:180, 20:180, :3]).max() <= 3


# ----------------------------------------------------------------------------------------------------------
# Bad input: a clear error, never a crash or a silent garbage edit.


@pytest.mark.parametrize(
    ("region", "words"),
    [
        ((10, 10, 0, 50), "empty"),
        ((10, 10, 50, -5), "empty"),
        ((500, 500, 40, 40), "outside"),
        ((-100, -100, 50, 50), "outside"),
        ((10, 10, 4, 4), "at least"),
        ((1, 2, 3), "(x, y, width, height)"),
    ],
)
def test_bad_regions_are_refused_in_plain_words(region, words):
    layer = smooth_layer(200, 150)
    with pytest.raises(EngineInputError, match=words if words[0] != "(" else r"\(x, y, width, height\)"):
        prepare_region(layer, 64, region)


def test_region_partly_outside_the_layer_is_clipped():
    layer = smooth_layer(200, 150)
    prepared = prepare_region(layer, 32, (150, 100, 200, 200))
    assert prepared.map.region == (150, 100, 50, 50)


def test_fully_transparent_region_is_refused():
    layer = smooth_layer(200, 200)
    layer[50:150, 50:150, 3] = 0
    with pytest.raises(EngineInputError, match="transparent"):
        prepare_region(layer, 64, (60, 60, 80, 80))
    prepared = prepare_region(layer, 64, (40, 40, 120, 120))  # partly visible: fine
    assert prepared.map.region == (40, 40, 120, 120)


def test_empty_and_mismatched_selections_are_refused():
    layer = smooth_layer(100, 100)
    with pytest.raises(EngineInputError, match="selection is empty"):
        prepare_region(layer, 32, selection=np.zeros((100, 100), np.uint8))
    with pytest.raises(EngineInputError, match="selection"):
        prepare_region(layer, 32, selection=np.ones((50, 100), np.uint8))
    sel = np.zeros((100, 100), np.uint8)
    sel[5:10, 5:10] = 255
    with pytest.raises(EngineInputError, match="does not overlap"):
        prepare_region(layer, 32, (50, 50, 40, 40), selection=sel)


def test_tiny_and_huge_layers_are_refused_before_any_work():
    with pytest.raises(EngineInputError, match="at least"):
        prepare_region(np.full((1, 1, 4), 255, np.uint8), 64)
    huge = np.broadcast_to(np.zeros((1, 1, 4), np.uint8), (20000, 20000, 4))  # a view: nothing allocated
    with pytest.raises(EngineInputError, match="megapixels"):
        prepare_region(huge, 64)
    with pytest.raises(EngineInputError, match="megapixels"):
        check_layer_size(20000, 20000)
    with pytest.raises(EngineInputError, match="empty"):
        check_layer_size(0, 10)
    check_layer_size(8192, 8192)
    assert MAX_LAYER_PIXELS >= 8192 * 8192


def test_wrong_pixel_formats_are_refused():
    with pytest.raises(EngineInputError, match="uint8"):
        prepare_region(np.zeros((50, 50, 4), np.float32), 32)
    with pytest.raises(EngineInputError, match="RGBA"):
        prepare_region(np.zeros((50, 50), np.uint8), 32)
    rgb = smooth_layer(64, 64)[..., :3]
    assert prepare_region(rgb, 32).alpha.min() == 1.0  # RGB is taken as opaque
    layer = smooth_layer(100, 100)
    prepared = prepare_region(layer, 32)
    with pytest.raises(EngineInputError, match="3×32×32"):
        composite(layer, torch.zeros(1, 3, 64, 64), prepared)
    with pytest.raises(EngineInputError, match="prepared for"):
        composite(smooth_layer(90, 100), prepared.image, prepared)
