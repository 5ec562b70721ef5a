"""The networks that only training needs: a small StyleGAN2-style discriminator and an image encoder.

Why our own: the generator is the project's (daemon/engine/generator.py); what trains it is free to be small.
Both use equalised learning rate (weights stored unit-variance, scaled at run time) so StyleGAN2's optimiser
settings (Adam, lr 2.5e-3, betas (0, 0.99)) apply unchanged. The discriminator is residual with a minibatch
standard-deviation layer, as in StyleGAN2; the encoder shares its trunk design and outputs a Gaussian posterior
over z, which turns the generator into the decoder of a VAE-GAN: reconstructions teach it faces far faster than
the adversarial signal alone on a tiny data set, and the KL term keeps z ~ N(0, I) a valid way to sample.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_GAIN = math.sqrt(2.0)


class EqConv2d(nn.Module):
    def __init__(self, in_c: int, out_c: int, kernel: int, bias: bool = True, act: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_c, in_c, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_c)) if bias else None
        self.gain = 1 / math.sqrt(in_c * kernel * kernel)
        self.act, self.pad = act, kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.gain, self.bias, padding=self.pad)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN if self.act else x


class EqLinear(nn.Module):
    def __init__(self, in_f: int, out_f: int, act: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_f, in_f))
        self.bias = nn.Parameter(torch.zeros(out_f))
        self.gain, self.act = 1 / math.sqrt(in_f), act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.gain, self.bias)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN if self.act else x


class ResBlock(nn.Module):
    """conv3x3 -> conv3x3 + 2x downsample, with a 1x1 downsampled skip; outputs scaled by 1/sqrt(2)."""

    def __init__(self, in_c: int, out_c: int):
        super().__init__()
        self.conv0 = EqConv2d(in_c, in_c, 3)
        self.conv1 = EqConv2d(in_c, out_c, 3)
        self.skip = EqConv2d(in_c, out_c, 1, bias=False, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.skip(F.avg_pool2d(x, 2))
        x = F.avg_pool2d(self.conv1(self.conv0(x)), 2)
        return (x + y) * (1 / math.sqrt(2))


def _channels(res: int, base: int, cmax: int) -> int:
    return min(base // res, cmax)


class Trunk(nn.Module):
    """FromRGB at full resolution, then residual blocks down to 4x4."""

    def __init__(self, resolution: int, channel_base: int, channel_max: int, in_channels: int = 3):
        super().__init__()
        self.from_rgb = EqConv2d(in_channels, _channels(resolution, channel_base, channel_max), 1)
        blocks = []
        res = resolution
        while res > 4:
            blocks.append(
                ResBlock(_channels(res, channel_base, channel_max), _channels(res // 2, channel_base, channel_max))
            )
            res //= 2
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = _channels(4, channel_base, channel_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.from_rgb(x))


class Discriminator(nn.Module):
    """StyleGAN2's residual discriminator in small: trunk, minibatch stddev, conv, fc, score."""

    def __init__(self, resolution: int = 64, channel_base: int = 4096, channel_max: int = 256, mbstd_group: int = 4):
        super().__init__()
        self.trunk = Trunk(resolution, channel_base, channel_max)
        c = self.trunk.out_channels
        self.mbstd_group = mbstd_group
        self.conv = EqConv2d(c + 1, c, 3)
        self.fc = EqLinear(c * 16, c)
        self.out = EqLinear(c, 1, act=False)

    def minibatch_std(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = min(self.mbstd_group, b)
        while b % g:
            g -= 1
        y = x.reshape(g, -1, c, h, w).float()
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()
        y = y.mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1).repeat(g, 1, h, w).to(x.dtype)
        return torch.cat([x, y], dim=1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.trunk(img)
        x = self.conv(self.minibatch_std(x))
        return self.out(self.fc(x.flatten(1))).squeeze(1)


class Encoder(nn.Module):
    """Image -> (mu, logvar) of a diagonal Gaussian over the generator's z."""

    def __init__(self, resolution: int = 64, z_dim: int = 256, channel_base: int = 2048, channel_max: int = 256):
        super().__init__()
        self.trunk = Trunk(resolution, channel_base, channel_max)
        c = self.trunk.out_channels
        self.fc = EqLinear(c * 16, 2 * z_dim, act=False)
        self.z_dim = z_dim

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(self.trunk(img).flatten(1))
        mu, logvar = h.split(self.z_dim, dim=1)
        return mu, logvar.clamp(-8, 4)
