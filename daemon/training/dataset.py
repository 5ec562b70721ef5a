"""The emoji training set: align RGBA pictures on white, cache them as one .npz, augment batches.

Why a single .npz: the GPU machine has no network, so the prepared data set travels with the command, and a
few hundred 64x64 images are well under a megabyte compressed.

Alignment puts every emoji's opaque bounding box in the centre at the same size, so the generator spends its
capacity on faces rather than on positions. Augmentation (x-flip, small shifts, colour jitter) runs on the fly
on torch tensors; it widens a tiny data set without ever showing the discriminator something an emoji could not be.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DEFAULT_RESOLUTION = 64
# The emoji's longer side fills this share of the square, leaving a white margin for shifts and drags.
DEFAULT_FILL = 0.875


def align_rgba(image: Image.Image, resolution: int = DEFAULT_RESOLUTION, fill: float = DEFAULT_FILL) -> np.ndarray:
    """Centre the opaque part of an RGBA picture, scale its longer side to `fill`, composite on white.

    Returns [resolution, resolution, 3] uint8.
    """
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba)[..., 3]
    ys, xs = np.nonzero(alpha > 8)
    if len(xs) == 0:
        raise ValueError("the picture is fully transparent")
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    crop = rgba.crop((int(x0), int(y0), int(x1), int(y1)))
    side = max(crop.width, crop.height)
    target = max(1, round(resolution * fill))
    scale = target / side
    new_w, new_h = max(1, round(crop.width * scale)), max(1, round(crop.height * scale))
    # Premultiplied resampling so transparent pixels' colours do not bleed into the edges.
    crop = crop.resize((new_w, new_h), Image.Resampling.LANCZOS, reducing_gap=None)
    canvas = Image.new("RGBA", (resolution, resolution), (255, 255, 255, 255))
    canvas.alpha_composite(crop, ((resolution - new_w) // 2, (resolution - new_h) // 2))
    return np.asarray(canvas.convert("RGB"), dtype=np.uint8).copy()


@dataclass
class EmojiDataset:
    """Aligned images [N,H,W,3] uint8 with where each came from."""

    images: np.ndarray
    sources: np.ndarray  # [N] str
    codepoints: np.ndarray  # [N] str

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, images=self.images, sources=self.sources, codepoints=self.codepoints)

    @classmethod
    def load(cls, path: Path) -> EmojiDataset:
        with np.load(path, allow_pickle=False) as d:
            images = d["images"]
            if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
                raise ValueError(f"{path}: expected images [N,H,W,3] uint8, got {images.shape} {images.dtype}")
            return cls(images, d["sources"], d["codepoints"])

    def tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """All images as [N,3,H,W] float in [-1, 1]."""
        x = torch.from_numpy(self.images).to(device).permute(0, 3, 1, 2).float()
        return x / 127.5 - 1


def build_dataset(
    pictures: Iterable[tuple[str, str, Image.Image]], resolution: int = DEFAULT_RESOLUTION, fill: float = DEFAULT_FILL
) -> EmojiDataset:
    """Align (source, codepoint, RGBA picture) triples into a data set, skipping empty pictures."""
    images, sources, cps = [], [], []
    for source, cp, pic in pictures:
        try:
            images.append(align_rgba(pic, resolution, fill))
        except ValueError:
            continue
        sources.append(source)
        cps.append(cp)
    if not images:
        raise ValueError("no usable pictures")
    return EmojiDataset(np.stack(images), np.array(sources), np.array(cps))


def prepare_emoji_dataset(cache: Path, out: Path, resolution: int = DEFAULT_RESOLUTION) -> EmojiDataset:
    """Fetch (apt/npm), filter, align and cache the emoji data set as `out` (.npz)."""
    from .emoji_sources import gather

    pictures = ((e.source, e.unified, e.image) for e in gather(cache))
    ds = build_dataset(pictures, resolution)
    ds.save(out)
    return ds


# ----------------------------------------------------------------------------------------------------------
# Augmentation of real images (what an emoji could plausibly look like), applied per batch.


def augment(
    x: torch.Tensor, shift: int = 3, jitter: float = 0.08, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x-flip, integer shifts up to `shift` px (white fill) and mild brightness/saturation/hue jitter.

    x: [B,3,H,W] in [-1,1]. Returns a new tensor of the same shape.
    """
    b, _, h, w = x.shape
    dev = x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator).to(dev)

    flip = rand(b) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if shift > 0:
        pad = _pad_white(x, shift)
        dx = (rand(b) * (2 * shift + 1)).long().clamp(max=2 * shift)
        dy = (rand(b) * (2 * shift + 1)).long().clamp(max=2 * shift)
        rows = (torch.arange(h, device=dev)[None, :] + dy[:, None])[:, :, None].expand(b, h, w)
        cols = (torch.arange(w, device=dev)[None, :] + dx[:, None])[:, None, :].expand(b, h, w)
        idx = (rows * (w + 2 * shift) + cols).reshape(b, 1, -1).expand(b, 3, -1)
        x = pad.reshape(b, 3, -1).gather(2, idx).reshape(b, 3, h, w)
    if jitter > 0:
        # Brightness, saturation and a small rotation of the chroma plane (hue), all mild.
        bright = (rand(b, 1, 1, 1) * 2 - 1) * jitter
        sat = 1 + (rand(b, 1, 1, 1) * 2 - 1) * jitter * 2
        angle = (rand(b) * 2 - 1) * jitter * np.pi
        grey = x.mean(dim=1, keepdim=True)
        x = grey + (x - grey) * sat
        # Brightness scales the distance from white, so the white background stays white.
        x = 1 - (1 - hue_rotate(x, angle)) * (1 + bright)
    return x.clamp(-1, 1)


def _pad_white(x: torch.Tensor, pad: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, [pad, pad, pad, pad], value=1.0)


def hue_rotate(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate colours about the grey axis by `angle` radians per image (keeps white white)."""
    k = torch.ones(3, device=x.device) / np.sqrt(3.0)
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], device=x.device)
    kk = torch.outer(k, k)
    eye = torch.eye(3, device=x.device)
    rot = cos * eye + sin * kx + (1 - cos) * kk  # Rodrigues' formula, [B,3,3]
    # Rotate about mid-grey 0 in [-1,1] space would move white; rotate about white instead.
    y = x - 1
    y = torch.einsum("bij,bjhw->bihw", rot, y)
    return y + 1
