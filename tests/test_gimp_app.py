"""The plug-in inside the real GIMP 3 (Debian trixie chroot, batch mode) against a real daemon on this host.

Each test is one GIMP batch session running several cases (GIMP's start-up costs seconds), the plug-in installed
by `draggan install gimp` into the session's own GIMP profile.
- test_plugin_in_real_gimp (built-in test model): the error cases, two successful runs (layer placement, name,
  source untouched, preview layer removed, both output modes, the outcome in words), and a run whose daemon is
  stopped midway.
- test_drag_moves_handles_in_real_gimp (a trained model): the same drag in the default `transfer` output and in
  `generator` output, the layers exported as PNGs by GIMP. The transfer result must keep the layer's own detail
  far from the handles (PSNR against the source layer) and, by OpenCV's DIS optical flow from the source layer to
  the result, carry each handle toward its target. The built-in test model draws random textures whose drags do
  not move features measurably, so this test needs the bundled model (or $DRAGGAN_GIMP_TEST_MODEL) and says so
  when it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
from gimp_env import (
    HELPERS_DIR,
    ROOT,
    chroot_unavailable_reason,
    ensure_chroot,
    run_gimp_batch,
    spawn_daemon_process,
)

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

IMAGE_W, IMAGE_H = 112, 96
LAYER_W, LAYER_H = 96, 80
OFFSET = (10, 8)
SELECTION = (OFFSET[0] + 8, OFFSET[1] + 2, 80, 76)  # x, y, w, h in image coordinates, around the face
# Mouth corners move outwards and up: left corner by (-4, -5), right by (+4, -5): 6.4 px, 17 px on a 256-px layer
# (issue 15's edits move 8-16 px there). The daemon's transfer moves pixels only near a pair (full within max(6 % of
# the model's side, the pair's length) model pixels of its path, none at twice that: 12.8 layer px here), so the
# pixels farther than FAR (15 px) from the handles and targets stay bit-identical (measured: transfer inf dB,
# generator 18.6 dB; the daemon says 6 and 6.9 of 6.4 px moved, DIS at 4x 5.82 and 6.71 px, DIS at 1x 1.35 and
# 3.04 px). A daemon whose transfer reached about 3 drag lengths from a path had this drag shortened to (-3, -4).
DRAG = (-4.0, -5.0)
FAR = 40.0 * max(LAYER_W, LAYER_H) / 256  # "far from the handles": issue 15's 40 px on a 256-px layer, scaled
FAR_PSNR_DB = 35.0


@pytest.fixture(scope="session")
def gimp_root() -> Path:
    reason = chroot_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return ensure_chroot()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _strokes() -> tuple[list, list]:
    from face import mouth_corners

    corners = mouth_corners(LAYER_W, LAYER_H)
    pairs = []
    for (x, y), sign in zip(corners, (1, -1), strict=True):
        target = (x + sign * DRAG[0], y + DRAG[1])
        pairs.append(((x, y), target))
    strokes = [[(hx + OFFSET[0], hy + OFFSET[1]), (tx + OFFSET[0], ty + OFFSET[1])] for (hx, hy), (tx, ty) in pairs]
    return strokes, pairs


def _far_psnr(source_png: Path, result_png: Path, points: list[tuple[float, float]]) -> tuple[float, int]:
    """PSNR (dB) of the result against the source over region pixels farther than FAR from every point."""
    import cv2
    import numpy as np

    a = cv2.imread(str(source_png)).astype(np.float64)
    b = cv2.imread(str(result_png)).astype(np.float64)
    x0, y0, w, h = SELECTION[0] - OFFSET[0], SELECTION[1] - OFFSET[1], SELECTION[2], SELECTION[3]
    ys, xs = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
    keep = (xs >= x0) & (xs < x0 + w) & (ys >= y0) & (ys < y0 + h)
    for px, py in points:
        keep &= np.hypot(xs - px, ys - py) > FAR
    mse = float(np.mean((a[keep] - b[keep]) ** 2))
    return (float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)), int(keep.sum())


def _flow_at(source_png: Path, result_png: Path, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    import cv2
    import numpy as np

    a = cv2.cvtColor(cv2.imread(str(source_png)), cv2.COLOR_BGR2GRAY)
    b = cv2.cvtColor(cv2.imread(str(result_png)), cv2.COLOR_BGR2GRAY)
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)
    out = []
    for x, y in points:  # average over a 3x3 neighbourhood: one pixel's flow is noisy
        xi, yi = int(round(x)), int(round(y))
        patch = flow[max(yi - 1, 0) : yi + 2, max(xi - 1, 0) : xi + 2].reshape(-1, 2)
        out.append(tuple(float(v) for v in np.mean(patch, axis=0)))
    return out


def _flow_at_4x(source_png: Path, result_png: Path, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The same by DIS on 4x upscaled pictures (the model card's measure): on this small picture of flat colours the
    flow at 1x sees only part of a mouth corner's move (1.35 of the 5.82 px seen at 4x, and 3.04 of 6.71)."""
    import cv2
    from draggan_daemon.training.drag_check import flow_at

    a, b = (cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2GRAY) for p in (source_png, result_png))
    return [flow_at(a, b, point) for point in points]


class GimpSession:
    """A run folder inside the chroot with its own GIMP profile, the plug-in installed, and the batch driver (with
    what it imports: driver_common.py and face.py)."""

    driver = "drag_driver.py"

    def __init__(self, root: Path) -> None:
        from draggan_daemon.plugin_install import gimp as installer

        self.root = root
        self.output = ""  # GIMP's output (stdout + stderr, the plug-in's too) of the last batch session
        self.inside = f"/draggan-test/{uuid.uuid4().hex[:8]}"
        self.base = root / self.inside.lstrip("/")
        plugins = self.base / "home" / ".config" / "GIMP" / "3.0" / "plug-ins"
        plugins.parent.mkdir(parents=True)
        assert installer.main(["--dest", str(plugins)]) == 0
        assert (plugins / "draggan" / "draggan.py").stat().st_mode & 0o111
        for name in ("face.py", "driver_common.py", self.driver):
            shutil.copy(HELPERS_DIR / name, self.base / name)

    def run(self, cases: dict, env: dict[str, str] | None = None, timeout: float = 540, **config) -> dict:
        """One batch session running the driver on `cases` (`config`: more for the driver's config); its report."""
        config = {"helpers": self.inside, "report": f"{self.inside}/report.json", "cases": cases, **config}
        (self.base / "config.json").write_text(json.dumps(config))
        env = {"DRAGGAN_TEST_CONFIG": f"{self.inside}/config.json", **(env or {})}
        t0 = time.monotonic()
        rc, self.output = run_gimp_batch(self.root, f"{self.inside}/home", f"{self.inside}/{self.driver}", env, timeout)
        print(f"GIMP batch session: {time.monotonic() - t0:.1f} s, rc {rc}")
        said = [line for line in self.output.splitlines() if "Plug-In" in line or "plug-in" in line.lower()]
        print("GIMP said about plug-ins:", *said[:20], sep="\n  ")
        assert rc == 0, self.output[-4000:]
        assert "DRAGGAN-DRIVER-DONE" in self.output, self.output[-4000:]
        report = json.loads((self.base / "report.json").read_text())
        print(json.dumps(report, indent=1))
        assert report["procedure_found"], self.output[-4000:]
        return report["cases"]

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def session(gimp_root: Path):
    s = GimpSession(gimp_root)
    yield s
    s.close()


def _common() -> dict:
    strokes, _ = _strokes()
    return {
        "image_w": IMAGE_W,
        "image_h": IMAGE_H,
        "layer_w": LAYER_W,
        "layer_h": LAYER_H,
        "offset": list(OFFSET),
        "selection": list(SELECTION),
        "strokes": strokes,
    }


def test_plugin_in_real_gimp(session: GimpSession) -> None:
    inside, base = session.inside, session.base
    daemon = spawn_daemon_process(base / "daemon.json")
    doomed = spawn_daemon_process(base / "doomed.json")  # killed while the plug-in is working with it
    (base / "stale.json").write_text(json.dumps({"endpoint": f"tcp://127.0.0.1:{_free_port()}", "key": "00ff"}))
    common = _common()
    good = {"connection-file": f"{inside}/daemon.json", "timeout": 60.0}
    cases = {
        "no_daemon": {**common, "args": {"connection-file": f"{inside}/missing.json"}},
        "stale_file": {**common, "args": {"connection-file": f"{inside}/stale.json"}},
        "grayscale": {**common, "gray": True, "args": good},
        "no_strokes": {**common, "strokes": [[(30.0, 30.0)], [(40.0, 40.0), (40.2, 40.1)]], "args": good},
        "plain": {**common, "args": {**good, "steps": 3, "output": "generator"}},
        "preview": {**common, "args": {**good, "steps": 6, "preview-layer": True}},
        "large": {  # a whole-layer region 8.25 times the 64-px model: the plug-in warns
            **common,
            **{"image_w": 540, "image_h": 540, "layer_w": 528, "layer_h": 528, "selection": None},
            "args": {**good, "steps": 1},
        },
        "daemon_dies": {
            **common,
            "args": {"connection-file": f"{inside}/doomed.json", "steps": 500, "timeout": 4.0},
            "marker": f"{inside}/dying-started",
        },
    }
    stopped_at: list[float] = []

    def stop_doomed_daemon() -> None:
        marker = base / "dying-started"
        deadline = time.monotonic() + 600
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # the run is then fitting the layer into the model
        doomed.kill()
        stopped_at.append(time.monotonic())

    threading.Thread(target=stop_doomed_daemon, daemon=True).start()
    try:
        c = session.run(cases)
    finally:
        for proc in (daemon, doomed):
            proc.kill()
            proc.wait()

    # Clear errors, quickly, and nothing changed in the image.
    assert c["no_daemon"]["status"] == "execution-error"
    assert "not running" in c["no_daemon"]["error"] and "draggan serve" in c["no_daemon"]["error"]
    assert c["no_daemon"]["seconds"] < 3
    assert c["stale_file"]["status"] == "execution-error"
    assert "does not answer" in c["stale_file"]["error"]
    assert c["stale_file"]["seconds"] < 10
    assert c["grayscale"]["status"] == "execution-error" and "RGB" in c["grayscale"]["error"]
    assert c["no_strokes"]["status"] == "execution-error" and "No usable path strokes" in c["no_strokes"]["error"]
    for name in ("no_daemon", "stale_file", "grayscale", "no_strokes", "daemon_dies"):
        assert c[name]["layers_after"] == ["Face"], name
        assert c[name]["source_unchanged"], name

    # Successful runs: a new layer right above the source, named after it; the source untouched.
    for name, steps in (("plain", 3), ("preview", 6)):
        r = c[name]
        assert r["status"] == "success", r
        assert r["new_layer"]["name"] == "Face (DragGAN)"
        assert r["new_layer"]["size"] == [LAYER_W, LAYER_H] and r["new_layer"]["offset"] == list(OFFSET)
        assert r["new_layer"]["position"] == r["source_position"] - 1
        assert r["layers_after"] == ["Face (DragGAN)", "Face"]  # no preview layer left behind
        assert r["source_unchanged"]
        assert 1 <= r["steps"] <= steps
        # The outcome in plain words, returned and told (on stderr in batch mode); "reached" only if it is.
        assert r["outcome"] and r["outcome"].startswith("Targets reached") == r["reached"], r
        assert "DragGAN: " + r["outcome"] in session.output

    # A region many times the model's size: a GIMP message says what to expect, and the run still succeeds.
    assert c["large"]["status"] == "success", c["large"]
    assert "The region is 8× the model's 64-px picture" in session.output
    assert "The region is" not in session.output.replace("The region is 8× the model's 64-px picture", "", 1), (
        "warned for a small region too"
    )

    # The daemon dying mid-run ends the run with a clear error a few seconds later, not a hang.
    dies = c["daemon_dies"]
    assert stopped_at, "the doomed daemon was never stopped"
    assert dies["status"] == "execution-error"
    assert "stopped answering" in dies["error"], dies
    assert dies["seconds"] < 2.0 + 4.0 + 6.0, dies


def trained_model() -> Path | None:
    candidates = [os.environ.get("DRAGGAN_GIMP_TEST_MODEL"), ROOT / "daemon" / "models" / "bundled.safetensors"]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


def test_drag_moves_handles_in_real_gimp(session: GimpSession) -> None:
    model = trained_model()
    if model is None:
        pytest.skip("needs a trained model (daemon/models/bundled.safetensors or $DRAGGAN_GIMP_TEST_MODEL)")
    inside, base = session.inside, session.base
    daemon = spawn_daemon_process(base / "daemon.json", model=model)
    common = _common()
    good = {"connection-file": f"{inside}/daemon.json", "timeout": 60.0}
    cases = {
        "generator": {**common, "args": {**good, "steps": 80, "output": "generator"}, "export": f"{inside}/gen"},
        "drag": {**common, "args": {**good, "steps": 80}, "export": f"{inside}/drag"},  # default: transfer
    }
    try:
        c = session.run(cases)
    finally:
        daemon.kill()
        daemon.wait()
    for name in cases:
        assert c[name]["status"] == "success", c[name]
        assert c[name]["source_unchanged"]
        assert c[name]["outcome"].startswith("Targets reached") == c[name]["reached"], c[name]
        print(f"{name}: {c[name]['steps']} steps, outcome: {c[name]['outcome']}")
    assert " of " in c["drag"]["outcome"] and " px" in c["drag"]["outcome"], "no measured arrival in the outcome"

    _, pairs = _strokes()
    points = [p for pair in pairs for p in pair]
    source = base / "drag-source.png"

    # The transfer result keeps the layer's own pixels far from the handles; the generator's picture does not.
    psnr, count = _far_psnr(source, base / "drag-result.png", points)
    psnr_gen, _ = _far_psnr(source, base / "gen-result.png", points)
    print(
        f"PSNR over {count} region pixels farther than {FAR:.1f} px: transfer {psnr:.1f}, generator {psnr_gen:.1f} dB"
    )
    assert count > 1000
    assert psnr >= FAR_PSNR_DB, f"transfer changed the layer far from the handles: {psnr:.1f} dB"
    assert psnr > psnr_gen, "the output mode did not reach the daemon"

    # By optical flow from the source layer to the result, each handle moves toward its target (by DIS at 4x in
    # transfer output, at least half way).
    for name, png in (("transfer", "drag-result.png"), ("generator", "gen-result.png")):
        flows = _flow_at(source, base / png, [p[0] for p in pairs])
        flows_4x = _flow_at_4x(source, base / png, [p[0] for p in pairs])
        before = after = 0.0
        for ((hx, hy), (tx, ty)), (fx, fy), (ux, uy) in zip(pairs, flows, flows_4x, strict=True):
            d0 = ((tx - hx) ** 2 + (ty - hy) ** 2) ** 0.5
            d1 = ((tx - hx - fx) ** 2 + (ty - hy - fy) ** 2) ** 0.5
            along, along_4x = ((vx * (tx - hx) + vy * (ty - hy)) / d0 for vx, vy in ((fx, fy), (ux, uy)))
            print(
                f"{name}: handle ({hx:.1f}, {hy:.1f}) -> ({tx:.1f}, {ty:.1f}): flow ({fx:.2f}, {fy:.2f}), "
                f"{d0:.2f} -> {d1:.2f} px, {along:.2f} px along (DIS at 4x: ({ux:.2f}, {uy:.2f}), {along_4x:.2f} px)"
            )
            before += d0 / len(pairs)
            after += d1 / len(pairs)
            if name == "transfer":
                assert fx * (tx - hx) + fy * (ty - hy) > 0, "a handle moved away from its target"
                assert along_4x >= 0.5 * d0, f"DIS at 4x: a handle moved {along_4x:.2f} of {d0:.2f} px"
        print(f"{name}: mean distance to target {before:.2f} -> {after:.2f} px")
        if name == "transfer":
            assert after < before - 0.25, f"mean distance to target {before:.2f} -> {after:.2f} px"
