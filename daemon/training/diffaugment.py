"""Differentiable augmentation for the discriminator's inputs (colour, translation, cutout).

Why: with a few hundred training images a discriminator memorises them within minutes and its gradients stop
teaching the generator anything. Augmenting real and generated images alike, differentiably, lets the generator
learn through the augmentation while the discriminator never sees an un-augmented image (Zhao et al. 2020,
"Differentiable Augmentation for Data-Efficient GAN Training"; written here from the paper's description).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_POLICY = "color,translation,cutout"


def _brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.rand(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)


def _saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (torch.rand(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean


def _contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its size, filling with zeros (mid-grey), via one gather."""
    b, c, h, w = x.shape
    sx, sy = int(w * ratio + 0.5), int(h * ratio + 0.5)
    tx = torch.randint(-sx, sx + 1, (b, 1, 1), device=x.device)
    ty = torch.randint(-sy, sy + 1, (b, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = (gy[None] + ty + 1).clamp(0, h + 1)
    gx = (gx[None] + tx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    idx = (gy * (w + 2) + gx).reshape(b, 1, -1).expand(b, c, -1)
    return padded.reshape(b, c, -1).gather(2, idx).reshape(b, c, h, w)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of `ratio` times the size at a random place in each image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    gy = torch.arange(h, device=x.device)[None, :, None]
    gx = torch.arange(w, device=x.device)[None, None, :]
    inside = ((gy - oy + ch // 2) >= 0) & ((gy - oy + ch // 2) < ch) & ((gx - ox + cw // 2) >= 0)
    inside = inside & ((gx - ox + cw // 2) < cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def diff_augment(x: torch.Tensor, policy: str = DEFAULT_POLICY) -> torch.Tensor:
    """Apply the comma-separated policy ('color', 'translation', 'cutout') to a [B,C,H,W] batch."""
    for name in filter(None, (p.strip() for p in policy.split(","))):
        if name == "color":
            x = _contrast(_saturation(_brightness(x)))
        elif name == "translation":
            x = translation(x)
        elif name == "cutout":
            x = cutout(x)
        else:
            raise ValueError(f"unknown augmentation {name!r}")
    return x.contiguous()
