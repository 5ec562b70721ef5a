"""Time per drag step: our engine versus a loop that works as the official DragGAN code does.

    .venv/bin/python benchmarks/drag_speed.py                # CPU, 256x256 config-f-shaped generator
    .venv/bin/python benchmarks/drag_speed.py --res 512
    .venv/bin/python benchmarks/drag_speed.py --device cuda --res 512 --fp16
    .venv/bin/python benchmarks/drag_speed.py --preview-every 5   # also: the step rate with previews

Random weights (speed does not depend on them). Each side runs in its own child process so that its peak
memory is its own; both run in the same invocation, on the same machine state, one after the other. The
reference loop (benchmarks/reference_drag.py) renders the full image every step, resizes the whole feature
map and, like the official code with a freshly loaded network, back-propagates into the generator's weights
as well. Ours runs on a generator whose weights need no gradient, as the daemon serves every model, stops at
the supervised block, samples only the needed pixels and takes gradients for the latent alone.

With `--preview-every N` our side runs two drags of the same start in one process, step by step in turn, one
plain and one rendering a preview on every N-th step (as the plugins ask). It prints the second's step rate
relative to the first's, what one preview step costs against a plain one, and which block the previews stopped
at (a draft below the model's size, engine/previews.py; `--full-previews`: always the full image).

The last line is `speedup N.Nx (ours A s/step, reference B s/step)`, with previews
`...; with previews every N: M.Mx)`.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

from draggan_daemon import measurements  # noqa: E402


def _build(res: int, channel_base: int, device: str, fp16: bool):
    import torch
    from draggan_daemon.engine.generator import Generator, GeneratorConfig

    torch.manual_seed(0)
    cfg = GeneratorConfig(
        img_resolution=res, channel_base=channel_base, channel_max=512, num_fp16_res=4 if fp16 else 0, conv_clamp=256
    )
    G = Generator(cfg).eval().to(device)
    if fp16:
        G.set_precision("fp16")
    ws = G.z_to_ws(0, 0.7, device=device)
    return G, ws


def _points(res: int) -> tuple[list, list]:
    s = res / 256
    handles = [(100 * s, 120 * s), (160 * s, 90 * s)]
    targets = [(140 * s, 120 * s), (160 * s, 140 * s)]
    return handles, targets


def _child(side: str, args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    device = args.device
    G, ws = _build(args.res, args.channel_base, device, args.fp16)
    handles, targets = _points(args.res)
    r1, r2 = max(round(3 / 512 * args.res), 2), max(round(12 / 512 * args.res), 3)
    if side == "ours":
        from draggan_daemon.engine.drag import DragConfig, DragOptimizer

        G.requires_grad_(False)  # as the daemon serves every model (server/models.py): the drag optimises latents only

        cfg = DragConfig(lr=2e-3, r1=r1, r2=r2, tracking="nearest", jump_guard=False, stop_distance=0.5)

        def drag():
            opt = DragOptimizer(G, ws, cfg)
            opt.set_points(handles, targets)
            return opt

        if args.preview_every > 0:
            return _ours_with_previews(args, drag, device)
        opt = drag()

        def step():
            opt.step()
    else:
        sys.path.insert(0, str(HERE))
        from reference_drag import ReferenceDrag

        ref = ReferenceDrag(G, ws, lr=2e-3, r1=r1, r2=r2, stop_distance=0.5)
        ref.set_points(handles, targets)

        def step():
            ref.step()

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(args.warmup + args.steps):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    out = {
        "side": side,
        "median_s": statistics.median(times),
        "times": times,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    return out


def _ours_with_previews(args: argparse.Namespace, drag, device: str) -> dict:
    """Two drags from the same start, stepped in turn: plain, and with a preview every N-th step."""
    import torch

    every = args.preview_every
    plain, shown = drag(), drag()
    cycles = max(1, -(-args.steps // every))  # whole cycles of N steps, at least `steps` steps per drag
    t_plain: list[float] = []
    t_shown: list[float] = []
    t_preview: list[float] = []
    levels: list[int] = []
    asked = 0
    for c in range(args.warmup + cycles):
        for j in range(every):
            for opt, preview, times in ((plain, False, t_plain), (shown, j == every - 1, t_shown)):
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                report = opt.step(render_preview=preview, draft=not args.full_previews)
                if device == "cuda":
                    torch.cuda.synchronize()
                if c >= args.warmup:
                    times.append(time.perf_counter() - t0)
                    asked += int(preview)
                    if preview and report.image is not None:  # drawn, not left out to keep within the budget
                        t_preview.append(times[-1])
                        levels.append(report.image_res)
    out = {
        "side": "ours",
        "median_s": statistics.median(t_plain),
        "times": t_plain,
        "mean_plain_s": statistics.mean(t_plain),
        "mean_shown_s": statistics.mean(t_shown),
        "preview_step_s": statistics.median(t_preview) if t_preview else float("nan"),
        "previews": asked,
        "preview_levels": levels,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="DragGAN step time: ours vs the official-style loop")
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--channel-base", type=int, default=32768, help="config-f: 32768 (16384 is the smaller variant)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--fp16", action="store_true", help="fp16 for the 4 highest-resolution blocks (CUDA only)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads for both sides (1: steady on shared CPUs)"
    )
    ap.add_argument(
        "--preview-every",
        type=int,
        default=0,
        metavar="N",
        help="also time our drag with a preview every N-th step, interleaved with one without (0: off)",
    )
    ap.add_argument(
        "--full-previews",
        action="store_true",
        help="previews always of the full image (no drafts; see --preview-every)",
    )
    ap.add_argument("--child", choices=["ours", "reference"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args)))
        return 0
    if args.fp16 and args.device != "cuda":
        print("note: --fp16 only applies on CUDA; running fp32")
        args.fp16 = False
    print(
        f"generator: {args.res}x{args.res}, channel_base {args.channel_base}, channel_max 512, device {args.device}"
        f"{', fp16' if args.fp16 else ''}; {args.steps} timed steps after {args.warmup} warm-up; "
        f"{args.threads} CPU threads"
    )
    results = {}
    base = [sys.executable, str(Path(__file__).resolve())] + (argv if argv is not None else sys.argv[1:])
    for side in ("reference", "ours"):
        proc = subprocess.run(base + ["--child", side], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr)
            return proc.returncode
        results[side] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[side]
        mem = f"peak RSS {r['peak_rss_mb']:.0f} MB"
        if "peak_cuda_mb" in r:
            mem += f", peak CUDA {r['peak_cuda_mb']:.0f} MB on {r['gpu']}"
        steps = ", ".join(f"{t:.3f}" for t in r["times"])
        print(f"{side:9s}: median {r['median_s']:.3f} s/step (steps: {steps}); {mem}")
    ours, ref = results["ours"]["median_s"], results["reference"]["median_s"]
    tail = ""
    if args.preview_every > 0:
        r, n = results["ours"], args.preview_every
        rate = r["mean_plain_s"] / r["mean_shown_s"]
        print(
            f"previews every {n}: mean {r['mean_shown_s']:.3f} s/step vs {r['mean_plain_s']:.3f} s/step without, "
            f"interleaved ({rate:.0%} of the no-preview step rate, a step {1 / rate:.2f}x a plain one on average); "
            f"{len(r['preview_levels'])} of {r['previews']} previews asked for were drawn, each step that drew one "
            f"{r['preview_step_s'] / ours:.2f}x a plain step (median), stopping at the "
            f"{'/'.join(str(v) for v in sorted(set(r['preview_levels'])))}-px block (model {args.res} px)"
        )
        tail = f"; with previews every {n}: {ref / r['mean_shown_s']:.1f}x"
    print(f"speedup {ref / ours:.1f}x (ours {ours:.3f} s/step, reference {ref:.3f} s/step{tail})")
    figures = {
        "speedup (reference / ours, per step)": round(ref / ours, 2),
        "ours s/step (median)": round(ours, 4),
        "reference s/step (median)": round(ref, 4),
        "ours peak RSS MB": round(results["ours"]["peak_rss_mb"]),
        "reference peak RSS MB": round(results["reference"]["peak_rss_mb"]),
    }
    if args.preview_every > 0:
        r = results["ours"]
        figures.update({
            f"step rate with a preview every {args.preview_every} (share of the rate without)": round(
                r["mean_plain_s"] / r["mean_shown_s"], 3
            ),
            "mean step with previews / plain step": round(r["mean_shown_s"] / r["mean_plain_s"], 2),
            "step that drew a preview / plain step (median)": round(r["preview_step_s"] / ours, 2),
            "preview block px (most common)": statistics.mode(r["preview_levels"] or [0]),
            "previews drawn / asked for": f"{len(r['preview_levels'])}/{r['previews']}",
            f"speedup with previews every {args.preview_every}": round(ref / r["mean_shown_s"], 2),
        })  # fmt: skip
    for side in ("ours", "reference"):
        if "peak_cuda_mb" in results[side]:
            figures[f"{side} peak CUDA MB"] = round(results[side]["peak_cuda_mb"])
    measurements.record("benchmarks/drag_speed.py", figures, argv=argv, device=args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
