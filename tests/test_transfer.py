"""Motion transfer: the layer's own pixels, moved by the generator's motion (engine/transfer.py, engine/arrival.py).

Pictures are built here with known motion (OpenCV warps of a textured picture), and the results are judged with
measures the transfer does not use (phase correlation, centroids, exact equality).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from draggan_daemon.engine import transfer
from draggan_daemon.engine.arrival import arrival
from draggan_daemon.engine.drag import DragConfig, DragOptimizer
from draggan_daemon.engine.region import prepare_region
from draggan_daemon.engine.transfer import estimate_motion, measure_points, render_layer
from draggan_protocol.outcome import arrival_text, fallback_text, large_region_text

RES = 64


def _texture(h: int, w: int, seed: int = 0, blur: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), blur)
    img = (img - img.min()) / (img.max() - img.min())
    return np.rint(img * 255).astype(np.uint8)


def _layer(h: int = 320, w: int = 320, seed: int = 0) -> np.ndarray:
    return np.dstack([_texture(h, w, seed), np.full((h, w), 255, np.uint8)])


def _model_picture(prepared) -> np.ndarray:
    return np.rint((prepared.image[0].permute(1, 2, 0).numpy() + 1.0) * 127.5).astype(np.uint8)


def _shift(picture: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    size = picture.shape[1], picture.shape[0]
    return cv2.warpAffine(picture, m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def test_zero_motion_gives_the_layers_pixels_bit_for_bit():
    layer = _layer()
    prepared = prepare_region(layer, RES, region=(40, 30, 240, 250))
    start = _model_picture(prepared)
    out = render_layer(layer, start, start.copy(), prepared)
    assert out.output == "transfer" and out.fallback is None
    assert np.array_equal(out.layer, layer)


def test_a_known_shift_of_the_generator_picture_moves_the_layer_by_that_shift():
    layer = _layer()
    prepared = prepare_region(layer, RES, region=(32, 32, 256, 256), context=0.0)
    start = _model_picture(prepared)
    dx, dy = 1.0, -0.5  # model pixels
    out = render_layer(layer, start, _shift(start, dx, dy), prepared).layer
    scale = prepared.map.side / RES  # layer pixels per model pixel
    a, b = (cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2GRAY) for img in (layer, out))
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)  # an independent judge
    sx, sy = np.median(flow[100:220, 100:220].reshape(-1, 2), axis=0)
    assert abs(sx - dx * scale) < 0.5 and abs(sy - dy * scale) < 0.5, (sx, sy, dx * scale, dy * scale)
    # The content is the layer's own (sharp), not the generator's 64-px picture scaled up.
    expected = _shift(layer, dx * scale, dy * scale)[100:220, 100:220, :3].astype(float)
    assert np.abs(out[100:220, 100:220, :3] - expected).mean() < 1.0


def test_measured_points_follow_the_motion_field():
    start = _texture(RES, RES, seed=3, blur=1.5)
    motion = estimate_motion(start, _shift(start, 1.5, 0.75))
    (x, y), (x2, y2) = measure_points(motion, [(30.0, 30.0), (20.0, 40.0)])
    assert abs(x - 31.5) < 0.15 and abs(y - 30.75) < 0.15
    assert abs(x2 - 21.5) < 0.15 and abs(y2 - 40.75) < 0.15


def test_alpha_follows_the_motion():
    h = w = 256
    yy, xx = np.mgrid[0:h, 0:w]
    layer = np.zeros((h, w, 4), np.uint8)
    disc = np.hypot(xx - 128, yy - 128) < 60
    layer[..., :3] = _texture(h, w, seed=5)
    layer[..., 3] = np.where(disc, 255, 0)
    prepared = prepare_region(layer, RES, context=0.0)
    start = _model_picture(prepared)  # the disc over the neutral background
    out = render_layer(layer, start, _shift(start, 2.0, 0.0), prepared).layer
    scale = prepared.map.side / RES

    def centroid_x(alpha: np.ndarray) -> float:
        return float((alpha.astype(float) * xx).sum() / alpha.astype(float).sum())

    assert centroid_x(out[..., 3]) - centroid_x(layer[..., 3]) == pytest.approx(2.0 * scale, abs=0.5)
    assert out[128, 128 + 60 + 3, 3] > 200, "the moved disc covers pixels that were transparent"


def test_the_mask_holds_its_pixels_while_the_rest_moves():
    layer = _layer(256, 256)
    selection = np.zeros((256, 256), np.uint8)
    selection[:, :128] = 255  # only the left half may change
    prepared = prepare_region(layer, RES, selection=selection, context=0.0)
    start = _model_picture(prepared)
    out = render_layer(layer, start, _shift(start, 1.0, 0.0), prepared).layer
    assert np.array_equal(out[:, 128:], layer[:, 128:])
    assert np.abs(out[40:200, 20:100].astype(int) - layer[40:200, 20:100]).mean() > 5


def test_motion_stays_near_the_drag():
    """The generator nudges parts nobody dragged; with the drag's pairs as focus, far pixels stay the layer's."""
    layer = _layer(256, 256)
    prepared = prepare_region(layer, RES, context=0.0)
    start = _model_picture(prepared)
    out = render_layer(layer, start, _shift(start, 1.0, 0.0), prepared, focus=[(16, 16, 18, 16)]).layer
    assert np.array_equal(out[160:, 160:], layer[160:, 160:])
    assert not np.array_equal(out[40:90, 40:90], layer[40:90, 40:90])


def test_a_flat_start_picture_falls_back_to_the_generator_and_says_why():
    layer = np.full((128, 128, 4), 200, np.uint8)
    prepared = prepare_region(layer, RES)
    flat = np.full((RES, RES, 3), 200, np.uint8)
    dragged = flat.copy()
    dragged[20:30, 20:30] = 30
    out = render_layer(layer, flat, dragged, prepared)
    assert out.output == "generator" and "flat colour" in out.fallback
    assert np.array_equal(out.layer[..., 3], layer[..., 3])


@pytest.mark.parametrize("bad", [np.nan, 1e6])
def test_a_degenerate_field_never_reaches_the_pixels(monkeypatch, bad):
    layer = _layer(128, 128)
    prepared = prepare_region(layer, RES)
    start = _model_picture(prepared)
    monkeypatch.setattr(transfer, "_flow", lambda a, b, estimator: np.full(a.shape + (2,), bad, np.float32))
    out = render_layer(layer, start, _shift(start, 1.0, 0.0), prepared)
    assert out.output == "generator" and out.fallback
    assert np.isfinite(out.layer).all()


def test_the_two_estimators_agree_on_a_plain_shift():
    start = _texture(RES, RES, seed=2, blur=1.5)
    moved = _shift(start, 1.0, 0.5)
    for name in transfer.ESTIMATORS:
        m = estimate_motion(start, moved, estimator=name)
        ((x, y),) = measure_points(m, [(32.0, 32.0)])
        assert abs(x - 33.0) < 0.3 and abs(y - 32.5) < 0.3, name


def test_arrival_figures_and_their_words():
    a = arrival([(10, 10)], [(10, 22)], [(10.5, 17)], stop_distance=3.0)
    assert a.asked == [12.0] and a.moved == [pytest.approx(7.0)] and a.remaining[0] == pytest.approx(5.025, abs=1e-3)
    assert not a.reached
    text = arrival_text({**a.fields(), "reached": a.reached})
    assert "7 of 12 px" in text and "not reached" in text
    b = arrival([(0, 0), (5, 5)], [(8, 0), (5, 15)], [(7.5, 0.2), (5, 14)], stop_distance=2.0)
    assert b.reached and arrival_text({**b.fields(), "reached": True}).startswith("Targets reached")
    assert "tracker" in arrival_text({"reached": True})  # a 1.0 daemon: the claim is named as the tracker's
    assert fallback_text({"fallback": "the fitted picture is one flat colour"}).endswith("flat colour")
    assert large_region_text(2000, 64) and not large_region_text(256, 64)


def test_a_refuted_arrival_keeps_the_drag_going_from_the_measured_position():
    from test_daemon_support import small_generator

    G = small_generator()
    ws = G.z_to_ws(0)
    opt = DragOptimizer(G, ws, DragConfig(max_steps=6, stop_distance=1.0))
    opt.set_points([(10.0, 10.0)], [(10.5, 10.0)])  # within the stop distance: the tracker "arrives" at once
    calls = []

    def verify(step, image):  # the content has not moved yet, then comes along, then arrives
        calls.append(step)
        return [[(8.0, 10.0)], [(9.0, 10.0)], [(10.5, 10.0)]][len(calls) - 1]

    final = opt.run(verify=verify, verify_every=1)
    assert final.done and opt.reanchored == 1
    assert calls == [1, 2, 3] and final.handles == [(10.5, 10.0)]


def _face_layer(size: int = 96) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    layer = np.dstack([_texture(size, size, seed=7, blur=2.0), np.full((size, size), 255, np.uint8)])
    layer[np.hypot(xx - size / 2, yy - size / 2) < size / 4, :3] = (230, 180, 40)
    return layer


def test_a_preview_is_the_result_of_the_same_latent():
    """A preview at step k shows the latent before that step's update: after one drag step, a second drag's
    first preview and the first drag's result (back there by undo) are the same latent, and must be the same pixels."""
    from test_daemon_support import client_for, running_daemon

    layer = _face_layer()
    pair = [(50.0, 40.0, 56.0, 44.0)]
    params = {"steps": 1, "stop_distance": 0.0}
    with running_daemon() as server, client_for(server) as c:
        sid = c.open_layer_session(layer.tobytes(), 96, 96, region=(16, 16, 64, 64))["session_id"]
        c.invert(sid, pti=False)
        c.drag(sid, pair, params=params, preview_every=0)
        previews = []
        c.drag(sid, pair, params=params, preview_every=1, on_progress=previews.append)
        shown = [m for m in previews if m.msg_type == "progress" and "preview" in m.content]
        assert len(shown) == 1 and shown[0].content["output"] == "transfer"
        assert "measured" in shown[0].content and "remaining" in shown[0].content
        c.undo(sid)
        result = c.get_result(sid, area="changed")
        preview = shown[0].content["preview"]
        assert tuple(preview["rect"]) == result.rect
        assert bytes(shown[0].buffers[0]) == result.pixels


def test_a_drag_stopped_early_says_not_reached_with_its_measured_distance():
    from test_daemon_support import client_for, running_daemon

    layer = _face_layer()
    with running_daemon() as server, client_for(server) as c:
        sid = c.open_layer_session(layer.tobytes(), 96, 96)["session_id"]
        c.invert(sid, pti=False)
        done = c.drag(sid, [(40.0, 40.0, 40.0, 60.0)], params={"steps": 1}, preview_every=0)
    assert done["state"] == "done" and done["steps"] == 1
    assert done["reached"] is False and done["asked"] == [20.0]
    (mx, my), remaining = done["measured"][0], done["remaining"][0]
    assert remaining > done["stop_distance"] and remaining == pytest.approx(np.hypot(40.0 - mx, 60.0 - my), abs=1e-2)
    assert "not reached" in arrival_text(done)


def test_a_large_layer_keeps_its_own_pixels_and_only_the_dragged_part_is_computed():
    """A 4000 x 3000 layer without a selection: the result is the layer at full resolution, changed only near
    the drag (the generator's 64-px picture is never pasted over the rest)."""
    h, w = 3000, 4000
    layer = np.dstack([np.tile(_texture(300, 400, seed=9), (10, 10, 1)), np.full((h, w), 255, np.uint8)])
    prepared = prepare_region(layer, RES)
    start = _model_picture(prepared)
    out = render_layer(layer, start, _shift(start, 1.0, 0.0), prepared, focus=[(20.0, 20.0, 22.0, 20.0)]).layer
    changed = (out != layer).any(axis=2)
    ys, xs = np.nonzero(changed)
    assert changed.any() and changed.mean() < 0.2  # the focus: about 10 model pixels around the pair
    scale = prepared.map.side / RES
    assert xs.max() < prepared.map.x0 + 40 * scale and ys.max() < prepared.map.y0 + 40 * scale


def test_new_content_adds_what_motion_cannot_explain_only_when_asked():
    layer = _layer(256, 256)
    prepared = prepare_region(layer, RES, context=0.0)
    start = _model_picture(prepared)
    dragged = start.copy()
    dragged[28:36, 28:36] = (250, 250, 250)  # something appears that no motion of the start picture makes
    plain = render_layer(layer, start, dragged, prepared).layer
    added = render_layer(layer, start, dragged, prepared, new_content=1.0).layer
    inside = (slice(120, 136), slice(120, 136))  # the new square's middle, in layer pixels (4 per model pixel)
    assert added[inside][..., :3].mean() > plain[inside][..., :3].mean() + 40
    assert np.array_equal(added[200:, 200:], layer[200:, 200:])
