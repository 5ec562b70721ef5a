"""Seconds and PSNR per inversion stage (W, W+, PTI) for the bundled model, on the CPU or a GPU.

    python benchmarks/inversion.py                      # bundled model, 'fast' preset, CPU
    python benchmarks/inversion.py --preset quality --device cuda
    python benchmarks/inversion.py --model some.pkl --image photo.png --targets 3

Targets are pictures the generator itself made from known latents (seeds), so a perfect inversion exists and the
PSNR says how close each stage gets; `--image` fits a picture of your own instead (centre-cropped, resized).
Without the bundled model file (daemon/models/bundled.safetensors) a stand-in is used and said so: a random-weight
generator of the bundled model's shape (64 px, mapping 4 layers, synthesis channels 256/256/128/64/32, w 128),
with outputs scaled into the image range and small noise strengths, so its pictures look like a trained model's
in range and contrast, though not in content.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "daemon" / "models" / "bundled.safetensors"


def stand_in_generator(res: int = 64):
    from draggan_daemon.engine.generator import GeneratorConfig
    from draggan_daemon.engine.standin import random_generator

    cfg = GeneratorConfig(
        z_dim=128, w_dim=128, img_resolution=res, mapping_layers=4, channel_base=32 * res, channel_max=256
    )
    return random_generator(cfg, seed=0, image_range=True, w_avg_samples=2000)


def load_model(path: str | None, stand_in_res: int):
    target = Path(path) if path else BUNDLED
    if target.is_file():
        from draggan_daemon.engine.loaders import load_generator

        loaded = load_generator(target)
        return loaded.generator, f"{loaded.name} ({loaded.source_format}, {target.name})"
    if path:
        sys.exit(f"model file not found: {path}")
    return stand_in_generator(stand_in_res), f"stand-in random-weight generator, {stand_in_res} px (no {BUNDLED.name})"


def image_target(path: str, res: int) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    img = Image.open(path).convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((res, res), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(img, np.float32) / 127.5 - 1).permute(2, 0, 1)[None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint (default: the bundled model)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--preset", default="fast", choices=["fast", "quality"])
    parser.add_argument("--targets", type=int, default=2, help="pictures to invert (seeds 1..N)")
    parser.add_argument("--image", help="fit this picture instead of generated ones")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--stand-in-res", type=int, default=64, help="resolution of the stand-in generator")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="NAME=VALUE", help="override a setting, e.g. pti_steps=0"
    )
    args = parser.parse_args(argv)

    from draggan_daemon.engine.inversion import InversionConfig, invert

    if args.threads:
        torch.set_num_threads(args.threads)
    G, name = load_model(args.model, args.stand_in_res)
    G = G.to(args.device)
    G.set_precision(args.precision)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value  # a plain string, e.g. a file path
    cfg = InversionConfig.from_preset(args.preset, **overrides)
    res = G.img_resolution
    print(f"model: {name}; {sum(p.numel() for p in G.parameters()) / 1e6:.2f} M parameters, {res} px")
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    print(f"device: {args.device} ({where})")
    print(
        f"preset {cfg.preset}: W {cfg.w_steps} steps lr {cfg.w_lr}, W+ {cfg.wplus_steps} lr {cfg.wplus_lr}, "
        f"PTI {cfg.pti_steps} lr {cfg.pti_lr}, noise optimised: {cfg.optimize_noise}"
    )
    if args.image:
        targets = [("image", image_target(args.image, res))]
    else:
        targets = []
        for seed in range(1, args.targets + 1):
            with torch.no_grad():
                targets.append((f"seed {seed}", G.synthesis(G.z_to_ws(seed, 0.7, device=args.device)).clamp(-1, 1)))

    figures: dict[str, object] = {}
    for label, target in targets:
        start = time.perf_counter()
        result = invert(G, target.to(args.device), cfg)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        total = time.perf_counter() - start
        cells = [f"{s['name']}: {s['seconds']:5.1f} s {s['steps']:4d} steps {s['psnr']:5.2f} dB" for s in result.stages]
        print(f"{label:8s} | " + " | ".join(cells) + f" | total {total:5.1f} s")
        for s in result.stages:
            figures[f"{label}: {s['name']} PSNR dB"] = round(float(s["psnr"]), 2)
        figures[f"{label}: total s"] = round(total, 1)
    from draggan_daemon import measurements

    measurements.record("benchmarks/inversion.py", figures, argv=argv, model=args.model, device=args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
