"""StyleGAN-Human's H x H/2 generators: stored in our format, dragged like any other once padded to a square.

Equality with NVIDIA's ops on that layout is in test_generator_nvidia_equality.py; here the rest of the engine.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from draggan_daemon.engine.drag import DragConfig, DragOptimizer
from draggan_daemon.engine.generator import GeneratorConfig
from draggan_daemon.engine.loaders import load_generator
from draggan_daemon.engine.loaders.native import save_native
from draggan_daemon.engine.standin import random_generator
from draggan_daemon.server.models import ModelRegistry
from draggan_daemon.server.server import DaemonServer, ServerConfig
from test_daemon_support import client_for

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


def test_daemon_serves_a_tall_model_as_a_padded_square():
    registry = ModelRegistry("cpu")
    registry.add_generator("human", human_like())
    server = DaemonServer(ServerConfig(key=os.urandom(16).hex().encode()), registry)
    server.start()
    try:
        with client_for(server) as c:
            (model,) = c.hello()["models"]
            assert model["resolution"] == 64 and model["picture"] == [64, 32]
            sid = c.open_seed_session(seed=1)["session_id"]
            done = c.drag(sid, [(30, 30, 33, 27)], params={"steps": 3, "stop_distance": 0})
            assert done["state"] == "done" and done["steps"] == 3
            result = c.get_result(sid)
    finally:
        server.stop()
    px = np.frombuffer(result.pixels, np.uint8).reshape(result.height, result.width, 4)
    assert px.shape == (64, 64, 4)
    assert (px[:, :16, :3] == 255).all() and (px[:, 48:, :3] == 255).all()  # the white margins
    assert px[:, 16:48, :3].std() > 5  # and a picture between them
