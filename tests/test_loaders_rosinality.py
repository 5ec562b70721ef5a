"""rosinality `.pt` checkpoints load into a generator that equals the NVIDIA network they were made from.

Two independent oracles: the test-side exporter is first checked against rosinality's own Generator (DragGAN's
copy of rosinality's model.py, from draggan==1.1.6), then the exported file is loaded with our loader and compared
with NVIDIA's network.
"""

from __future__ import annotations

import argparse

import pytest
import torch
from draggan_daemon.engine.loaders import CheckpointError, load_generator
from draggan_daemon.engine.loaders.rosinality import fit_channel_formula
from oracle.builders import export_rosinality, make_nvidia_generator
from oracle.nvidia import rosinality_model

TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")


def nvidia(seed: int, res: int, base: int, cmax: int, layers: int = 2, dim: int = 32, clamp=None):
    return make_nvidia_generator(
        seed,
        z_dim=dim,
        c_dim=0,
        w_dim=dim,
        img_resolution=res,
        img_channels=3,
        mapping_kwargs=dict(num_layers=layers),
        synthesis_kwargs=dict(channel_base=base, channel_max=cmax, num_fp16_res=0, conv_clamp=clamp),
    )


def test_exporter_matches_rosinalitys_own_generator():
    """rosinality's Generator, fed the exported state dict (strict), draws NVIDIA's image."""
    model = rosinality_model()
    G = nvidia(seed=3, res=16, base=8192, cmax=512, layers=3)  # rosinality's fixed 512 channels up to 32 px
    R = model.Generator(16, 32, 3, channel_multiplier=2)
    R.load_state_dict(export_rosinality(G), strict=True)
    R.eval()
    z = torch.randn(2, 32)
    with torch.no_grad():
        ws = G.mapping(z, None)
        ws = ws + 0.3 * torch.randn_like(ws)
        ref = G.synthesis(ws, noise_mode="const", force_fp32=True)
        img, _ = R([ws], input_is_latent=True, randomize_noise=False)
        assert (R.style(z) - G.mapping(z, None)[:, 0]).abs().max() <= TOL
    diff = (ref - img).abs().max().item()
    assert diff <= TOL, diff
    print(f"rosinality model vs NVIDIA: image max abs diff {diff:.3g}")


@pytest.mark.parametrize("res,base,cmax,layers", [(32, 512, 32, 2), (64, 1024, 48, 8)])
def test_rosinality_file_equals_nvidia(tmp_path, res, base, cmax, layers):
    G = nvidia(seed=res, res=res, base=base, cmax=cmax, layers=layers)
    path = tmp_path / "550000.pt"
    torch.save({"g_ema": export_rosinality(G), "latent_avg": G.mapping.w_avg.clone()}, path)
    model = load_generator(path)
    assert model.source_format == "rosinality-pt"
    cfg = model.config
    assert (cfg.img_resolution, cfg.channel_base, cfg.channel_max, cfg.mapping_layers) == (res, base, cmax, layers)
    assert cfg.conv_clamp is None
    z = torch.randn(2, 32)
    with torch.no_grad():
        ws_ref = G.mapping(z, None, truncation_psi=0.6)
        assert (model.generator.mapping(z, 0.6) - ws_ref).abs().max() <= TOL
        ws = ws_ref + 0.3 * torch.randn_like(ws_ref)
        ref = G.synthesis(ws, noise_mode="const", force_fp32=True)
        img, _ = model.generator.synthesis.run(ws, noise_mode="const")
    diff = (ref - img).abs().max().item()
    assert diff <= TOL, diff
    print(f"rosinality file res {res} vs NVIDIA: image max abs diff {diff:.3g}")


def test_training_checkpoint_without_latent_avg(tmp_path):
    """rosinality's train.py saves g, d, g_ema, optimisers and argparse args, and no latent_avg."""
    G = nvidia(seed=7, res=16, base=256, cmax=16, layers=2)
    path = tmp_path / "ckpt.pt"
    args = argparse.Namespace(size=16, latent=32, n_mlp=2, channel_multiplier=2)
    torch.save({"g": export_rosinality(G), "g_ema": export_rosinality(G), "args": args, "ada_aug_p": 0.1}, path)
    model = load_generator(path)
    assert "mean of 10000" in model.metadata["w_avg"]
    with torch.no_grad():
        independent = G.mapping(torch.randn(20000, 32, generator=torch.Generator().manual_seed(99)), None)[:, 0]
    spread = independent.std(0).max().item()
    err = (model.generator.mapping.w_avg - independent.mean(0)).abs().max().item()
    assert err < 0.05 * spread + 1e-6, (err, spread)
    assert (model.generator.mapping.w_avg - G.mapping.w_avg).abs().max() > 0.05  # not the (random) stored one


def test_channel_formula_fit():
    assert fit_channel_formula({4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256}) == (32768, 512)
    assert fit_channel_formula({4: 32, 8: 32, 16: 32, 32: 16}) == (512, 32)
    assert fit_channel_formula({4: 8, 8: 8}) == (64, 8)
    assert fit_channel_formula({4: 64, 8: 16, 16: 32}) is None


def test_malformed_rosinality_files(tmp_path):
    G = nvidia(seed=2, res=16, base=256, cmax=16)
    sd = export_rosinality(G)
    cases = {
        "no_g_ema": ({"g": sd}, "no 'g_ema'"),
        "missing_tensor": (
            {"g_ema": {k: v for k, v in sd.items() if k != "convs.1.activate.bias"}},
            "convs.1.activate.bias",
        ),
        "extra_layer": ({"g_ema": {**sd, "convs.9.conv.weight": torch.zeros(1, 16, 16, 3, 3)}}, "does not use"),
        "human": ({"g_ema": {**sd, "input.input": torch.zeros(1, 16, 4, 2)}}, "non-square"),
        "bad_shape": ({"g_ema": {**sd, "convs.1.activate.bias": torch.zeros(5)}}, "shape"),
        "latent_avg": ({"g_ema": sd, "latent_avg": torch.zeros(7)}, "latent_avg"),
    }
    for name, (obj, expected) in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save(obj, path)
        with pytest.raises(CheckpointError) as info:
            load_generator(path)
        assert expected in str(info.value) and str(path) in str(info.value), (name, str(info.value))
