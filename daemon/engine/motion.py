"""DragGAN's motion supervision and mask terms, evaluated at the few pixels they need.

Motion supervision (paper eq. 1, official code since "Revise to be consistent with paper"): for each handle p
and its target t with ||t - p|| > 1, d = (t - p) / ||t - p||, and over the pixels q of a disk of radius r1
around p the loss is mean |sg(F(q)) - F(q + d)|, with F(q + d) read bilinearly. The gradient pulls the
features one pixel ahead towards those at the handle, which moves the content towards the target.

The mask term keeps the region marked 1 fixed: lambda * |(F - F0) * M|_1, averaged over every element of the
resized map as `F.l1_loss` does, and only when the mask holds both 0 and 1 (as in the official code).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F

from .feature_sampling import bilinear_corners, sample_pixels

DiskGrid = Literal["official", "centred"]


@lru_cache(maxsize=8)
def _official_axis(image_size: int) -> torch.Tensor:
    # The official code measures distances on torch.linspace(0, H, H), whose step is H / (H - 1) rather than 1;
    # reproducing it keeps the same disk pixels, and so the same answers.
    return torch.linspace(0, image_size, image_size)


def disk_pixels(
    center: tuple[float, float], radius: float, image_size: int, grid: DiskGrid = "official"
) -> torch.Tensor:
    """Integer pixels [M, 2] (x, y) of the image whose distance to `center` (x, y) is below `radius`."""
    cx, cy = float(center[0]), float(center[1])
    reach = int(radius) + 3
    lo_x, hi_x = max(int(cx) - reach, 0), min(int(cx) + reach + 1, image_size)
    lo_y, hi_y = max(int(cy) - reach, 0), min(int(cy) + reach + 1, image_size)
    if lo_x >= hi_x or lo_y >= hi_y:
        return torch.zeros(0, 2)
    if grid == "official":
        axis = _official_axis(image_size)
        xs, ys = axis[lo_x:hi_x], axis[lo_y:hi_y]
    else:
        xs = torch.arange(lo_x, hi_x, dtype=torch.float32)
        ys = torch.arange(lo_y, hi_y, dtype=torch.float32)
    dist = ((ys[:, None] - cy) ** 2 + (xs[None, :] - cx) ** 2) ** 0.5
    iy, ix = torch.where(dist < radius)
    return torch.stack([ix + lo_x, iy + lo_y], dim=1).to(torch.float32)


@dataclass
class MotionTerms:
    """The loss of one step and what went into it (for reports and tests)."""

    loss: torch.Tensor  # scalar; 0 when nothing moves
    moving: list[bool]  # per handle: did it get a motion term


def motion_loss(
    feat: torch.Tensor,
    handles: torch.Tensor,
    targets: torch.Tensor,
    radius: float,
    image_size: int,
    *,
    grid: DiskGrid = "official",
    min_distance: float = 1.0,
) -> MotionTerms:
    """Sum over handles of mean |sg(F(q)) - F(q + d)| over the disk, all handles in one sampling call.

    `handles` and `targets` are [N, 2] (x, y) in image pixels; `feat` is the supervised block's map [1, C, h, w].
    """
    pixels, shifted, owner, moving = [], [], [], []
    for i in range(handles.shape[0]):
        p = handles[i].to(torch.float32)
        delta = targets[i].to(torch.float32) - p
        norm = torch.linalg.norm(delta)
        if not norm > min_distance:
            moving.append(False)
            continue
        q = disk_pixels((p[0].item(), p[1].item()), radius, image_size, grid)
        if q.shape[0] == 0:
            moving.append(False)
            continue
        moving.append(True)
        direction = delta / (norm + 1e-7)
        pixels.append(q)
        shifted.append(q + direction[None])
        owner.append(torch.full((q.shape[0],), len(owner), dtype=torch.long))
    if not pixels:
        return MotionTerms(loss=feat.sum() * 0, moving=moving)
    q = torch.cat(pixels).to(feat.device)
    corners, weights = bilinear_corners(torch.cat(shifted).to(feat.device), image_size)
    values = sample_pixels(feat, torch.cat([q, corners.reshape(-1, 2)]), image_size)
    m = q.shape[0]
    at_q = values[:m].detach()
    ahead = (values[m:].reshape(m, 4, -1) * weights[:, :, None]).sum(dim=1)
    per_pixel = (at_q - ahead).abs().mean(dim=1)
    owners = torch.cat(owner).to(feat.device)
    count = len(pixels)
    sums = torch.zeros(count, dtype=per_pixel.dtype, device=feat.device).index_add(0, owners, per_pixel)
    sizes = torch.bincount(owners, minlength=count).to(per_pixel.dtype)
    return MotionTerms(loss=(sums / sizes).sum(), moving=moving)


def mask_is_active(mask: torch.Tensor | None) -> bool:
    """The official rule: the term applies only when the mask holds both 0 and 1."""
    return mask is not None and bool(mask.min() == 0) and bool(mask.max() == 1)


@dataclass
class MaskRegion:
    """The mask's bounding box, the mask inside it and F0 read there, prepared once per mask."""

    weights: torch.Tensor  # [1, 1, hb, wb]
    grid: torch.Tensor  # [1, hb, wb, 2] normalised sampling coordinates of the box's pixels
    reference: torch.Tensor  # [1, C, hb, wb] the resized F0 inside the box
    image_size: int

    @classmethod
    def from_mask(cls, mask: torch.Tensor, feat0: torch.Tensor) -> MaskRegion:
        size = mask.shape[-1]
        ys, xs = torch.where(mask > 0)
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
        gx = (2 * torch.arange(x0, x1, dtype=torch.float32) + 1) / size - 1
        gy = (2 * torch.arange(y0, y1, dtype=torch.float32) + 1) / size - 1
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None].to(feat0.device)
        weights = mask[y0:y1, x0:x1].to(device=feat0.device, dtype=torch.float32)[None, None]
        with torch.no_grad():
            reference = _read_box(feat0, grid)
        return cls(weights=weights, grid=grid, reference=reference, image_size=size)


def _read_box(feat: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(feat, grid, mode="bilinear", padding_mode="border", align_corners=False)


def mask_loss(feat: torch.Tensor, region: MaskRegion) -> torch.Tensor:
    """mean over the resized map of |F - F0| * M (official `l1_loss(F*M, F0*M)`), read only inside the mask's box."""
    box = _read_box(feat, region.grid)
    total = feat.shape[1] * region.image_size * region.image_size
    return ((box - region.reference).abs() * region.weights).sum() / total
