"""The supervised features of a drag step, computed with as little work as gives the same values: crop planning.

A drag step needs the map of one synthesis block (b128 or so) and gradients for the first few ws only. The
generator computes it (`SynthesisNetwork.run`, the one block walk there is) with two options that keep the
numbers within float rounding:

* `fused=False`: modulation on the activations instead of the weights (NVIDIA's "non-fused" path), so no
  weight-sized tensor is made or differentiated per step, and crops of one picture share one weight.
* `crops`: when no mask needs the whole map (previews are rendered apart), a step reads the map only near the
  handles (tracking window, motion disk, one pixel ahead, bilinear neighbours). Every layer is translation-
  equivariant (3x3 convs, stride-2 upsampling with a fixed FIR filter, per-pixel noise and bias), so those
  values come from crops of the previous block's output with a margin that absorbs the crops' false borders;
  where a crop touches the image edge the zero padding is the real one. Blocks of 32 pixels or fewer run in full.

This module plans the crops (`plan_crops`) and walks them through the blocks (`CropWalk`). The result has the full
feature size; inside the requested regions it equals the full synthesis, elsewhere it is zero (nothing reads
there). A non-square generator's map is padded to a square with zeros, as the synthesis pads it; tests compare
against the full forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import generator
from .generator import Crops, Generator, NoiseMode, Trunk

MARGIN = 2  # input-resolution pixels beyond what a block's output crop needs: the false borders reach 2 (no spare)
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


class CropWalk(generator.CropWalk):
    """A plan's crops walked through the blocks (see generator.CropWalk); one per forward."""

    def __init__(self, plans: dict[int, LevelPlan], feature_res: int) -> None:
        self.plans = plans
        self.feature_res = feature_res
        self.origin: list[tuple[int, int]] | None = None  # crop corners of the current x, once it is a crop batch
        self._up: list[tuple[int, int]] = []

    def enter(self, res: int, x: torch.Tensor | None) -> tuple[torch.Tensor | None, Crops]:
        plan = self.plans.get(res)
        if plan is None:
            return x, None
        if self.origin is None:  # the first cropped block: cut its input from the previous block's full map
            size_in, lower = _input_crop(plan.size), res // 2
            in_starts = [
                (_crop_start(sx // 2 - MARGIN, size_in, lower), _crop_start(sy // 2 - MARGIN, size_in, lower))
                for sx, sy in plan.starts
            ]
            x = _slice(x, in_starts, size_in, None)
        else:
            in_starts = self.origin
        self._up = [(2 * sx, 2 * sy) for sx, sy in in_starts]
        return x, self._up

    def window(self, res: int) -> tuple[list[tuple[int, int]], int] | None:
        """The output crops and one pixel around them: all of the first conv's output that the second conv of a
        cropped block needs. Its corners become the block's output corners, for `leave`."""
        plan = self.plans.get(res)
        if plan is None:
            return None
        self._up = [(sx - 1, sy - 1) for sx, sy in plan.starts]
        return self._up, plan.size + 2

    def leave(self, res: int, y: torch.Tensor) -> torch.Tensor:
        plan = self.plans.get(res)
        if plan is None:
            return y
        self.origin = plan.starts
        return _slice(y, plan.starts, plan.size, self._up)

    def canvas(self, x: torch.Tensor) -> torch.Tensor:
        return _Canvas.apply(x.float(), self.origin or [], self.feature_res)


class _Canvas(torch.autograd.Function):
    """Crops [N, C, s, s] placed at their corners on a zero map [1, C, f, f]; the gradient of each crop is its
    window of the map's gradient. (Slice assignment would clone the whole map's gradient once per crop.)"""

    @staticmethod
    def forward(ctx, crops: torch.Tensor, corners: list[tuple[int, int]], res: int) -> torch.Tensor:
        ctx.corners, ctx.side = corners, crops.shape[-1]
        out = crops.new_zeros(1, crops.shape[1], res, res)
        for i, (sx, sy) in enumerate(corners):
            out[0, :, sy : sy + ctx.side, sx : sx + ctx.side] = crops[i]
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        side = ctx.side
        return torch.stack([grad[0, :, sy : sy + side, sx : sx + side] for sx, sy in ctx.corners]), None, None


class FeatureSynthesis:
    """The supervised block's features of a latent, for the latent's gradient: the generator's own forward,
    activation-modulated and cropped where that pays off."""

    def __init__(self, G: Generator, feature_res: int):
        if feature_res not in G.synthesis.block_resolutions:
            raise ValueError(f"no synthesis block at resolution {feature_res}")
        self.G = G
        self.feature_res = feature_res

    def __call__(
        self,
        ws: torch.Tensor,
        regions: list[Box] | None = None,
        noise_mode: NoiseMode = "const",
        trunk: Trunk | None = None,
    ) -> torch.Tensor:
        """Map [1, C, f, f]; with `regions`, exact inside them (and zero elsewhere) when crops pay off. An empty
        `trunk` is filled with the blocks computed in full, for a preview of the same latent (generator.Trunk)."""
        if noise_mode not in ("const", "none"):
            raise ValueError("the drag synthesis supports noise modes 'const' and 'none'")
        syn = self.G.synthesis
        # Crops assume square maps; a non-square (StyleGAN-Human) generator runs in full and is padded like its image.
        plans = plan_crops(self.feature_res, regions) if regions is not None and syn.cfg.square else None
        walk = CropWalk(plans, self.feature_res) if plans else None
        _, feats = syn.run(
            ws,
            feature_res=self.feature_res,
            render_image=False,
            noise_mode=noise_mode,
            fused=False,
            crops=walk,
            trunk=trunk,
        )
        return feats
