"""Why the drag's defaults for small models are what they are: each rule against its alternative on a known geometry.

    .venv/bin/python benchmarks/drag_defaults.py            # 16 seeds, about 3 minutes on one CPU thread

The disk fixture (tests/fixtures/disk_generator.safetensors, a 64-pixel generator that draws one disk) is dragged
about 10 px towards the picture's centre from each seed's disk, and where the disk really went is measured by the
centroid of its pixels (not by the engine's tracker). Variants, one rule changed each from the studio defaults
(`DragConfig.resolve`): the paper's learning rate unscaled (2e-3 instead of 2e-3 × 256 / H), the official radius
floor (r1 2 instead of 4 below 256 px), the official 6 optimised ws (instead of the blocks up to H/8), and the
whole official preset. Figures go to the measurements file (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "disk_generator.safetensors"
BRIGHTER = 0.35  # the disk's colours are >= 0.1 per channel on a -0.5 background

VARIANTS = {
    "studio defaults": {},
    "lr 2e-3 (the paper's, unscaled)": {"lr": 2e-3},
    "r1 2 (the official floor)": {"r1": 2.0},
    "6 ws (the official count)": {"optimised_layers": 6},
    "official preset": {"preset": "official"},
}


def centroid(image: torch.Tensor, background: float) -> tuple[float, float]:
    lum = image[0].mean(0)
    ys, xs = torch.where(lum > background + BRIGHTER)
    return float(xs.float().mean()), float(ys.float().mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--within", type=float, default=2.0, help="a drag lands when the disk ends this close (px)")
    args = ap.parse_args(argv)
    from draggan_daemon import measurements
    from draggan_daemon.engine.drag import DragOptimizer
    from draggan_daemon.engine.loaders import load_generator
    from draggan_daemon.server.engine_ops import drag_config

    torch.set_num_threads(1)
    G = load_generator(FIXTURE).generator.eval().requires_grad_(False)
    figures: dict[str, object] = {}
    for name, params in VARIANTS.items():
        errors, steps, t0 = [], [], time.perf_counter()
        for seed in range(args.seeds):
            ws = G.z_to_ws(seed, 1.0)
            with torch.no_grad():
                before = G.synthesis(ws)
            background = float(before[0].mean(0).median())
            cx, cy = centroid(before, background)
            target = (cx + (8 if cx < 32 else -8), cy + (6 if cy < 32 else -6))
            config, _ = drag_config({"steps": 300, **params})
            opt = DragOptimizer(G, ws, config)
            opt.set_points([(cx, cy)], [target])
            report = opt.run()
            ax, ay = centroid(opt.render(), background)
            errors.append(math.dist((ax, ay), target))
            steps.append(report.step)
        landed = sum(e <= args.within for e in errors)
        print(
            f"{name:34s} mean {statistics.mean(errors):.2f} px, median {statistics.median(errors):.2f} px, "
            f"{landed}/{len(errors)} within {args.within:g} px, steps {min(steps)}-{max(steps)}, "
            f"{time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        figures[f"{name}: mean px from target"] = round(statistics.mean(errors), 2)
        figures[f"{name}: within {args.within:g} px"] = f"{landed}/{len(errors)}"
        figures[f"{name}: steps (min-max)"] = f"{min(steps)}-{max(steps)}"
    measurements.record(
        "benchmarks/drag_defaults.py",
        figures,
        argv=argv,
        model=FIXTURE,
        notes="disk fixture, ~10 px drags towards the centre, disk centroid measured on the picture",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
