"""Fit a region of a person's layer into the generator's square, and put the edited square back.

A painter edits their own layer (a 3000×2000 photo, a painted portrait), not a 512×512 sample. This module is
the bridge in both directions:

* `prepare_region` cuts a square with some context around the region (the selection's bounds, an explicit
  rectangle, or the whole layer), pads it by edge replication where it runs past the layer's edge, scales it to
  the model's resolution (box reduction then Lanczos, alpha-correct: Pillow resamples RGBA premultiplied),
  composites transparent pixels onto a neutral background (the generator has no alpha), and maps the
  selection into model space as the drag mask.
* `composite` scales the edited square back, blends it into the region with a feathered weight so no seam
  shows, and leaves every pixel outside the region bit-identical. Alpha is never changed.

Conventions
-----------
* Points are (x, y) floats in pixel-index coordinates: pixel (i, j) is column i, row j, and its centre is the
  integer point (i, j). `RegionMap` maps them with pixel centres aligned (the align_corners=False convention of
  every resampler), so a point on a pixel centre in the layer lands on the matching spot of the resampled square.
* Mask: the selection is the area that may change. The drag mask is its complement in model space,
  **1 = keep fixed** (outside the selection, outside the region, and in the padding), 0 = free to move.
  Partial selection values give fractional mask values.
* Size limits: a layer larger than `MAX_LAYER_PIXELS` is refused before anything is allocated
  (`check_layer_size` lets a server refuse it before even decoding the pixels); a region whose longer side is
  under `MIN_REGION_SIDE` pixels is refused (there is nothing a generator can do with it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .errors import EngineInputError

MAX_LAYER_PIXELS = 8192 * 8192
"""Largest layer (width × height) the engine accepts: 64 megapixels, e.g. 8192×8192 or 10000×6000."""

MIN_REGION_SIDE = 8
"""Smallest region, in layer pixels along its longer side."""

DEFAULT_CONTEXT = 0.125
"""Context added around the region on each side, as a fraction of its longer side."""

DEFAULT_FEATHER = 0.08
"""Width of the blend ramp inside the region, as a fraction of its shorter side."""

NEUTRAL_BACKGROUND = (128, 128, 128)

Rect = tuple[int, int, int, int]
Point = tuple[float, float]


@dataclass(frozen=True)
class RegionMap:
    """Where the model's square sits in the layer, and how points move between the two.

    `x0, y0` is the square's top-left corner in layer pixels (negative where it overhangs the layer), `side` its
    size in layer pixels, `model_res` the model's resolution; `region` is the (clipped) rectangle that may change.
    """

    x0: int
    y0: int
    side: int
    model_res: int
    layer_width: int
    layer_height: int
    region: Rect

    @property
    def scale(self) -> float:
        """Model pixels per layer pixel."""
        return self.model_res / self.side

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """Layer pixels of the square that lie outside the layer: (left, top, right, bottom)."""
        return (
            max(0, -self.x0),
            max(0, -self.y0),
            max(0, self.x0 + self.side - self.layer_width),
            max(0, self.y0 + self.side - self.layer_height),
        )

    def layer_to_model(self, points: Iterable[Sequence[float]]) -> list[Point]:
        s = self.scale
        return [((x + 0.5 - self.x0) * s - 0.5, (y + 0.5 - self.y0) * s - 0.5) for x, y in points]

    def model_to_layer(self, points: Iterable[Sequence[float]]) -> list[Point]:
        s = self.scale
        return [((u + 0.5) / s - 0.5 + self.x0, (v + 0.5) / s - 0.5 + self.y0) for u, v in points]

    def region_in_model(self) -> tuple[float, float, float, float]:
        """The region as a (left, top, right, bottom) box in model pixel-edge coordinates."""
        x, y, w, h = self.region
        s = self.scale
        return ((x - self.x0) * s, (y - self.y0) * s, (x + w - self.x0) * s, (y + h - self.y0) * s)

    def to_dict(self) -> dict:
        return {
            "x0": self.x0,
            "y0": self.y0,
            "side": self.side,
            "model_res": self.model_res,
            "layer_width": self.layer_width,
            "layer_height": self.layer_height,
            "region": list(self.region),
        }


@dataclass
class PreparedRegion:
    """What the generator sees, plus what `composite` needs to put the edit back."""

    image: torch.Tensor  # [1, 3, R, R] in [-1, 1], transparent pixels composited onto `background`
    mask: torch.Tensor | None  # [R, R] float, 1 = keep fixed; None when everything in the square may change
    map: RegionMap
    alpha: torch.Tensor  # [R, R] float in [0, 1]: the layer's alpha resampled like the image
    selection: np.ndarray | None  # the selection inside the region ([h, w] uint8), None = whole region
    background: tuple[int, int, int]
    feather: float  # blend ramp width in layer pixels


# ----------------------------------------------------------------------------------------------------------
# Validation.


def check_layer_size(width: int, height: int) -> None:
    """Refuse a layer that is empty or too large, before any pixels are decoded or allocated."""
    if width < 1 or height < 1:
        raise EngineInputError(f"the layer is empty ({width}×{height} pixels)")
    if width * height > MAX_LAYER_PIXELS:
        raise EngineInputError(
            f"the layer is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels); the engine takes at most "
            f"{MAX_LAYER_PIXELS / 1e6:.0f} megapixels. Crop or scale the image down first."
        )


def _as_rgba(layer: np.ndarray) -> np.ndarray:
    if not isinstance(layer, np.ndarray) or layer.ndim != 3 or layer.shape[2] not in (3, 4):
        shape = getattr(layer, "shape", None)
        raise EngineInputError(f"layer pixels must be an array of height × width × 4 (RGBA), got shape {shape}")
    check_layer_size(layer.shape[1], layer.shape[0])
    if layer.dtype != np.uint8:
        raise EngineInputError(f"layer pixels must be 8-bit (uint8), got {layer.dtype}")
    if layer.shape[2] == 3:
        alpha = np.full(layer.shape[:2] + (1,), 255, np.uint8)
        layer = np.concatenate([layer, alpha], axis=2)
    return layer


def _as_selection(selection: np.ndarray | None, height: int, width: int) -> np.ndarray | None:
    if selection is None:
        return None
    selection = np.asarray(selection)
    if selection.shape != (height, width):
        raise EngineInputError(
            f"the selection is {selection.shape[1] if selection.ndim == 2 else '?'}×"
            f"{selection.shape[0] if selection.ndim == 2 else '?'} but the layer is {width}×{height}"
        )
    if selection.dtype == np.bool_:
        return selection.astype(np.uint8) * 255
    if selection.dtype != np.uint8:
        raise EngineInputError(f"the selection must be 8-bit (uint8) or boolean, got {selection.dtype}")
    return selection


def _bounds(nonzero: np.ndarray) -> Rect | None:
    rows = np.flatnonzero(nonzero.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(nonzero.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def _resolve_region(region: Sequence[float] | None, selection: np.ndarray | None, width: int, height: int) -> Rect:
    if region is None:
        if selection is None:
            return 0, 0, width, height
        found = _bounds(selection > 0)
        if found is None:
            raise EngineInputError("the selection is empty: select the part of the layer to edit")
        return found
    if len(region) != 4:
        raise EngineInputError(f"a region is (x, y, width, height), got {tuple(region)}")
    x, y, w, h = (int(round(float(v))) for v in region)
    if w <= 0 or h <= 0:
        raise EngineInputError(f"the region is empty ({w}×{h} pixels)")
    x1, y1 = min(x + w, width), min(y + h, height)
    x, y = max(x, 0), max(y, 0)
    if x1 <= x or y1 <= y:
        raise EngineInputError(f"the region {tuple(region)} lies outside the layer ({width}×{height} pixels)")
    rect = (x, y, x1 - x, y1 - y)
    if selection is not None:
        found = _bounds(selection[y:y1, x:x1] > 0)
        if found is None:
            raise EngineInputError("the selection does not overlap the region: nothing may change")
        rect = (x + found[0], y + found[1], found[2], found[3])
    return rect


# ----------------------------------------------------------------------------------------------------------
# The square and its resampling.


def _square(rect: Rect, width: int, height: int, context: float) -> tuple[int, int, int]:
    """Top-left corner and side of the square crop: the region plus context, inside the layer where it fits."""
    x, y, w, h = rect
    long = max(w, h)
    side = max(long, min(math.ceil(long * (1 + 2 * context)), max(width, height)))

    def place(start: int, length: int, extent: int) -> int:
        origin = int(math.floor(start + length / 2 - side / 2))
        if side <= extent:
            origin = min(max(origin, 0), extent - side)
        # Keep the region inside the square whatever the rounding did.
        return min(max(origin, start + length - side), start)

    return place(x, w, width), place(y, h, height), side


def _resample(sub: Image.Image, pads: tuple[int, int, int, int], k: int, res: int, pad_mode: str) -> np.ndarray:
    """Reduce by `k`, pad (left, top, right, bottom, in reduced pixels), resample to res×res; returns an array."""
    if k > 1:
        sub = sub.reduce(k)
    arr = np.asarray(sub)
    left, top, right, bottom = pads
    spec = ((top, bottom), (left, right)) + (((0, 0),) if arr.ndim == 3 else ())
    if any(pads):
        arr = np.pad(arr, spec, mode=pad_mode) if pad_mode == "edge" else np.pad(arr, spec, constant_values=0)
    img = Image.fromarray(np.ascontiguousarray(arr))
    method = Image.Resampling.LANCZOS if img.width >= res else Image.Resampling.BICUBIC
    return np.asarray(img.resize((res, res), method))


def prepare_region(
    layer_rgba: np.ndarray,
    model_res: int,
    region: Sequence[float] | None = None,
    selection: np.ndarray | None = None,
    *,
    context: float = DEFAULT_CONTEXT,
    background: tuple[int, int, int] = NEUTRAL_BACKGROUND,
    feather: float = DEFAULT_FEATHER,
) -> PreparedRegion:
    """Cut, pad and scale the region of `layer_rgba` ([H, W, 4] uint8) into the model's square.

    `region` is (x, y, width, height) in layer pixels (clipped to the layer); without it the selection's bounds
    are used, and without a selection the whole layer. `selection` ([H, W] uint8, 0 = not selected) is the area
    that may change. Raises EngineInputError for input no edit can come from (see the module docstring).
    """
    if model_res < 4:
        raise EngineInputError(f"the model resolution must be at least 4 pixels, got {model_res}")
    layer = _as_rgba(layer_rgba)
    height, width = layer.shape[:2]
    sel = _as_selection(selection, height, width)
    rect = _resolve_region(region, sel, width, height)
    x, y, w, h = rect
    if max(w, h) < MIN_REGION_SIDE:
        raise EngineInputError(
            f"the region is {w}×{h} pixels; at least {MIN_REGION_SIDE} pixels along its longer side are needed"
        )
    sel_region = None if sel is None else np.ascontiguousarray(sel[y : y + h, x : x + w])
    alpha_region = layer[y : y + h, x : x + w, 3]
    visible = alpha_region > 0 if sel_region is None else (alpha_region > 0) & (sel_region > 0)
    if not visible.any():
        raise EngineInputError("the region is fully transparent: there is nothing to edit there")

    x0, y0, side = _square(rect, width, height, context)
    # Shrink by an integer factor first, so a huge square never exists at full size; align the square to it.
    k = max(1, side // (2 * model_res))
    if k > 1:
        ax0, ay0 = (x0 // k) * k, (y0 // k) * k
        side = k * math.ceil(max(x0 + side - ax0, y0 + side - ay0) / k)
        x0, y0 = ax0, ay0
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1, iy1 = min(x0 + side, width), min(y0 + side, height)
    red_w, red_h = math.ceil((ix1 - ix0) / k), math.ceil((iy1 - iy0) / k)
    pads = ((ix0 - x0) // k, (iy0 - y0) // k)
    pads = (pads[0], pads[1], side // k - pads[0] - red_w, side // k - pads[1] - red_h)

    sub = Image.fromarray(np.ascontiguousarray(layer[iy0:iy1, ix0:ix1]), "RGBA")
    rgba = _resample(sub, pads, k, model_res, "edge").astype(np.float32) / 255.0
    alpha = rgba[..., 3:4]
    bg = np.asarray(background, np.float32) / 255.0
    rgb = rgba[..., :3] * alpha + bg * (1.0 - alpha)
    image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None] * 2.0 - 1.0

    editable = np.zeros((iy1 - iy0, ix1 - ix0), np.uint8)
    editable[y - iy0 : y - iy0 + h, x - ix0 : x - ix0 + w] = 255 if sel_region is None else sel_region
    free = _resample(Image.fromarray(editable, "L"), pads, k, model_res, "constant").astype(np.float32) / 255.0
    keep = 1.0 - free
    if keep.min() > 0.999:
        raise EngineInputError("the selected area is too thin to show at the model's resolution")
    mask = torch.from_numpy(np.ascontiguousarray(keep)) if keep.max() > 1e-3 else None

    rmap = RegionMap(x0, y0, side, model_res, width, height, rect)
    feather_px = max(feather * min(w, h), 2.0 / rmap.scale)
    feather_px = min(feather_px, max(min(w, h) / 2.0, 1.0))
    return PreparedRegion(
        image=image.clamp(-1, 1),
        mask=mask,
        map=rmap,
        alpha=torch.from_numpy(np.ascontiguousarray(alpha[..., 0])),
        selection=sel_region,
        background=tuple(int(c) for c in background),
        feather=float(feather_px),
    )


# ----------------------------------------------------------------------------------------------------------
# Putting the edit back.


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ramp(n: int, feather: float, open_start: bool, open_end: bool) -> np.ndarray:
    """1-D blend weight along one side of the region: 0 at an edge inside the layer, 1 beyond `feather`."""
    i = np.arange(n, dtype=np.float32) + 0.5
    d = np.full(n, np.inf, np.float32)
    if not open_start:
        d = np.minimum(d, i)
    if not open_end:
        d = np.minimum(d, n - i)
    return _smoothstep(d / feather) if np.isfinite(d).any() else np.ones(n, np.float32)


def _box_blur(a: np.ndarray, radius: int, axis: int) -> np.ndarray:
    if radius < 1:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (radius + 1, radius)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float64)
    n = a.shape[axis]
    hi = np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return ((hi - lo) / (2 * radius + 1)).astype(np.float32)


def _selection_weight(sel: np.ndarray, feather: float, open_sides: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """Soft weight inside the selection: 0 at its boundary, rising to the selection value `feather` pixels in.

    `open_sides` (left, top, right, bottom) marks region edges that are the layer's edge: nothing lies beyond
    them, so the selection is continued there instead of ending.
    """
    h, w = sel.shape
    q = max(1, math.ceil(max(h, w) / 1024))  # blur on a reduced copy: the ramp is smooth, so nothing is lost
    small = np.asarray(Image.fromarray(sel, "L").reduce(q), np.float32) / 255.0
    radius = max(1, int(round(feather / q / 2.0)))
    pad = radius * 3 + 2
    blurred = np.pad(small, pad, mode="edge")
    left, top, right, bottom = open_sides
    if not left:
        blurred[:, :pad] = 0.0
    if not right:
        blurred[:, -pad:] = 0.0
    if not top:
        blurred[:pad] = 0.0
    if not bottom:
        blurred[-pad:] = 0.0
    for _ in range(3):  # three box blurs ≈ a Gaussian
        blurred = _box_blur(_box_blur(blurred, radius, 0), radius, 1)
    blurred = blurred[pad:-pad, pad:-pad]
    ramp = np.clip(2.0 * blurred - 1.0, 0.0, 1.0)
    if q > 1:
        ramp = np.asarray(Image.fromarray(ramp, "F").resize((w, h), Image.Resampling.BILINEAR), np.float32)
    return ramp * (sel.astype(np.float32) / 255.0)


def blend_weight(prepared: PreparedRegion, layer_alpha: np.ndarray | None) -> np.ndarray:
    """Per-pixel weight of the edit inside the region ([h, w] float32 in [0, 1]); exactly 0 where nothing may change.

    With `layer_alpha`, fully transparent pixels get 0 (the generator's picture has no alpha to give them); motion
    transfer passes None, because moved content may cover pixels that were transparent."""
    m = prepared.map
    x, y, w, h = m.region
    f = prepared.feather
    open_sides = (x == 0, y == 0, x + w == m.layer_width, y + h == m.layer_height)
    wx = _ramp(w, f, open_start=open_sides[0], open_end=open_sides[2])
    wy = _ramp(h, f, open_start=open_sides[1], open_end=open_sides[3])
    weight = wy[:, None] * wx[None, :]
    if prepared.selection is not None:
        weight = weight * _selection_weight(prepared.selection, f, open_sides)
    if layer_alpha is not None:
        weight[layer_alpha == 0] = 0.0
    return weight.astype(np.float32)


def picture_u8(edited: torch.Tensor, res: int) -> np.ndarray:
    """A generator picture ([1, 3, R, R] in [-1, 1]) as [R, R, 3] uint8, rounded as every result is."""
    return np.asarray(_edited_rgb(edited, res))


def _edited_rgb(edited: torch.Tensor, res: int) -> Image.Image:
    img = edited.detach().float().cpu()
    if img.ndim == 4:
        if img.shape[0] != 1:
            raise EngineInputError(f"expected one edited image, got a batch of {img.shape[0]}")
        img = img[0]
    if tuple(img.shape) != (3, res, res):
        raise EngineInputError(f"the edited image must be 3×{res}×{res}, got {tuple(img.shape)}")
    arr = ((img.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def composite(layer_rgba: np.ndarray, edited: torch.Tensor, prepared: PreparedRegion) -> np.ndarray:
    """The whole layer with the edited square blended into the region; every other pixel and all alpha unchanged."""
    layer = _as_rgba(layer_rgba)
    m = prepared.map
    if layer.shape[:2] != (m.layer_height, m.layer_width):
        raise EngineInputError(
            f"the layer is {layer.shape[1]}×{layer.shape[0]} but the region was prepared for "
            f"{m.layer_width}×{m.layer_height}"
        )
    x, y, w, h = m.region
    src = _edited_rgb(edited, m.model_res)
    box = tuple(min(max(v, 0.0), float(m.model_res)) for v in m.region_in_model())
    method = Image.Resampling.BICUBIC if w >= m.model_res else Image.Resampling.LANCZOS
    new = np.asarray(src.resize((w, h), method, box=box), np.float32)

    out = layer.copy()
    target = out[y : y + h, x : x + w]
    alpha = target[..., 3]
    weight = blend_weight(prepared, alpha)
    # The generator saw semi-transparent pixels over the background: take the background back out.
    a = alpha.astype(np.float32)[..., None] / 255.0
    bg = np.asarray(prepared.background, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        fg = np.where(a > 0, (new - bg * (1.0 - a)) / np.maximum(a, 1e-6), new)
    fg = np.clip(fg, 0.0, 255.0)
    old = target[..., :3].astype(np.float32)
    mixed = np.rint(old + weight[..., None] * (fg - old)).astype(np.uint8)
    target[..., :3] = np.where(weight[..., None] > 0, mixed, target[..., :3])
    return out


def composite_moved(layer_rgba: np.ndarray, moved: np.ndarray, prepared: PreparedRegion) -> np.ndarray:
    """The whole layer with `moved` (the region's pixels after motion transfer, [h, w, 4]) feathered into the region.

    Blended in premultiplied alpha (moved content may change alpha); a pixel whose weight is 0 or whose moved value
    equals the layer's stays bit-identical, and so does everything outside the region."""
    layer = _as_rgba(layer_rgba)
    m = prepared.map
    x, y, w, h = m.region
    if layer.shape[:2] != (m.layer_height, m.layer_width) or moved.shape != (h, w, 4):
        raise EngineInputError(f"moved pixels {moved.shape} do not fit the region {m.region} of the prepared layer")
    out = layer.copy()
    target = out[y : y + h, x : x + w]
    weight = blend_weight(prepared, None)
    changed = (weight > 0) & (moved != target).any(axis=2)
    if not changed.any():
        return out
    wgt = weight[changed][:, None]
    old = target[changed].astype(np.float32)
    new = moved[changed].astype(np.float32)
    old_a, new_a = old[:, 3:4] / 255.0, new[:, 3:4] / 255.0
    a = old_a + wgt * (new_a - old_a)
    premul = old[:, :3] * old_a + wgt * (new[:, :3] * new_a - old[:, :3] * old_a)
    with np.errstate(divide="ignore", invalid="ignore"):
        rgb = np.where(a > 0, premul / np.maximum(a, 1e-6), old[:, :3])
    mixed = np.empty_like(old)
    mixed[:, :3] = np.clip(rgb, 0.0, 255.0)
    mixed[:, 3:4] = a * 255.0
    target[changed] = np.rint(mixed).astype(np.uint8)
    return out


def composite_changed(
    layer_rgba: np.ndarray, edited: torch.Tensor, prepared: PreparedRegion
) -> tuple[Rect | None, np.ndarray | None]:
    """Only what changed: (rect, its pixels [h, w, 4]) to paste at rect's corner, or (None, None) when nothing did."""
    out = composite(layer_rgba, edited, prepared)
    rect = changed_rect(_as_rgba(layer_rgba), out)
    return (None, None) if rect is None else (rect, crop_rect(out, rect))


def changed_rect(before: np.ndarray, after: np.ndarray) -> Rect | None:
    """Bounding box (x, y, width, height) of the pixels that differ, or None when none do."""
    if before.shape != after.shape:
        raise EngineInputError(f"cannot compare layers of shapes {before.shape} and {after.shape}")
    diff = before != after
    if diff.ndim == 3:
        diff = diff.any(axis=2)
    return _bounds(diff)


def crop_rect(pixels: np.ndarray, rect: Rect) -> np.ndarray:
    """The pixels of `rect` (x, y, width, height), as a contiguous copy ready to send."""
    x, y, w, h = rect
    return np.ascontiguousarray(pixels[y : y + h, x : x + w])
