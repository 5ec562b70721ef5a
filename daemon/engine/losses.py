"""Image distances for fitting a picture into the generator, and what each one is good for.

No pretrained perceptual network can be downloaded by the product, so the default is built from pixels alone;
better measures plug in when the person has them.

* `PixelPyramidLoss` (always available): mean squared error plus L1 at full size and at 1/2, 1/4, 1/8 size
  (average pooling). Full-size MSE is exactly what PSNR measures, so it drives fidelity; the coarse scales see
  colour and layout with the high frequencies averaged away, which gives smooth gradients early on and keeps the
  latent search from chasing texture it cannot reach yet. It is blind to what a person finds similar: a blurry
  fit scores well.
* `FeatureMatchingLoss` (a hook): L1 between feature maps of any network that returns a list of them, meant for
  the checkpoint's own discriminator when a file carries one. Its features are tuned to the generator's domain,
  so it rewards sharp, in-domain detail the pixel losses ignore. Only as good as that discriminator.
* `load_perceptual(path)` (when configured): LPIPS-style distance on VGG16 features from a file the person
  supplies: a torchvision-named VGG16 state dict (`features.N.weight`, `.pth` or `.safetensors`), optionally
  with LPIPS linear weights (`lin0.model.1.weight` … in the same or a second file), or NVIDIA's TorchScript
  `vgg16.pt` (the StyleGAN2 projector's network). This is what the published projectors and PTI optimise;
  it matches human judgement of similarity far better than pixels and lets inversion stop at "looks the same".
  Without LPIPS weights every channel counts equally (the uncalibrated "VGG baseline" of the LPIPS paper).
* `noise_regularization`: the StyleGAN2 projector's penalty on spatial autocorrelation of the per-layer noise
  maps at every octave, so optimised noise stays noise instead of carrying the picture.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import EngineInputError


def psnr(image: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [-1, 1] (peak-to-peak 2), after clamping the image."""
    mse = (image.detach().float().clamp(-1, 1) - target.detach().float()).square().mean().item()
    return float("inf") if mse == 0 else 10.0 * torch.log10(torch.tensor(4.0 / mse)).item()


class PixelPyramidLoss(nn.Module):
    """MSE + L1 summed over a pyramid of average-pooled copies; see the module docstring."""

    def __init__(self, scales: Sequence[int] = (1, 2, 4, 8), l2_weight: float = 1.0, l1_weight: float = 0.1):
        super().__init__()
        self.scales, self.l2_weight, self.l1_weight = tuple(scales), l2_weight, l1_weight

    def forward(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = image.new_zeros(())
        for s in self.scales:
            if s > image.shape[-1]:
                continue
            a = F.avg_pool2d(image, s) if s > 1 else image
            b = F.avg_pool2d(target, s) if s > 1 else target
            diff = a - b
            total = total + self.l2_weight * diff.square().mean() + self.l1_weight * diff.abs().mean()
        return total / len(self.scales)


class FeatureMatchingLoss(nn.Module):
    """Mean L1 between feature maps of `extractor(image)` and `extractor(target)` (a discriminator hook)."""

    def __init__(self, extractor: Callable[[torch.Tensor], Sequence[torch.Tensor]]):
        super().__init__()
        self.extractor = extractor
        self._cache: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    def forward(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self._cache is None or self._cache[0] is not target:
            with torch.no_grad():
                self._cache = (target, [f.detach() for f in self.extractor(target)])
        feats = self.extractor(image)
        return sum((a - b).abs().mean() for a, b in zip(feats, self._cache[1], strict=True)) / len(feats)


def noise_regularization(noises: Sequence[torch.Tensor]) -> torch.Tensor:
    """Squared autocorrelation (one-pixel shifts, both axes) of each noise map, summed over octaves down to 8×8."""
    total = noises[0].new_zeros(())
    for noise in noises:
        v = noise.reshape(1, 1, *noise.shape[-2:])
        while True:
            total = total + (v * v.roll(1, dims=3)).mean().square() + (v * v.roll(1, dims=2)).mean().square()
            if v.shape[-1] <= 8:
                break
            v = F.avg_pool2d(v, 2)
    return total


# ----------------------------------------------------------------------------------------------------------
# User-supplied perceptual networks.

_VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # torchvision `features` indices
_VGG16_POOL_AFTER = (2, 7, 14, 21)  # a max-pool follows these conv indices (the ReLU after each tap)
_LPIPS_TAPS = (2, 7, 14, 21, 28)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


class VGG16Perceptual(nn.Module):
    """LPIPS-style distance on VGG16 features; channel widths are read from the weights, not assumed."""

    def __init__(self, state: dict[str, torch.Tensor], lin: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.convs = nn.ModuleList()
        for idx in _VGG16_CONVS:
            w, b = state[f"features.{idx}.weight"], state[f"features.{idx}.bias"]
            conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=w.shape[2] // 2)
            conv.weight.data.copy_(w.float())
            conv.bias.data.copy_(b.float())
            self.convs.append(conv)
        self.lins = None
        if lin:
            self.lins = nn.ParameterList([nn.Parameter(lin[f"lin{k}.model.1.weight"].float()) for k in range(5)])
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        taps = []
        for idx, conv in zip(_VGG16_CONVS, self.convs, strict=True):
            x = F.relu(conv(x))
            if idx in _LPIPS_TAPS:
                taps.append(x)
            if idx in _VGG16_POOL_AFTER and min(x.shape[-2:]) >= 2:
                x = F.max_pool2d(x, 2)
        return taps

    def forward(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Distance per image ([B]); inputs in [-1, 1]."""
        total = image.new_zeros(image.shape[0])
        for k, (a, b) in enumerate(zip(self.features(image), self.features(target), strict=True)):
            a = a / (a.square().sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.square().sum(1, keepdim=True).sqrt() + 1e-10)
            d = (a - b).square()
            d = (d * self.lins[k].view(1, -1, 1, 1)).sum(1) if self.lins is not None else d.mean(1)
            total = total + d.mean(dim=(1, 2))
        return total


class ScriptedVGG16(nn.Module):
    """NVIDIA's TorchScript `vgg16.pt`: images in [0, 255], returns unit-normalised features; distance = ‖Δ‖²."""

    def __init__(self, net: torch.jit.ScriptModule):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        a = self.net((image + 1) * 127.5, resize_images=False, return_lpips=True)
        b = self.net((target + 1) * 127.5, resize_images=False, return_lpips=True)
        return (a - b).square().sum(1)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise EngineInputError("reading .safetensors needs the 'safetensors' package") from exc
        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise EngineInputError(f"{path.name} holds no weights dictionary")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.split("/", 1)[-1] == "constants.pkl" or "/code/" in n for n in names)


def load_perceptual(path: str | Path, lin_path: str | Path | None = None) -> nn.Module:
    """A perceptual distance `(image, target) -> [B]` from a person's VGG16 / LPIPS / NVIDIA vgg16.pt file."""
    path = Path(path)
    if not path.is_file():
        raise EngineInputError(f"perceptual network file not found: {path}")
    if _is_torchscript(path):
        return ScriptedVGG16(torch.jit.load(str(path), map_location="cpu")).eval()
    state = _read_tensors(path)
    state = {k.removeprefix("module.").removeprefix("vgg."): v for k, v in state.items()}
    if "features.0.weight" not in state:
        raise EngineInputError(f"{path.name} is not a VGG16 state dict (no 'features.0.weight')")
    lin = {k: v for k, v in state.items() if k.startswith("lin")}
    if lin_path is not None:
        lin = {k: v for k, v in _read_tensors(Path(lin_path)).items() if k.startswith("lin")}
    try:
        return VGG16Perceptual(state, lin or None)
    except KeyError as exc:
        raise EngineInputError(f"{path.name} lacks the VGG16 weight {exc.args[0]}") from exc
