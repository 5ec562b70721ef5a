"""Batch driver run inside GIMP 3 (python-fu-eval) by tests/test_gimp_frames.py (issue 13, frames).

Each case builds the face layer in a freshly opened document (no undo history, clean), calls the plug-in's PDB
procedure with its `frames` arguments, and reports what GIMP then holds: the document's layers and whether it is
dirty (the result layer's one undo step), and the frames image the procedure returned: its top-level layers in
the order GIMP's animation playback takes them (bottom first: it reverses gimp_image_list_layers), their names,
sizes, whether any is a group, and each frame's pixels' digest; then File > Export As GIF (as an animation) is
run on that image non-interactively and the file's path reported, for the test to read back.
"""

import hashlib
import json
import os
import sys
import time

sys.path.insert(0, json.load(open(os.environ["DRAGGAN_TEST_CONFIG"]))["helpers"])
from driver_common import CONFIG, PROC, Gimp, layer_bytes, new_layer, run_cases, run_config, select_and_draw  # noqa: E402
from face import face_rgba  # noqa: E402
from gi.repository import Gio  # noqa: E402


def make_image(case):
    img = Gimp.Image.new(case["image_w"], case["image_h"], Gimp.ImageBaseType.RGB)
    w, h = case["layer_w"], case["layer_h"]
    face = new_layer(img, "Face", w, h, case["offset"], face_rgba(w, h))
    img.insert_layer(face, None, 0)
    select_and_draw(img, case)
    img.set_selected_layers([face])
    img.undo_disable()  # as a freshly opened file: no undo history, nothing changed
    img.undo_enable()
    img.clean_all()
    return img, face


def export_gif(image, path):
    proc = Gimp.get_pdb().lookup_procedure("file-gif-export")
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", image)
    cfg.set_property("file", Gio.File.new_for_path(path))
    cfg.set_property("as-animation", True)
    result = proc.run(cfg)
    status = result.index(0)
    return status.value_nick, (str(result.index(1)) if result.length() > 1 and status.value_nick != "success" else "")


def run_case(name, case):
    img, face = make_image(case)
    before = layer_bytes(face)
    cfg = run_config(img, face, case)
    t0 = time.monotonic()
    result = PROC.run(cfg)
    out = {"seconds": round(time.monotonic() - t0, 2)}
    status = result.index(0)
    out["status"] = status.value_nick
    if status != Gimp.PDBStatusType.SUCCESS:
        out["error"] = str(result.index(1)) if result.length() > 1 else ""
        return out
    out["layers_after"] = [layer.get_name() for layer in img.get_layers()]
    out["dirty_after"] = bool(img.is_dirty())
    out["source_unchanged"] = layer_bytes(face) == before
    out["result_digest"] = hashlib.sha256(layer_bytes(result.index(1))).hexdigest()
    frames_image = result.index(5)
    if frames_image is None:
        out["frames_image"] = None
        return out
    played = list(reversed(frames_image.get_layers()))  # as the playback plug-in takes them: bottom first
    out["frames_image"] = {
        "size": [frames_image.get_width(), frames_image.get_height()],
        "dirty": bool(frames_image.is_dirty()),
        "frames": [
            {
                "name": layer.get_name(),
                "group": bool(layer.is_group()),
                "size": [layer.get_width(), layer.get_height()],
                "offset": list(layer.get_offsets()[1:]),
                "digest": hashlib.sha256(layer_bytes(layer)).hexdigest(),
            }
            for layer in played
        ],
    }
    gif = f"{CONFIG['helpers']}/{name}.gif"
    out["gif_export"] = export_gif(frames_image, gif)
    out["gif"] = gif
    frames_image.delete()
    img.delete()
    return out


run_cases(run_case)
