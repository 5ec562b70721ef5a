"""A cheap, offline quality score to pick the best checkpoint: Fréchet distance on fixed random features.

Why not FID: Inception weights cannot be downloaded here. A frozen, randomly initialised conv net (seeded, so
every run measures with the same net) still separates blobs from faces and one repeated face from many, which is
all checkpoint selection needs. The number is only comparable between runs at the same resolution.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .networks import Trunk


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eigh(s1)
    root1 = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    mid = root1 @ s2 @ root1
    tr_cross = np.sqrt(np.clip(np.linalg.eigvalsh((mid + mid.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_cross)


class RandomFeatureFD:
    """Fréchet distance between real and generated images in a frozen random network's pooled features."""

    def __init__(self, reals: torch.Tensor, seed: int = 1234):
        res = reals.shape[-1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = Trunk(res, channel_base=16 * res, channel_max=64).eval()
        self.real_feats = self.features(reals)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> np.ndarray:
        out = []
        for chunk in images.float().cpu().split(128):
            f = self.net.blocks(self.net.from_rgb(chunk))
            pix = F.adaptive_avg_pool2d(chunk, 4).flatten(1)
            out.append(torch.cat([f.mean(dim=[2, 3]), f.std(dim=[2, 3]), pix], dim=1))
        return torch.cat(out).numpy().astype(np.float64)

    def __call__(self, fakes: torch.Tensor) -> float:
        return _frechet(self.real_feats, self.features(fakes))
