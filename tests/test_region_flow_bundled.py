"""The bundled model, end to end on a person-sized layer: region -> inversion -> drag -> composite.

A 1500×1000 layer holds a face the bundled model drew, enlarged to 256×256. Dragging a mouth corner must leave
every pixel outside the face's square and all alpha untouched, and must really move the picture: dense optical
flow between the layer before and after (not the drag's own point tracker) says the content at the handle went
towards the target. The bundled model is weak (a 10-pixel drag moves a feature about half way), so the
threshold is a clear fraction of the distance asked, not arrival.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

cv2 = pytest.importorskip("cv2")

from draggan_daemon.engine.drag import DragConfig, DragOptimizer  # noqa: E402
from draggan_daemon.engine.inversion import InversionConfig, invert  # noqa: E402
from draggan_daemon.engine.loaders import load_generator  # noqa: E402
from draggan_daemon.engine.region import composite, prepare_region  # noqa: E402
from draggan_daemon.training.drag_check import find_mouth_corner  # noqa: E402

BUNDLED = Path(__file__).resolve().parents[1] / "daemon" / "models" / "bundled.safetensors"

SEED = 3
FACE_X, FACE_Y, FACE_SIDE = 622, 371, 256  # where the enlarged face sits in the layer
DRAG_MODEL_PX = (-6.0, 8.0)  # 10 model pixels outwards and down (a frown), as the model card's drag check does
MIN_PSNR_DB = 30.0  # measured 34.7–39.0 dB over seeds 0–7 (36.0 at seed 3)
MIN_CLOSER_LAYER_PX = 7.5  # 1.5 model px; 64 px defaults (lr 8e-3, r1 4, 4 ws), seeds drawn as DragGAN draws
# them (NumPy, issue 12): seeds 0–7 measured 5.0, -5.8, 5.6, 14.9, 42.2, 14.2, 27.1, 28.6, so 5 of 8 above it,
# seed 3 the first: on this weak model the tracker often "arrives" while the mouth stretches or moves sideways.
# Under torch's old draw (other pictures) 3 of 8 were above it; there, 6 ws gave 5 of 8 and lr 2e-3, r1 2, 6 ws
# gave 6 of 8. Other measures favour 4 ws (see DragConfig).
FLOW_WINDOW = 6  # half-size of the window, in layer pixels, over which the flow at the handle is averaged


def gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def face_layer(G, seed: int) -> np.ndarray:
    """A light 1500×1000 layer with the model's face for `seed` enlarged into the middle, and uneven alpha."""
    with torch.no_grad():
        face = G.synthesis.run(G.z_to_ws(seed, 0.7), noise_mode="const")[0]
    face = ((face[0].clamp(-1, 1).permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    layer = np.zeros((1000, 1500, 4), np.uint8)
    layer[..., :3] = (246, 244, 238)
    layer[..., 3] = 255
    layer[:, :200, 3] = np.linspace(0, 255, 200).astype(np.uint8)[None]  # a fading edge far from the face
    big = Image.fromarray(face).resize((FACE_SIDE, FACE_SIDE), Image.Resampling.BICUBIC)
    layer[FACE_Y : FACE_Y + FACE_SIDE, FACE_X : FACE_X + FACE_SIDE, :3] = np.asarray(big)
    layer[FACE_Y : FACE_Y + 12, FACE_X : FACE_X + 12, 3] = 180  # partial alpha inside the region as well
    return layer


def flow_at(before: np.ndarray, after: np.ndarray, point: tuple[float, float]) -> tuple[float, float]:
    """Mean DIS optical flow (dx, dy) in a small window around `point`, all in the images' pixels."""
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(before, after, None)
    cx, cy, r = int(round(point[0])), int(round(point[1])), FLOW_WINDOW
    dx, dy = flow[cy - r : cy + r + 1, cx - r : cx + r + 1].reshape(-1, 2).mean(axis=0)
    return float(dx), float(dy)


@pytest.mark.slow
@pytest.mark.skipif(not BUNDLED.exists(), reason="the bundled model is not in this checkout")
def test_mouth_drag_on_bundled_model_moves_the_face_and_nothing_else():
    torch.set_num_threads(1)
    G = load_generator(BUNDLED).generator
    layer = face_layer(G, SEED)
    region = (FACE_X, FACE_Y, FACE_SIDE, FACE_SIDE)

    prepared = prepare_region(layer, G.img_resolution, region)
    inv = invert(G, prepared.image, InversionConfig.from_preset("fast"))
    print(f"inversion PSNR by stage: {[(s['name'], round(s['psnr'], 2)) for s in inv.stages]}")
    assert inv.psnr >= MIN_PSNR_DB

    # The handle: the mouth's left corner, found in the layer's own pixels (layer coordinates).
    corner = find_mouth_corner(gray(layer[FACE_Y : FACE_Y + FACE_SIDE, FACE_X : FACE_X + FACE_SIDE, :3]))
    assert corner is not None
    handle = (corner[0] + FACE_X, corner[1] + FACE_Y)
    (handle_m,) = prepared.map.layer_to_model([handle])
    target_m = (handle_m[0] + DRAG_MODEL_PX[0], handle_m[1] + DRAG_MODEL_PX[1])
    (target,) = prepared.map.model_to_layer([target_m])

    opt = DragOptimizer(inv.generator, inv.ws, DragConfig(max_steps=60))
    opt.set_points([handle_m], [target_m], mask=prepared.mask)
    report = opt.run()
    with torch.no_grad():
        edited = opt.render()
    out = composite(layer, edited, prepared)

    x, y, w, h = prepared.map.region
    assert (x, y, w, h) == region
    outside = np.ones(layer.shape[:2], bool)
    outside[y : y + h, x : x + w] = False
    assert np.array_equal(out[outside], layer[outside])
    assert np.array_equal(out[..., 3], layer[..., 3])

    # Independent check: optical flow on the layer crops (region plus a margin), in layer pixels.
    m = 24
    x0, y0 = x - m, y - m
    before = gray(layer[y0 : y + h + m, x0 : x + w + m, :3])
    after = gray(out[y0 : y + h + m, x0 : x + w + m, :3])
    dx, dy = flow_at(before, after, (handle[0] - x0, handle[1] - y0))
    moved_to = (handle[0] + dx, handle[1] + dy)
    dist_before = math.dist(handle, target)
    dist_after = math.dist(moved_to, target)
    print(
        f"handle {handle} -> target ({target[0]:.1f}, {target[1]:.1f}) layer px; drag steps {report.step}, "
        f"tracker {'arrived' if report.done else 'did not arrive'}; flow moved {math.hypot(dx, dy):.1f} layer px "
        f"({math.hypot(dx, dy) * prepared.map.scale:.2f} model px); distance to target {dist_before:.1f} -> "
        f"{dist_after:.1f} layer px"
    )
    assert dist_before - dist_after >= MIN_CLOSER_LAYER_PX
