"""Tile a batch of images into one PNG (sample grids for training snapshots and `draggan sample --grid`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_grid(images: torch.Tensor, columns: int) -> np.ndarray:
    """[N,3,H,W] floats in [-1,1] -> [rows*H, columns*W, 3] uint8; missing cells stay white."""
    n, c, h, w = images.shape
    rows = -(-n // columns)
    pix = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pix = pix.permute(0, 2, 3, 1).numpy()
    if c == 1:
        pix = np.repeat(pix, 3, axis=3)
    canvas = np.full((rows * h, columns * w, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        canvas[r * h : (r + 1) * h, col * w : (col + 1) * w] = pix[i, :, :, :3]
    return canvas


def save_grid(images: torch.Tensor, path: Path, columns: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_grid(images, columns)).save(path)
    return path
