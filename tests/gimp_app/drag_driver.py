"""Batch driver run inside GIMP 3 (python-fu-eval) by tests/test_gimp_app.py.

It builds images, calls the plug-in's PDB procedure `python-fu-draggan-drag` non-interactively for each case of
the JSON config named by $DRAGGAN_TEST_CONFIG, and writes what happened (status, error text, timing, layers) to
the config's "report" path, plus PNG exports of the layers for the optical-flow check in the test process.
It runs as `exec(open(...).read())`, so it keeps to plain top-level code and functions.
"""

import json
import os
import sys
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

CONFIG = json.load(open(os.environ["DRAGGAN_TEST_CONFIG"]))
sys.path.insert(0, CONFIG["helpers"])
from face import face_rgba  # noqa: E402

RGBA = "R'G'B'A u8"
PROC = Gimp.get_pdb().lookup_procedure("python-fu-draggan-drag")
report = {"procedure_found": PROC is not None, "cases": {}}


def layer_bytes(layer):
    w, h = layer.get_width(), layer.get_height()
    return bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, RGBA, Gegl.AbyssPolicy.CLAMP))


def export_png(layer, path):
    """The layer alone as a PNG (a throw-away image holding a copy of it)."""
    w, h = layer.get_width(), layer.get_height()
    img = Gimp.Image.new(w, h, Gimp.ImageBaseType.RGB)
    copy = Gimp.Layer.new(img, "copy", w, h, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(copy, None, 0)
    buf = copy.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, w, h), RGBA, layer_bytes(layer))
    buf.flush()
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(path), None)
    img.delete()


def make_image(case):
    """An image per the case: base type, a face layer at an offset, optional selection and path strokes."""
    base = Gimp.ImageBaseType.GRAY if case.get("gray") else Gimp.ImageBaseType.RGB
    img = Gimp.Image.new(case["image_w"], case["image_h"], base)
    w, h = case["layer_w"], case["layer_h"]
    kind = Gimp.ImageType.GRAYA_IMAGE if case.get("gray") else Gimp.ImageType.RGBA_IMAGE
    layer = Gimp.Layer.new(img, "Face", w, h, kind, 100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(layer, None, 0)
    layer.set_offsets(*case["offset"])
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, w, h), RGBA, face_rgba(w, h))
    buf.flush()
    if case.get("selection"):
        img.select_rectangle(Gimp.ChannelOps.REPLACE, *case["selection"])
    path = Gimp.Path.new(img, "drags")
    img.insert_path(path, None, 0)
    for stroke in case.get("strokes", []):
        sid = path.bezier_stroke_new_moveto(*stroke[0])
        for point in stroke[1:]:
            path.bezier_stroke_lineto(sid, *point)
    return img, layer


def run_case(name, case):
    img, layer = make_image(case)
    before = layer_bytes(layer)
    layers_before = len(img.get_layers())
    cfg = PROC.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [layer])
    for key, value in case.get("args", {}).items():
        cfg.set_property(key, value)
    if case.get("marker"):  # tells the test process this run has begun (it may then stop the daemon)
        open(case["marker"], "w").write(str(time.time()))
    t0 = time.monotonic()
    result = PROC.run(cfg)
    seconds = time.monotonic() - t0
    status = result.index(0)
    out = {"status": status.value_nick, "seconds": round(seconds, 2)}
    if status != Gimp.PDBStatusType.SUCCESS:
        out["error"] = str(result.index(1)) if result.length() > 1 else ""
    else:
        new_layer = result.index(1)
        out["steps"] = int(result.index(2))
        out["reached"] = bool(result.index(3))
        out["outcome"] = str(result.index(4))
        out["new_layer"] = {
            "name": new_layer.get_name(),
            "size": [new_layer.get_width(), new_layer.get_height()],
            "offset": list(new_layer.get_offsets()[1:]),
            "position": img.get_item_position(new_layer),
        }
        out["source_position"] = img.get_item_position(layer)
        if case.get("export"):
            export_png(layer, case["export"] + "-source.png")
            export_png(new_layer, case["export"] + "-result.png")
    out["layers_before"] = layers_before
    out["layers_after"] = [lay.get_name() for lay in img.get_layers()]
    out["source_unchanged"] = layer_bytes(layer) == before
    img.delete()
    return out


for name, case in CONFIG["cases"].items():
    try:
        report["cases"][name] = run_case(name, case)
    except Exception as exc:  # recorded for the test to show; the remaining cases still run
        report["cases"][name] = {"status": "driver-exception", "error": f"{type(exc).__name__}: {exc}"}
    json.dump(report, open(CONFIG["report"], "w"), indent=1)
print("DRAGGAN-DRIVER-DONE", flush=True)
