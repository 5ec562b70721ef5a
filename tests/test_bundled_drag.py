"""The bundled model's own drag proof: raise an eye 8 px, measured by optical flow, not by the drag's tracker.

Issue-level goal: every handle within 3 px of its target. Measured with the engine's defaults at 64 px (lr 8e-3,
r1 4, 4 ws), seeds drawn as DragGAN draws them (NumPy, issue 12),
`python -m draggan_daemon.training.drag_check --part eye --distance 8 --seeds 0-31`: on 4 of the 32 pictures
(seeds 2, 4, 17, 26) the eye finder finds no eye; the other 28 all arrive by the tracker in 13-41 steps and DIS
flow puts 24 of them within 3 px (median 2.05 px; misses 4.25, 7.25, 7.72 and 3.01). The seeds below are the
first eight with a findable eye: 1.00, 1.64, 1.72, 2.57, 2.56, 1.89, 2.88, 4.25 px (median 2.23). Under torch's
old draw (other pictures) seeds 0-7 gave a median of 1.42 and 31 of 32 within 3 px; with the official-style
defaults (lr 2e-3, r1 2, 6 ws) 3 of 16 were within 3 px. The bounds leave room for the seeds near 3 px on this
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
SEEDS = (0, 1, 3, 5, 6, 7, 8, 9)  # the first eight pictures with an eye the finder finds
MIN_WITHIN_3PX = 6  # measured 7 of 8, three of them (2.57, 2.56, 2.88 px) close to the line
MAX_MEDIAN_FLOW_ERROR_PX = 2.5  # measured 2.23
KEEP_FROM_ROW = 44  # the keep-mask: rows from here down (mouth and chin); eyes sit at rows 16-32
MAX_KEPT_CHANGE = 2.5  # mean |change|, 0-255 grey levels, under the keep-mask: measured 1.49 (5.63 without the mask)


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
    ws = G.z_to_ws(0, 0.7)
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
    assert moved_error <= 3.0  # and the eye still went up (measured 0.57 px from the target)
