"""Our generator, loaded from NVIDIA pickles, computes what NVIDIA's own networks compute.

The oracle is NVIDIA's stylegan2-ada-pytorch code from the PyPI package draggan==1.1.6 (test-only, fetched into
.cache). Small generators with randomised weights are pickled the way NVIDIA's training loop does, loaded with our
restricted loader, and compared on the same w and noise in fp32 on the CPU.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from draggan_daemon.engine.loaders import load_generator
from oracle.builders import make_nvidia_generator, official_pickle
from oracle.nvidia import easydict

TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")


CONFIGS = {
    "res32-fp16x2-clamp256": dict(
        z_dim=32,
        w_dim=32,
        img_resolution=32,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=512, channel_max=32, num_fp16_res=2, conv_clamp=256),
    ),
    "res64-map8-noclamp": dict(
        z_dim=48,
        w_dim=48,
        img_resolution=64,
        mapping_kwargs=dict(num_layers=8),
        synthesis_kwargs=dict(channel_base=1024, channel_max=48, num_fp16_res=0, conv_clamp=None),
    ),
    "res32-clamp1-hidden24-nonoise": dict(
        z_dim=40,
        w_dim=24,
        img_resolution=32,
        mapping_kwargs=dict(num_layers=3, layer_features=20, lr_multiplier=0.1),
        synthesis_kwargs=dict(channel_base=2048, channel_max=40, num_fp16_res=4, conv_clamp=1, use_noise=False),
    ),
    "res64-defaults-easydict": "easydict",
}


def build(name: str, seed: int):
    cfg = CONFIGS[name]
    if cfg == "easydict":  # kwargs as NVIDIA's training loop passes them; defaults for everything else
        E = easydict()
        cfg = E(
            z_dim=16,
            w_dim=16,
            img_resolution=64,
            mapping_kwargs=E(num_layers=2),
            synthesis_kwargs=E(channel_base=512, channel_max=32),
        )
    return make_nvidia_generator(seed, c_dim=0, img_channels=3, **cfg)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_images_mapping_and_features_equal_nvidia(name, tmp_path):
    torch.manual_seed(0)
    G = build(name, seed=len(name))
    path = tmp_path / "net.pkl"
    path.write_bytes(official_pickle(G))
    model = load_generator(path)
    ours = model.generator
    assert model.source_format == "nvidia-pkl"
    assert ours.num_ws == G.num_ws and ours.img_resolution == G.img_resolution

    z = torch.randn(3, G.z_dim)
    with torch.no_grad():
        for psi, cutoff in ((1.0, None), (0.7, None), (0.5, 4)):
            ws_ref = G.mapping(z, None, truncation_psi=psi, truncation_cutoff=cutoff)
            ws_ours = ours.mapping(z, psi, cutoff)
            assert max_diff(ws_ref, ws_ours) <= TOL, (psi, cutoff)
        ws = G.mapping(z, None, truncation_psi=0.7)
        ws = ws + 0.3 * torch.randn_like(ws)  # distinct w per layer (W+), as a drag produces
        ref_img, ref_feats = G.synthesis(ws, noise_mode="const", force_fp32=True, return_feature=True)
        img, _ = ours.synthesis.run(ws, noise_mode="const")
        diff = max_diff(ref_img, img)
        assert diff <= TOL, f"{name}: image max abs diff {diff}"
        assert ref_img.abs().max() > 0.5  # a non-trivial image, so equality means something

        ref_none = G.synthesis(ws, noise_mode="none", force_fp32=True)
        assert max_diff(ref_none, ours.synthesis.run(ws, noise_mode="none")[0]) <= TOL

        for i, res in enumerate(G.synthesis.block_resolutions[1:3], start=1):
            _, feats = ours.synthesis.run(ws, feature_res=res, render_image=False)
            assert max_diff(ref_feats[i], feats) <= TOL, f"features of b{res}"
    print(f"{name}: image max abs diff {diff:.3g}")


def test_config_read_from_pickle(tmp_path):
    G = build("res32-clamp1-hidden24-nonoise", seed=1)
    path = tmp_path / "g.pkl"
    path.write_bytes(official_pickle(G))
    cfg = load_generator(path).config
    assert (cfg.z_dim, cfg.w_dim, cfg.img_resolution, cfg.mapping_layers) == (40, 24, 32, 3)
    assert (cfg.channel_base, cfg.channel_max, cfg.num_fp16_res, cfg.conv_clamp) == (2048, 40, 4, 1.0)
    assert cfg.layer_features == 20 and cfg.mapping_lr_multiplier == pytest.approx(0.1)

    G = build("res64-defaults-easydict", seed=2)
    path.write_bytes(official_pickle(G))
    cfg = load_generator(path).config
    # NVIDIA's defaults when the kwargs leave them out: 4 fp16 blocks, conv_clamp 256 (SynthesisBlock default).
    assert (cfg.num_fp16_res, cfg.conv_clamp, cfg.mapping_lr_multiplier) == (4, 256.0, pytest.approx(0.01))


@pytest.mark.parametrize("protocol", [2, 3, 5])
def test_full_training_snapshot_any_protocol(protocol, tmp_path):
    """{G, D, G_ema, augment_pipe, training_set_kwargs} as written by stylegan2-ada's training loop."""
    G = build("res32-fp16x2-clamp256", seed=5)
    path = tmp_path / "network-snapshot-000100.pkl"
    blob = official_pickle(G, protocol=protocol, with_discriminator=True)
    if protocol < 4:  # files written under numpy 1.x name numpy's scalar constructor numpy.core.multiarray.scalar
        blob = blob.replace(b"cnumpy._core.multiarray\nscalar\n", b"cnumpy.core.multiarray\nscalar\n")
        assert b"cnumpy.core.multiarray\nscalar\n" in blob
    path.write_bytes(blob)
    model = load_generator(path)
    assert model.metadata["training_set"] == "data/x.zip"
    ws = G.mapping(torch.randn(1, G.z_dim), None)
    with torch.no_grad():
        ref = G.synthesis(ws, noise_mode="const", force_fp32=True)
        assert max_diff(ref, model.generator.synthesis(ws)) <= TOL


def test_loaded_generator_is_frozen_eval_cpu(tmp_path):
    G = build("res32-fp16x2-clamp256", seed=6)
    path = tmp_path / "weird-extension.bin"  # the format is sniffed from content
    path.write_bytes(pickle.dumps({"G_ema": G}))
    ours = load_generator(path).generator
    assert not ours.training
    assert all(not p.requires_grad and p.device.type == "cpu" for p in ours.parameters())
    assert all(p.dtype == torch.float32 for p in ours.state_dict().values())


def test_stylegan_human_layout_equals_nvidia_ops(tmp_path, monkeypatch):
    """StyleGAN-Human's generators are NVIDIA's with every map half as wide (a 4x2 constant, H x H/2 noise).

    Its fork changes only those shapes, so NVIDIA's own ops, run on a generator given that layout (with the
    square-shape asserts switched off), are the reference. Our output, padded to a square as DragGAN pads it
    (white image margins), must carry exactly that picture in its middle columns.
    """
    from oracle.nvidia import nvidia_networks

    networks = nvidia_networks()
    monkeypatch.setattr(networks.misc, "assert_shape", lambda *a, **k: None)
    G = build("res64-map8-noclamp", seed=11)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        b4 = G.synthesis.b4
        b4.const = torch.nn.Parameter(torch.randn(b4.const.shape[0], 4, 2, generator=gen))
        for module in G.synthesis.modules():
            if hasattr(module, "noise_const"):
                r = module.noise_const.shape[0]
                module.noise_const = torch.randn(r, r // 2, generator=gen)
    path = tmp_path / "stylegan_human_v2_64.pkl"
    path.write_bytes(official_pickle(G))
    model = load_generator(path)
    ours = model.generator
    assert model.config.square is False

    with torch.no_grad():
        ws = G.mapping(torch.randn(2, G.z_dim, generator=gen), None, truncation_psi=0.7)
        ws = ws + 0.3 * torch.randn(ws.shape, generator=gen)
        ref, ref_feats = G.synthesis(ws, noise_mode="const", force_fp32=True, return_feature=True)
        assert tuple(ref.shape[-2:]) == (64, 32) and ref.abs().max() > 0.5
        raw, feats = ours.synthesis.run(ws, feature_res=32, square_output=False)
        assert max_diff(ref, raw) <= TOL
        assert max_diff(ref_feats[3], feats) <= TOL  # b32
        img, padded_feats = ours.synthesis.run(ws, feature_res=32)
    assert tuple(img.shape[-2:]) == (64, 64) and tuple(padded_feats.shape[-2:]) == (32, 32)
    assert torch.equal(img[..., 16:48], raw) and bool((img[..., :16] == 1).all() and (img[..., 48:] == 1).all())
    assert torch.equal(padded_feats[..., 8:24], feats) and not padded_feats[..., :8].any()
