"""Issue 13, item 1 in GIMP: the 'frames' arguments open the drag's frames as an image whose layers GIMP plays.

Without GIMP: the plug-in's runner against a real daemon (the frames, whole-layer, the last equal to the result)
and the undo rule (the document gets its one undo step, the frames an image of their own). In the real GIMP 3
(trixie chroot): the PDB call returns the frames image; its top-level layers, bottom first as GIMP's playback
takes them, are "Frame 1 (70ms) (replace)" …, one per kept step and the result; GIMP's own GIF export writes
them as an animation with one frame each and the named times.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from gimp_env import start_daemon
from test_gimp_app import LAYER_H, LAYER_W, GimpSession, _common, gimp_root  # noqa: F401

from draggan_gimp import apply, params, runner  # isort: skip
from draggan_gimp.pairs import strokes_to_pairs  # isort: skip

PAIRS = strokes_to_pairs([[(20.0, 40.0), (26.0, 35.0)]], size=(64, 64)).pairs
NO_LAYER = runner.LayerInput(b"", 64, 64, (5, 7), "seed")
# The playback plug-in's reading of a layer name: the first "(NNms)" is the frame's time, "(replace)" its disposal.
MS_TAG = re.compile(r"\((\d+)\s*ms\)", re.IGNORECASE)


class Quiet:
    def status(self, text):
        pass

    def progress(self, fraction, text):
        pass

    def preview(self, image):
        pass

    def message(self, text):
        pass

    def stop_requested(self):
        return False


class Recording:
    """apply.Document recording what it is asked (the seed run reads no layer)."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.frames: list[bytes] = []

    def read_layer(self):
        return NO_LAYER

    def read_selection(self):
        return None

    def begin_run(self, preview):
        return Quiet()

    def end_run(self):
        pass

    def undo_group_start(self):
        self.log.append("undo(")

    def undo_group_end(self):
        self.log.append(")undo")

    def add_result(self, name, image):
        self.log.append(f"add {name}")
        return "layer"

    def select(self, layer):
        pass

    def open_frames(self, title, width, height, frames, names):
        self.log.append(f"frames image {title} {width}x{height}: {', '.join(names)}")
        self.frames = frames
        return "frames image"


@pytest.fixture
def daemon(tmp_path: Path):
    d = start_daemon(tmp_path / "daemon.json")
    yield d
    d.stop()


def test_the_runner_brings_the_frames_whole_and_apply_opens_them_after_the_one_undo_step(daemon) -> None:
    values = {"connection-file": str(daemon.connection_file), "invert-first": False, "steps": 3}
    settings = params.RunSettings.from_values({**values, "frames": 1, "frame-ms": 70, "output": "generator"})
    assert (settings.frames, settings.frame_ms) == (1, 70)
    conn = runner.connect(settings)
    doc = Recording()
    try:
        layer, outcome = apply.drag_into(doc, conn.client, PAIRS, settings)
    finally:
        conn.close()
    n = outcome.steps + 1
    assert outcome.frame_steps == list(range(n)) and len(outcome.frames) == n
    assert all(len(f) == 64 * 64 * 4 for f in outcome.frames)
    assert outcome.frames[-1] == outcome.image.pixels, "the last frame is not the result"
    assert outcome.frames[0] != outcome.frames[-1]
    names = ", ".join(f"Frame {i} (70ms) (replace)" for i in range(1, n + 1))
    assert doc.log == ["undo(", "add Seed 0 (DragGAN)", ")undo", f"frames image Seed 0 (DragGAN frames) 64x64: {names}"]
    assert outcome.frames_image == "frames image"
    # without 'frames' there is no frames image
    conn = runner.connect(settings)
    try:
        plain = apply.drag_into(Recording(), conn.client, PAIRS, params.RunSettings.from_values(values))[1]
    finally:
        conn.close()
    assert plain.frames == [] and plain.frames_image is None


def test_frame_names_are_what_gimps_playback_reads() -> None:
    name = runner.frame_layer_name(3, 80)
    assert name == "Frame 3 (80ms) (replace)"
    assert int(MS_TAG.search(name).group(1)) == 80 and "(replace)" in name
    assert params.BY_NAME["frames"].default == 0 and params.BY_NAME["frames"].maximum == 5000


class FramesSession(GimpSession):
    driver = "frames_driver.py"


@pytest.mark.gimp
@pytest.mark.slow
def test_frames_in_real_gimp(gimp_root: Path) -> None:  # noqa: F811
    from PIL import Image

    session = FramesSession(gimp_root)
    try:
        daemon = start_daemon(session.base / "daemon.json")
        try:
            args = {"connection-file": f"{session.inside}/daemon.json", "steps": 4, "frames": 1, "frame-ms": 70}
            c = session.run({"frames": {**_common(), "args": args}})["frames"]
        finally:
            daemon.stop()
        assert c["status"] == "success", c
        # the document: the result layer above the untouched source, its one undo step
        assert c["layers_after"] == ["Face (DragGAN)", "Face"] and c["dirty_after"] and c["source_unchanged"]
        f = c["frames_image"]
        assert f is not None and f["size"] == [LAYER_W, LAYER_H] and not f["dirty"]
        frames = f["frames"]
        assert 2 <= len(frames) <= 5 + 1  # steps 0 … (at most 4 steps run) and the result
        assert [fr["name"] for fr in frames] == [f"Frame {i} (70ms) (replace)" for i in range(1, len(frames) + 1)]
        assert [int(MS_TAG.search(fr["name"]).group(1)) for fr in frames] == [70] * len(frames)
        assert not any(fr["group"] for fr in frames)
        assert all(fr["size"] == [LAYER_W, LAYER_H] and fr["offset"] == [0, 0] for fr in frames)
        assert frames[-1]["digest"] == c["result_digest"], "the last frame is not the result layer's pixels"
        # GIMP's own GIF export takes them as they are: one GIF frame per layer, 70 ms each
        assert c["gif_export"][0] == "success", c["gif_export"]
        gif = session.base / Path(c["gif"]).name
        with Image.open(gif) as g:
            durations = []
            for i in range(g.n_frames):
                g.seek(i)
                durations.append(g.info.get("duration"))
        distinct = len({fr["digest"] for fr in frames})
        assert g.n_frames in (len(frames), distinct), (g.n_frames, len(frames))
        assert set(durations) == {70}, durations
        assert hashlib.sha256(gif.read_bytes()).hexdigest()
    finally:
        session.close()
