"""Issue 13, item 1 in the real Krita (GUI under Xvfb; 5.1 on the host, 5.2 in the trixie chroot): "Keep frames",
Drag, then "Apply as animation" puts the drag's frames on the timeline: one animated paint layer, a keyframe per
kept step from time 0 (Krita's own Convert Group to Animated Layer on a group of one layer per frame, which both
Kritas' Python API allows), the first frame the source's pixels, the last the result, the source untouched. It is
not one undo step: the scripting API has no undo macro, and undo walks back through the conversion and the group
(at most three undos to the document before the drag).

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
    assert res["source_unchanged"] and "on the timeline" in res["status"], res["status"]
    names = [name for name, _, _ in res["layers_after"]]
    assert names == ["Background", "Background (DragGAN animation)", "Drag points"], names  # the preview is gone
    # Undo: Krita's scripting API has no undo macro, so the conversion, the group and the preview are steps of
    # their own; at most three undos take the document back to where it was before the drag.
    assert res["layers_done"] == ["Background", "DragGAN preview", "Drag points"]
    assert 1 <= len(res["undo_walk"]) <= 3 and res["undo_walk"][-1] == res["layers_before"], res["undo_walk"]
    assert r.returncode == 0
