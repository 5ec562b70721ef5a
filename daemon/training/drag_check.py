"""Measure how well a model drags: move a mouth corner by N pixels, check the result with optical flow.

Why an independent check: DragGAN's own point tracker reports where it *thinks* the handle went; on a blurry or
badly trained model it can claim arrival while the picture barely moved. Dense optical flow (OpenCV's DIS) from
the original to the dragged image measures how far the content at the handle really moved.

    python -m draggan_daemon.training.drag_check --model daemon/models/bundled.safetensors --seeds 0-7

    python -m draggan_daemon.training.drag_check --model ... --part eye --distance 8

Prints one JSON line per seed and a summary line.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch


def to_gray(image: torch.Tensor) -> np.ndarray:
    """[1,3,H,W] in [-1,1] -> [H,W] uint8 luminance."""
    rgb = ((image[0].detach().float().clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).cpu().numpy()
    return (rgb @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)


def find_mouth_corner(gray: np.ndarray) -> tuple[float, float] | None:
    """The left end of the largest dark stroke in the lower middle of the face (x, y), or None.

    Emoji mouths are dark strokes on a light face; their ends are the corners a user would drag.
    """
    import cv2

    h, w = gray.shape
    y0, y1, x0, x1 = int(h * 0.55), int(h * 0.88), int(w * 0.2), int(w * 0.8)
    roi = gray[y0:y1, x0:x1]
    dark = (roi < max(60, int(np.percentile(gray, 10)))).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    if n <= 1:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[best, cv2.CC_STAT_AREA] < 4:
        return None
    ys, xs = np.nonzero(labels == best)
    i = int(np.argmin(xs))
    return float(xs[i] + x0), float(ys[i] + y0)


def _touches_border(stat: np.ndarray, shape: tuple[int, ...]) -> bool:
    """A component cut by the search window is the rim of something larger (a face's edge), not an eye."""
    import cv2

    x, y, bw, bh = (int(stat[k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    return x == 0 or y == 0 or x + bw >= shape[1] or y + bh >= shape[0]


def dark_blobs(gray: np.ndarray) -> list[tuple[int, float, float]]:
    """(area, x, y) of the compact dark blobs in the upper middle of a face, where eyes are."""
    import cv2

    h, w = gray.shape
    y0, y1, x0, x1 = int(h * 0.2), int(h * 0.66), int(w * 0.18), int(w * 0.82)
    roi = gray[y0:y1, x0:x1]
    dark = (roi < max(60, int(np.percentile(gray, 10)))).astype(np.uint8)
    n, _, stats, centroids = cv2.connectedComponentsWithStats(dark, connectivity=8)
    return [
        (int(stats[i, cv2.CC_STAT_AREA]), float(centroids[i][0]) + x0, float(centroids[i][1]) + y0)
        for i in range(1, n)
        if stats[i, cv2.CC_STAT_AREA] >= 4 and not _touches_border(stats[i], roi.shape)
    ]


def find_eyes(gray: np.ndarray) -> list[tuple[float, float]]:
    """Centroids (x, y) of the two eyes, left first, or [] when no pair is found.

    Emoji eyes are compact dark blobs, so a blob's centroid is a landmark that can be found again after a drag,
    independently of the drag's own tracker. Eyes sit in the upper middle of the face, one each side of the
    centre line, at about the same height and size; the dark rim of a face or a brow does not pass that test.
    """
    h, w = gray.shape
    blobs = dark_blobs(gray)
    best: tuple[int, tuple[float, float], tuple[float, float]] | None = None
    for a in blobs:
        for b in blobs:
            left, right = (a, b) if a[1] < b[1] else (b, a)
            if not (left[1] < w / 2 < right[1]) or abs(left[2] - right[2]) > h * 0.08:
                continue
            if max(left[0], right[0]) > 3 * min(left[0], right[0]):
                continue
            if best is None or left[0] + right[0] > best[0]:
                best = (left[0] + right[0], (left[1], left[2]), (right[1], right[2]))
    return [best[1], best[2]] if best else []


def flow_at(before: np.ndarray, after: np.ndarray, point: tuple[float, float], upscale: int = 4) -> tuple[float, float]:
    """Displacement (dx, dy) of the content at `point`, by DIS optical flow on upscaled images (median in 3x3)."""
    import cv2

    size = (before.shape[1] * upscale, before.shape[0] * upscale)
    a = cv2.resize(before, size, interpolation=cv2.INTER_CUBIC)
    b = cv2.resize(after, size, interpolation=cv2.INTER_CUBIC)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(a, b, None)
    cx, cy = int(round((point[0] + 0.5) * upscale - 0.5)), int(round((point[1] + 0.5) * upscale - 0.5))
    r = upscale
    patch = flow[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1].reshape(-1, 2)
    dx, dy = np.median(patch, axis=0) / upscale
    return float(dx), float(dy)


def find_left_eye(gray: np.ndarray) -> tuple[float, float] | None:
    eyes = find_eyes(gray)
    return eyes[0] if eyes else None


PARTS = {
    # part: (how to find the handle, direction of the drag as a unit vector, what it is)
    "mouth": (find_mouth_corner, (-0.6, 0.8), "the mouth's left corner, pulled outwards and down (a frown)"),
    "eye": (find_left_eye, (0.0, -1.0), "the left eye's centre, raised"),
}


def check_seed(
    G,
    seed: int,
    distance: float,
    max_steps: int,
    psi: float = 0.7,
    part: str = "mouth",
    **drag: float,
) -> dict:
    from ..engine.drag import DragConfig, DragOptimizer

    ws = G.z_to_ws(seed, psi)
    with torch.no_grad():
        before = G.synthesis.run(ws, noise_mode="const")[0]
    gray0 = to_gray(before)
    find, direction, _ = PARTS[part]
    handle = find(gray0)
    if handle is None:
        return dict(seed=seed, skipped=f"no {part} found")
    target = (
        min(max(handle[0] + distance * direction[0], 0.0), G.img_resolution - 1.0),
        min(max(handle[1] + distance * direction[1], 0.0), G.img_resolution - 1.0),
    )
    asked = math.dist(handle, target)
    opt = DragOptimizer(G, ws, DragConfig(max_steps=max_steps, **drag))
    opt.set_points([handle], [target])
    t0 = time.perf_counter()
    report = opt.run(max_steps=max_steps)
    seconds = time.perf_counter() - t0
    gray1 = to_gray(opt.render())
    fdx, fdy = flow_at(gray0, gray1, handle)
    moved_to = (handle[0] + fdx, handle[1] + fdy)
    tracked = report.handles[0]
    row = dict(
        seed=seed,
        part=part,
        handle=[round(c, 2) for c in handle],
        target=[round(c, 2) for c in target],
        asked_px=round(asked, 2),
        steps=report.step,
        arrived=report.done,
        ms_per_step=round(1000 * seconds / max(report.step, 1), 1),
        tracker_error_px=round(math.dist(tracked, target), 2),
        flow_moved_px=round(math.hypot(fdx, fdy), 2),
        flow_error_px=round(math.dist(moved_to, target), 2),
        tracker_vs_flow_px=round(math.dist(moved_to, tracked), 2),
    )
    if part == "eye":  # the blob found again: the dark blob nearest the target (the eyes need not pair now)
        blobs = dark_blobs(gray1)
        row["landmark_error_px"] = round(min(math.dist(b[1:], target) for b in blobs), 2) if blobs else None
    return row


def summarize(rows: list[dict]) -> dict:
    done = [r for r in rows if "skipped" not in r]
    summary = dict(
        trials=len(done),
        arrived=sum(r["arrived"] for r in done),
        median_steps=float(np.median([r["steps"] for r in done])) if done else None,
        median_flow_moved_px=float(np.median([r["flow_moved_px"] for r in done])) if done else None,
        median_flow_error_px=float(np.median([r["flow_error_px"] for r in done])) if done else None,
        within_3px_by_flow=sum(r["flow_error_px"] <= 3 for r in done),
        median_ms_per_step=float(np.median([r["ms_per_step"] for r in done])) if done else None,
    )
    if any("landmark_error_px" in r for r in done):
        summary["within_3px_by_landmark"] = sum((r.get("landmark_error_px") or 99) <= 3 for r in done)
    return summary


def parse_settings(items: list[str]) -> dict:
    """`field=value` pairs for DragConfig; values parsed as int, float, bool or left as text."""
    out: dict = {}
    for item in items:
        key, _, raw = item.partition("=")
        value: object = raw
        for parse in (int, float):
            try:
                value = parse(raw)
                break
            except ValueError:
                pass
        if raw in ("true", "false"):
            value = raw == "true"
        out[key.strip().replace("-", "_")] = value
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m draggan_daemon.training.drag_check", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--seeds", default="0-7", help="e.g. 0-7 or 1,5,9")
    p.add_argument(
        "--part", choices=sorted(PARTS), default="mouth", help="; ".join(f"{k}: {v[2]}" for k, v in PARTS.items())
    )
    p.add_argument("--distance", type=float, default=10.0, help="pixels to drag")
    p.add_argument("--max-steps", type=int, default=60)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a DragConfig setting instead of the engine's default, e.g. lr=2e-3, r1=2, optimised_layers=6",
    )
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from .sample import load_any

    G = load_any(args.model)
    if "-" in args.seeds:
        lo, hi = (int(v) for v in args.seeds.split("-"))
        seeds = list(range(lo, hi + 1))
    else:
        seeds = [int(v) for v in args.seeds.split(",")]
    rows = []
    for seed in seeds:
        row = check_seed(G, seed, args.distance, args.max_steps, part=args.part, **parse_settings(args.set))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"summary": summarize(rows)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
