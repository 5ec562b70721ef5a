"""The bundled model (when present) loads through the same loader as official checkpoints and renders faces."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from draggan_daemon.engine.loaders import load_generator

BUNDLED = Path(__file__).resolve().parents[1] / "daemon" / "models" / "bundled.safetensors"

pytestmark = pytest.mark.skipif(not BUNDLED.exists(), reason="no bundled model committed yet")


def test_bundled_model_loads_and_renders_distinct_images():
    assert BUNDLED.stat().st_size <= 30 * 2**20
    loaded = load_generator(BUNDLED)
    G, res = loaded.generator, loaded.config.img_resolution
    assert loaded.source_format == "native" and res in (64, 128)
    images = []
    with torch.no_grad():
        for seed in range(4):
            img = G.synthesis.run(G.z_to_ws(seed, 0.7), noise_mode="const")[0]
            assert img.shape == (1, 3, res, res)
            assert torch.isfinite(img).all()
            assert img.std() > 0.05  # not a constant picture
            images.append(img)
    # Different seeds give different faces.
    assert min((a - b).abs().mean() for i, a in enumerate(images) for b in images[i + 1 :]) > 0.01
    # The mean w was computed from many z (not left at zero).
    assert G.mapping.w_avg.abs().mean() > 0
