"""Which model fits this layer? A short fit with each candidate, ranked by how closely it reproduces the layer.

A drag can only move what the generator can draw, so the model that reconstructs a layer best is the one to drag
it with. Each candidate of the layer's shape (a square model for a square-ish layer, a tall StyleGAN-Human one for
a tall layer) fits the layer's region briefly (W, then W+, no pivotal tuning: the ranking needs the generator's own
reach, which tuning would hide) and is scored by the PSNR of its reconstruction. Cheap by design: seconds per
model on a CPU for the bundled size; a full fit happens later, on the chosen model only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .generator import Generator
from .inversion import InversionConfig, invert
from .region import prepare_region

FIT_STEPS = 30
"""Steps of each of the W and W+ stages: enough to separate a model that can draw the layer from one that cannot."""

ASPECT_TOLERANCE = 1.6
"""A model is a candidate when its picture's width/height is within this factor of the layer region's."""


@dataclass
class Fit:
    name: str
    resolution: int
    psnr_db: float | None  # None when skipped
    seconds: float
    skipped: str = ""  # why the model was not tried

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.name,
            "resolution": self.resolution,
            "psnr_db": None if self.psnr_db is None else round(self.psnr_db, 2),
            "seconds": round(self.seconds, 2),
            "skipped": self.skipped,
        }


def picture_aspect(G: Generator) -> float:
    """Width / height of what the model draws (StyleGAN-Human: 0.5)."""
    return 1.0 if G.cfg.square else 0.5


def aspect_mismatch(layer_w: int, layer_h: int, G: Generator) -> str:
    """Why the model's picture shape does not suit a layer region of this size ("" when it does)."""
    layer_aspect, model_aspect = layer_w / max(layer_h, 1), picture_aspect(G)
    ratio = max(layer_aspect, model_aspect) / min(layer_aspect, model_aspect)
    if ratio <= ASPECT_TOLERANCE:
        return ""
    return f"its pictures are {model_aspect:g}:1 (width:height), the layer {layer_aspect:.2g}:1"


def rank_models(
    layer_rgba: np.ndarray,
    models: Iterable[tuple[str, Callable[[], Generator]]],
    *,
    steps: int = FIT_STEPS,
    selection: np.ndarray | None = None,
    region: tuple[int, int, int, int] | None = None,
    on_model: Callable[[int, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Fit]:
    """Fits, best first (skipped models last). `models` yields (name, loader): a model is loaded only when tried.

    `layer_rgba` is [H, W, 4] uint8; `region` (x, y, w, h) and `selection` ([H, W] uint8) limit the region as
    for an edit.
    """
    fits: list[Fit] = []
    h, w = layer_rgba.shape[:2]
    if region is not None:
        w, h = int(region[2]), int(region[3])
    cfg = InversionConfig.from_preset("fast", w_steps=steps, wplus_steps=steps, pti_steps=0)
    for i, (name, load) in enumerate(models):
        if should_stop is not None and should_stop():
            break
        if on_model is not None:
            on_model(i, name)
        t0 = time.perf_counter()
        try:
            G = load()
        except Exception as exc:  # a broken file is reported in the ranking, not a reason to stop
            fits.append(Fit(name, 0, None, time.perf_counter() - t0, f"it does not load ({exc})"))
            continue
        why = aspect_mismatch(w, h, G)
        if why:
            fits.append(Fit(name, G.img_resolution, None, 0.0, why))
            continue
        prepared = prepare_region(layer_rgba, G.img_resolution, region, selection)
        device = next(G.parameters()).device
        result = invert(G, prepared.image.to(device), cfg, should_stop=should_stop)
        fits.append(Fit(name, G.img_resolution, float(result.psnr), time.perf_counter() - t0))
    tried = sorted((f for f in fits if f.psnr_db is not None), key=lambda f: -f.psnr_db)
    return tried + [f for f in fits if f.psnr_db is None]
