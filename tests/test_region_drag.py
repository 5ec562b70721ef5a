"""End to end on a person-sized layer: region -> inversion -> drag -> composite; outside the region nothing moves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from draggan_daemon.engine.inversion import InversionConfig, invert
from draggan_daemon.engine.region import changed_rect, composite, prepare_region
from PIL import Image

drag = pytest.importorskip("draggan_daemon.engine.drag")

from test_inversion import structured_generator  # noqa: E402  (the same small structured generator)


@pytest.mark.slow
def test_drag_on_a_1500x1000_layer_changes_only_the_region():
    torch.set_num_threads(1)
    G = structured_generator(res=32)
    with torch.no_grad():
        picture = G.synthesis(G.z_to_ws(7, 0.7)).clamp(-1, 1)
    # The layer: a smooth backdrop with the generator's picture, enlarged to 300×300, in the middle.
    yy, xx = np.mgrid[0:1000, 0:1500].astype(np.float32)
    layer = np.zeros((1000, 1500, 4), np.uint8)
    layer[..., 0] = (60 + 40 * np.sin(xx / 90)).astype(np.uint8)
    layer[..., 1] = (90 + 30 * np.cos(yy / 70)).astype(np.uint8)
    layer[..., 2] = 120
    layer[..., 3] = 255
    pic = ((picture[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    layer[350:650, 600:900, :3] = np.asarray(Image.fromarray(pic).resize((300, 300), Image.Resampling.BICUBIC))
    layer[360:370, 610:620, 3] = 128  # some partial alpha inside the region as well

    region = (620, 370, 260, 260)
    prepared = prepare_region(layer, G.img_resolution, region)
    cfg = InversionConfig.from_preset("fast", w_steps=20, wplus_steps=30, pti_steps=20, w_avg_samples=300)
    inv = invert(G, prepared.image, cfg)
    assert inv.psnr > 22  # the crop (with its context) is close to the generator's own picture

    handle = (750.0, 500.0)
    target = (790.0, 500.0)
    (h,), (t,) = prepared.map.layer_to_model([handle]), prepared.map.layer_to_model([target])
    opt = drag.DragOptimizer(inv.generator, inv.ws, drag.DragConfig(max_steps=15))
    opt.set_points([h], [t], mask=prepared.mask)
    opt.run()
    with torch.no_grad():
        edited = opt.render()
    out = composite(layer, edited, prepared)

    x, y, w, hgt = prepared.map.region
    outside = np.ones(layer.shape[:2], bool)
    outside[y : y + hgt, x : x + w] = False
    assert np.array_equal(out[outside], layer[outside])
    assert np.array_equal(out[..., 3], layer[..., 3])
    rect = changed_rect(layer, out)
    assert rect is not None and rect[0] >= x and rect[1] >= y
    assert rect[0] + rect[2] <= x + w and rect[1] + rect[3] <= y + hgt
