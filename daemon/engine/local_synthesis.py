"""The supervised features of a drag step, computed with as little work as gives the same values.

A drag step needs the map of one synthesis block (b128 or so) and gradients for the first few ws only. Two
things make that much cheaper than running the generator as-is, without changing the numbers beyond float
rounding:

* Modulation on the activations instead of the weights (NVIDIA's "non-fused" path): scale the input channels
  by the styles, convolve with the fixed weight, scale the output channels by the demodulation coefficients
  (computed from the precomputed sum of squared weights). The fused path builds a modulated copy of every
  weight tensor per step and back-propagates through it; here no weight-sized tensor is made or
  differentiated, and crops of one image batch with a shared weight.
* Crops (when no mask needs the whole map; previews are rendered apart): a step reads the map only near the
  handles (tracking window, motion disk, one pixel ahead, bilinear neighbours). Every layer is translation-
  equivariant (3x3 convs, stride-2 upsampling with a fixed FIR filter, per-pixel noise and bias), so those
  values come from crops of the previous block's output with a margin that absorbs the crops' false borders;
  where a crop touches the image edge the zero padding is the real one. Blocks of 32 pixels or fewer run in full.

The result has the full feature size; inside the requested regions it equals the full synthesis, elsewhere
it is zero (nothing reads there). A non-square generator's map is padded to a square with zeros, as the
synthesis pads it. Blocks follow `generator.SynthesisBlock`; tests compare against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .generator import LRELU_GAIN, Generator, NoiseMode, SynthesisLayer, bias_act, fir_filter, pad_to_square

MARGIN = 3  # input-resolution pixels kept beyond what a block's output crop needs (contamination is 2)
MIN_CROP_RES = 32  # blocks at or below this resolution run in full; they are cheap
MAX_AREA_FRACTION = 0.5  # crop a level only when all crops together cover at most this share of it

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive ends)


@dataclass(frozen=True)
class LevelPlan:
    size: int  # crop side at this resolution
    starts: list[tuple[int, int]]  # (x, y) top-left of each crop


def _crop_start(lo: int, size: int, res: int) -> int:
    return max(0, min(lo, res - size))


def _input_crop(size: int) -> int:
    return math.ceil(size / 2) + 1 + 2 * MARGIN


def plan_crops(feature_res: int, regions: list[Box]) -> dict[int, LevelPlan] | None:
    """Crops per block resolution (blocks absent from the plan run in full); None when cropping saves nothing."""
    if feature_res <= MIN_CROP_RES or not regions:
        return None
    side = max(max(x1 - x0, y1 - y0) for x0, y0, x1, y1 in regions)
    if side * side * len(regions) > MAX_AREA_FRACTION * feature_res * feature_res:
        return None
    starts = [(_crop_start(x0, side, feature_res), _crop_start(y0, side, feature_res)) for x0, y0, _, _ in regions]
    plans = {feature_res: LevelPlan(side, starts)}
    res = feature_res
    while res // 2 > MIN_CROP_RES:
        out, lower = plans[res], res // 2
        size = _input_crop(out.size)
        if size * size * len(out.starts) > MAX_AREA_FRACTION * lower * lower:
            break
        starts = [
            (_crop_start(x // 2 - MARGIN, size, lower), _crop_start(y // 2 - MARGIN, size, lower))
            for x, y in out.starts
        ]
        plans[lower] = LevelPlan(size, starts)
        res = lower
    return plans


class _Layer:
    """Constants of one SynthesisLayer for the non-fused path, prepared once per drag."""

    def __init__(self, layer: SynthesisLayer):
        self.layer = layer
        self.weight = layer.weight.detach()
        self.wsq = self.weight.square().sum(dim=[2, 3])  # [out, in]
        self.weight_t = self.weight.transpose(0, 1).contiguous() if layer.up else None  # for conv_transpose2d
        aff = layer.affine
        self.affine_w = (aff.weight.detach() * aff.weight_gain).t().contiguous()
        self.affine_b = aff.bias.detach() * aff.bias_gain
        self.noise = (layer.noise_const * layer.noise_strength).detach()
        self._half: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}

    def _weights(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(weight, sum of squares [out, in], transposed weight) for activations of `dtype`."""
        if dtype == torch.float32:
            return self.weight, self.wsq, self.weight_t
        if dtype not in self._half:
            weight = self.weight
            if dtype == torch.float16:
                # NVIDIA's fp16 guard: normalise the weight (and the styles); demodulation cancels the scale.
                in_c, kh, kw = weight.shape[1:]
                weight = weight * (
                    1 / math.sqrt(in_c * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
                )
            wt = weight.transpose(0, 1).contiguous().to(dtype) if self.layer.up else None
            self._half[dtype] = (weight.to(dtype), weight.square().sum(dim=[2, 3]), wt)
        return self._half[dtype]

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise_mode: NoiseMode, starts: list[tuple[int, int]] | None
    ) -> torch.Tensor:
        """x [N, in, h, w] (N crops of one image, or the whole map with starts None), w [1, w_dim]."""
        layer = self.layer
        styles = torch.addmm(self.affine_b[None], w, self.affine_w)  # [1, in]
        weight, wsq, weight_t = self._weights(x.dtype)
        if x.dtype == torch.float16:
            styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
        dcoefs = (styles.square() @ wsq.t() + 1e-8).rsqrt()  # [1, out]
        x = x * styles.to(x.dtype).reshape(1, -1, 1, 1)
        if not layer.up:
            x = F.conv2d(x, weight, padding=1)
        else:
            x = F.conv_transpose2d(x, weight_t, stride=2)
            f = layer.resample_filter
            fw, kw = f.shape[-1], weight.shape[-1]
            p0, p1 = 1 + (fw + 1) // 2 - (kw - 1), 1 + (fw - 2) // 2 - (kw - 2)
            x = fir_filter(x, f, (p0, p1, p0, p1), gain=4.0)
        x = x * dcoefs.to(x.dtype).reshape(1, -1, 1, 1)
        if noise_mode == "const":
            h, w_ = x.shape[2], x.shape[3]
            if starts is None:
                noise = self.noise[None, None]
            else:
                noise = torch.stack([self.noise[y : y + h, x0 : x0 + w_] for x0, y in starts])[:, None]
            x = x + noise.to(x.dtype)
        elif noise_mode != "none":
            raise ValueError("the drag synthesis supports noise modes 'const' and 'none'")
        return bias_act(x, layer.bias.detach(), lrelu=True, gain=LRELU_GAIN, clamp=layer.conv_clamp)


def _slice(
    x: torch.Tensor, starts: list[tuple[int, int]], size: int, origin: list[tuple[int, int]] | None
) -> torch.Tensor:
    """Crops [N, C, size, size] at absolute `starts` of x: one full map (origin None) or per-crop maps."""
    parts = []
    for i, (sx, sy) in enumerate(starts):
        src = x[0] if origin is None else x[i]
        ox, oy = (0, 0) if origin is None else origin[i]
        parts.append(src[:, sy - oy : sy - oy + size, sx - ox : sx - ox + size])
    return torch.stack(parts)


class FeatureSynthesis:
    """Forward of the synthesis blocks up to `feature_res`, for the latent's gradient only."""

    def __init__(self, G: Generator, feature_res: int):
        self.G = G
        self.feature_res = feature_res
        syn = G.synthesis
        if feature_res not in syn.block_resolutions:
            raise ValueError(f"no synthesis block at resolution {feature_res}")
        self.blocks = [syn.block(r) for r in syn.block_resolutions if r <= feature_res]
        self.layers = {}
        for block in self.blocks:
            names = ["conv1"] if block.in_c == 0 else ["conv0", "conv1"]
            self.layers[block.resolution] = [_Layer(getattr(block, n)) for n in names]

    def __call__(
        self, ws: torch.Tensor, regions: list[Box] | None = None, noise_mode: NoiseMode = "const"
    ) -> torch.Tensor:
        """Map [1, C, f, f]; with `regions`, exact inside them (and zero elsewhere) when crops pay off."""
        syn = self.G.synthesis
        # Crops assume square maps; a non-square (StyleGAN-Human) generator runs in full and is padded like its image.
        plans = plan_crops(self.feature_res, regions) if regions is not None and syn.cfg.square else None
        x: torch.Tensor | None = None
        origin: list[tuple[int, int]] | None = None  # crop corners of x when x is a batch of crops
        w_idx = 0
        for block in self.blocks:
            res = block.resolution
            dtype = syn.half_dtype if (syn.half_dtype is not None and block.use_fp16) else torch.float32
            layers = self.layers[res]
            block_ws = ws[:, w_idx : w_idx + len(layers)]
            w_idx += len(layers)
            plan = plans.get(res) if plans else None
            if block.in_c == 0:
                x = block.const.detach().to(dtype)[None]
                x = layers[0].forward(x, block_ws[:, 0], noise_mode, None)
                continue
            if plan is None:
                x = layers[0].forward(x.to(dtype), block_ws[:, 0], noise_mode, None)
                x = layers[1].forward(x, block_ws[:, 1], noise_mode, None)
                continue
            if origin is None:
                size_in = _input_crop(plan.size)
                lower = res // 2
                in_starts = [
                    (_crop_start(sx // 2 - MARGIN, size_in, lower), _crop_start(sy // 2 - MARGIN, size_in, lower))
                    for sx, sy in plan.starts
                ]
                x = _slice(x, in_starts, size_in, None)
            else:
                in_starts = origin
            up_starts = [(2 * sx, 2 * sy) for sx, sy in in_starts]
            y = layers[0].forward(x.to(dtype), block_ws[:, 0], noise_mode, up_starts)
            y = layers[1].forward(y, block_ws[:, 1], noise_mode, up_starts)
            x, origin = _slice(y, plan.starts, plan.size, up_starts), plan.starts
        if origin is None:
            return pad_to_square(x.float(), 0.0)
        size = plans[self.feature_res].size
        canvas = torch.zeros(1, x.shape[1], self.feature_res, self.feature_res, dtype=torch.float32, device=x.device)
        for i, (sx, sy) in enumerate(origin):
            canvas[0, :, sy : sy + size, sx : sx + size] = x[i].float()
        return canvas
