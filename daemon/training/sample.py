"""`draggan sample`: render random faces from a generator, as a grid or one PNG per seed.

Why a command: the proof that a model is usable is looking at it. Any file `load_generator` reads works, and so
does a training checkpoint (its G_ema), so a run can be inspected before it is exported.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..engine.generator import Generator
from .grid import save_grid

BUNDLED = Path(__file__).resolve().parents[1] / "models" / "bundled.safetensors"


def load_any(path: Path) -> Generator:
    """A native/NVIDIA/rosinality file through the loaders, or a training checkpoint's G_ema."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:4] == b"PK\x03\x04":
        sd = torch.load(path, map_location="cpu", weights_only=False)
        if isinstance(sd, dict) and sd.get("format") == "draggan-train-checkpoint/1":
            from .export import generator_from_checkpoint

            return generator_from_checkpoint(path)[0]
    from ..engine.loaders import load_generator

    return load_generator(path).generator


@torch.no_grad()
def render(G: Generator, seeds: list[int], psi: float) -> torch.Tensor:
    """One image per seed (z drawn as DragGAN draws it, by G.z_to_ws), const noise."""
    images = []
    for seed in seeds:
        ws = G.z_to_ws(seed, psi)
        images.append(G.synthesis.run(ws, noise_mode="const")[0])
    return torch.cat(images)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="draggan sample", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=BUNDLED, help="generator file (default: the bundled model)")
    p.add_argument("--grid", type=Path, default=None, help="write one grid PNG here")
    p.add_argument("--out-dir", type=Path, default=None, help="write one PNG per seed here")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--count", type=int, default=16, help="number of images")
    p.add_argument("--columns", type=int, default=4)
    p.add_argument("--psi", type=float, default=0.7, help="truncation (1 = none)")
    args = p.parse_args(argv)
    if args.grid is None and args.out_dir is None:
        args.grid = Path("samples.png")
    if not args.model.exists():
        p.error(f"no model at {args.model}")
    G = load_any(args.model)
    seeds = list(range(args.seed, args.seed + args.count))
    images = render(G, seeds, args.psi)
    if args.grid is not None:
        save_grid(images, args.grid, columns=args.columns)
        print(f"wrote {args.grid} ({len(seeds)} images, seeds {seeds[0]}..{seeds[-1]}, psi {args.psi})")
    if args.out_dir is not None:
        for seed, img in zip(seeds, images, strict=True):
            save_grid(img[None], args.out_dir / f"seed{seed:04d}.png", columns=1)
        print(f"wrote {len(seeds)} images to {args.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
