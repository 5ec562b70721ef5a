"""Batch driver run inside GIMP 3 (python-fu-eval) by tests/test_gimp_app.py.

It builds images, calls the plug-in's PDB procedure `python-fu-draggan-drag` non-interactively for each case of
the JSON config named by $DRAGGAN_TEST_CONFIG, and writes what happened (status, error text, timing, layers) to
the config's "report" path, plus PNG exports of the layers for the optical-flow check in the test process.
It runs as `exec(open(...).read())`, so it keeps to plain top-level code and functions; what it shares with
documents_driver.py is in driver_common.py, beside it in the config's "helpers" folder.
"""

import json
import os
import sys
import time

sys.path.insert(0, json.load(open(os.environ["DRAGGAN_TEST_CONFIG"]))["helpers"])
from driver_common import PROC, Gimp, layer_bytes, layer_info, new_layer, run_cases, run_config, select_and_draw  # noqa: E402
from face import face_rgba  # noqa: E402
from gi.repository import Gio  # noqa: E402


def export_png(layer, path):
    """The layer alone as a PNG (a throw-away image holding a copy of it)."""
    w, h = layer.get_width(), layer.get_height()
    img = Gimp.Image.new(w, h, Gimp.ImageBaseType.RGB)
    img.insert_layer(new_layer(img, "copy", w, h, (0, 0), layer_bytes(layer)), None, 0)
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(path), None)
    img.delete()


def make_image(case):
    """An image per the case: base type, a face layer at an offset, optional selection and path strokes."""
    base = Gimp.ImageBaseType.GRAY if case.get("gray") else Gimp.ImageBaseType.RGB
    img = Gimp.Image.new(case["image_w"], case["image_h"], base)
    w, h = case["layer_w"], case["layer_h"]
    kind = Gimp.ImageType.GRAYA_IMAGE if case.get("gray") else Gimp.ImageType.RGBA_IMAGE
    layer = new_layer(img, "Face", w, h, case["offset"], face_rgba(w, h), kind)
    img.insert_layer(layer, None, 0)
    select_and_draw(img, case)
    return img, layer


def run_case(name, case):
    img, layer = make_image(case)
    before = layer_bytes(layer)
    layers_before = len(img.get_layers())
    cfg = run_config(img, layer, case)
    t0 = time.monotonic()
    result = PROC.run(cfg)
    seconds = time.monotonic() - t0
    status = result.index(0)
    out = {"status": status.value_nick, "seconds": round(seconds, 2)}
    if status != Gimp.PDBStatusType.SUCCESS:
        out["error"] = str(result.index(1)) if result.length() > 1 else ""
    else:
        new = result.index(1)
        out["steps"] = int(result.index(2))
        out["reached"] = bool(result.index(3))
        out["outcome"] = str(result.index(4))
        out["new_layer"] = layer_info(img, new)
        out["source_position"] = img.get_item_position(layer)
        if case.get("export"):
            export_png(layer, case["export"] + "-source.png")
            export_png(new, case["export"] + "-result.png")
    out["layers_before"] = layers_before
    out["layers_after"] = [lay.get_name() for lay in img.get_layers()]
    out["source_unchanged"] = layer_bytes(layer) == before
    img.delete()
    return out


run_cases(run_case)
