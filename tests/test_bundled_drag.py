"""The bundled model's own drag proof: raise an eye 8 px, measured by optical flow, not by the drag's tracker.

Issue-level goal: every handle within 3 px of its target. Measured with the engine's defaults at 64 px (lr 8e-3,
r1 4, 4 ws), `python -m draggan_daemon.training.drag_check --part eye --distance 8 --seeds 0-7`: all 8 arrive by
the tracker in 20-49 steps; DIS flow puts the eye 1.33, 1.09, 0.43, 1.15, 1.50, 2.19, 2.77, 2.89 px from the
target (median 1.42). Over seeds 0-31: 31 of 32 within 3 px by flow, all 32 arrive; the miss (seed 24) is a
flow/landmark disagreement (flow 5.25 px, the eye blob found again 0.54 px). With the official-style defaults
(lr 2e-3, r1 2, 6 ws) 3 of 16 were within 3 px. The bounds below leave room for the two seeds near 3 px on this
CPU-trained model; a GPU-trained model should meet them with room to spare.
A keep-mask over the lower face must hold those pixels (DragGAN's mask term, λ = 20).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("cv2")

from draggan_daemon.engine.drag import DragConfig, DragOptimizer  # noqa: E402
from draggan_daemon.engine.loaders import load_generator  # noqa: E402
from draggan_daemon.training.drag_check import check_seed, find_eyes, flow_at, summarize, to_gray  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
BUNDLED = Path(__file__).resolve().parents[1] / "daemon" / "models" / "bundled.safetensors"
SEEDS = range(8)
MIN_WITHIN_3PX = 6  # measured 8 of 8, two of them (2.77, 2.89 px) close to the line
MAX_MEDIAN_FLOW_ERROR_PX = 2.0  # measured 1.42
KEEP_FROM_ROW = 44  # the keep-mask: rows from here down (mouth and chin); eyes sit at rows 16-32
MAX_KEPT_CHANGE = 2.5  # mean |change|, 0-255 grey levels, under the keep-mask: measured 1.20 (6.86 without the mask)


@pytest.fixture(scope="module")
def bundled():
    G = load_generator(BUNDLED).generator
    for p in G.parameters():
        p.requires_grad_(False)
    return G


@pytest.mark.slow
def test_raising_an_eye_by_optical_flow(bundled) -> None:
    rows = [check_seed(bundled, seed, 8.0, 60, part="eye") for seed in SEEDS]
    summary = summarize(rows)
    print(summary)
    assert summary["trials"] == len(SEEDS), rows
    assert summary["arrived"] == len(SEEDS), f"drags that did not finish in 60 steps: {rows}"
    assert summary["within_3px_by_flow"] >= MIN_WITHIN_3PX, rows
    assert summary["median_flow_error_px"] <= MAX_MEDIAN_FLOW_ERROR_PX, rows


@pytest.mark.slow
def test_keep_mask_holds_the_lower_face(bundled) -> None:
    G = bundled
    ws = G.z_to_ws(2, 0.7)
    with torch.no_grad():
        gray0 = to_gray(G.synthesis.run(ws, noise_mode="const")[0])
    eye = find_eyes(gray0)[0]
    target = (eye[0], eye[1] - 8)
    mask = torch.zeros(G.img_resolution, G.img_resolution)
    mask[KEEP_FROM_ROW:] = 1
    changes = {}
    for name, m in (("masked", mask), ("free", None)):
        opt = DragOptimizer(G, ws, DragConfig(max_steps=60))
        opt.set_points([eye], [target], mask=m)
        opt.run()
        gray1 = to_gray(opt.render())
        diff = np.abs(gray1.astype(float) - gray0.astype(float))
        dx, dy = flow_at(gray0, gray1, eye)
        changes[name] = (float(diff[KEEP_FROM_ROW:].mean()), math.dist((eye[0] + dx, eye[1] + dy), target))
    print({k: (round(a, 2), round(b, 2)) for k, (a, b) in changes.items()})
    kept, moved_error = changes["masked"]
    assert kept <= MAX_KEPT_CHANGE
    assert kept < changes["free"][0]  # the mask is what held it
    assert moved_error <= 3.0  # and the eye still went up (measured 0.77 px from the target)
