"""Fit the mapping network to the encoder's codes of the whole data set (W-space runs), synthesis frozen.

Why: during training the mapping chases a moving target (the codes change as the encoder learns) and sees only
recent batches. At the end the codes are fixed, so a few thousand cheap MLP steps matching every training face
(and its mirror image) make z ~ N(0, I) land where real faces are. The loss is MMD plus a match of the mean and
covariance. Only the mapping changes; what the synthesis draws from a given w is untouched.
"""

from __future__ import annotations

import torch

from ..engine.generator import Generator
from .networks import Encoder
from .train import mmd


@torch.no_grad()
def dataset_codes(E: Encoder, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Encoder codes of every image and of its mirror image, [2N, w_dim]."""
    E.eval()
    out = [E(chunk)[0] for x in (images, images.flip(3)) for chunk in x.split(batch)]
    return torch.cat(out).float()


def moment_loss(w: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean and covariance mismatch, relative to the codes' own: MMD at one kernel width sees mostly the widest
    direction of the codes, so without this the samples collapse onto it (one average face)."""
    cov_w, cov_c = torch.cov(w.T), torch.cov(codes.T)
    mean = (w.mean(0) - codes.mean(0)).square().sum() / cov_c.trace()
    return mean + (cov_w - cov_c).square().sum() / cov_c.square().sum()


def fit_mapping(
    G: Generator, codes: torch.Tensor, steps: int = 1500, batch: int = 512, lr: float = 0.05, seed: int = 0
) -> list[float]:
    """Train G.mapping so mapping(z) matches `codes` (MMD + first two moments); returns the loss every 100 steps."""
    g = torch.Generator().manual_seed(seed)
    G.mapping.requires_grad_(True)
    opt = torch.optim.Adam(G.mapping.parameters(), lr=lr, betas=(0.0, 0.99))
    history = []
    for step in range(steps):
        z = torch.randn(batch, G.z_dim, generator=g).to(codes.device)
        pick = torch.randint(0, codes.shape[0], (batch,), generator=g).to(codes.device)
        w = G.mapping(z)[:, 0]
        loss = mmd(w, codes[pick]) + moment_loss(w, codes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            history.append(float(loss.detach()))
    G.mapping.requires_grad_(False)
    return history
