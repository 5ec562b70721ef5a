"""Batch driver run inside GIMP 3 (python-fu-eval) by tests/test_gimp_documents.py.

Documents like artists' own: the face layer at an offset, optionally inside a layer group, a selection, the path,
left-overs of an earlier cancelled run. Each case is built as a freshly opened file (undo history cleared, image
clean), the plug-in's PDB procedure `python-fu-draggan-drag` is called (non-interactively, or interactively with
the dialog answering itself under Xvfb), and what GIMP then holds is written to the config's "report" path:
status, error, timing, the layer tree, the selected layers, whether the image is dirty (an undo step, even an
empty group, marks it so) and whether its undo is still enabled (not left frozen).
Run as `exec(open(...).read())`, it is plain top-level code and functions, and takes the set-up and the steps it
has in common with drag_driver.py from driver_common.py (copied with it into the config's "helpers" folder).
"""

import json
import os
import sys
import time

sys.path.insert(0, json.load(open(os.environ["DRAGGAN_TEST_CONFIG"]))["helpers"])
from driver_common import CONFIG, PROC, Gimp, layer_bytes, layer_info, new_layer, run_cases, run_config, select_and_draw  # noqa: E402
from face import face_rgba  # noqa: E402


def make_image(case):
    """The case's document; returns (image, the drawable to drag, the face layer)."""
    img = Gimp.Image.new(case["image_w"], case["image_h"], Gimp.ImageBaseType.RGB)
    w, h = case["layer_w"], case["layer_h"]
    face = new_layer(img, "Face", w, h, case["offset"], face_rgba(w, h))
    source = face
    if case.get("group"):
        group = Gimp.GroupLayer.new(img, case["group"])
        img.insert_layer(group, None, 0)
        img.insert_layer(face, group, 0)
        source = group
    else:
        img.insert_layer(face, None, 0)
    for name in case.get("stale_layers", []):  # what an earlier, cancelled run left behind
        img.insert_layer(new_layer(img, name, 8, 8, (0, 0)), None, 0)
    select_and_draw(img, case)
    img.set_selected_layers([source])
    img.undo_disable()  # as a freshly opened file: no undo history, nothing changed
    img.undo_enable()
    img.clean_all()
    return img, source, face


def tree(layers, prefix=""):
    out = []
    for layer in layers:
        out.append(prefix + layer.get_name())
        if layer.is_group():
            out += tree(layer.get_children(), prefix + layer.get_name() + "/")
    return out


def run_case(name, case):
    img, source, face = make_image(case)
    before = layer_bytes(face)
    interactive = case.get("dialog")
    if interactive:  # read by the plug-in's dialog (DRAGGAN_GIMP_DIALOG_PROBE), which then answers itself
        json.dump(interactive, open(CONFIG["dialog_control"], "w"))
    mode = Gimp.RunMode.INTERACTIVE if interactive else Gimp.RunMode.NONINTERACTIVE
    cfg = run_config(img, source, case, mode)
    t0 = time.monotonic()
    result = PROC.run(cfg)
    out = {"seconds": round(time.monotonic() - t0, 2), "returned_at": time.time()}
    status = result.index(0)
    out["status"] = status.value_nick
    if status == Gimp.PDBStatusType.SUCCESS:
        layer = result.index(1)
        parent = layer.get_parent()
        out["new_layer"] = {**layer_info(img, layer), "parent": parent.get_name() if parent else None}
        out["source_position"] = img.get_item_position(source)
        out["outcome"] = str(result.index(4))
    elif result.length() > 1:
        out["error"] = str(result.index(1))
    out["layers_after"] = tree(img.get_layers())
    out["selected_after"] = [layer.get_name() for layer in img.get_selected_layers()]
    out["dirty_after"] = bool(img.is_dirty())
    out["undo_enabled_after"] = bool(img.undo_is_enabled())
    out["source_unchanged"] = layer_bytes(face) == before
    img.delete()
    return out


run_cases(run_case)
