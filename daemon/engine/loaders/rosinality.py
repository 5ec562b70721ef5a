"""rosinality/stylegan2-pytorch checkpoints (`g_ema`, optional `latent_avg`), renamed onto NVIDIA's layout.

The two implementations compute the same network with the weights stored differently:

* rosinality's `ModulatedConv2d` keeps an unscaled `weight[1, O, I, k, k]` and multiplies it by 1/sqrt(I*k*k)
  before modulating; NVIDIA's `SynthesisLayer` has no such gain. Demodulation cancels the factor except against
  its 1e-8 epsilon, so the exact equivalent is NVIDIA weight = rosinality weight * 1/sqrt(I*k*k).
* For ToRGB (no demodulation) NVIDIA instead scales the styles by 1/sqrt(I); the product is the same, so the
  weight copies over unchanged.
* `EqualLinear` (mapping layers, affines) and NVIDIA's `FullyConnectedLayer` store weights and biases the same way
  (gain lr_mul/sqrt(in), bias times lr_mul); `bias_init=1` lives in the stored bias for both.
* Both upsample by a stride-2 transposed convolution followed by the [1,3,3,1] blur, with the same kernel
  orientation, so no kernel is flipped (the flip is a TensorFlow-conversion matter).
* The activation bias (`activate.bias`), noise strength (`noise.weight[1]`), noise maps (`noises.noise_i`,
  [1,1,R,R]) and the constant (`input.input[1,C,4,4]`) only change shape.

The architecture is read from tensor shapes. The mapping learning-rate multiplier is not stored in these files;
rosinality's training script always uses 0.01, which is taken here. When `latent_avg` is absent, the average
w is estimated from 10,000 z samples with a fixed seed.
"""

from __future__ import annotations

import argparse
import io
import math
import re
from pathlib import Path
from typing import Any

import torch

from ..generator import Generator, GeneratorConfig, make_filter
from .base import CheckpointError, LoadedModel, build_generator, describe_torch_load_error

ROSINALITY_LR_MLP = 0.01
MEAN_LATENT_SAMPLES = 10_000
BLUR_TAPS = (1, 3, 3, 1)


def load_rosinality(path: str | Path, data: bytes) -> LoadedModel:
    """Load `g_ema` from the bytes of a rosinality `.pt` (zip or legacy torch.save format)."""
    ckpt = _torch_load(path, data)
    if not isinstance(ckpt, dict) or "g_ema" not in ckpt:
        keys = ", ".join(repr(k) for k in list(ckpt)[:8]) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(path, f"not a rosinality checkpoint: no 'g_ema' entry (found {keys})")
    source = ckpt["g_ema"]
    if not isinstance(source, dict) or not all(isinstance(v, torch.Tensor) for v in source.values()):
        raise CheckpointError(path, "'g_ema' is not a state dict of tensors")
    config, state = convert_state_dict(path, source)

    latent_avg = ckpt.get("latent_avg")
    metadata: dict[str, Any] = {"source_file": str(path)}
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() != config.w_dim:
            raise CheckpointError(
                path, f"latent_avg has shape {getattr(latent_avg, 'shape', None)}, not [{config.w_dim}]"
            )
        state["mapping.w_avg"] = latent_avg.reshape(config.w_dim)
        metadata["w_avg"] = "latent_avg from the checkpoint"
    else:
        state["mapping.w_avg"] = torch.zeros(config.w_dim)
    G = build_generator(path, config, state)
    if latent_avg is None:
        G.mapping.w_avg.copy_(mean_latent(G))
        metadata["w_avg"] = f"mean of {MEAN_LATENT_SAMPLES} mapped z samples (no latent_avg in the checkpoint)"
    return LoadedModel(G, config, Path(path).stem, "rosinality-pt", metadata)


def _torch_load(path: str | Path, data: bytes) -> Any:
    try:
        # rosinality's train.py stores its argparse options next to the weights; Namespace only holds attributes.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many types for truncated or hostile files
        unsafe, reason = describe_torch_load_error(exc)
        if unsafe:
            raise CheckpointError(path, f"refusing to load: {reason}") from exc
        raise CheckpointError(path, f"the torch checkpoint is truncated or corrupt ({reason})") from exc


@torch.no_grad()
def mean_latent(G: Generator, samples: int = MEAN_LATENT_SAMPLES, seed: int = 0) -> torch.Tensor:
    """Average w over `samples` random z (in chunks, so memory stays small)."""
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(G.w_dim, dtype=torch.float64)
    done = 0
    while done < samples:
        n = min(1000, samples - done)
        z = torch.randn(n, G.z_dim, generator=gen)
        total += G.mapping(z)[:, 0].double().sum(0)
        done += n
    return (total / samples).float()


def convert_state_dict(
    path: str | Path, sd: dict[str, torch.Tensor]
) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """rosinality `g_ema` state dict -> (GeneratorConfig, state dict in NVIDIA names, without w_avg)."""
    mlp = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
    n_rgb = sum(1 for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
    if not mlp or "input.input" not in sd or "conv1.conv.weight" not in sd:
        raise CheckpointError(path, "'g_ema' does not look like a rosinality StyleGAN2 generator")
    if mlp != list(range(1, len(mlp) + 1)):
        raise CheckpointError(path, f"mapping layers are numbered {mlp}, expected 1..{len(mlp)}")
    const = sd["input.input"]
    if const.ndim != 4 or const.shape[2] != 4:
        raise CheckpointError(path, f"constant input has shape {tuple(const.shape)}, expected [1, C, 4, 4]")
    if const.shape[3] != const.shape[2]:
        raise CheckpointError(
            path, f"non-square generators (constant input {tuple(const.shape[2:])}) are not supported"
        )

    res = 2 ** (n_rgb + 2)
    blocks = [2**i for i in range(2, n_rgb + 3)]
    channels = {4: int(const.shape[1])}
    for k, r in enumerate(blocks[1:]):
        channels[r] = int(_get(path, sd, f"convs.{2 * k}.conv.weight").shape[1])
    rgb_w = _get(path, sd, "to_rgb1.conv.weight")
    fit = fit_channel_formula(channels)
    if fit is None:
        raise CheckpointError(path, f"channel widths {channels} do not follow min(channel_base / res, channel_max)")
    style_dim = int(sd["style.1.weight"].shape[1])
    try:
        config = GeneratorConfig(
            z_dim=style_dim,
            w_dim=style_dim,
            img_resolution=res,
            img_channels=int(rgb_w.shape[1]),
            mapping_layers=len(mlp),
            mapping_lr_multiplier=ROSINALITY_LR_MLP,
            layer_features=None,
            channel_base=fit[0],
            channel_max=fit[1],
            num_fp16_res=0,
            conv_clamp=None,
            resample_filter=BLUR_TAPS,
        )
    except ValueError as exc:
        raise CheckpointError(path, f"unsupported architecture ({exc})") from exc

    blur = make_filter(BLUR_TAPS) * 4
    for name, value in sd.items():
        if name.endswith((".blur.kernel", ".upsample.kernel")) and not torch.allclose(value.float(), blur):
            raise CheckpointError(path, f"{name} is not the [1,3,3,1] blur kernel this generator supports")

    out: dict[str, torch.Tensor] = {}
    for i in mlp:
        out[f"mapping.fc{i - 1}.weight"] = sd[f"style.{i}.weight"]
        out[f"mapping.fc{i - 1}.bias"] = _get(path, sd, f"style.{i}.bias")
    out["synthesis.b4.const"] = const[0]
    _styled_conv(path, sd, out, "conv1", "synthesis.b4.conv1", "noises.noise_0")
    _to_rgb(path, sd, out, "to_rgb1", "synthesis.b4.torgb")
    for k, r in enumerate(blocks[1:]):
        _styled_conv(path, sd, out, f"convs.{2 * k}", f"synthesis.b{r}.conv0", f"noises.noise_{2 * k + 1}")
        _styled_conv(path, sd, out, f"convs.{2 * k + 1}", f"synthesis.b{r}.conv1", f"noises.noise_{2 * k + 2}")
        _to_rgb(path, sd, out, f"to_rgbs.{k}", f"synthesis.b{r}.torgb")
    used = _consumed(mlp, blocks)
    leftover = sorted(k for k in sd if k not in used and not k.endswith((".blur.kernel", ".upsample.kernel")))
    if leftover:
        raise CheckpointError(
            path, f"'g_ema' has tensors this generator layout does not use: {', '.join(leftover[:4])}"
        )
    flt = make_filter(BLUR_TAPS)
    for r in blocks:
        out[f"synthesis.b{r}.resample_filter"] = flt
        out[f"synthesis.b{r}.conv1.resample_filter"] = flt
        if r > 4:
            out[f"synthesis.b{r}.conv0.resample_filter"] = flt
    return config, out


def _consumed(mlp: list[int], blocks: list[int]) -> set[str]:
    names = {f"style.{i}.{p}" for i in mlp for p in ("weight", "bias")} | {"input.input"}
    convs = ["conv1"] + [f"convs.{j}" for j in range(2 * (len(blocks) - 1))]
    rgbs = ["to_rgb1"] + [f"to_rgbs.{k}" for k in range(len(blocks) - 1)]
    for c in convs:
        names |= {f"{c}.{p}" for p in ("conv.weight", "conv.modulation.weight", "conv.modulation.bias")}
        names |= {f"{c}.activate.bias", f"{c}.noise.weight"}
    for c in rgbs:
        names |= {f"{c}.{p}" for p in ("conv.weight", "conv.modulation.weight", "conv.modulation.bias", "bias")}
    return names | {f"noises.noise_{i}" for i in range(len(convs))}


def fit_channel_formula(channels: dict[int, int]) -> tuple[int, int] | None:
    """(channel_base, channel_max) with min(base // res, max) == channels[res] for every res, or None."""
    cmax = max(channels.values())
    below = [r for r in sorted(channels) if channels[r] < cmax]
    base = channels[below[0]] * below[0] if below else cmax * max(channels)
    if all(min(base // r, cmax) == c for r, c in channels.items()):
        return base, cmax
    return None


def _styled_conv(path: str | Path, sd: dict, out: dict, src: str, dst: str, noise: str) -> None:
    weight = _get(path, sd, f"{src}.conv.weight")
    if weight.ndim != 5 or weight.shape[0] != 1:
        raise CheckpointError(path, f"{src}.conv.weight has shape {tuple(weight.shape)}, expected [1, O, I, k, k]")
    fan_in = weight.shape[2] * weight.shape[3] * weight.shape[4]
    out[f"{dst}.weight"] = weight[0].float() * (1 / math.sqrt(fan_in))
    out[f"{dst}.affine.weight"] = _get(path, sd, f"{src}.conv.modulation.weight")
    out[f"{dst}.affine.bias"] = _get(path, sd, f"{src}.conv.modulation.bias")
    out[f"{dst}.bias"] = _get(path, sd, f"{src}.activate.bias")
    strength, noise_map = _get(path, sd, f"{src}.noise.weight"), _get(path, sd, noise)
    if strength.numel() != 1 or noise_map.ndim < 2:
        raise CheckpointError(path, f"{src} has a malformed noise input")
    out[f"{dst}.noise_strength"] = strength.reshape([])
    out[f"{dst}.noise_const"] = noise_map.reshape(noise_map.shape[-2:])


def _to_rgb(path: str | Path, sd: dict, out: dict, src: str, dst: str) -> None:
    weight = _get(path, sd, f"{src}.conv.weight")
    if weight.ndim != 5 or weight.shape[0] != 1:
        raise CheckpointError(path, f"{src}.conv.weight has shape {tuple(weight.shape)}, expected [1, O, I, 1, 1]")
    out[f"{dst}.weight"] = weight[0]
    out[f"{dst}.affine.weight"] = _get(path, sd, f"{src}.conv.modulation.weight")
    out[f"{dst}.affine.bias"] = _get(path, sd, f"{src}.conv.modulation.bias")
    out[f"{dst}.bias"] = _get(path, sd, f"{src}.bias").reshape(-1)


def _get(path: str | Path, sd: dict, name: str) -> torch.Tensor:
    if name not in sd:
        raise CheckpointError(path, f"'g_ema' lacks {name}")
    return sd[name]
