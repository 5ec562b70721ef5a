"""Issue 13, item 1 in the real Krita (GUI under Xvfb; 5.1 on the host, 5.2 in the trixie chroot): "Keep frames",
Drag, then "Apply as animation" puts the drag's frames on the timeline: one animated paint layer, a keyframe per
kept step from time 0 (read from a Krita file the plugin writes, opened without a view and closed, its layer copied
in), the first frame the source's pixels, the last the result (the frame shown once Apply is done), with the
source's opacity, blending mode and profile, the source untouched. The document is at 300 dpi and the source layer
reaches past the canvas: every frame keeps its pixels there. One undo takes the animation away (the
document's layers are those before the drag) and one redo brings it back as it was; in Krita's Undo History
docker Apply leaves three steps: the preview's removal and the time switch to the last frame below the layer,
none per frame.

The test-only plugin tests/krita_app/pykrita/draggan_frames_check drives the docker and writes what it saw; the
daemon runs in this process with the small test generator (see test_krita_documents.quick_daemon).
"""

from __future__ import annotations

import json

import pytest
from krita_env import use
from test_krita_app import install_check_plugin, install_into_profile, krita, plugin_zip, run_krita_gui, workdir
from test_krita_documents import quick_daemon

__all__ = ["krita", "plugin_zip", "quick_daemon", "workdir"]  # fixtures, used by name

CHECK_NAME = "draggan_frames_check"
UNDOS = 1  # undos from Apply as animation back to the document's layers before the drag
APPLY_STEPS = 3  # what Apply as animation leaves on the undo stack


@pytest.mark.krita
@pytest.mark.slow
def test_apply_as_animation_puts_the_frames_on_the_timeline(krita, plugin_zip, quick_daemon, workdir):
    use(krita, gui=True)
    prof, env = install_into_profile(plugin_zip, workdir)
    install_check_plugin(prof, CHECK_NAME)
    result = workdir / "frames.json"
    env.update(DRAGGAN_CONNECTION_FILE=krita.place(quick_daemon, workdir), DRAGGAN_FRAMES_CHECK=krita.inside(result))
    r, res = run_krita_gui(krita, env, result, "krita_frames.log", "krita_frames.json", 240)
    print(json.dumps(res, indent=1, default=str))
    assert res["ok"], res.get("error_in_check")
    assert not res["animation_enabled_before"] and res["animation_enabled_after_drag"], res
    kept = res["kept"]
    n = kept["total"]
    assert n == res["steps"] + 1 or (n == res["steps"] and kept["every"] == 1), kept  # steps 0 … and the result
    assert "Apply as animation" in res["done_status"]
    made = res["made"]
    assert made["type"] == "paintlayer" and made["animated"], made
    assert made["name"] == "Background (DragGAN animation)" and res["animation"]["timeline"], res["animation"]
    assert res["keyframes"] == list(range(n)), res["keyframes"]  # one keyframe per kept step, from time 0
    assert res["clip_range"] == [0, n - 1]
    frames = res["frame_digests"]
    assert len(frames) == n and frames[0] == res["source_digest"], "frame 0 is not the drag's start (the source)"
    assert frames[-1] == res["result"], "the last frame is not the result"
    assert len(set(frames)) > 1
    assert res["frames_past_canvas"] == [res["source_past_canvas"]] * n  # the layer's pixels past the canvas, kept
    assert "on the timeline" in res["status"], res["status"]
    assert res["made_look"] == res["source_look"], (res["made_look"], res["source_look"])
    # The frames' own document is closed and was never shown; the person's document is the active one.
    assert res["documents_after"] == res["documents_before"] and res["views_after"] == res["views_before"], res
    assert res["active_is_the_document"]
    names = [name for name, _, _ in res["layers_after"]]
    assert names == ["Background", "Background (DragGAN animation)", "Drag points"], names  # the preview is gone
    # What the canvas shows once Apply is done: the last frame (the result); reading the keyframes switched no time.
    assert res["time_after_apply"] == n - 1 and res["shown_after_apply"] == res["result"], res["time_after_apply"]
    assert res["history_after_reading"] == res["history_after"], "reading the frames left undo steps"
    # Undo: the time switch to the last frame is made before the layer joins the document, so the undo stack holds
    # … [time switch] [the animated layer]: one undo takes it away, and the document's layers are as before the drag.
    assert res["layers_done"] == ["Background", "DragGAN preview", "Drag points"]
    walk = res["undo_walk"]
    assert len(walk) == UNDOS and walk[-1] == res["layers_before"], walk
    assert res["undo_walk_types"] == [None], res["undo_walk_types"]
    # Redo as many brings the animation back as it was: the same layers, keyframes and frames, the last shown.
    assert res["layers_redone"] == res["layers_after"], res["layers_redone"]
    assert res["redo_keyframes"] == list(range(n)), res["redo_keyframes"]
    assert res["redo_time"] == n - 1 and res["redo_shown"] == res["result"]
    assert res["redo_frames_at_time"] == frames and res["redo_frame_digests"] == frames, res["redo_frame_digests"]
    assert res["source_unchanged"]
    # Krita's Undo History docker (its undo stack): Apply left three steps (the preview's removal, the time switch,
    # the animated layer), none per frame, and the drag one (the preview).
    before, done, after = res["history_before"], res["history_done"], res["history_after"]
    assert None not in (before, done, after), (before, done, after)
    assert done[0] - before[0] == 1 and after[0] - done[0] == APPLY_STEPS, (before, done, after)
    assert res["history_after_undo"][1] == after[1] - UNDOS, res["history_after_undo"]  # the walk was UNDOS steps
    assert r.returncode == 0
