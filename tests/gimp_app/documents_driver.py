"""Batch driver run inside GIMP 3 (python-fu-eval) by tests/test_gimp_documents.py.

Documents like artists' own: the face layer at an offset, optionally inside a layer group, a selection, the path,
left-overs of an earlier cancelled run. Each case is built as a freshly opened file (undo history cleared, image
clean), the plug-in's PDB procedure `python-fu-draggan-drag` is called (non-interactively, or interactively with
the dialog answering itself under Xvfb), and what GIMP then holds is written to the config's "report" path:
status, error, timing, the layer tree, the selected layers, whether the image is dirty (an undo step, even an
empty group, marks it so) and whether its undo is still enabled (not left frozen).
It runs as `exec(open(...).read())`, so it keeps to plain top-level code and functions.
"""

import json
import os
import sys
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

CONFIG = json.load(open(os.environ["DRAGGAN_TEST_CONFIG"]))
sys.path.insert(0, CONFIG["helpers"])
from face import face_rgba  # noqa: E402

RGBA = "R'G'B'A u8"
PROC = Gimp.get_pdb().lookup_procedure("python-fu-draggan-drag")
report = {"procedure_found": PROC is not None, "cases": {}}


def layer_bytes(layer):
    w, h = layer.get_width(), layer.get_height()
    return bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, RGBA, Gegl.AbyssPolicy.CLAMP))


def new_layer(img, name, w, h, offset, pixels=None):
    layer = Gimp.Layer.new(img, name, w, h, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    layer.set_offsets(*offset)
    if pixels is not None:
        buf = layer.get_buffer()
        buf.set(Gegl.Rectangle.new(0, 0, w, h), RGBA, pixels)
        buf.flush()
    return layer


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
    if case.get("selection"):
        img.select_rectangle(Gimp.ChannelOps.REPLACE, *case["selection"])
    path = Gimp.Path.new(img, "drags")
    img.insert_path(path, None, 0)
    for stroke in case.get("strokes", []):
        sid = path.bezier_stroke_new_moveto(*stroke[0])
        for point in stroke[1:]:
            path.bezier_stroke_lineto(sid, *point)
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
    cfg = PROC.create_config()
    interactive = case.get("dialog")
    mode = Gimp.RunMode.INTERACTIVE if interactive else Gimp.RunMode.NONINTERACTIVE
    cfg.set_property("run-mode", mode)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [source])
    for key, value in case.get("args", {}).items():
        cfg.set_property(key, value)
    if interactive:  # read by the plug-in's dialog (DRAGGAN_GIMP_DIALOG_PROBE), which then answers itself
        json.dump(interactive, open(CONFIG["dialog_control"], "w"))
    if case.get("marker"):  # tells the test process this run has begun (it may then kill something)
        open(case["marker"], "w").write(str(time.time()))
    t0 = time.monotonic()
    result = PROC.run(cfg)
    out = {"seconds": round(time.monotonic() - t0, 2), "returned_at": time.time()}
    status = result.index(0)
    out["status"] = status.value_nick
    if status == Gimp.PDBStatusType.SUCCESS:
        layer = result.index(1)
        parent = layer.get_parent()
        out["new_layer"] = {
            "name": layer.get_name(),
            "size": [layer.get_width(), layer.get_height()],
            "offset": list(layer.get_offsets()[1:]),
            "position": img.get_item_position(layer),
            "parent": parent.get_name() if parent else None,
        }
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


for name, case in CONFIG["cases"].items():
    try:
        report["cases"][name] = run_case(name, case)
    except Exception as exc:  # recorded for the test to show; the remaining cases still run
        report["cases"][name] = {"status": "driver-exception", "error": f"{type(exc).__name__}: {exc}"}
    json.dump(report, open(CONFIG["report"], "w"), indent=1)
print("DRAGGAN-DRIVER-DONE", flush=True)
