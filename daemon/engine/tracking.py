"""Point tracking: where did each handle's content go after the latest latent update?

The official rule: search a (2 r2 + 1)^2 window of image pixels around the handle for the pixel whose feature
is nearest (L2) to the handle's initial feature F0(p_i); the handle jumps there (integer pixels).

Two additions, both optional (`subpixel`, `guard`):

* Sub-pixel position: the vertex of a 2-D quadratic fitted to the squared distances around the best pixel
  (3x3). Squared distances are used because they are locally quadratic in the displacement when features vary
  smoothly, so the vertex is an unbiased estimate; integer steps make handles stall or oscillate near their
  targets on small images.
* A guard against jumping to a look-alike (the drift FreeDrag and StableDrag describe): a candidate farther
  than `jump_limit` pixels from the current position is accepted only when it matches clearly better
  (by `jump_margin`) than the best candidate within reach. Real motion per step is about a pixel, so a far
  match that is merely as good is more likely a repeated texture than the handle's content.

All handles' windows are read in one sampling call from the supervised features of the current step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .feature_sampling import sample_pixels


@dataclass(frozen=True)
class TrackingOptions:
    radius: int  # r2, window half-size in image pixels
    subpixel: bool = True
    guard: bool = True
    jump_limit: float = 2.0
    jump_margin: float = 0.25


@dataclass
class Track:
    position: tuple[float, float]  # (x, y)
    distance: float  # L2 feature distance to the template at the chosen pixel
    guarded: bool  # a farther, not clearly better match was turned down


def _round(v: float) -> int:
    return int(math.floor(v + 0.5))


def window_bounds(center: tuple[float, float], radius: int, image_size: int) -> tuple[int, int, int, int]:
    """(left, right, up, down) pixel bounds, right/down exclusive, as the official slicing clips them."""
    px, py = _round(center[0]), _round(center[1])
    return (
        max(px - radius, 0),
        min(px + radius + 1, image_size),
        max(py - radius, 0),
        min(py + radius + 1, image_size),
    )


def parabola_vertex(left: float, mid: float, right: float) -> float:
    """Offset in [-0.5, 0.5] of the minimum of the parabola through (-1, left), (0, mid), (1, right)."""
    curvature = left - 2 * mid + right
    if not curvature > 0:
        return 0.0
    return max(-0.5, min(0.5, 0.5 * (left - right) / curvature))


def quadratic_vertex(patch: torch.Tensor) -> tuple[float, float]:
    """(dx, dy) of the minimum of the 2-D quadratic fitted to a 3x3 patch of squared distances.

    The full quadratic (with the xy term) is needed when features vary along slanted directions: fitting each
    axis alone is then biased. Falls back to the per-axis parabolas when the fit is not a bowl.
    """
    p = patch.double()
    dx2 = p[1, 2] - 2 * p[1, 1] + p[1, 0]
    dy2 = p[2, 1] - 2 * p[1, 1] + p[0, 1]
    dxy = (p[2, 2] - p[2, 0] - p[0, 2] + p[0, 0]) / 4
    gx = (p[1, 2] - p[1, 0]) / 2
    gy = (p[2, 1] - p[0, 1]) / 2
    det = dx2 * dy2 - dxy * dxy
    if dx2 > 0 and det > 0:
        ox = float((-gx * dy2 + gy * dxy) / det)
        oy = float((-gy * dx2 + gx * dxy) / det)
        if abs(ox) <= 1 and abs(oy) <= 1:
            return max(-0.5, min(0.5, ox)), max(-0.5, min(0.5, oy))
    return (
        parabola_vertex(float(p[1, 0]), float(p[1, 1]), float(p[1, 2])),
        parabola_vertex(float(p[0, 1]), float(p[1, 1]), float(p[2, 1])),
    )


def _pick(
    dist: torch.Tensor, left: int, up: int, current: tuple[float, float], opts: TrackingOptions
) -> tuple[int, int, bool]:
    """Row/col of the chosen pixel inside the window distance map [h, w]."""
    flat = dist.reshape(-1)
    best = int(torch.argmin(flat))
    width = dist.shape[1]
    row, col = best // width, best % width
    if not opts.guard:
        return row, col, False
    ys = torch.arange(dist.shape[0], dtype=torch.float64)[:, None] + up
    xs = torch.arange(width, dtype=torch.float64)[None, :] + left
    reach = ((xs - current[0]) ** 2 + (ys - current[1]) ** 2).sqrt()
    if reach[row, col] <= opts.jump_limit:
        return row, col, False
    near = torch.where(reach <= opts.jump_limit, dist.double(), torch.full_like(reach, math.inf))
    near_best = int(torch.argmin(near.reshape(-1)))
    near_dist = float(near.reshape(-1)[near_best])
    if not math.isfinite(near_dist) or float(flat[best]) < (1 - opts.jump_margin) * near_dist:
        return row, col, False
    return near_best // width, near_best % width, True


def track_points(
    feat: torch.Tensor,
    templates: torch.Tensor,
    handles: list[tuple[float, float]],
    image_size: int,
    opts: TrackingOptions,
) -> list[Track]:
    """New handle positions from the supervised map `feat` [1, C, h, w] and templates [N, C]."""
    bounds = [window_bounds(h, opts.radius, image_size) for h in handles]
    pixel_lists = []
    for left, right, up, down in bounds:
        ys, xs = torch.meshgrid(
            torch.arange(up, down, dtype=torch.float32), torch.arange(left, right, dtype=torch.float32), indexing="ij"
        )
        pixel_lists.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1))
    with torch.no_grad():
        values = sample_pixels(feat, torch.cat(pixel_lists).to(feat.device), image_size)
        sizes = [p.shape[0] for p in pixel_lists]
        chunks = values.split(sizes)
        dists = [torch.linalg.norm(c - templates[i][None], dim=1).cpu() for i, c in enumerate(chunks)]
    tracks = []
    for i, (left, right, up, down) in enumerate(bounds):
        dist = dists[i].reshape(down - up, right - left)
        row, col, guarded = _pick(dist, left, up, handles[i], opts)
        x, y = float(col + left), float(row + up)
        if opts.subpixel:
            sq = dist.double().square()
            inner_x, inner_y = 0 < col < dist.shape[1] - 1, 0 < row < dist.shape[0] - 1
            if inner_x and inner_y:
                ox, oy = quadratic_vertex(sq[row - 1 : row + 2, col - 1 : col + 2])
                x, y = x + ox, y + oy
            elif inner_x:
                x += parabola_vertex(float(sq[row, col - 1]), float(sq[row, col]), float(sq[row, col + 1]))
            elif inner_y:
                y += parabola_vertex(float(sq[row - 1, col]), float(sq[row, col]), float(sq[row + 1, col]))
        tracks.append(Track(position=(x, y), distance=float(dist[row, col]), guarded=guarded))
    return tracks
