"""Seeds as DragGAN draws them (issue 12, item 3): seed N is DragGAN's picture N for the same model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from draggan_daemon.engine.generator import GeneratorConfig
from draggan_daemon.engine.standin import random_generator


@pytest.mark.parametrize("seed", [0, 1, 42, 2**32 - 1])
def test_a_seed_draws_the_z_that_draggan_draws(seed: int) -> None:
    """DragGAN (viz/renderer.py): z = torch.from_numpy(np.random.RandomState(seed).randn(1, 512)), cast to the
    network's dtype, then mapping(z, truncation 0.7). The same z, so the same picture for the same model."""
    cfg = GeneratorConfig(z_dim=512, w_dim=32, img_resolution=16, mapping_layers=2, channel_base=64, channel_max=16)
    G = random_generator(cfg, seed=0)
    official_z = torch.from_numpy(np.random.RandomState(seed).randn(1, 512)).to(dtype=torch.float32)
    seen: list[torch.Tensor] = []
    hook = G.mapping.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    try:
        ws = G.z_to_ws(seed, 0.7)
    finally:
        hook.remove()
    assert len(seen) == 1 and seen[0].dtype == torch.float32 and torch.equal(seen[0], official_z)
    with torch.no_grad():
        assert torch.equal(ws, G.mapping(official_z, 0.7))
