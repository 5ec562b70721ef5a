"""A few CPU iterations of the real training code on a tiny config: finite losses, checkpoints, resume, export."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from draggan_daemon.engine.loaders import load_generator
from draggan_daemon.training import sample as sample_cli
from draggan_daemon.training.dataset import EmojiDataset
from draggan_daemon.training.diffaugment import diff_augment
from draggan_daemon.training.export import export_checkpoint, generator_from_checkpoint
from draggan_daemon.training.grid import make_grid
from draggan_daemon.training.networks import Discriminator, Encoder
from draggan_daemon.training.train import TrainConfig, TrainState, load_checkpoint, train, train_step
from PIL import Image

RES = 16


def tiny_config(**kw) -> TrainConfig:
    base = dict(
        resolution=RES,
        z_dim=16,
        w_dim=16,
        mapping_layers=2,
        channel_base=128,
        channel_max=16,
        d_channel_base=64,
        e_channel_base=64,
        batch=4,
        snap_kimg=0.008,
        r1_interval=2,
    )
    base.update(kw)
    return TrainConfig(**base)


def tiny_data(n: int = 6) -> EmojiDataset:
    rng = np.random.default_rng(0)
    images = np.full((n, RES, RES, 3), 255, np.uint8)
    for i in range(n):
        images[i, 4:12, 4:12] = rng.integers(0, 255, 3)
    return EmojiDataset(images, np.array(["synthetic"] * n), np.array([f"X{i}" for i in range(n)]))


def test_networks_shapes():
    x = torch.randn(4, 3, RES, RES)
    assert Discriminator(RES, 64, 16)(x).shape == (4,)
    mu, logvar = Encoder(RES, 8, 64, 16)(x)
    assert mu.shape == logvar.shape == (4, 8)
    y = diff_augment(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_train_step_losses_are_finite_in_both_phases():
    torch.manual_seed(0)
    state = TrainState(tiny_config(warmup_kimg=0.004), torch.device("cpu"))
    reals = tiny_data().tensor()[:4]
    warm = train_step(state, reals)  # reconstruction-only phase
    assert warm["d"] == 0.0 and math.isfinite(warm["rec"])
    before = [p.clone() for p in state.D.parameters()]
    adv = train_step(state, reals)  # adversarial phase; iteration 1: no R1 (interval 2)
    adv2 = train_step(state, reals)  # iteration 2 -> R1
    for out in (adv, adv2):
        assert all(math.isfinite(v) for v in out.values())
    assert adv2["r1"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, state.D.parameters(), strict=True))
    assert state.cur_nimg == 12 and state.iteration == 3


def _changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_w_space_autoencoder_step_trains_synthesis_encoder_and_mapping():
    torch.manual_seed(0)
    state = TrainState(tiny_config(latent="w", bank=16), torch.device("cpu"))
    reals = tiny_data().tensor()[:4]
    mapping0 = [p.clone() for p in state.G.mapping.parameters()]
    synth0 = [p.clone() for p in state.G.synthesis.parameters()]
    outs = [train_step(state, reals) for _ in range(3)]
    for out in outs:
        assert set(out) == {"rec", "mmd", "code"} and all(math.isfinite(v) for v in out.values())
    assert _changed(mapping0, state.G.mapping) and _changed(synth0, state.G.synthesis)
    assert state.bank.shape == (12, 16)  # the codes of the three batches, newest first


@pytest.mark.slow
def test_train_checkpoints_resumes_and_exports(tmp_path: Path):
    run = tmp_path / "run"
    data = tiny_data()
    s1 = train(tiny_config(), data, run, torch.device("cpu"), max_iterations=3)
    assert (run / "checkpoint.pt").exists() and (run / "best.pt").exists()
    assert list(run.glob("samples_*kimg.png")) and (run / "reals.png").exists()
    assert s1.iteration == 3 and s1.history and all(math.isfinite(h["fd"]) for h in s1.history)

    state, _ = load_checkpoint(run / "checkpoint.pt")
    for a, b in zip(state.G_ema.state_dict().values(), s1.G_ema.state_dict().values(), strict=True):
        assert torch.equal(a, b)

    s2 = train(tiny_config(), data, run, torch.device("cpu"), max_iterations=2)  # resumes
    assert s2.iteration == 5 and s2.cur_nimg == 20
    assert "resumed" in (run / "log.txt").read_text()

    out = tmp_path / "model.safetensors"
    meta = export_checkpoint(run / "checkpoint.pt", out)
    assert meta["trained_iterations"] == "5"
    loaded = load_generator(out)
    assert loaded.config.img_resolution == RES and loaded.source_format == "native"
    G_ckpt, _ = generator_from_checkpoint(run / "checkpoint.pt")
    ws = loaded.generator.z_to_ws(3, truncation_psi=1.0)
    a = loaded.generator.synthesis.run(ws)[0]
    b = G_ckpt.synthesis.run(ws)[0]
    assert torch.allclose(a, b, atol=1e-5)
    assert loaded.generator.mapping.w_avg.abs().sum() > 0  # recomputed from many z

    grid_png = tmp_path / "grid.png"
    assert sample_cli.main(["--model", str(out), "--grid", str(grid_png), "--count", "6", "--columns", "3"]) == 0
    assert Image.open(grid_png).size == (3 * RES, 2 * RES)
    # A training checkpoint renders too (its G_ema).
    assert sample_cli.main(["--model", str(run / "best.pt"), "--grid", str(grid_png), "--count", "4"]) == 0
    assert Image.open(grid_png).size == (4 * RES, 1 * RES)


def test_make_grid_layout():
    imgs = torch.stack([torch.full((3, 4, 4), v) for v in (-1.0, 0.0, 1.0)])
    g = make_grid(imgs, columns=2)
    assert g.shape == (8, 8, 3) and g.dtype == np.uint8
    assert g[0, 0, 0] == 0 and g[0, 4, 0] == 128 and g[4, 0, 0] == 255 and g[4, 4, 0] == 255


@pytest.mark.parametrize("bad", [np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8, 3), np.float32)])
def test_dataset_load_rejects_wrong_arrays(tmp_path: Path, bad):
    np.savez(tmp_path / "bad.npz", images=bad, sources=np.array(["a", "b"]), codepoints=np.array(["1", "2"]))
    with pytest.raises(ValueError):
        EmojiDataset.load(tmp_path / "bad.npz")


def test_w_space_run_exports_with_a_fitted_mapping(tmp_path: Path):
    data = tiny_data()
    data.save(tmp_path / "d.npz")
    train(
        tiny_config(latent="w", bank=16, snap_kimg=1.0), data, tmp_path / "run", torch.device("cpu"), max_iterations=2
    )
    out = tmp_path / "w.safetensors"
    meta = export_checkpoint(tmp_path / "run" / "checkpoint.pt", out, data=tmp_path / "d.npz", fit_steps=20)
    assert meta["mapping"].startswith("fitted")
    G = load_generator(out).generator
    img = G.synthesis.run(G.z_to_ws(0, 0.7))[0]
    assert img.shape == (1, 3, RES, RES) and torch.isfinite(img).all()
    assert (tmp_path / "w.json").exists()
