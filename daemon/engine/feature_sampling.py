"""Read feature values at image pixels without resizing the whole feature map.

The official DragGAN code upsamples the supervised feature map to image size
(`F.interpolate(..., mode='bilinear')`, i.e. align_corners=False) and then indexes it at integer pixels, or
samples it with `grid_sample(align_corners=True)` at fractional points. Both only ever need a few hundred
pixels, so resizing a [C, 128, 128] map to [C, 512, 512] every step is wasted work.

Here the same numbers are computed directly from the small map:

* the resized map's value at integer pixel i equals a bilinear sample of the small map at source coordinate
  (i + 0.5) * f / H - 0.5, clamped to the map's border, which is `grid_sample(align_corners=False,
  padding_mode='border')` at normalised coordinate (2i + 1) / H - 1;
* a fractional point of the resized map is the bilinear mix of its four integer neighbours, each read as above,
  with neighbours outside the image counting as zero (the official sampler's zero padding).

All points of a step go through one `grid_sample` call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_pixels(feat: torch.Tensor, pixels: torch.Tensor, image_size: int) -> torch.Tensor:
    """Values [N, C] of the image-size bilinear resize of `feat` [1, C, h, w] at integer pixels [N, 2] (x, y)."""
    grid = (2 * pixels.to(feat.dtype) + 1) / image_size - 1
    out = F.grid_sample(feat, grid.reshape(1, 1, -1, 2), mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].t()


def bilinear_corners(points: torch.Tensor, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The four integer neighbours [N, 4, 2] of fractional points [N, 2] (x, y) and their weights [N, 4].

    Neighbours outside the image get weight 0, as with zero padding. Their coordinates are clamped into the
    image so that the caller may read them anyway.
    """
    p0 = torch.floor(points)
    frac = points - p0
    offsets = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=points.dtype, device=points.device)
    corners = p0[:, None, :] + offsets[None]
    fx, fy = frac[:, 0:1], frac[:, 1:2]
    weights = torch.cat([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=1)
    inside = ((corners >= 0) & (corners <= image_size - 1)).all(dim=2)
    weights = weights * inside.to(weights.dtype)
    return corners.clamp(0, image_size - 1), weights


def sample_points(feat: torch.Tensor, points: torch.Tensor, image_size: int) -> torch.Tensor:
    """Values [N, C] of the resized map at fractional points [N, 2] (x, y), as `grid_sample(align_corners=True)`."""
    corners, weights = bilinear_corners(points, image_size)
    values = sample_pixels(feat, corners.reshape(-1, 2), image_size).reshape(points.shape[0], 4, -1)
    return (values * weights[:, :, None].to(values.dtype)).sum(dim=1)


def resized_map(feat: torch.Tensor, image_size: int) -> torch.Tensor:
    """The whole resized map, as the official code computes it (kept for tests and the reference loop)."""
    return F.interpolate(feat, size=(image_size, image_size), mode="bilinear", align_corners=False)
