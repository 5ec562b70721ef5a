"""Train the tiny "disk" generator the drag tests use as ground truth.

Why a trained model rather than random weights: a drag test needs an image whose geometry is known, so the
test can measure where the shape really went. This generator draws one coloured disk on a plain background;
its geometry (centre, radius) is read from the coarse w entries and its colour from the fine ones, the
same split DragGAN relies on in real StyleGAN models (it optimises only the first ws).

How: not a GAN. The disk's parameters are a fixed function of the normalised z, so the generator can be
trained by plain regression against the rendered disk (25 minutes of one shared CPU core). Style mixing
at the optimised-layer boundary (geometry from one z, colour from another) teaches the per-layer split.

    nice -n 10 .venv/bin/python tools/train_disk_fixture.py --minutes 25

The committed fixture came from that command: 4540 steps in 25 minutes on a shared 2-core machine (one
thread, lr schedule by wall time); `--steps 4540` repeats it by step count instead, whatever the machine.

Writes tests/fixtures/disk_generator.safetensors in the project's own format when the loaders can save it,
otherwise tests/fixtures/disk_generator.pt (a weights-only state dict) plus disk_generator.json (the config).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from draggan_daemon.engine.generator import LRELU_GAIN, Generator, GeneratorConfig, bias_act, fir_filter, upsample2d

RES = 64
LR = 5e-3
MIX_LAYER = 6  # ws[:6] carry geometry, ws[6:] colour: DragGAN optimises exactly the first 6
BACKGROUND = (-0.5, -0.5, -0.5)
CONFIG = GeneratorConfig(
    z_dim=16,
    w_dim=64,
    img_resolution=RES,
    mapping_layers=2,
    mapping_lr_multiplier=1.0,
    channel_base=2048,
    channel_max=64,
)
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def _phi(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def disk_params(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(geometry [B,3] = cx, cy, radius in pixels; colour [B,3] in [0.1, 1]) from z, as the mapping sees it."""
    zn = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
    u = _phi(zn[:, :6])
    geom = torch.stack([14 + 36 * u[:, 0], 14 + 36 * u[:, 1], 7 + 5 * u[:, 2]], dim=1)
    colour = 0.1 + 0.9 * u[:, 3:6]
    return geom, colour


def render_disks(geom: torch.Tensor, colour: torch.Tensor, res: int = RES) -> torch.Tensor:
    """Anti-aliased disks; pixel (i, j) has centre coordinates (x=j, y=i)."""
    idx = torch.arange(res, dtype=torch.float32)
    yy, xx = torch.meshgrid(idx, idx, indexing="ij")
    dist = ((xx[None] - geom[:, 0, None, None]) ** 2 + (yy[None] - geom[:, 1, None, None]) ** 2).sqrt()
    alpha = (geom[:, 2, None, None] + 0.5 - dist).clamp(0, 1)[:, None]
    bg = torch.tensor(BACKGROUND).reshape(1, 3, 1, 1)
    return bg * (1 - alpha) + colour[:, :, None, None] * alpha


def training_batch(G: Generator, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z1 = torch.randn(batch, CONFIG.z_dim, generator=gen)
    z2 = torch.randn(batch, CONFIG.z_dim, generator=gen)
    ws1, ws2 = G.mapping(z1), G.mapping(z2)
    mix = torch.rand(batch, generator=gen) < 0.5
    ws = ws1.clone()
    ws[mix, MIX_LAYER:] = ws2[mix, MIX_LAYER:]
    geom, colour = disk_params(z1)
    _, colour2 = disk_params(z2)
    colour = torch.where(mix[:, None], colour2, colour)
    return ws, render_disks(geom, colour), disk_weight(geom)


def disk_weight(geom: torch.Tensor) -> torch.Tensor:
    """Per-pixel loss weight: the disk and its rim count 5x, so the small shape is not drowned by background."""
    grown = geom.clone()
    grown[:, 2] += 2
    return 1 + 4 * render_disks(grown, torch.ones_like(geom), RES)[:, :1].sub(BACKGROUND[0]).div(1 - BACKGROUND[0])


def _modulated(layer, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A SynthesisLayer with the modulation on the activations (same values, far cheaper for a batch on CPU)."""
    styles = layer.affine(w)
    dcoefs = (styles.square() @ layer.weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
    x = x * styles[:, :, None, None]
    if layer.up:
        x = F.conv_transpose2d(x, layer.weight.transpose(0, 1), stride=2)
        x = fir_filter(x, layer.resample_filter, (1, 1, 1, 1), gain=4.0)  # NVIDIA's padding for a 4-tap filter
    else:
        x = F.conv2d(x, layer.weight, padding=1)
    x = x * dcoefs[:, :, None, None] + layer.noise_const * layer.noise_strength
    return bias_act(x, layer.bias, lrelu=True, gain=LRELU_GAIN, clamp=layer.conv_clamp)


def fast_synthesis(G: Generator, ws: torch.Tensor) -> torch.Tensor:
    """`G.synthesis(ws)` with const noise, computed the non-fused way; checked against it before training."""
    syn = G.synthesis
    x = img = None
    w_idx = 0
    for res in syn.block_resolutions:
        block = syn.block(res)
        if block.in_c == 0:
            x = _modulated(block.conv1, block.const[None].expand(ws.shape[0], -1, -1, -1), ws[:, 0])
            w_idx = 1
        else:
            x = _modulated(block.conv0, x, ws[:, w_idx])
            x = _modulated(block.conv1, x, ws[:, w_idx + 1])
            w_idx += 2
        rgb = block.torgb
        styles = rgb.affine(ws[:, w_idx]) * rgb.weight_gain
        y = bias_act(F.conv2d(x * styles[:, :, None, None], rgb.weight), rgb.bias, False, 1.0, rgb.conv_clamp)
        img = y if img is None else upsample2d(img, block.resample_filter) + y
    return img


def train(minutes: float, batch: int, seed: int, steps: int | None = None) -> tuple[Generator, list[float]]:
    """Regression training; stops after `steps` if given, else after `minutes` of wall time (cosine lr decay)."""
    torch.manual_seed(seed)
    G = Generator(CONFIG)
    opt = torch.optim.Adam(G.parameters(), lr=LR, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        probe = G.mapping(torch.randn(3, CONFIG.z_dim, generator=gen))
        assert (fast_synthesis(G, probe) - G.synthesis(probe)).abs().max() < 1e-3, "fast path differs from G"
    start = time.monotonic()
    losses: list[float] = []

    def progress() -> float:
        return len(losses) / steps if steps else (time.monotonic() - start) / (minutes * 60)

    while progress() < 1:
        for g in opt.param_groups:
            g["lr"] = LR * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress(), 1.0))))
        ws, target, weight = training_batch(G, batch, gen)
        img = fast_synthesis(G, ws)
        err = img - target
        loss = ((err.abs() + err.square()) * weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if len(losses) % 100 == 0:
            print(
                f"step {len(losses)} loss {sum(losses[-100:]) / 100:.4f} lr {opt.param_groups[0]['lr']:.2e}", flush=True
            )
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(4096, CONFIG.z_dim, generator=gen))[:, 0].mean(0))
    return G.eval(), losses


def save(G: Generator, meta: dict) -> Path:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    try:
        from draggan_daemon.engine.loaders.native import save_native
    except ImportError:
        save_native = None
    if save_native is not None:
        path = FIXTURES / "disk_generator.safetensors"
        save_native(G, path, metadata={k: str(v) for k, v in meta.items()})
        return path
    path = FIXTURES / "disk_generator.pt"
    torch.save({k: v.detach().clone() for k, v in G.state_dict().items()}, path)
    (FIXTURES / "disk_generator.json").write_text(json.dumps({"config": CONFIG.to_dict(), "metadata": meta}, indent=1))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=25.0, help="wall-time budget when --steps is not given")
    ap.add_argument("--steps", type=int, help="train for this many steps instead (the fixture: 4540)")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    G, losses = train(args.minutes, args.batch, args.seed, args.steps)
    tail = sum(losses[-100:]) / max(len(losses[-100:]), 1)
    meta = {"steps": len(losses), "final_loss": round(tail, 5), "seed": args.seed, "batch": args.batch}
    meta["minutes" if args.steps is None else "step_budget"] = args.minutes if args.steps is None else args.steps
    path = save(G, meta)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) after {len(losses)} steps, loss {tail:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
