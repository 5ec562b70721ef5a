"""StyleGAN-Human's H x H/2 generators: stored in our format, dragged like any other once padded to a square.

Equality with NVIDIA's ops on that layout is in test_generator_nvidia_equality.py; here the rest of the engine.
"""

from __future__ import annotations

import pytest
import torch
from draggan_daemon.engine.drag import DragConfig, DragOptimizer
from draggan_daemon.engine.generator import GeneratorConfig
from draggan_daemon.engine.loaders import load_generator
from draggan_daemon.engine.loaders.native import save_native
from draggan_daemon.engine.standin import random_generator

pytestmark = pytest.mark.usefixtures("one_thread")


def human_like():
    cfg = GeneratorConfig(
        z_dim=32, w_dim=32, img_resolution=64, mapping_layers=2, channel_base=1024, channel_max=32, square=False
    )
    return random_generator(cfg, seed=3, image_range=True)


def test_native_round_trip_keeps_the_layout(tmp_path):
    G = human_like()
    save_native(G, tmp_path / "human.safetensors")
    loaded = load_generator(tmp_path / "human.safetensors")
    assert loaded.config.square is False
    ws = G.z_to_ws(1)
    with torch.no_grad():
        assert torch.equal(G.synthesis(ws), loaded.generator.synthesis(ws))


def test_drag_on_the_padded_square_keeps_the_margins_white():
    G = human_like()
    ws = G.z_to_ws(2)
    opt = DragOptimizer(G, ws, DragConfig(max_steps=5, stop_distance=0))
    opt.set_points([(30.0, 30.0)], [(34.0, 26.0)])  # inside the picture's middle columns (16-47)
    report = opt.run()
    assert report.step == 5
    with torch.no_grad():
        before = G.synthesis(ws)
        after = opt.render()
    assert tuple(after.shape[-2:]) == (64, 64)
    assert bool((after[..., :16] == 1).all() and (after[..., 48:] == 1).all())
    assert (after[..., 16:48] - before[..., 16:48]).abs().max() > 1e-3  # the picture itself changed
