"""A StyleGAN2 generator (mapping + skip-architecture synthesis), readable in one sitting.

Parameter and buffer names follow NVIDIA's stylegan2-ada-pytorch (`mapping.fc0.weight`,
`synthesis.b64.conv0.affine.bias`, ...) so that a state dict rebuilt from an official pickle loads with
`load_state_dict` and nothing is renamed twice. The arithmetic follows the same reference code paths
(equalised learning rate, modulation/demodulation, transposed-conv upsampling followed by a [1,3,3,1] FIR filter),
so the same w and noise give the same image within float rounding.

What is ours: the synthesis can stop at any block and hand back that block's features without computing
the later blocks, which is what makes a DragGAN step cheap; the full image is rendered only when asked for.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NoiseMode = Literal["const", "random", "none"]
Crops = list[tuple[int, int]] | None  # (x, y) corners of a batch of crops of one picture, in a layer's output map
Window = tuple[list[tuple[int, int]], int] | None  # per crop, the (x, y) corner of a square of this side to keep

LRELU_GAIN = math.sqrt(2.0)


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture settings, named as NVIDIA's `_init_kwargs` name them, read from a checkpoint."""

    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 256
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    layer_features: int | None = None  # width of the hidden mapping layers (w_dim when None)
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 0
    conv_clamp: float | None = None
    resample_filter: tuple[int, ...] = field(default=(1, 3, 3, 1))
    # False: StyleGAN-Human's layout, every map half as wide as it is high (an H x H/2 picture).
    square: bool = True

    def __post_init__(self) -> None:
        res = self.img_resolution
        if res < 4 or res & (res - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {res}")
        if self.img_channels not in (1, 3, 4):
            raise ValueError(f"img_channels must be 1, 3 or 4, got {self.img_channels}")

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def fp16_resolution(self) -> int:
        return max(2 ** (int(math.log2(self.img_resolution)) + 1 - self.num_fp16_res), 8)

    def width(self, res: int) -> int:
        """Width of the maps at block resolution `res` (their height)."""
        return res if self.square else res // 2

    @property
    def num_ws(self) -> int:
        # Every block has two convs except b4 (one); the last block's ToRGB takes one more w.
        return 2 * len(self.block_resolutions) - 1 + 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["resample_filter"] = list(self.resample_filter)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "resample_filter" in known:
            known["resample_filter"] = tuple(known["resample_filter"])
        return cls(**known)


# ----------------------------------------------------------------------------------------------------------
# Pure functions: the arithmetic of NVIDIA's reference ops.


def bias_act(x: torch.Tensor, b: torch.Tensor, lrelu: bool, gain: float, clamp: float | None) -> torch.Tensor:
    """Bias, leaky ReLU, gain and clamp. Without autograd the last three work in place on the sum: the same
    arithmetic, but one fresh map instead of four (at 256 px and above these passes cost as much as the conv)."""
    x = x + b.reshape(1, -1, *([1] * (x.ndim - 2))).to(x.dtype)
    inplace = not (torch.is_grad_enabled() and x.requires_grad)
    if lrelu:
        x = F.leaky_relu(x, 0.2, inplace=inplace)
    if gain != 1:
        x = x.mul_(gain) if inplace else x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp_(-clamp, clamp) if inplace else x.clamp(-clamp, clamp)
    return x


def fir_filter(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int, int, int], gain: float) -> torch.Tensor:
    """Pad (x0, x1, y0, y1) then correlate every channel with the 2-D filter `f` scaled by `gain`."""
    c = x.shape[1]
    x = F.pad(x, [max(pad[0], 0), max(pad[1], 0), max(pad[2], 0), max(pad[3], 0)])
    x = x[:, :, max(-pad[2], 0) : x.shape[2] - max(-pad[3], 0), max(-pad[0], 0) : x.shape[3] - max(-pad[1], 0)]
    w = (f * gain).flip([0, 1]).to(x.dtype)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, w, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x upsampling by zero insertion and FIR filtering (the ToRGB skip path)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h, 1, w, 1)
    x = F.pad(x, [0, 1, 0, 0, 0, 1]).reshape(b, c, h * 2, w * 2)
    fw = f.shape[-1]
    return fir_filter(x, f, ((fw + 1) // 2, (fw - 2) // 2, (fw + 1) // 2, (fw - 2) // 2), gain=4.0)


def pad_to_square(x: torch.Tensor, value: float) -> torch.Tensor:
    """[B, C, H, W] with W <= H, padded left and right to H x H (unchanged when already square)."""
    extra = x.shape[-2] - x.shape[-1]
    if extra <= 0:
        return x
    return F.pad(x, (extra // 2, extra - extra // 2), value=value)


def make_filter(taps: tuple[int, ...], device: torch.device | None = None) -> torch.Tensor:
    f = torch.as_tensor(taps, dtype=torch.float32, device=device)
    f = torch.outer(f, f)
    return f / f.sum()


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    up: bool = False,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    fused: bool = True,
    weight_sq: torch.Tensor | None = None,
    weight_up: torch.Tensor | None = None,
) -> torch.Tensor:
    """Style-modulated convolution, NVIDIA's two ways (same numbers within float rounding).

    fused: one grouped conv with a modulated copy of the weight per sample (what training and weight gradients
    need). Not fused: the modulation on the activations instead (scale the input channels by the styles,
    convolve with the fixed weight, scale the output channels by the demodulation coefficients), so no
    weight-sized tensor is made or differentiated and one weight serves a whole batch; `styles` may then be one
    row [1, in] shared by every sample of `x` (e.g. crops of one picture). A drag step uses it. `weight_sq`: the
    weight's squares summed over the kernel ([out, in]) and `weight_up` the weight as the transposed conv reads it
    ([in, out, kh, kw], contiguous), when the caller keeps them (fp32 only).
    """
    batch = x.shape[0]
    out_c, in_c, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise so fp16 does not overflow; demodulation cancels the scale.
        weight = weight * (1 / math.sqrt(in_c * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
        weight_sq = weight_up = None
    if up:
        fw = resample_filter.shape[-1]
        p0 = padding + (fw + 1) // 2 - (kw - 1)
        p1 = padding + (fw - 2) // 2 - (kw - 2)
    if not fused:
        x = x * styles.to(x.dtype).reshape(styles.shape[0], -1, 1, 1)
        if not up:
            x = F.conv2d(x, weight.to(x.dtype), padding=padding)
        else:
            w_up = weight.transpose(0, 1) if weight_up is None or weight_up.dtype != x.dtype else weight_up
            x = F.conv_transpose2d(x, w_up.to(x.dtype), stride=2)
            x = fir_filter(x, resample_filter, (p0, p1, p0, p1), gain=4.0)
        if demodulate:
            wsq = weight.square().sum(dim=[2, 3]) if weight_sq is None else weight_sq
            dcoefs = (styles.square() @ wsq.t() + 1e-8).rsqrt()  # [B or 1, out]
            x = x * dcoefs.to(x.dtype).reshape(dcoefs.shape[0], -1, 1, 1)
        return x
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        w = w * dcoefs.reshape(batch, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    if not up:
        x = F.conv2d(x, w.reshape(-1, in_c, kh, kw).to(x.dtype), padding=padding, groups=batch)
    else:
        # Transposed conv with stride 2, then the FIR filter: NVIDIA's fast path for up=2, padding=1.
        w = w.reshape(batch, out_c, in_c, kh, kw).transpose(1, 2).reshape(batch * in_c, out_c, kh, kw)
        x = F.conv_transpose2d(x, w.to(x.dtype), stride=2, groups=batch)
        x = fir_filter(x, resample_filter, (p0, p1, p0, p1), gain=4.0)
    return x.reshape(batch, -1, *x.shape[2:])


# ----------------------------------------------------------------------------------------------------------
# Layers.


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalised learning rate (weights stored unscaled, scaled at run time)."""

    def __init__(self, in_f: int, out_f: int, lrelu: bool = False, lr_multiplier: float = 1.0, bias_init: float = 0):
        super().__init__()
        self.lrelu = lrelu
        self.weight = nn.Parameter(torch.randn(out_f, in_f) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_f], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_f)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain
        if not self.lrelu:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, lrelu=True, gain=LRELU_GAIN, clamp=None)


class MappingNetwork(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.w_dim, cfg.num_ws
        self.num_layers = cfg.mapping_layers
        hidden = cfg.layer_features or cfg.w_dim
        dims = [cfg.z_dim] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        for i in range(cfg.mapping_layers):
            layer = FullyConnectedLayer(dims[i], dims[i + 1], lrelu=True, lr_multiplier=cfg.mapping_lr_multiplier)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))

    def forward(
        self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
    ) -> torch.Tensor:
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x[:, :cut] = self.w_avg.lerp(x[:, :cut], truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    def __init__(self, in_c: int, out_c: int, w_dim: int, resolution: int, up: bool, cfg: GeneratorConfig):
        super().__init__()
        self.up, self.resolution, self.conv_clamp = up, resolution, cfg.conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_c, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_c, in_c, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_c))
        self.width = cfg.width(resolution)
        self.register_buffer("noise_const", torch.randn(resolution, self.width))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("resample_filter", make_filter(cfg.resample_filter))

    def _derived(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """What the activation-modulated path derives from the weight, kept while the weight is unchanged (a
        drag's every step needs it; pivotal tuning changes the weight, and a weight being trained is not cached):
        its squares summed over the kernel, and for an up-sampling layer the weight laid out as the transposed
        convolution reads it (otherwise a weight-sized copy per call)."""
        weight = self.weight
        if weight.requires_grad:
            return None, None
        key = (weight.data_ptr(), weight._version, weight.device, weight.dtype)
        if getattr(self, "_derived_key", None) != key:
            w = weight.detach()
            up = w.transpose(0, 1).contiguous() if self.up else None
            self._derived_key, self._derived_cache = key, (w.square().sum(dim=[2, 3]), up)
        return self._derived_cache

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise_mode: NoiseMode, fused: bool = True, crops: Crops = None
    ) -> torch.Tensor:
        """`crops`: x is a batch of crops of one picture whose outputs start at these (x, y) corners of this layer's
        map (every op is translation-equivariant; the constant noise is cut to match)."""
        styles = self.affine(w)
        weight_sq, weight_up = (None, None) if fused else self._derived()
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            up=self.up,
            padding=1,
            resample_filter=self.resample_filter,
            fused=fused,
            weight_sq=weight_sq,
            weight_up=weight_up,
        )
        if noise_mode == "random":
            if crops is not None:
                raise ValueError("random noise cannot be cut into crops")
            noise = torch.randn(x.shape[0], 1, self.resolution, self.width, device=x.device)
            x = x + (noise * self.noise_strength).to(x.dtype)
        elif noise_mode == "const":
            noise = self.noise_const * self.noise_strength
            if crops is not None:  # a corner may lie one pixel outside the map (a trimmed window, see features)
                h, w_ = x.shape[2], x.shape[3]
                noise = F.pad(noise, (1, 1, 1, 1))
                noise = torch.stack([noise[y + 1 : y + 1 + h, x0 + 1 : x0 + 1 + w_] for x0, y in crops])[:, None]
            x = x + noise.to(x.dtype)
        return bias_act(x, self.bias, lrelu=True, gain=LRELU_GAIN, clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    def __init__(self, in_c: int, out_c: int, w_dim: int, cfg: GeneratorConfig):
        super().__init__()
        self.conv_clamp = cfg.conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_c, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_c, in_c, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_c))
        self.weight_gain = 1 / math.sqrt(in_c)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, lrelu=False, gain=1.0, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    def __init__(self, in_c: int, out_c: int, resolution: int, cfg: GeneratorConfig):
        super().__init__()
        self.in_c, self.out_c, self.resolution = in_c, out_c, resolution
        self.use_fp16 = resolution >= cfg.fp16_resolution
        if in_c == 0:
            self.const = nn.Parameter(torch.randn(out_c, resolution, cfg.width(resolution)))
        else:
            self.conv0 = SynthesisLayer(in_c, out_c, cfg.w_dim, resolution, up=True, cfg=cfg)
        self.conv1 = SynthesisLayer(out_c, out_c, cfg.w_dim, resolution, up=False, cfg=cfg)
        self.torgb = ToRGBLayer(out_c, cfg.img_channels, cfg.w_dim, cfg)
        self.register_buffer("resample_filter", make_filter(cfg.resample_filter))
        self.num_conv = 1 if in_c == 0 else 2

    def features(
        self,
        x: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: NoiseMode,
        dtype: torch.dtype,
        fused: bool = True,
        crops: Crops = None,
        window: Window = None,
    ) -> torch.Tensor:
        """The block's feature map; `ws` holds this block's conv ws ([B, num_conv, w_dim]). `fused` and `crops`:
        see modulated_conv2d and SynthesisLayer.forward. `window`: on crops, the part of the first conv's output
        the second conv needs (the block's output crop and one pixel around it); the rest, whose values the crops'
        false borders reach anyway, is cut away before the second conv instead of after it. Where the window
        leaves the map (a crop at the picture's edge) it reads zeros: the second conv's own padding."""
        if self.in_c == 0:
            if crops is not None:
                raise ValueError("the constant block runs in full")
            x = self.const.to(dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            return self.conv1(x, ws[:, 0], noise_mode, fused)
        x = self.conv0(x.to(dtype), ws[:, 0], noise_mode, fused, crops)
        if window is not None and crops is not None:
            starts, side = window
            x = F.pad(x, (1, 1, 1, 1))
            x = torch.stack(
                [x[i, :, y - cy + 1 : y - cy + 1 + side, wx - cx + 1 : wx - cx + 1 + side]
                 for i, ((wx, y), (cx, cy)) in enumerate(zip(starts, crops, strict=True))]
            )  # fmt: skip
            crops = starts
        return self.conv1(x, ws[:, 1], noise_mode, fused, crops)

    def rgb(self, x: torch.Tensor, img: torch.Tensor | None, w: torch.Tensor) -> torch.Tensor:
        y = self.torgb(x, w).float()
        if img is None:
            return y
        return upsample2d(img, self.resample_filter) + y


class CropWalk:
    """What SynthesisNetwork.run asks of a crop plan (local_synthesis.CropWalk is the one there is): before a
    block, the input cut to the crops it needs and their output corners (None: the block runs in full); after
    it, its output cut to the crops the next block needs; at the end, the crops on a zero canvas."""

    def enter(self, res: int, x: torch.Tensor | None) -> tuple[torch.Tensor | None, Crops]:
        raise NotImplementedError

    def window(self, res: int) -> Window:
        """Of the block's first conv output, what its second conv needs (None: all); see SynthesisBlock.features."""
        return None

    def leave(self, res: int, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def canvas(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class Trunk:
    """The lower, full-map blocks of one forward, kept so that another forward of the same latent resumes above them.

    A drag step computes the blocks below its crops in full; a preview of the same latent then starts from their
    output instead of computing them again (at 256 px they are a quarter of a 64-px preview's work). Filled by a
    `run` that is handed an empty one (`res` 0): the last block run in full, its output and the skip image up to it,
    detached and made without autograd; read by a `run` that is handed a filled one."""

    res: int = 0
    x: torch.Tensor | None = None
    img: torch.Tensor | None = None


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.img_resolution, self.num_ws = cfg.img_resolution, cfg.num_ws
        self.block_resolutions = cfg.block_resolutions
        self.half_dtype: torch.dtype | None = None  # set by Generator.set_precision
        for res in self.block_resolutions:
            in_c = cfg.channels(res // 2) if res > 4 else 0
            setattr(self, f"b{res}", SynthesisBlock(in_c, cfg.channels(res), res, cfg))

    def block(self, res: int) -> SynthesisBlock:
        return getattr(self, f"b{res}")

    def run(
        self,
        ws: torch.Tensor,
        *,
        feature_res: int | None = None,
        render_image: bool = True,
        noise_mode: NoiseMode = "const",
        square_output: bool = True,
        fused: bool = True,
        crops: CropWalk | None = None,
        image_res: int | None = None,
        trunk: Trunk | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Return (image, features of block `feature_res`); stops after that block when no image is asked.

        A non-square (StyleGAN-Human) generator's outputs are padded to squares, as DragGAN does (white for the
        image, zero for features), so that everything downstream deals with square pictures only; pass
        square_output=False for the raw H x H/2 maps. `fused`: see modulated_conv2d. `crops` (features only):
        which parts of which blocks to compute (local_synthesis.CropWalk); the features are then exact inside
        the crops and zero elsewhere.

        `image_res` (a draft): the image stops at that block, and its skip image (the sum of the ToRGB outputs up
        to there) is up-sampled to full size the way the synthesis up-samples it, so the result is the full image
        without the upper blocks' detail, at a fraction of the work. `trunk`: an empty one is filled with the last
        block this run computes in full (see Trunk); a filled one is resumed from, with the same latent.
        """
        if feature_res is not None and feature_res not in self.block_resolutions:
            raise ValueError(f"no synthesis block at resolution {feature_res}")
        if image_res is not None and (image_res not in self.block_resolutions or not render_image):
            raise ValueError(f"no image at block resolution {image_res}")
        if not render_image and feature_res is None:
            raise ValueError("nothing to compute: no image and no features asked for")
        if crops is not None and (render_image or feature_res is None):
            raise ValueError("crops give features only, not an image")
        resume = trunk is not None and trunk.res > 0
        if resume and feature_res is not None and feature_res <= trunk.res:
            raise ValueError("the features asked for lie inside the trunk")
        x = img = feats = None
        w_idx = 0
        cropped = False  # once a block runs on crops, the ones above it do too
        for res in self.block_resolutions:
            block = self.block(res)
            if resume and res <= trunk.res:
                w_idx += block.num_conv
                if res < trunk.res:
                    continue
                x, img = trunk.x, trunk.img
            else:
                dtype = self.half_dtype if (self.half_dtype is not None and block.use_fp16) else torch.float32
                corners = None
                window = None
                if crops is not None:
                    x, corners = crops.enter(res, x)
                    window = crops.window(res) if corners is not None else None
                x = block.features(x, ws[:, w_idx : w_idx + block.num_conv], noise_mode, dtype, fused, corners, window)
                if crops is not None:
                    x = crops.leave(res, x)
                w_idx += block.num_conv
                cropped = cropped or corners is not None
                if trunk is not None and not cropped:
                    with torch.no_grad():
                        trunk.res, trunk.x = res, x.detach()
                        trunk.img = block.rgb(trunk.x, trunk.img, ws[:, w_idx].detach())
                if res == feature_res:
                    if crops is not None:
                        return None, crops.canvas(x)
                    feats = x.float()
                    if not render_image:
                        return None, pad_to_square(feats, 0.0) if square_output else feats
                if render_image:
                    img = block.rgb(x, img, ws[:, w_idx])
            if res == image_res:
                while res < self.img_resolution:
                    img, res = upsample2d(img, block.resample_filter), res * 2
                break
        if square_output and not self.cfg.square:
            img = pad_to_square(img, 1.0)
            feats = None if feats is None else pad_to_square(feats, 0.0)
        return img, feats

    def forward(self, ws: torch.Tensor, noise_mode: NoiseMode = "const") -> torch.Tensor:
        return self.run(ws, noise_mode=noise_mode)[0]


def seed_z(seed: int, z_dim: int) -> np.ndarray:
    """z for `seed` as the official DragGAN code draws it: RandomState(seed).randn(1, z_dim), as float32."""
    return np.random.RandomState(int(seed)).randn(1, z_dim).astype(np.float32)


class Generator(nn.Module):
    """z -> w (mapping) -> image (synthesis). Images are NCHW floats, nominally in [-1, 1]."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim, self.img_resolution = cfg.z_dim, cfg.w_dim, cfg.img_resolution
        self.synthesis = SynthesisNetwork(cfg)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(cfg)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: NoiseMode = "const") -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation_psi), noise_mode=noise_mode)

    def set_precision(self, precision: Literal["fp32", "fp16", "bf16"]) -> None:
        """Half precision for the blocks NVIDIA marks fp16 (num_fp16_res); only honoured on CUDA."""
        on_cuda = next(self.parameters()).device.type == "cuda"
        half = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self.synthesis.half_dtype = half if on_cuda else None

    def feature_resolution(self, preferred: int = 128) -> int:
        """The block whose features DragGAN supervises: b128, or the nearest block for small models."""
        blocks = self.synthesis.block_resolutions
        return min(blocks, key=lambda r: (abs(math.log2(r) - math.log2(preferred)), -r))

    def z_to_ws(self, seed: int, truncation_psi: float = 0.7, device: torch.device | str = "cpu") -> torch.Tensor:
        """The latent of picture number `seed`, drawn as DragGAN draws it (`viz/renderer.py`): z =
        NumPy's RandomState(seed).randn(1, z_dim) in float32, so a seed here is DragGAN's picture for the model."""
        z = torch.from_numpy(seed_z(seed, self.z_dim)).to(device)
        with torch.no_grad():
            return self.mapping(z, truncation_psi)
