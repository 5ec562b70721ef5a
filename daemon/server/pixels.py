"""Pixel frames <-> numpy arrays and tensors, and the mask mapping the region module does not cover."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image


def frame_to_rgba(buf: Any, width: int, height: int, fmt: str) -> np.ndarray:
    """An owned [H, W, 4] RGBA uint8 array from a validated RGBA8/BGRA8 frame."""
    arr = np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 4)
    if fmt == "BGRA8":
        return np.ascontiguousarray(arr[..., [2, 1, 0, 3]])
    return arr.copy()


def frame_to_a8(buf: Any, width: int, height: int) -> np.ndarray:
    return np.frombuffer(buf, dtype=np.uint8).reshape(height, width).copy()


def rgba_to_frame(arr: np.ndarray, fmt: str = "RGBA8") -> memoryview:
    """A flat byte view of `arr` in the asked format (zero-copy for contiguous RGBA)."""
    if fmt == "BGRA8":
        arr = arr[..., [2, 1, 0, 3]]
    return memoryview(np.ascontiguousarray(arr)).cast("B")


def tensor_to_rgba(image: torch.Tensor) -> np.ndarray:
    """[1, 3, R, R] in [-1, 1] -> [R, R, 4] uint8, opaque."""
    img = image.detach().float().cpu()[0]
    rgb = ((img.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    out = np.empty(rgb.shape[:2] + (4,), np.uint8)
    out[..., :3] = rgb
    out[..., 3] = 255
    return out


def editable_to_keep(editable: np.ndarray, rmap: Any) -> np.ndarray:
    """Map a layer-sized "may change" mask (A8, 255 = free) into the model square as keep-fixed weights.

    Only the part inside `rmap.region` may change (the composite never writes outside it); the square's padding
    and everything else is kept. Returns [R, R] float32, 1 = keep fixed.
    """
    res = rmap.model_res
    s = rmap.scale
    x, y, w, h = rmap.region
    crop = editable[y : y + h, x : x + w]
    free = np.zeros((res, res), np.float32)
    # Region box in model pixels (edges), rounded to whole pixels for pasting.
    left, top = (x - rmap.x0) * s, (y - rmap.y0) * s
    right, bottom = (x + w - rmap.x0) * s, (y + h - rmap.y0) * s
    l, t = max(0, int(round(left))), max(0, int(round(top)))
    r, b = min(res, max(l + 1, int(round(right)))), min(res, max(t + 1, int(round(bottom))))
    small = Image.fromarray(np.ascontiguousarray(crop), "L").resize((r - l, b - t), Image.Resampling.BOX)
    free[t:b, l:r] = np.asarray(small, np.float32) / 255.0
    return 1.0 - free
