"""Fit a picture into the generator: W, then W+, then pivotal tuning (PTI), each stage optional.

Why three stages. A single w (W space) keeps the result inside what the generator does well, so edits behave,
but it rarely reproduces a real picture closely. Letting every layer have its own w (W+) fits much closer from
that start. Pivotal tuning (Roich et al., 2022) then fine-tunes a private copy of the generator briefly around the
found latent (the "pivot") until it reproduces the picture, so drags start from the person's own image.

Defaults follow the published code:
* W stage: the StyleGAN2 projector's recipe (Karras et al., 2020; `projector.py` of stylegan2-ada-pytorch):
  start from w_avg estimated from mapped samples, Adam (β 0.9, 0.999), learning rate ramped up over the first
  5 % of steps and cosine-ramped down over the last 25 %, Gaussian noise on w of 0.05·σ_w fading out over the
  first 75 %, optional per-layer noise maps optimised with the noise regulariser weighted 1e5 and renormalised
  every step. PTI runs that projector with lr 0.01 for 450 steps; the "quality" preset does the same.
* W+ stage: the same schedule on all ws, starting from the W result.
* PTI stage: Adam lr 3e-4, 350 steps, loss = MSE + perceptual (both weight 1) as PTI does, plus (ours) a linear
  warm-up of the rate over the first 10 % of steps: Adam's first step moves every weight by about the full rate,
  which at the fast preset's higher rate knocked a 31 dB pivot down to 25 dB before tuning began. An optional
  `pti_stop_psnr` ends tuning once reached (PTI stops at LPIPS < 0.06 the same way). The optional locality
  regulariser (PTI's, weight 0.1) keeps the tuned copy equal to the original generator at latents a fixed
  distance away from the pivot. PTI uses a fixed distance of 30 in FFHQ's W space; here the distance is given in
  units of the W cloud's spread (σ_w), so it means the same for any checkpoint.

The generator given is never modified: noise maps are fitted on a copy that shares its weights, and PTI tunes a
deep copy (returned as `InversionResult.generator`). Optimised noise is a search aid only, as in PTI: the
reconstruction reported and returned uses the generator's own constant noise, so a drag moves all of the
picture's content. See `losses` for what each distance gives; without a perceptual network the pixel pyramid
stands in for LPIPS.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .errors import EngineInputError
from .generator import Generator
from .losses import (
    FeatureMatchingLoss,
    PixelPyramidLoss,
    load_perceptual,
    noise_regularization,
    psnr,
)

Preset = Literal["fast", "quality"]


@dataclass(frozen=True)
class InversionConfig:
    """Steps and rates per stage; a stage with 0 steps is skipped. Build one with `InversionConfig.from_preset`."""

    preset: Preset = "fast"
    w_steps: int = 50
    w_lr: float = 0.1
    wplus_steps: int = 70
    wplus_lr: float = 0.05
    pti_steps: int = 50
    pti_lr: float = 1e-3
    # The StyleGAN2 projector's schedule (W and W+ stages).
    w_avg_samples: int = 2000
    initial_noise_factor: float = 0.05
    noise_ramp_length: float = 0.75
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    optimize_noise: bool = False
    noise_regularize_weight: float = 1e5
    # Losses.
    pixel_scales: tuple[int, ...] = (1, 2, 4, 8)
    l2_weight: float = 1.0
    l1_weight: float = 0.1
    perceptual_path: str | None = None
    perceptual_lin_path: str | None = None
    perceptual_weight: float = 1.0
    feature_weight: float = 0.1
    # PTI.
    pti_l2_weight: float = 1.0
    pti_warmup: float = 0.1  # fraction of PTI steps over which the rate rises linearly (ours: Adam's first
    # steps move every weight by about the full rate, which can undo the pivot's fit before tuning starts)
    pti_stop_psnr: float | None = None
    locality_regularization: bool = False
    locality_weight: float = 0.1
    locality_distance: float = 1.0
    seed: int = 0

    @classmethod
    def from_preset(cls, name: Preset = "fast", **overrides) -> InversionConfig:
        """'fast': a few seconds per stage on a CPU for a 64–128 px model. 'quality': the published step counts."""
        if name == "fast":
            base = cls(preset="fast")
        elif name == "quality":
            base = cls(
                preset="quality",
                w_steps=450,
                w_lr=0.01,
                wplus_steps=300,
                wplus_lr=0.01,
                pti_steps=350,
                pti_lr=3e-4,
                w_avg_samples=10000,
                optimize_noise=True,
            )
        else:
            raise EngineInputError(f"unknown inversion preset {name!r}: use 'fast' or 'quality'")
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise EngineInputError(f"unknown inversion settings: {', '.join(sorted(unknown))}")
        return replace(base, **overrides)


@dataclass(frozen=True)
class InversionProgress:
    """One step of one stage, as handed to `on_progress`."""

    stage: str  # 'w', 'w+' or 'pti'
    step: int  # 1-based
    steps: int
    loss: float
    psnr: float
    fit_step: int = 0  # the same step counted over all stages of this fit, for one progress bar
    fit_steps: int = 0


@dataclass
class InversionResult:
    ws: torch.Tensor  # [1, num_ws, w_dim], detached
    generator: Generator  # the PTI-tuned copy, or the generator given
    image: torch.Tensor  # [1, 3, R, R] reconstruction by `generator` from `ws`
    stages: list[dict] = field(default_factory=list)  # {name, steps, seconds, psnr[, perceptual]}
    cancelled: bool = False

    @property
    def psnr(self) -> float:
        return self.stages[-1]["psnr"] if self.stages else float("nan")


class _Cancelled(Exception):
    pass


def _lr_ramp(t: float, cfg: InversionConfig) -> float:
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown_length) if cfg.lr_rampdown_length > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if cfg.lr_rampup_length > 0:
        ramp *= min(1.0, t / cfg.lr_rampup_length)
    return ramp


def _noise_layers(G: nn.Module) -> list[nn.Module]:
    return [m for m in G.synthesis.modules() if hasattr(m, "noise_const") and isinstance(m.noise_const, torch.Tensor)]


def _render(G: Generator, ws: torch.Tensor) -> torch.Tensor:
    return G.synthesis.run(ws, noise_mode="const")[0]


def _w_stats(G: Generator, samples: int, seed: int) -> tuple[torch.Tensor, float]:
    """Mean of mapped samples and their spread σ_w = sqrt(E‖w − w_avg‖²) (the projector's w_std)."""
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(max(samples, 2), G.z_dim, generator=gen).to(device)
    with torch.no_grad():
        w = torch.cat([G.mapping(chunk)[:, :1] for chunk in z.split(1000)], dim=0).float()
    w_avg = w.mean(0, keepdim=True)  # [1, 1, w_dim]
    w_std = (w - w_avg).square().sum() / w.shape[0]
    return w_avg, float(w_std.sqrt())


class _Objective:
    """The image distance every stage minimises: pixel pyramid (+ perceptual) (+ discriminator features)."""

    def __init__(self, cfg: InversionConfig, perceptual: nn.Module | None, features: FeatureMatchingLoss | None):
        self.pixels = PixelPyramidLoss(cfg.pixel_scales, cfg.l2_weight, cfg.l1_weight)
        self.perceptual, self.features, self.cfg = perceptual, features, cfg

    def __call__(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.pixels(image, target)
        if self.perceptual is not None:
            loss = loss + self.cfg.perceptual_weight * self.perceptual(image, target).sum()
        if self.features is not None:
            loss = loss + self.cfg.feature_weight * self.features(image, target)
        return loss

    def figure(self, image: torch.Tensor, target: torch.Tensor) -> float | None:
        if self.perceptual is None:
            return None
        with torch.no_grad():
            return float(self.perceptual(image.clamp(-1, 1), target).sum())


def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise _Cancelled


def _fit_latent(
    G: Generator,
    target: torch.Tensor,
    start: torch.Tensor,
    *,
    stage: str,
    steps: int,
    lr: float,
    w_std: float,
    cfg: InversionConfig,
    objective: _Objective,
    on_progress: Callable[[InversionProgress], None] | None,
    should_stop: Callable[[], bool] | None,
) -> torch.Tensor:
    """W stage (start [1, 1, w_dim]) or W+ stage (start [1, num_ws, w_dim]) with the projector's schedule."""
    gen = torch.Generator().manual_seed(cfg.seed + (0 if stage == "w" else 1))
    latent = start.detach().clone().requires_grad_(True)
    noise_bufs: list[torch.Tensor] = []
    net = G
    if cfg.optimize_noise and stage == "w":
        # A copy that shares every weight with G but owns its noise maps: G stays untouched.
        net = copy.deepcopy(G, memo={id(p): p for p in G.parameters()})
        for layer in _noise_layers(net):
            layer.noise_const = torch.randn(layer.noise_const.shape, generator=gen).to(layer.noise_const.device)
            layer.noise_const.requires_grad_(True)
            noise_bufs.append(layer.noise_const)
    opt = torch.optim.Adam([latent] + noise_bufs, betas=(0.9, 0.999), lr=lr)
    add_noise = stage == "w" and cfg.initial_noise_factor > 0
    for step in range(steps):
        _check_stop(should_stop)
        t = step / steps
        for group in opt.param_groups:
            group["lr"] = lr * _lr_ramp(t, cfg)
        lat = latent
        if add_noise:
            scale = w_std * cfg.initial_noise_factor * max(0.0, 1.0 - t / cfg.noise_ramp_length) ** 2
            lat = lat + torch.randn(lat.shape, generator=gen).to(lat.device) * scale
        ws = lat.expand(-1, G.num_ws, -1) if lat.shape[1] == 1 else lat
        image = _render(net, ws)
        loss = objective(image, target)
        if noise_bufs:
            loss = loss + cfg.noise_regularize_weight * noise_regularization(noise_bufs)
        # Gradients only for our tensors: nothing accumulates on the shared generator's weights.
        grads = torch.autograd.grad(loss, [latent] + noise_bufs)
        for p, g in zip([latent] + noise_bufs, grads, strict=True):
            p.grad = g
        opt.step()
        with torch.no_grad():
            for buf in noise_bufs:
                buf -= buf.mean()
                buf *= buf.square().mean().rsqrt()
        if on_progress is not None:
            on_progress(InversionProgress(stage, step + 1, steps, loss.item(), psnr(image, target)))
    return latent.detach()


def _tune_generator(
    G: Generator,
    tuned: Generator,
    target: torch.Tensor,
    ws: torch.Tensor,
    *,
    w_std: float,
    cfg: InversionConfig,
    objective: _Objective,
    on_progress: Callable[[InversionProgress], None] | None,
    should_stop: Callable[[], bool] | None,
) -> int:
    """PTI: fine-tune `tuned` (a deep copy of G) so that it renders `target` from the fixed pivot `ws`."""
    params = [p for p in tuned.synthesis.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=cfg.pti_lr, betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    distance = cfg.locality_distance * w_std * math.sqrt(G.num_ws)
    done = 0
    for step in range(cfg.pti_steps):
        _check_stop(should_stop)
        for group in opt.param_groups:
            group["lr"] = cfg.pti_lr * min(1.0, (step + 1) / max(1.0, cfg.pti_warmup * cfg.pti_steps))
        image = _render(tuned, ws)
        score = psnr(image, target)
        if cfg.pti_stop_psnr is not None and score >= cfg.pti_stop_psnr:
            break  # judged before stepping: the weights that reached the target are the ones kept
        loss = cfg.pti_l2_weight * F.mse_loss(image, target) + objective(image, target)
        if cfg.locality_regularization:
            z = torch.randn(1, G.z_dim, generator=gen).to(ws.device)
            with torch.no_grad():
                direction = G.mapping(z) - ws
                w_near = ws + distance * direction / direction.norm().clamp_min(1e-8)
                reference = _render(G, w_near)
            loss = loss + cfg.locality_weight * objective(_render(tuned, w_near), reference)
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        opt.step()
        done = step + 1
        if on_progress is not None:
            on_progress(InversionProgress("pti", step + 1, cfg.pti_steps, loss.item(), score))
    for p in params:
        p.grad = None
        p.requires_grad_(False)
    return done


def _as_target(G: Generator, target: torch.Tensor) -> torch.Tensor:
    if not isinstance(target, torch.Tensor):
        raise EngineInputError("the picture to fit must be a tensor [1, 3, R, R]")
    if target.ndim == 3:
        target = target.unsqueeze(0)
    res = G.img_resolution
    if tuple(target.shape) != (1, G.cfg.img_channels, res, res):
        raise EngineInputError(
            f"the picture to fit must be 1×{G.cfg.img_channels}×{res}×{res} for this model, got {tuple(target.shape)}"
        )
    if not torch.isfinite(target).all():
        raise EngineInputError("the picture to fit contains NaN or infinite values")
    device = next(G.parameters()).device
    return target.detach().to(device=device, dtype=torch.float32).clamp(-1, 1)


def invert(
    G: Generator,
    target: torch.Tensor,
    config: InversionConfig | None = None,
    on_progress: Callable[[InversionProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    perceptual: nn.Module | None = None,
    feature_extractor: Callable[[torch.Tensor], Sequence[torch.Tensor]] | None = None,
) -> InversionResult:
    """Fit `target` ([1, 3, R, R] in [-1, 1]) into `G`; G itself is never changed.

    `on_progress` gets an `InversionProgress` after every step; `should_stop` is polled before every step, and
    when it returns True the stages done so far are returned with `cancelled=True`. `perceptual` is a loaded
    perceptual distance (else `config.perceptual_path` is loaded); `feature_extractor` returns a list of
    feature maps for an image (the checkpoint's discriminator, when a loader provides one).
    """
    cfg = config or InversionConfig.from_preset("fast")
    target = _as_target(G, target)
    if perceptual is None and cfg.perceptual_path:
        perceptual = load_perceptual(cfg.perceptual_path, cfg.perceptual_lin_path)
    if perceptual is not None:
        perceptual = perceptual.to(target.device)
    features = FeatureMatchingLoss(feature_extractor) if feature_extractor is not None else None
    objective = _Objective(cfg, perceptual, features)

    w_avg, w_std = _w_stats(G, cfg.w_avg_samples, cfg.seed)
    ws = w_avg.expand(-1, G.num_ws, -1).clone()
    generator = G
    result = InversionResult(ws=ws, generator=G, image=target.new_zeros(target.shape))
    report = None
    if on_progress is not None:
        offsets = {"w": 0, "w+": cfg.w_steps, "pti": cfg.w_steps + cfg.wplus_steps}
        total = cfg.w_steps + cfg.wplus_steps + cfg.pti_steps

        def report(p: InversionProgress) -> None:
            on_progress(replace(p, fit_step=offsets[p.stage] + p.step, fit_steps=total))

    common = dict(cfg=cfg, objective=objective, on_progress=report, should_stop=should_stop)

    def record(name: str, steps: int, start: float) -> None:
        with torch.no_grad():
            image = _render(generator, ws)
        entry = {"name": name, "steps": steps, "seconds": time.perf_counter() - start, "psnr": psnr(image, target)}
        figure = objective.figure(image, target)
        if figure is not None:
            entry["perceptual"] = figure
        result.stages.append(entry)
        result.image = image.clamp(-1, 1)

    try:
        if cfg.w_steps > 0:
            stage_start = time.perf_counter()
            w = _fit_latent(G, target, w_avg, stage="w", steps=cfg.w_steps, lr=cfg.w_lr, w_std=w_std, **common)
            ws = w.expand(-1, G.num_ws, -1).clone()
            record("w", cfg.w_steps, stage_start)
        if cfg.wplus_steps > 0:
            stage_start = time.perf_counter()
            ws = _fit_latent(G, target, ws, stage="w+", steps=cfg.wplus_steps, lr=cfg.wplus_lr, w_std=w_std, **common)
            record("w+", cfg.wplus_steps, stage_start)
        if cfg.pti_steps > 0:
            stage_start = time.perf_counter()
            tuned = copy.deepcopy(G).eval()
            done = _tune_generator(G, tuned, target, ws, w_std=w_std, **common)
            generator = tuned
            record("pti", done, stage_start)
    except _Cancelled:
        result.cancelled = True
    if not result.stages:
        record("start", 0, time.perf_counter())
    result.ws, result.generator = ws.detach(), generator
    return result
