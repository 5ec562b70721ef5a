"""Motion transfer: the painter's own pixels, moved the way the generator moved its picture.

A generator fitted to a layer reproduces it only approximately (a 64-px model scaled up to a 256-px face is a
blur). So the generator is used for what only it knows — how the content deforms between the fitted picture and
the dragged one, and what new content appears — and the layer supplies everything else:

    motion   = dense correspondence, start picture -> dragged picture (model space, regularised)
    result   = layer warped by the motion (layer resolution, alpha warped with it)
             + the generator's appearance change where the motion does not explain it (weighted per pixel)

Both directions of optical flow are estimated on the two generator pictures, upsampled so the flow has room for
sub-pixel motion of a small model. Flow on a blurry picture is noisy in flat areas, so the field is regularised:
forward–backward consistency gives a per-pixel confidence, a confidence-weighted Gaussian smooths the vectors,
and vectors shorter than `MIN_MOTION` model pixels are set to exactly zero, so the parts of the
picture the drag had no reason to touch keep the layer's pixels bit for bit; motion is also limited to the
neighbourhood of the dragged pairs (`focus_weight`), since the generator nudges parts nobody dragged. The same
field says where the content under each start handle went: that is the arrival the plugins report, not the point
tracker's claim.

Everything here is numpy/OpenCV on small arrays, except the final warp, which runs at layer resolution on the
region only. A field that cannot be trusted (not finite, vectors over half the picture, a flat start picture)
yields `MotionField.fallback`, a reason in plain words; the caller then uses the generator's picture instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from .errors import EngineInputError
from .region import PreparedRegion, composite, composite_moved

ESTIMATORS: tuple[str, ...] = ("dis", "farneback")
ESTIMATOR = "farneback"
"""The estimator the daemon uses: Farnebäck, because its handles ended closer to their targets than DIS's on the
held-out faces of benchmarks/edit_quality.py (figures in the README)."""

NEW_CONTENT = 0.0
"""Default share of the generator's appearance change added where motion does not explain it (0 = motion only):
off, because with the bundled 64-px model it added blotches more often than content (README, "Edits worth
keeping"); a drag asks for it with `new_content` (protocol 1.1)."""

MIN_MOTION = 0.1
"""Model pixels: shorter vectors become zero, up to twice that they fade in (flow noise on flat areas is this size)."""

SMOOTH_SIGMA = 1.0
"""Model pixels: width of the confidence-weighted Gaussian that regularises the field."""

CONSISTENCY_SIGMA = 0.5
"""Model pixels: forward–backward disagreement at which confidence falls to 1/e."""

RESIDUAL_RANGE = (16.0, 48.0)
"""Grey levels: appearance change below the first is treated as noise, above the second taken in full."""

FOCUS_INNER = 0.06
"""Share of the picture around each drag path that moves in full (motion fades out over as much again)."""

UNSURE_FULL = 0.5
"""Forward–backward unsureness (1 − confidence) at which appearance change is taken in full."""

WARP_INTERPOLATION = cv2.INTER_LANCZOS4
"""How the layer is resampled where it moves (OpenCV flag): Lanczos, which kept more of the layer's detail than
bicubic in benchmarks/edit_quality.py."""

WORK_MIN = 128
"""Smallest grid the flow is estimated on (pictures are upsampled to it)."""

FLAT_PICTURE_STD = 1.0
"""Grey levels: a start picture with less spread than this has no texture to measure motion on."""


@dataclass
class MotionField:
    """Motion between two square generator pictures, on a work grid of `size` × `size` pixels.

    `backward[y, x]` is, for a pixel of the dragged picture, the offset (work pixels) to where it came from in the
    start picture; `forward` the reverse. `residual` is the appearance change motion does not explain ([S, S, 3],
    grey levels, already weighted per pixel and by the drag's `new_content` share). `model_res` is the pictures'
    own resolution.
    """

    size: int
    model_res: int
    backward: np.ndarray
    forward: np.ndarray
    residual: np.ndarray
    fallback: str | None = None

    @property
    def work_per_model(self) -> float:
        return self.size / self.model_res

    def model_to_work(self, points: Iterable[Sequence[float]]) -> np.ndarray:
        k = self.work_per_model
        return np.array([((x + 0.5) * k - 0.5, (y + 0.5) * k - 0.5) for x, y in points], np.float32).reshape(-1, 2)


# ----------------------------------------------------------------------------------------------------------
# Estimation.


def work_size(model_res: int) -> int:
    """Flow grid side: at least `WORK_MIN` px (room for sub-pixel motion of a small model), at most 512."""
    return int(min(max(model_res, WORK_MIN), 512))


def _to_rgb_u8(picture: np.ndarray) -> np.ndarray:
    arr = np.asarray(picture)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"a generator picture is a square RGB array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"a generator picture is uint8, got {arr.dtype}")
    return np.ascontiguousarray(arr[..., :3])


def _flow(a: np.ndarray, b: np.ndarray, estimator: str) -> np.ndarray:
    """Dense flow from grey picture a to b ([S, S, 2] float32, work pixels)."""
    if estimator == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(a, b, None)
    if estimator == "farneback":
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 5, 7, 1.5, cv2.OPTFLOW_FARNEBACK_GAUSSIAN)
    raise ValueError(f"unknown motion estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return xs, ys


def _remap(img: np.ndarray, field: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    xs, ys = _grid(field.shape[0])
    return cv2.remap(img, xs + field[..., 0], ys + field[..., 1], interpolation, borderMode=cv2.BORDER_REPLICATE)


def _consistency(field: np.ndarray, other: np.ndarray, sigma: float) -> np.ndarray:
    """Confidence of `field` from how well `other` (the reverse flow) undoes it at the pixel it points to."""
    back = _remap(other, field)
    err2 = ((field + back) ** 2).sum(axis=2)
    return np.exp(-err2 / (sigma * sigma)).astype(np.float32)


def _smooth(field: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised convolution: a Gaussian average of the vectors, each weighted by its confidence."""
    w = cv2.GaussianBlur(weight, (0, 0), sigma) + 1e-6
    out = np.empty_like(field)
    for c in range(2):
        out[..., c] = cv2.GaussianBlur(field[..., c] * weight, (0, 0), sigma) / w
    return out


def _deadzone(field: np.ndarray, lo: float) -> np.ndarray:
    """Vectors shorter than `lo` become exactly 0; from `lo` to 2·`lo` they fade in; longer ones are kept as they are.

    A soft threshold that only touches flow-noise-sized vectors, so real motion keeps its full length."""
    length = np.sqrt((field**2).sum(axis=2))
    scale = _smoothstep((length - lo) / lo)
    out = (field * scale[..., None]).astype(np.float32)
    out[length <= lo] = 0.0
    return out


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def estimate_motion(
    start: np.ndarray,
    dragged: np.ndarray,
    *,
    keep: np.ndarray | None = None,
    focus: Sequence[Sequence[float]] | None = None,
    estimator: str | None = None,
    new_content: float | None = None,
) -> MotionField:
    """The regularised motion from `start` to `dragged` (square uint8 RGB generator pictures of one size).

    `keep` ([R, R] float, 1 = keep fixed, the drag mask) zeroes motion and appearance change where it holds.
    `new_content` (0–1, default `NEW_CONTENT`) is how much of the appearance change motion does not explain is kept.
    `focus` (the drag's pairs, [hx, hy, tx, ty] in model pixels) limits them to the neighbourhood of the drag
    (see `focus_weight`): the generator also nudges parts nobody dragged, and a painter's untouched pixels stay.
    Never raises on degenerate content: it returns a field with `fallback` set instead.
    """
    a_rgb, b_rgb = _to_rgb_u8(start), _to_rgb_u8(dragged)
    if a_rgb.shape != b_rgb.shape:
        raise ValueError(f"the two pictures differ in size: {a_rgb.shape} and {b_rgb.shape}")
    res = a_rgb.shape[0]
    size = work_size(res)
    k = size / res
    zeros2 = np.zeros((size, size, 2), np.float32)
    no_residual = np.zeros((size, size, 3), np.float32)

    def field(**kw: object) -> MotionField:
        base = dict(size=size, model_res=res, backward=zeros2, forward=zeros2, residual=no_residual)
        base.update(kw)
        return MotionField(**base)  # type: ignore[arg-type]

    if np.array_equal(a_rgb, b_rgb):
        return field()
    grey_a = cv2.cvtColor(a_rgb, cv2.COLOR_RGB2GRAY)
    if float(grey_a.std()) < FLAT_PICTURE_STD:
        return field(fallback="the fitted picture is one flat colour, so no motion can be measured on it")

    interp = cv2.INTER_CUBIC
    A = cv2.resize(a_rgb, (size, size), interpolation=interp)
    B = cv2.resize(b_rgb, (size, size), interpolation=interp)
    ga, gb = cv2.cvtColor(A, cv2.COLOR_RGB2GRAY), cv2.cvtColor(B, cv2.COLOR_RGB2GRAY)
    estimator = estimator or ESTIMATOR
    fwd = _flow(ga, gb, estimator)
    bwd = _flow(gb, ga, estimator)
    if not (np.isfinite(fwd).all() and np.isfinite(bwd).all()):
        return field(fallback="the motion estimate was not a number")

    conf_b = _consistency(bwd, fwd, CONSISTENCY_SIGMA * k)
    conf_f = _consistency(fwd, bwd, CONSISTENCY_SIGMA * k)
    bwd = _deadzone(_smooth(bwd, conf_b + 1e-3, SMOOTH_SIGMA * k), MIN_MOTION * k)
    fwd = _deadzone(_smooth(fwd, conf_f + 1e-3, SMOOTH_SIGMA * k), MIN_MOTION * k)

    free = None
    if keep is not None:
        keep_w = cv2.resize(np.asarray(keep, np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        free = np.clip(1.0 - keep_w, 0.0, 1.0)
    if focus:
        near = focus_weight(focus, res, size)
        free = near if free is None else free * near
    if free is not None:
        bwd = bwd * free[..., None]
        fwd = fwd * free[..., None]  # held content does not move (the forward field is read at start positions)
        bwd[free <= 1e-3] = 0.0
        fwd[free <= 1e-3] = 0.0

    longest = float(np.sqrt((bwd**2).sum(axis=2)).max()) / k
    if longest > res / 2:
        return field(fallback=f"the motion estimate asked for a {longest:.0f}-pixel jump, more than half the picture")

    share = float(NEW_CONTENT if new_content is None else new_content)
    if share <= 0.0:  # motion only (the default): the appearance change would be weighted by 0
        return field(backward=bwd, forward=fwd)
    # What motion does not explain: the dragged picture minus the start picture moved by the field.
    moved = _remap(A.astype(np.float32), bwd)
    residual = B.astype(np.float32) - moved
    magnitude = cv2.GaussianBlur(np.abs(residual).max(axis=2), (0, 0), SMOOTH_SIGMA * k)
    lo, hi = RESIDUAL_RANGE
    # Appearance change counts as new content where the motion is unsure (forward and backward disagree:
    # disocclusion) or where the change is too large for blur (above twice the range's top: content that appears
    # in place); a moderate residual under consistent motion is the generator's blur, not content.
    unsure = 1.0 - cv2.GaussianBlur(conf_b, (0, 0), SMOOTH_SIGMA * k)
    why = np.maximum(_smoothstep(unsure / UNSURE_FULL), _smoothstep((magnitude - hi) / hi))
    weight = (_smoothstep((magnitude - lo) / (hi - lo)) * why).astype(np.float32)
    if free is not None:
        weight = weight * free
    weight[weight < 1e-3] = 0.0
    residual = (residual * (weight * share)[..., None]).astype(np.float32)
    return field(backward=bwd, forward=fwd, residual=residual)


def focus_weight(pairs: Sequence[Sequence[float]], res: int, size: int) -> np.ndarray:
    """[S, S] weight: 1 within `FOCUS_INNER` of any handle→target segment, fading to 0 at twice that distance.

    The inner radius is the larger of a share of the picture and the pair's length (model pixels), so a long
    drag carries the content around it along, and a short one leaves the rest of the face as painted."""
    k = size / res
    xs, ys = _grid(size)
    px, py = (xs + 0.5) / k - 0.5, (ys + 0.5) / k - 0.5  # model coordinates of the work grid
    weight = np.zeros((size, size), np.float32)
    for hx, hy, tx, ty in pairs:
        dx, dy = tx - hx, ty - hy
        length2 = dx * dx + dy * dy
        t = np.clip(((px - hx) * dx + (py - hy) * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
        dist = np.hypot(px - (hx + t * dx), py - (hy + t * dy))
        inner = max(FOCUS_INNER * res, math.sqrt(length2))
        weight = np.maximum(weight, 1.0 - _smoothstep((dist - inner) / inner))
    return weight.astype(np.float32)


def measure_points(motion: MotionField, points: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """Where the content under each start point (model pixels) went, in model pixels.

    Read off the backward field, the one the layer is warped with, so the reported position is where the
    result shows that content: the x with x + backward(x) = start, found by fixed-point iteration from the
    forward field's answer (each vector averaged over a one-model-pixel disk, so one noisy vector cannot decide).
    """
    if not len(points):
        return []
    k = motion.work_per_model
    top = motion.size - 1.0
    radius = max(1, int(round(k)))
    offs = np.array(
        [
            (dx, dy)
            for dy in range(-radius, radius + 1)
            for dx in range(-radius, radius + 1)
            if dx * dx + dy * dy <= radius * radius
        ],
        np.float32,
    )

    def sample(field: np.ndarray, at: np.ndarray) -> np.ndarray:
        xs = np.clip(at[0] + offs[:, 0], 0, top)[None]
        ys = np.clip(at[1] + offs[:, 1], 0, top)[None]
        vals = cv2.remap(field, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, 2)
        return np.median(vals, axis=0)

    out = []
    for start, (px, py) in zip(motion.model_to_work(points), points, strict=True):
        x = start + sample(motion.forward, start)
        for _ in range(8):
            nxt = start - sample(motion.backward, x)
            if float(np.abs(nxt - x).max()) < 1e-3:
                x = nxt
                break
            x = nxt
        dx, dy = (x - start) / k
        out.append((float(px) + float(dx), float(py) + float(dy)))
    return out


# ----------------------------------------------------------------------------------------------------------
# Applying the motion to a layer.


def _resize_field(arr: np.ndarray, box: tuple[float, float, float, float], w: int, h: int) -> np.ndarray:
    """Sample a [S, S, C] float field over `box` (work-pixel edges) onto a w×h grid (bilinear, edge-clamped)."""
    chans = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(arr[..., c]), "F").resize((w, h), Image.Resampling.BILINEAR, box=box),
            np.float32,
        )
        for c in range(arr.shape[2])
    ]
    return np.stack(chans, axis=2)


def transfer_region(
    layer_rgba: np.ndarray,
    motion: MotionField,
    crop: tuple[int, int, int],
    region: tuple[int, int, int, int],
) -> np.ndarray:
    """The region's pixels ([h, w, 4] uint8, straight alpha) of `layer_rgba` moved by `motion`.

    `crop` is (x0, y0, side): where the model's square sits in the layer; `region` (x, y, w, h) the rectangle
    to produce. Pixels whose motion and appearance change are both zero are copied bit for bit; the others are
    sampled (bicubic, premultiplied alpha) from the whole layer, so content may come in from outside the region.
    """
    x0, y0, side = crop
    rx, ry, rw, rh = region
    height, width = layer_rgba.shape[:2]
    out = layer_rgba[ry : ry + rh, rx : rx + rw].copy()
    active = (motion.backward != 0).any(axis=2) | (motion.residual != 0).any(axis=2)
    rows, cols = np.flatnonzero(active.any(axis=1)), np.flatnonzero(active.any(axis=0))
    if rows.size == 0:
        return out
    # Only the layer pixels under the active part of the field are computed (a drag moves a small part of a
    # large layer): its bounding box, one work pixel wider for the bilinear reach, in layer pixels.
    layer_per_work = side / motion.size
    x = max(rx, int(math.floor(x0 + (cols[0] - 1) * layer_per_work)))
    y = max(ry, int(math.floor(y0 + (rows[0] - 1) * layer_per_work)))
    x1 = min(rx + rw, int(math.ceil(x0 + (cols[-1] + 2) * layer_per_work)))
    y1 = min(ry + rh, int(math.ceil(y0 + (rows[-1] + 2) * layer_per_work)))
    if x1 <= x or y1 <= y:
        return out
    w, h = x1 - x, y1 - y
    work_per_layer = motion.size / side
    box = ((x - x0) * work_per_layer, (y - y0) * work_per_layer, (x1 - x0) * work_per_layer, (y1 - y0) * work_per_layer)
    disp = _resize_field(motion.backward, box, w, h) / work_per_layer  # layer pixels
    residual = _resize_field(motion.residual, box, w, h) if motion.residual.any() else None
    changing = (disp != 0).any(axis=2)
    if residual is not None:
        changing |= (residual != 0).any(axis=2)
    if not changing.any():
        return out

    reach = int(math.ceil(float(np.abs(disp).max()))) + 3
    sx0, sy0 = max(0, x - reach), max(0, y - reach)
    sx1, sy1 = min(width, x1 + reach), min(height, y1 + reach)
    src = layer_rgba[sy0:sy1, sx0:sx1].astype(np.float32)
    src[..., :3] *= src[..., 3:4] / 255.0  # premultiplied, so transparent colours never bleed in
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x = xs + (x - sx0) + disp[..., 0]
    map_y = ys + (y - sy0) + disp[..., 1]
    warped = cv2.remap(src, map_x, map_y, WARP_INTERPOLATION, borderMode=cv2.BORDER_REPLICATE)
    a = np.clip(warped[..., 3:4], 0.0, 255.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rgb = np.where(a > 0, warped[..., :3] * 255.0 / np.maximum(a, 1e-6), 0.0)
    if residual is not None:
        rgb = rgb + residual
    moved = np.empty((h, w, 4), np.uint8)
    moved[..., :3] = np.rint(np.clip(rgb, 0.0, 255.0))
    moved[..., 3] = np.rint(a[..., 0])
    part = out[y - ry : y1 - ry, x - rx : x1 - rx]
    part[changing] = moved[changing]
    return out


# ----------------------------------------------------------------------------------------------------------
# The picture a client gets.


@dataclass
class Rendered:
    """A result layer and how it was made: `output` is the mode used, `fallback` why transfer was not."""

    layer: np.ndarray
    output: str
    fallback: str | None
    motion: MotionField | None


def render_layer(
    layer_rgba: np.ndarray,
    start: np.ndarray,
    dragged: np.ndarray,
    prepared: PreparedRegion,
    output: str = "transfer",
    estimator: str | None = None,
    focus: Sequence[Sequence[float]] | None = None,
    new_content: float | None = None,
) -> Rendered:
    """The whole layer after a drag: `start`/`dragged` are the fitted and dragged generator pictures ([R, R, 3]
    uint8); `output` "transfer" moves the layer's own pixels, "generator" pastes the generator's picture.
    `focus`: the drag pairs (model pixels) the motion is limited around (see `estimate_motion`).

    A field that cannot be trusted falls back to "generator" with the reason; nothing of the layer is lost.
    """
    res = prepared.map.model_res
    if output not in ("transfer", "generator"):
        raise EngineInputError(f"unknown output mode {output!r}; choose transfer or generator")
    if output == "generator":
        return Rendered(composite(layer_rgba, _as_tensor(dragged), prepared), "generator", None, None)
    keep = None if prepared.mask is None else prepared.mask.detach().cpu().numpy()
    motion = estimate_motion(start, dragged, keep=keep, focus=focus, estimator=estimator, new_content=new_content)
    if motion.fallback is not None:
        return Rendered(composite(layer_rgba, _as_tensor(dragged), prepared), "generator", motion.fallback, motion)
    m = prepared.map
    moved = transfer_region(np.asarray(layer_rgba), motion, (m.x0, m.y0, m.side), m.region)
    if moved.shape[:2] != (m.region[3], m.region[2]) or res != motion.model_res:
        raise EngineInputError("the motion field does not match the prepared region")
    return Rendered(composite_moved(layer_rgba, moved, prepared), "transfer", None, motion)


def _as_tensor(picture: np.ndarray) -> torch.Tensor:
    arr = torch.from_numpy(np.array(picture[..., :3], np.float32)).permute(2, 0, 1)
    return (arr / 127.5 - 1.0)[None]
