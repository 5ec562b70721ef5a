"""Generators with deterministic random weights, for running everything before (or without) a trained model.

Random StyleGAN2 weights draw textures, not faces, but they exercise every layer and every code path. The daemon
serves one as its `builtin-test` model; tests and benchmarks use the image-range variant as a stand-in whose
pictures have a trained model's range and contrast (not its content).
"""

from __future__ import annotations

import torch

from .generator import Generator, GeneratorConfig


def random_generator(
    config: GeneratorConfig,
    seed: int = 0,
    noise_strength: float = 0.05,
    image_range: bool = False,
    w_avg_samples: int = 256,
) -> Generator:
    """A generator of `config` with weights drawn from `seed`, frozen, in eval mode; the global RNG is untouched.

    image_range: scale the ToRGB layers so that pictures at psi 0.7 have a standard deviation of 0.5, about what
    a trained model's pictures have in [-1, 1] (raw random weights give far fainter or far harsher images).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(config)
        with torch.no_grad():
            for name, p in G.named_parameters():
                if name.endswith("noise_strength"):
                    p.fill_(noise_strength)
            if image_range:
                scale = 0.5 / G(torch.randn(16, config.z_dim), 0.7).std().item()
                for m in G.synthesis.modules():
                    if type(m).__name__ == "ToRGBLayer":
                        m.weight.mul_(scale)
                        m.bias.mul_(scale)
            G.mapping.w_avg.copy_(G.mapping(torch.randn(w_avg_samples, config.z_dim))[:, 0].mean(0))
    return G.eval().requires_grad_(False)
