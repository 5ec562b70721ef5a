"""Inversion: pictures made by a generator from known latents are fitted back, stage by stage.

The generators here have random weights made "structured" the way a trained one is: outputs scaled into the
image range (std 0.5, no clipping), small noise strengths. A random-weight StyleGAN2 still maps each w to a
definite, spatially coherent picture, so a picture it generated is exactly reachable and inversion has a right
answer to find; what it does not test is how well real photos fit a trained model.
"""

from __future__ import annotations

import copy

import pytest
import torch
from draggan_daemon.engine.errors import EngineInputError
from draggan_daemon.engine.generator import GeneratorConfig
from draggan_daemon.engine.inversion import InversionConfig, InversionProgress, invert
from draggan_daemon.engine.losses import (
    FeatureMatchingLoss,
    PixelPyramidLoss,
    VGG16Perceptual,
    load_perceptual,
    noise_regularization,
    psnr,
)
from draggan_daemon.engine.standin import random_generator

QUICK = dict(w_steps=30, w_lr=0.1, wplus_steps=50, wplus_lr=0.05, pti_steps=30, w_avg_samples=500)


def structured_generator(res: int = 32, channel_base: int = 1024, channel_max: int = 128, dim: int = 128):
    cfg = GeneratorConfig(
        z_dim=dim, w_dim=dim, img_resolution=res, mapping_layers=4, channel_base=channel_base, channel_max=channel_max
    )
    return random_generator(cfg, seed=0, image_range=True, w_avg_samples=1000)


@pytest.fixture(scope="module")
def small_g():
    torch.set_num_threads(1)
    return structured_generator()


def target_of(G, seed: int) -> torch.Tensor:
    with torch.no_grad():
        return G.synthesis(G.z_to_ws(seed, 0.7)).clamp(-1, 1)


@pytest.mark.parametrize("seed", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_known_latents_are_inverted_back_stage_by_stage(small_g, seed):
    if True:
        target = target_of(small_g, seed)
        with torch.no_grad():
            start = psnr(small_g.synthesis(small_g.mapping.w_avg.view(1, 1, -1).expand(1, small_g.num_ws, -1)), target)
        result = invert(small_g, target, InversionConfig.from_preset("fast", **QUICK))
        by_name = {s["name"]: s for s in result.stages}
        assert [s["name"] for s in result.stages] == ["w", "w+", "pti"]
        assert start < 20 < by_name["w"]["psnr"]  # the average face is far; W gets close
        assert by_name["w+"]["psnr"] >= 25.0, result.stages
        assert by_name["pti"]["psnr"] >= 30.0, result.stages
        assert by_name["w"]["psnr"] < by_name["w+"]["psnr"] < by_name["pti"]["psnr"]
        assert all(s["seconds"] > 0 and s["steps"] > 0 for s in result.stages)
        # The result renders what was reported.
        with torch.no_grad():
            image = result.generator.synthesis(result.ws)
        assert psnr(image, target) == pytest.approx(result.psnr, abs=1e-3)
        assert result.ws.shape == (1, small_g.num_ws, small_g.w_dim) and not result.ws.requires_grad


def test_the_given_generator_is_never_changed(small_g):
    before = copy.deepcopy(small_g.state_dict())
    quick = dict(w_steps=10, wplus_steps=10, pti_steps=10, w_avg_samples=200)
    cfg = InversionConfig.from_preset("fast", **quick, optimize_noise=True, locality_regularization=True)
    result = invert(small_g, target_of(small_g, 4), cfg)
    after = small_g.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and noise maps
    assert all(p.grad is None for p in small_g.parameters())
    assert result.generator is not small_g
    tuned = result.generator.state_dict()
    assert any(not torch.equal(before[k], tuned[k]) for k in before if "synthesis" in k)
    assert not any(p.requires_grad for p in result.generator.parameters())


def test_progress_is_reported_and_stages_can_be_skipped(small_g):
    seen: list[InversionProgress] = []
    cfg = InversionConfig.from_preset("fast", **{**QUICK, "w_steps": 0, "wplus_steps": 8, "pti_steps": 5})
    result = invert(small_g, target_of(small_g, 5), cfg, on_progress=seen.append)
    assert [s["name"] for s in result.stages] == ["w+", "pti"]
    assert [(p.stage, p.step) for p in seen] == [("w+", i) for i in range(1, 9)] + [("pti", i) for i in range(1, 6)]
    assert all(p.steps == (8 if p.stage == "w+" else 5) and p.loss > 0 and p.psnr > 0 for p in seen)
    assert [(p.fit_step, p.fit_steps) for p in seen] == [(i, 13) for i in range(1, 14)]  # one bar over both stages
    no_pti = invert(small_g, target_of(small_g, 5), InversionConfig.from_preset("fast", **{**QUICK, "pti_steps": 0}))
    assert no_pti.generator is small_g and [s["name"] for s in no_pti.stages] == ["w", "w+"]


def test_cancel_between_steps_returns_what_is_done(small_g):
    calls = {"n": 0}

    def stop_after_w_plus_3() -> bool:
        calls["n"] += 1
        return calls["n"] > QUICK["w_steps"] + 3

    result = invert(
        small_g, target_of(small_g, 6), InversionConfig.from_preset("fast", **QUICK), should_stop=stop_after_w_plus_3
    )
    assert result.cancelled
    assert [s["name"] for s in result.stages] == ["w"]
    assert result.generator is small_g and result.ws.shape[1] == small_g.num_ws
    assert calls["n"] == QUICK["w_steps"] + 4  # polled before every step, stopped at once
    instantly = invert(small_g, target_of(small_g, 6), should_stop=lambda: True)
    assert instantly.cancelled and [s["name"] for s in instantly.stages] == ["start"]


def test_pti_can_stop_early_at_a_target_psnr(small_g):
    cfg = InversionConfig.from_preset("fast", **{**QUICK, "pti_steps": 200, "pti_stop_psnr": 34.0})
    result = invert(small_g, target_of(small_g, 1), cfg)
    wplus, pti = result.stages[-2:]
    assert pti["name"] == "pti" and wplus["psnr"] < 34.0
    assert 0 < pti["steps"] < 200 and pti["psnr"] >= 34.0 - 1e-6  # the weights that reached it are kept


def test_bad_targets_and_settings_are_refused(small_g):
    with pytest.raises(EngineInputError, match="1×3×32×32"):
        invert(small_g, torch.zeros(1, 3, 64, 64))
    with pytest.raises(EngineInputError, match="NaN"):
        invert(small_g, torch.full((1, 3, 32, 32), float("nan")))
    with pytest.raises(EngineInputError, match="preset"):
        InversionConfig.from_preset("best")
    with pytest.raises(EngineInputError, match="unknown inversion settings"):
        InversionConfig.from_preset("fast", w_stepz=3)
    q = InversionConfig.from_preset("quality")
    assert (q.w_steps, q.w_lr, q.pti_steps, q.pti_lr, q.noise_regularize_weight) == (450, 0.01, 350, 3e-4, 1e5)
    assert q.optimize_noise and q.w_avg_samples == 10000
    three_d = invert(
        small_g, target_of(small_g, 2)[0], InversionConfig.from_preset("fast", w_steps=2, wplus_steps=0, pti_steps=0)
    )
    assert three_d.stages[0]["name"] == "w"  # [3, R, R] is taken as a batch of one


# ----------------------------------------------------------------------------------------------------------
# Losses.


def test_pixel_pyramid_and_noise_regularisation_measure_what_they_claim():
    torch.manual_seed(0)
    a = torch.rand(1, 3, 32, 32) * 2 - 1
    loss = PixelPyramidLoss()
    assert loss(a, a).item() == 0.0
    shifted = a.roll(1, dims=3)
    assert loss(a, a + 0.1).item() > 0 and loss(a, shifted).item() > 0
    # A 1-px shift of texture is mostly invisible to the coarse scales; a colour cast is not.
    coarse = PixelPyramidLoss(scales=(8,))
    assert coarse(a, shifted).item() < coarse(a, a + 0.3).item()
    white = [torch.randn(32, 32), torch.randn(16, 16)]
    smooth = [torch.nn.functional.avg_pool2d(torch.randn(1, 1, 36, 36), 5, stride=1)[0, 0] * 5, torch.randn(16, 16)]
    assert noise_regularization(white).item() < noise_regularization(smooth).item()
    assert psnr(a, a) == float("inf") and psnr(a, a + 0.02) == pytest.approx(
        10 * torch.log10(torch.tensor(4 / 4e-4)).item(), abs=0.01
    )


def _narrow_vgg16_state(width: int = 4) -> dict[str, torch.Tensor]:
    """A VGG16-shaped network with narrow layers (the loader reads widths from the weights)."""
    torch.manual_seed(1)
    chans = [width, width, 2 * width, 2 * width, 4 * width, 4 * width, 4 * width] + [8 * width] * 6
    state, in_c = {}, 3
    for idx, out_c in zip((0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), chans, strict=True):
        state[f"features.{idx}.weight"] = torch.randn(out_c, in_c, 3, 3) * (2 / (9 * in_c)) ** 0.5
        state[f"features.{idx}.bias"] = torch.zeros(out_c)
        in_c = out_c
    return state


def test_user_supplied_vgg16_and_lpips_files_load_and_measure(tmp_path):
    state = _narrow_vgg16_state()
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    net = load_perceptual(path)
    assert isinstance(net, VGG16Perceptual) and net.lins is None
    torch.manual_seed(2)
    a = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(net(a, a), torch.zeros(2))
    assert (net(a, a.flip(-1)) > net(a, a + 0.02)).all()
    lin = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((4, 8, 16, 32, 32))}
    torch.save(lin, tmp_path / "lin.pth")
    with_lin = load_perceptual(path, tmp_path / "lin.pth")
    assert with_lin.lins is not None and with_lin(a, a.flip(-1)).shape == (2,)
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(EngineInputError, match="not a VGG16"):
        load_perceptual(tmp_path / "other.pth")
    with pytest.raises(EngineInputError, match="not found"):
        load_perceptual(tmp_path / "missing.pth")


class _TinyScripted(torch.nn.Module):
    """Stands in for NVIDIA's TorchScript vgg16.pt: same call signature, unit-normalised features out."""

    def forward(self, img: torch.Tensor, resize_images: bool = False, return_lpips: bool = True) -> torch.Tensor:
        f = torch.nn.functional.avg_pool2d(img / 255.0, 4).flatten(1)
        return f / (f * f).sum(dim=1, keepdim=True).sqrt()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_perceptual_file_is_recognised_and_used_by_inversion(tmp_path, small_g):
    path = tmp_path / "vgg16.pt"
    torch.jit.script(_TinyScripted()).save(str(path))
    net = load_perceptual(path)
    a = torch.rand(1, 3, 32, 32) * 2 - 1
    assert net(a, a).item() == pytest.approx(0.0, abs=1e-6) and net(a, -a).item() > 0
    cfg = InversionConfig.from_preset(
        "fast", **{**QUICK, "wplus_steps": 5, "pti_steps": 0, "perceptual_path": str(path)}
    )
    result = invert(small_g, target_of(small_g, 1), cfg)
    assert all("perceptual" in s and s["perceptual"] >= 0 for s in result.stages)


def test_discriminator_feature_hook_is_used(small_g):
    calls = {"n": 0}

    def extractor(img: torch.Tensor) -> list[torch.Tensor]:
        calls["n"] += 1
        return [torch.nn.functional.avg_pool2d(img, 2), torch.nn.functional.avg_pool2d(img, 4)]

    feat = FeatureMatchingLoss(extractor)
    a = torch.rand(1, 3, 32, 32)
    assert feat(a, a).item() == 0.0 and feat(a + 0.1, a).item() == pytest.approx(0.1, abs=1e-5)
    calls["n"] = 0
    cfg = InversionConfig.from_preset("fast", w_steps=4, wplus_steps=0, pti_steps=0, w_avg_samples=100)
    invert(small_g, target_of(small_g, 1), cfg, feature_extractor=extractor)
    assert calls["n"] == 4 + 1  # once per step, plus once for the (cached) target


@pytest.mark.slow
def test_bundled_sized_model_meets_the_fidelity_targets_with_the_fast_preset():
    """A 64 px generator shaped like the bundled one (2.7 M parameters): W+ ≥ 25 dB, PTI ≥ 30 dB."""
    torch.set_num_threads(1)
    G = structured_generator(res=64, channel_base=2048, channel_max=256)
    result = invert(G, target_of(G, 1), InversionConfig.from_preset("fast"))
    by_name = {s["name"]: s["psnr"] for s in result.stages}
    assert by_name["w+"] >= 25.0 and by_name["pti"] >= 30.0, result.stages
