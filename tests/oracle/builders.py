"""Small NVIDIA generators with every weight randomised, and their rosinality-format twins, for equality tests.

`export_rosinality` writes a state dict in rosinality/stylegan2-pytorch's layout. It is derived from rosinality's
module definitions (model.py), independently of the project's loader:

* `EqualLinear` (mapping `style.{i+1}`, `modulation`): weight used as weight * lr_mul / sqrt(in), bias * lr_mul,
  exactly NVIDIA's FullyConnectedLayer, so both copy over.
* `ModulatedConv2d` multiplies its `weight[1,O,I,k,k]` by 1/sqrt(I*k*k) before modulation; NVIDIA's synthesis
  conv has no gain, so rosinality weight = NVIDIA weight * sqrt(I*k*k).
* ToRGB: rosinality scales the weight by 1/sqrt(I), NVIDIA scales the styles by 1/sqrt(I): weight copies over.
* `NoiseInjection.weight[1]`, `noises.noise_{i}[1,1,R,R]`, `FusedLeakyReLU.bias`, `ToRGB.bias[1,3,1,1]`,
  `ConstantInput.input[1,C,4,4]`: reshapes only. Blur kernels are make_kernel([1,3,3,1]) * 4.
The tests prove the export by running rosinality's own Generator on it.
"""

from __future__ import annotations

import copy
import math
import pickle

import torch

from .nvidia import easydict, nvidia_networks


def make_nvidia_generator(seed: int = 0, **kwargs) -> torch.nn.Module:
    """NVIDIA `Generator(**kwargs)` with randomised weights, biases, noise strengths and w_avg (eval, no grad)."""
    networks = nvidia_networks()
    torch.manual_seed(seed)
    G = networks.Generator(**kwargs)
    randomise(G, seed)
    return copy.deepcopy(G).eval().requires_grad_(False)  # as NVIDIA's training loop snapshots G_ema


@torch.no_grad()
def randomise(net: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed + 1)
    for name, p in net.named_parameters():
        r = torch.randn(p.shape, generator=gen)
        if name.endswith("noise_strength"):
            p.copy_(r * 0.7)
        elif name.endswith("bias"):
            p.copy_(p + r * 0.5)  # keep affine biases near their +1 init, but not exactly at it
        else:
            p.copy_(r * p.detach().std().clamp(min=1e-3) if p.numel() > 1 else r)
    for name, b in net.named_buffers():
        if name.endswith("w_avg"):
            b.copy_(torch.randn(b.shape, generator=gen))
        elif name.endswith("noise_const"):
            b.copy_(torch.randn(b.shape, generator=gen))


def official_pickle(
    G: torch.nn.Module, protocol: int = pickle.DEFAULT_PROTOCOL, with_discriminator: bool = False
) -> bytes:
    """Pickle bytes laid out as NVIDIA's training snapshots ({G, D, G_ema, augment_pipe, training_set_kwargs})."""
    data = {"G_ema": G}
    if with_discriminator:
        networks = nvidia_networks()
        EasyDict = easydict()
        D = networks.Discriminator(
            c_dim=0,
            img_resolution=G.img_resolution,
            img_channels=3,
            channel_base=256,
            channel_max=16,
            num_fp16_res=1,
            conv_clamp=256,
        )
        data = {
            "G": copy.deepcopy(G),
            "D": D.eval().requires_grad_(False),
            "G_ema": G,
            "augment_pipe": None,  # NVIDIA's AugmentPipe needs scipy; D already covers other persistent classes
            "training_set_kwargs": EasyDict(class_name="training.dataset.ImageFolderDataset", path="data/x.zip"),
        }
    return pickle.dumps(data, protocol=protocol)


def make_kernel4() -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[None, :] * k[:, None]
    return k / k.sum() * 4


def export_rosinality(G: torch.nn.Module) -> dict[str, torch.Tensor]:
    """NVIDIA generator -> rosinality `g_ema` state dict (see the module docstring for the derivation)."""
    sd = {k: v.detach().clone() for k, v in G.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    i = 0
    while f"mapping.fc{i}.weight" in sd:
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
        i += 1
    res_list = G.synthesis.block_resolutions
    out["input.input"] = sd["synthesis.b4.const"][None]

    def styled(dst: str, src: str, noise_idx: int, upsample: bool) -> None:
        w = sd[f"{src}.weight"]
        out[f"{dst}.conv.weight"] = (w * math.sqrt(w.shape[1] * w.shape[2] * w.shape[3]))[None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]
        out[f"noises.noise_{noise_idx}"] = sd[f"{src}.noise_const"][None, None]
        if upsample:
            out[f"{dst}.conv.blur.kernel"] = make_kernel4()

    def to_rgb(dst: str, src: str, upsample: bool) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)
        if upsample:
            out[f"{dst}.upsample.kernel"] = make_kernel4()

    styled("conv1", "synthesis.b4.conv1", 0, upsample=False)
    to_rgb("to_rgb1", "synthesis.b4.torgb", upsample=False)
    for k, r in enumerate(res_list[1:]):
        styled(f"convs.{2 * k}", f"synthesis.b{r}.conv0", 2 * k + 1, upsample=True)
        styled(f"convs.{2 * k + 1}", f"synthesis.b{r}.conv1", 2 * k + 2, upsample=False)
        to_rgb(f"to_rgbs.{k}", f"synthesis.b{r}.torgb", upsample=True)
    return out
