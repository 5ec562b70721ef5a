"""Is an edit worth keeping? Held-out face layers dragged through the daemon, judged by measures of our own.

Every case (benchmarks/heldout_faces.py: emoji faces the bundled model never saw, drawn at 192-512 px in larger
textured layers, a region with context, 1-3 pairs on eyes, brows and mouth corners) goes the way both plugins
go: an in-process daemon on the bundled model, a layer session with the region, one inversion (`invert`,
preset fast), then per output mode a `drag` with `output` set (protocol 1.1), `get_result` of the whole layer,
and `reset` back to the fitted state, so all modes start from the same inversion. The order of the modes
alternates from face to face so neither always runs first.

Measures, none of them the engine's:
  (a) PSNR of the result against the original layer over the region's pixels farther than 40 px (scaled:
      40 x side / 256, side = the region's longer side) from every handle and target (RGB, 8 bit; 100 dB
      stands for identical pixels);
  (b) sharpness: variance of the Laplacian (cv2.Laplacian) of the region, result / original;
  (c) per handle, OpenCV DIS optical flow (preset MEDIUM) from the original layer to the result, median over a
      disk (4 px x side / 256) at the start handle: the end error (px from the target) and the share of the
      asked distance moved along the handle->target line;
  (d) the daemon's own report: |`measured` (1.1 arrival field) - flow-measured| per handle, and for comparison
      |tracker position (`handles`) - flow-measured|;
  (e) wall time of the drag job (request to job_done) and of get_result, per mode; the transfer/generator ratio
      of the drag time per face.
Table columns: px = face size, side = region's longer side, fit dB = the fitted generator picture alone (before
any drag, generator mode) on the pixels of (a), moved = (c)'s share, rep-flow / trk-flow = (d).
Needs npm (to fetch the emoji sets once) and `pip install -e ".[bench]"` (resvg, to draw them), see heldout_faces.py.

    python benchmarks/edit_quality.py                                  # 12 faces, transfer and generator
    python benchmarks/edit_quality.py --modes generator --sheet /tmp/edit_quality.png

A daemon without the `output` field (protocol 1.0) makes generator pictures whatever is asked; the benchmark
then runs `generator` and skips `transfer` with a warning. Figures go to --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_faces  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "edit_quality.json"
MODES = ("transfer", "generator")
PSNR_CAP = 100.0

GOALS = {  # issue 15's goals for transfer mode
    "psnr_far_db": ">= 38",
    "sharpness": ">= 0.95",
    "reported_vs_flow_px": "<= 1",
    "drag_time_ratio": "<= 1.10",
}


# ----------------------------------------------------------------------------------------------------------
# Measures


def luma(rgba: np.ndarray) -> np.ndarray:
    """Float luminance of straight-alpha RGBA, premultiplied (transparent pixels count as black)."""
    rgb = rgba[..., :3].astype(np.float64) * (rgba[..., 3:4].astype(np.float64) / 255.0)
    return rgb @ np.array([0.299, 0.587, 0.114])


def crop(a: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = rect
    return a[y : y + h, x : x + w]


def far_mask(rect: tuple[int, int, int, int], points: list[tuple[float, float]], radius: float) -> np.ndarray:
    """True where a pixel of `rect` is farther than `radius` from every point (layer coordinates)."""
    x, y, w, h = rect
    yy, xx = np.mgrid[y : y + h, x : x + w]
    far = np.ones((h, w), bool)
    for px, py in points:
        far &= (xx - px) ** 2 + (yy - py) ** 2 > radius**2
    return far


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """PSNR (dB) of two RGBA pictures over `where`, on alpha-premultiplied RGB; PSNR_CAP when identical."""

    def rgb(x: np.ndarray) -> np.ndarray:
        return x[..., :3].astype(np.float64) * (x[..., 3:4].astype(np.float64) / 255.0)

    if not where.any():
        return float("nan")
    mse = float(np.mean((rgb(a)[where] - rgb(b)[where]) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0**2 / mse))


def laplacian_variance(gray: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def dis_flow(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Dense DIS optical flow (preset MEDIUM) between two grey uint8 pictures: H x W x 2 (dx, dy)."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(before, after, None)


def flow_at(flow: np.ndarray, point: tuple[float, float], radius: float) -> tuple[float, float]:
    """Median (dx, dy) of the flow over the pixels within `radius` of `point` (flow-array coordinates)."""
    h, w = flow.shape[:2]
    r = int(math.ceil(radius))
    cx, cy = int(round(point[0])), int(round(point[1]))
    x0, x1, y0, y1 = max(cx - r, 0), min(cx + r + 1, w), max(cy - r, 0), min(cy + r + 1, h)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    disk = (xx - point[0]) ** 2 + (yy - point[1]) ** 2 <= radius**2
    patch = flow[y0:y1, x0:x1][disk] if disk.any() else flow[y0:y1, x0:x1].reshape(-1, 2)
    dx, dy = np.median(patch, axis=0)
    return float(dx), float(dy)


def region_flow(case: heldout_faces.Case, original: np.ndarray, result: np.ndarray):
    """The judge of (c) and (d): DIS flow on the region plus a margin of context (outside the region the pixels
    are the layer's own), read as the median over a disk of max(2, 4 x side / 256) px; returns point -> (dx, dy)."""
    x, y, w, h = case.region
    m = int(0.1 * case.side)
    H, W = original.shape[:2]
    fx0, fy0 = max(0, x - m), max(0, y - m)
    frect = (fx0, fy0, min(W, x + w + m) - fx0, min(H, y + h + m) - fy0)
    g0 = np.clip(luma(crop(original, frect)).round(), 0, 255).astype(np.uint8)
    g1 = np.clip(luma(crop(result, frect)).round(), 0, 255).astype(np.uint8)
    flow = dis_flow(g0, g1)
    radius = max(2.0, 4.0 * case.side / 256)
    return lambda point: flow_at(flow, (point[0] - fx0, point[1] - fy0), radius)


def judge_error(case: heldout_faces.Case) -> list[float]:
    """How well the flow judge of (c)/(d) recovers a motion that is known exactly, per pair: the layer warped by a
    smooth field that carries the handle's content to its target (a Gaussian bump, sigma 1.5 x the move + 10 px),
    judged like a result. (d) cannot be read finer than this."""
    import cv2

    layer = case.layer
    h, w = layer.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    errors = []
    for hx, hy, tx, ty in case.pairs:
        dx, dy = tx - hx, ty - hy
        sigma = 1.5 * math.hypot(dx, dy) + 10.0
        bump = np.exp(-((xs - hx) ** 2 + (ys - hy) ** 2) / (2 * sigma * sigma)).astype(np.float32)
        warped = cv2.remap(layer, xs - dx * bump, ys - dy * bump, cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE)
        x, y = hx, hy  # where the handle's content went: the fixed point of x = h + d * bump(x)
        for _ in range(60):
            b = math.exp(-((x - hx) ** 2 + (y - hy) ** 2) / (2 * sigma * sigma))
            x, y = hx + dx * b, hy + dy * b
        fx, fy = region_flow(case, layer, warped)((hx, hy))
        errors.append(math.hypot(hx + fx - x, hy + fy - y))
    return errors


def measure(case: heldout_faces.Case, result: np.ndarray, done: dict[str, Any]) -> dict[str, Any]:
    """(a)-(d) for one result layer."""
    original = case.layer
    side = case.side
    points = [(p[0], p[1]) for p in case.pairs] + [(p[2], p[3]) for p in case.pairs]
    far = far_mask(case.region, points, 40.0 * side / 256)
    a, b = crop(original, case.region), crop(result, case.region)
    sharp0 = laplacian_variance(luma(a))
    out: dict[str, Any] = {
        "psnr_far_db": round(psnr(a, b, far), 2),
        "far_pixels": int(far.sum()),
        "sharpness": round(laplacian_variance(luma(b)) / sharp0, 4) if sharp0 > 0 else None,
        "outside_region_identical": bool(_outside_identical(original, result, case.region)),
    }
    judge = region_flow(case, original, result)
    tracker = done.get("handles") or []
    reported = done.get("measured")
    handles = []
    for k, (hx, hy, tx, ty) in enumerate(case.pairs):
        dx, dy = judge((hx, hy))
        asked = math.hypot(tx - hx, ty - hy)
        ux, uy = (tx - hx) / asked, (ty - hy) / asked
        landed = (hx + dx, hy + dy)
        row = {
            "part": case.parts[k],
            "asked_px": round(asked, 2),
            "flow": [round(dx, 2), round(dy, 2)],
            "end_error_px": round(math.dist(landed, (tx, ty)), 2),
            "moved_px": round(dx * ux + dy * uy, 2),
            "share_moved": round((dx * ux + dy * uy) / asked, 3),
        }
        if k < len(tracker):
            row["tracker_error_px"] = round(math.dist(tracker[k], (tx, ty)), 2)
            row["tracker_vs_flow_px"] = round(math.dist(tracker[k], landed), 2)
        if isinstance(reported, list) and k < len(reported):
            row["reported"] = [round(float(v), 2) for v in reported[k]]
            row["reported_vs_flow_px"] = round(math.dist(reported[k], landed), 2)
        for key in ("remaining", "moved"):
            values = done.get(key)
            if isinstance(values, list) and k < len(values):
                row[f"reported_{key}_px"] = round(float(values[k]), 2)
        handles.append(row)
    out["handles"] = handles
    return out


def _outside_identical(a: np.ndarray, b: np.ndarray, rect: tuple[int, int, int, int]) -> bool:
    x, y, w, h = rect
    outside = np.ones(a.shape[:2], bool)
    outside[y : y + h, x : x + w] = False
    return bool(np.array_equal(a[outside], b[outside]))


# ----------------------------------------------------------------------------------------------------------
# The daemon


def start_daemon():
    """A daemon on the bundled model inside this process (as `draggan edit --in-process`), and a client."""
    import torch
    from draggan_daemon.server.serve_cli import build_registry
    from draggan_daemon.server.server import DaemonServer, ServerConfig
    from draggan_protocol import Client
    from draggan_protocol.signing import new_key

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ns = argparse.Namespace(model=[], models_dir=None, builtin_test_model=False, no_bundled=False)
    registry = build_registry(ns, device)
    key = new_key().hex().encode()
    server = DaemonServer(ServerConfig(key=key), registry)
    server.start()
    client = Client(server.endpoint, key, client_name="edit-quality-benchmark")
    client.hello()
    return server, client, str(device)


def fetch_layer(client, session_id: str, mode: str, width: int, height: int) -> tuple[np.ndarray, float]:
    """The whole result layer as the given output mode makes it, and the seconds get_result took."""
    from draggan_protocol.client import image_from_message

    t0 = time.perf_counter()
    reply = client.request("get_result", {"session_id": session_id, "area": "layer", "output": mode}, timeout=300)
    seconds = time.perf_counter() - t0
    img = image_from_message(reply)
    assert (img.width, img.height) == (width, height)
    return np.frombuffer(img.pixels, np.uint8).reshape(height, width, 4).copy(), seconds


def run_case(
    client,
    case: heldout_faces.Case,
    modes: list[str],
    steps: int,
    preset: str,
    drag_params: dict[str, Any] | None = None,
    preview_every: int = 5,
) -> dict[str, Any]:
    from draggan_protocol.client import drag_request

    layer = np.ascontiguousarray(case.layer)
    height, width = layer.shape[:2]
    session = client.open_layer_session(layer.tobytes(), width, height, region=case.region, name=case.name)
    sid = session["session_id"]
    record: dict[str, Any] = {"modes": {}}
    try:
        t0 = time.perf_counter()
        inv = client.invert(sid, preset=preset)
        record["invert_s"] = round(time.perf_counter() - t0, 2)
        stages = inv.get("stages") or []
        if stages and isinstance(stages[-1], dict) and "psnr" in stages[-1]:
            record["fit_psnr_model_db"] = round(float(stages[-1]["psnr"]), 2)
        fitted, _ = fetch_layer(client, sid, "generator", width, height)
        points = [(p[0], p[1]) for p in case.pairs] + [(p[2], p[3]) for p in case.pairs]
        far = far_mask(case.region, points, 40.0 * case.side / 256)
        record["fit_psnr_far_db"] = round(psnr(crop(layer, case.region), crop(fitted, case.region), far), 2)
        for mode in modes:
            params = {"steps": steps, **(drag_params or {})}
            content, buffers = drag_request(sid, case.pairs, params=params, preview_every=preview_every)
            content["output"] = mode
            t0 = time.perf_counter()
            done = client.run_job("drag", content, buffers, silence_timeout=300)
            drag_s = time.perf_counter() - t0
            result, result_s = fetch_layer(client, sid, mode, width, height)
            row = measure(case, result, done)
            n = int(done.get("steps") or 0)
            row.update(
                {
                    "drag_s": round(drag_s, 3),
                    "result_s": round(result_s, 3),
                    "steps": n,
                    "ms_per_step": round(1000 * drag_s / n, 1) if n else None,
                    "reached": done.get("reached"),
                    "tracker_reached": done.get("tracker_reached"),
                    "output": done.get("output"),
                    "fallback": done.get("fallback"),
                    "stop_distance": done.get("stop_distance"),
                }
            )
            row["result"] = result  # for the contact sheet; dropped before the JSON
            record["modes"][mode] = row
            client.reset(sid)
        if "transfer" in record["modes"] and "generator" in record["modes"]:
            t, g = record["modes"]["transfer"], record["modes"]["generator"]
            record["drag_time_ratio"] = round(t["drag_s"] / g["drag_s"], 3)
    finally:
        client.close_session(sid)
    return record


# ----------------------------------------------------------------------------------------------------------
# Printing


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return round(float(statistics.median(vals)), 3) if vals else None


def _fmt(v: Any, spec: str = ".2f", width: int = 6) -> str:
    if v is None:
        return "n/a".rjust(width)
    if isinstance(v, float) and math.isnan(v):
        return "nan".rjust(width)
    return format(v, spec).rjust(width)


def print_mode_table(mode: str, cases: list[heldout_faces.Case], records: list[dict[str, Any]]) -> None:
    print(f"\n== output = {mode}")
    head = (
        f"{'face':38s} {'px':>3s} {'side':>4s} {'fit dB':>6s} {'steps':>5s} {'drag s':>6s} {'ms/st':>5s} "
        f"{'res s':>5s} {'PSNR far':>8s} {'sharp':>5s} | {'part':10s} {'asked':>5s} {'end err':>7s} "
        f"{'moved':>6s} {'rep-flow':>8s} {'trk-flow':>8s}"
    )
    print(head)
    print("-" * len(head))
    for case, rec in zip(cases, records, strict=True):
        row = rec["modes"].get(mode)
        if row is None:
            continue
        for k, hrow in enumerate(row["handles"]):
            if k == 0:
                left = (
                    f"{case.name[:38]:38s} {case.face_size:3d} {case.side:4d} "
                    f"{_fmt(rec.get('fit_psnr_far_db'), '.1f')} "
                    f"{row['steps']:5d} {_fmt(row['drag_s'], '.2f')} {_fmt(row['ms_per_step'], '.1f', 5)} "
                    f"{_fmt(row['result_s'], '.2f', 5)} {_fmt(row['psnr_far_db'], '.2f', 8)} "
                    f"{_fmt(row['sharpness'], '.2f', 5)}"
                )
            else:
                left = " " * 97
            print(
                f"{left} | {hrow['part']:10s} {hrow['asked_px']:5.1f} {hrow['end_error_px']:7.2f} "
                f"{100 * hrow['share_moved']:5.0f}% {_fmt(hrow.get('reported_vs_flow_px'), '.2f', 8)} "
                f"{_fmt(hrow.get('tracker_vs_flow_px'), '.2f', 8)}"
            )
        if row.get("fallback"):
            print(f"{'':38s} fallback to {row.get('output')}: {row['fallback']}")


def summarize(modes: list[str], records: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for mode in modes:
        rows = [r["modes"][mode] for r in records if mode in r["modes"]]
        hs = [h for r in rows for h in r["handles"]]
        summary[mode] = {
            "cases": len(rows),
            "handles": len(hs),
            "psnr_far_db": _median([r["psnr_far_db"] for r in rows]),
            "sharpness": _median([r["sharpness"] for r in rows]),
            "end_error_px": _median([h["end_error_px"] for h in hs]),
            "share_moved": _median([h["share_moved"] for h in hs]),
            "within_3px_by_flow": sum(h["end_error_px"] <= 3 for h in hs),
            "reported_vs_flow_px": _median([h.get("reported_vs_flow_px") for h in hs]),
            "tracker_vs_flow_px": _median([h.get("tracker_vs_flow_px") for h in hs]),
            "drag_s": _median([r["drag_s"] for r in rows]),
            "ms_per_step": _median([r["ms_per_step"] for r in rows]),
            "result_s": _median([r["result_s"] for r in rows]),
            "steps": _median([r["steps"] for r in rows]),
            "reached": sum(bool(r["reached"]) for r in rows),
            "fallbacks": sum(bool(r.get("fallback")) for r in rows),
            "outside_region_identical": all(r["outside_region_identical"] for r in rows),
        }
    summary["judge_error_px"] = _median([e for r in records for e in r.get("judge_error_px", [])])
    if "transfer" in modes and "generator" in modes:
        pairs = [r["modes"] for r in records if "transfer" in r["modes"] and "generator" in r["modes"]]
        summary["drag_time_ratio"] = _median([m["transfer"]["drag_s"] / m["generator"]["drag_s"] for m in pairs])
        summary["drag_and_result_time_ratio"] = _median(
            [
                (m["transfer"]["drag_s"] + m["transfer"]["result_s"])
                / (m["generator"]["drag_s"] + m["generator"]["result_s"])
                for m in pairs
            ]
        )
        summary["ms_per_step_ratio"] = _median(
            [
                m["transfer"]["ms_per_step"] / m["generator"]["ms_per_step"]
                for m in pairs
                if m["generator"]["ms_per_step"]
            ]
        )
    return summary


def print_summary(modes: list[str], summary: dict[str, Any], records: list[dict[str, Any]]) -> None:
    print("\n== summary (medians over faces; handle figures over handles)")
    lines = [
        ("PSNR far from the handles, dB", "psnr_far_db", ".2f"),
        ("sharpness, result / original", "sharpness", ".3f"),
        ("end error by flow, px", "end_error_px", ".2f"),
        ("share of the asked distance moved", "share_moved", ".2f"),
        ("handles within 3 px by flow", "within_3px_by_flow", "d"),
        ("|reported - flow|, px", "reported_vs_flow_px", ".2f"),
        ("|tracker - flow|, px", "tracker_vs_flow_px", ".2f"),
        ("drag job wall time, s", "drag_s", ".2f"),
        ("drag ms per step", "ms_per_step", ".1f"),
        ("get_result wall time, s", "result_s", ".2f"),
        ("steps run", "steps", ".0f"),
        ("drags reported reached", "reached", "d"),
        ("fallbacks to generator", "fallbacks", "d"),
    ]
    print(f"{'':36s}" + "".join(f"{m:>12s}" for m in modes) + f"  {'goal (transfer)':>16s}")
    for label, key, spec in lines:
        cells = "".join(_fmt(summary[m][key], spec, 12) for m in modes)
        print(f"{label:36s}{cells}  {GOALS.get(key, ''):>16s}")
    judge = _fmt(summary.get("judge_error_px"), ".2f", 12)
    print(f"{'flow judge on a known motion, px':36s}{judge}   (how finely (c) and |reported - flow| can be read)")
    fit = _median([r.get("fit_psnr_far_db") for r in records])
    print(f"{'fitted picture alone: PSNR far, dB':36s}{_fmt(fit, '.2f', 12)}   (the inversion before any drag)")
    if "drag_time_ratio" in summary:
        ratio = _fmt(summary["drag_time_ratio"], ".3f", 12)
        print(f"{'drag wall time, transfer / generator':36s}{ratio}  {GOALS['drag_time_ratio']:>16s}")
        print(f"{'drag + get_result, transfer / gen.':36s}{_fmt(summary['drag_and_result_time_ratio'], '.3f', 12)}")
        print(f"{'ms per step, transfer / generator':36s}{_fmt(summary['ms_per_step_ratio'], '.3f', 12)}")
    for m in modes:
        if not summary[m]["outside_region_identical"]:
            print(f"warning: {m}: some result changed pixels outside the region")


def contact_sheet(path: Path, cases, records, modes: list[str], tile: int = 256) -> None:
    """Per face: the original region, then each mode's result, pairs drawn (handles white, targets red); faces
    side by side, about 1500 px wide."""
    from PIL import Image, ImageDraw

    per_case = 1 + len(modes)
    across = max(1, 6 // per_case)
    rows = -(-len(cases) // across)
    sheet = Image.new("RGBA", (across * per_case * tile + (across - 1) * 8, rows * (tile + 14)), (30, 30, 30, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (case, rec) in enumerate(zip(cases, records, strict=True)):
        x, y, w, h = case.region
        scale = tile / max(w, h)
        left, top = (i % across) * (per_case * tile + 8), (i // across) * (tile + 14)
        pictures = [("original", case.layer)] + [(m, rec["modes"][m]["result"]) for m in modes if m in rec["modes"]]
        for j, (label, pixels) in enumerate(pictures):
            img = Image.fromarray(crop(pixels, case.region).copy()).resize(
                (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS
            )
            heldout_faces.draw_pairs(img, case.pairs, (x, y), scale)
            sheet.alpha_composite(img, (left + j * tile, top + 14))
            row = rec["modes"].get(label)
            text = case.name[:36] if j == 0 else f"{label}: {row['psnr_far_db']:.1f} dB, sharp {row['sharpness']:.2f}"
            draw.text((left + j * tile + 3, top + 1), text, fill=(230, 230, 230, 255))
    sheet.save(path)


# ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--faces", type=int, default=12, help=f"held-out faces to use (at most {len(heldout_faces.FACES)})")
    p.add_argument("--steps", type=int, default=80, help="drag steps (the drag may stop earlier when it arrives)")
    p.add_argument("--modes", default=",".join(MODES), help="output modes, comma-separated: transfer,generator")
    p.add_argument("--seed", type=int, default=0, help="picks the layers' sizes, backgrounds, regions and pairs")
    p.add_argument("--invert-preset", choices=("fast", "quality"), default="fast")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"JSON figures (default {DEFAULT_OUT.relative_to(ROOT)})"
    )
    p.add_argument("--sheet", type=Path, help="also write a contact sheet PNG (original and each mode's result)")
    p.add_argument(
        "--preview-every", type=int, default=5, help="a preview every k steps, as the plugins ask (0 = none)"
    )
    p.add_argument(
        "--drag-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a drag parameter (protocol params), e.g. measured_arrival=false; JSON values",
    )
    p.add_argument(
        "--transfer-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a constant of draggan_daemon.engine.transfer in the in-process daemon (e.g. ESTIMATOR=farneback, "
        "NEW_CONTENT=1, WORK_MIN=256) to compare variants in one tree",
    )
    args = p.parse_args(argv)
    from draggan_daemon.engine import transfer

    drag_params: dict[str, Any] = {}
    for item in args.drag_set:
        name, _, value = item.partition("=")
        try:
            drag_params[name] = json.loads(value)
        except json.JSONDecodeError:
            p.error(f'--drag-set {item}: the value must be JSON (true, 3, 0.5, "w")')

    for item in args.transfer_set:
        name, _, value = item.partition("=")
        if not hasattr(transfer, name) or not name.isupper():
            p.error(f"--transfer-set: transfer has no constant {name!r}")
        old = getattr(transfer, name)
        setattr(
            transfer,
            name,
            type(old)(value) if not isinstance(old, tuple) else tuple(float(v) for v in value.split(",")),
        )
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        p.error(f"--modes: choose from {', '.join(MODES)}")

    import logging

    import torch
    from draggan_daemon.server.logs import setup_logging
    from draggan_protocol import DaemonError

    setup_logging(False, level=logging.WARNING)
    torch.manual_seed(args.seed)
    cases = heldout_faces.build_cases(args.faces, args.seed)
    if not cases:
        print("edit_quality: no case could be built", file=sys.stderr)
        return 1
    server, client, device = start_daemon()
    try:
        info = client.daemon_info or {}
        outputs = (info.get("capabilities") or {}).get("outputs")
        if "transfer" in modes and not (isinstance(outputs, list) and "transfer" in outputs):
            print(
                f"edit_quality: warning: this daemon (protocol {info.get('protocol_version')}) has no output modes "
                "(hello capabilities.outputs); it would answer 'transfer' with generator pictures: transfer skipped",
                file=sys.stderr,
            )
            modes = [m for m in modes if m != "transfer"]
            if not modes:
                return 1
        model = info.get("default_model")
        print(
            f"edit_quality: {len(cases)} held-out faces, modes {', '.join(modes)}, {args.steps} steps, "
            f"inversion {args.invert_preset}, model {model} on {device}, protocol {info.get('protocol_version')}",
            file=sys.stderr,
        )
        records = []
        t_all = time.perf_counter()
        load_before = os.getloadavg()
        kept = []
        for i, case in enumerate(cases):
            order = modes if i % 2 == 0 else modes[::-1]
            try:
                rec = run_case(client, case, order, args.steps, args.invert_preset, drag_params, args.preview_every)
            except DaemonError as exc:
                print(f"edit_quality: warning: {case.name}: the daemon refused ({exc}); skipped", file=sys.stderr)
                continue
            rec["judge_error_px"] = [round(e, 3) for e in judge_error(case)]
            kept.append(case)
            records.append(rec)
            times = ", ".join(f"{m} {rec['modes'][m]['drag_s']:.2f} s" for m in order)
            print(
                f"[{i + 1}/{len(cases)}] {case.name}: fit {rec['invert_s']:.1f} s, drag {times}",
                file=sys.stderr,
                flush=True,
            )
        total_s = time.perf_counter() - t_all
        if not records:
            print("edit_quality: every case failed", file=sys.stderr)
            return 1
        load_after = os.getloadavg()
        cases = kept
    finally:
        client.close()
        server.stop()

    for mode in modes:
        print_mode_table(mode, cases, records)
    summary = summarize(modes, records)
    print_summary(modes, summary, records)

    if args.sheet:
        contact_sheet(args.sheet, cases, records, modes)
        print(f"\nwrote {args.sheet}")
    for rec in records:
        for row in rec["modes"].values():
            row.pop("result", None)
    out = {
        "benchmark": "edit_quality",
        "config": {
            "faces": len(cases),
            "steps": args.steps,
            "modes": modes,
            "seed": args.seed,
            "invert_preset": args.invert_preset,
            "model": model,
            "device": device,
            "protocol_version": info.get("protocol_version"),
            "daemon_version": info.get("daemon_version"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
            "total_s": round(total_s, 1),
            "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
            "psnr_far_radius": "40 px x side / 256 (side = the region's longer side)",
            "flow": "OpenCV DIS, preset MEDIUM, original layer -> result, median over a disk of 4 px x side / 256",
            "psnr_cap_db": PSNR_CAP,
            "drag_params": drag_params,
            "preview_every": args.preview_every,
            "transfer_settings": {
                k: getattr(transfer, k)
                for k in (
                    "ESTIMATOR",
                    "NEW_CONTENT",
                    "WORK_MIN",
                    "MIN_MOTION",
                    "FOCUS_INNER",
                    "RESIDUAL_RANGE",
                    "WARP_INTERPOLATION",
                )
            },
        },
        "goals_transfer": GOALS,
        "summary": summary,
        "cases": [
            {
                "name": c.name,
                "source": c.source,
                "licence": c.licence,
                "face_size": c.face_size,
                "layer_size": [int(c.layer.shape[1]), int(c.layer.shape[0])],
                "region": list(c.region),
                "pairs": [list(p) for p in c.pairs],
                "parts": c.parts,
                "notes": c.notes,
                **{k: v for k, v in r.items() if k != "modes"},
                "modes": r["modes"],
            }
            for c, r in zip(cases, records, strict=True)
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    from draggan_daemon import measurements

    figures = {
        f"{mode}: {key}": value
        for mode in modes
        for key, value in summary[mode].items()
        if isinstance(value, (int, float, str))
    }
    figures.update({k: v for k, v in summary.items() if k not in modes and isinstance(v, (int, float))})
    figures["faces"] = len(cases)
    measurements.record(
        "benchmarks/edit_quality.py",
        figures,
        argv=argv,
        device=str(device),
        notes=f"model {model}; every face and handle in benchmarks/results/{args.out.name}",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
