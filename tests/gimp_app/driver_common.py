"""What the batch drivers run inside GIMP 3 (drag_driver.py, documents_driver.py) share.

A driver runs as `exec(open(...).read())` in GIMP's python-fu-eval; it puts the config's "helpers" folder (where
the test copies this module and face.py) on sys.path and imports from here GIMP's modules (Gimp, Gegl), the config
named by $DRAGGAN_TEST_CONFIG, the plug-in's PDB procedure, and what every case needs: a layer's pixels, a new
layer, the selection and path strokes, the procedure's config, a description of the layer a run made. It hands its
own `run_case` to `run_cases`, which runs the config's cases and writes the report.
"""

import json
import os
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

CONFIG = json.load(open(os.environ["DRAGGAN_TEST_CONFIG"]))
RGBA = "R'G'B'A u8"
PROC = Gimp.get_pdb().lookup_procedure("python-fu-draggan-drag")


def layer_bytes(layer):
    w, h = layer.get_width(), layer.get_height()
    return bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, RGBA, Gegl.AbyssPolicy.CLAMP))


def new_layer(img, name, w, h, offset, pixels=None, kind=Gimp.ImageType.RGBA_IMAGE):
    """A layer of `img` (not inserted yet) at `offset`, holding `pixels` (RGBA8 rows) when given."""
    layer = Gimp.Layer.new(img, name, w, h, kind, 100.0, Gimp.LayerMode.NORMAL)
    layer.set_offsets(*offset)
    if pixels is not None:
        buf = layer.get_buffer()
        buf.set(Gegl.Rectangle.new(0, 0, w, h), RGBA, pixels)
        buf.flush()
    return layer


def select_and_draw(img, case):
    """The case's selection (x, y, w, h in image coordinates), if any, and its strokes as the path "drags"."""
    if case.get("selection"):
        img.select_rectangle(Gimp.ChannelOps.REPLACE, *case["selection"])
    path = Gimp.Path.new(img, "drags")
    img.insert_path(path, None, 0)
    for stroke in case.get("strokes", []):
        sid = path.bezier_stroke_new_moveto(*stroke[0])
        for point in stroke[1:]:
            path.bezier_stroke_lineto(sid, *point)


def run_config(img, drawable, case, mode=Gimp.RunMode.NONINTERACTIVE):
    """The plug-in procedure's config for a run on `drawable` with the case's arguments; writes the case's marker
    file (which tells the test process the run has begun, so it may kill something) as the last thing."""
    cfg = PROC.create_config()
    cfg.set_property("run-mode", mode)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [drawable])
    for key, value in case.get("args", {}).items():
        cfg.set_property(key, value)
    if case.get("marker"):
        open(case["marker"], "w").write(str(time.time()))
    return cfg


def layer_info(img, layer):
    """Name, size, offset and stack position of a layer (the one a run made)."""
    return {
        "name": layer.get_name(),
        "size": [layer.get_width(), layer.get_height()],
        "offset": list(layer.get_offsets()[1:]),
        "position": img.get_item_position(layer),
    }


def run_cases(run_case):
    """`run_case(name, case)` for each case of the config, the report rewritten after each (a case that raises is
    recorded for the test to show; the remaining cases still run); then the line the test process looks for."""
    report = {"procedure_found": PROC is not None, "cases": {}}
    for name, case in CONFIG["cases"].items():
        try:
            report["cases"][name] = run_case(name, case)
        except Exception as exc:
            report["cases"][name] = {"status": "driver-exception", "error": f"{type(exc).__name__}: {exc}"}
        json.dump(report, open(CONFIG["report"], "w"), indent=1)
    print("DRAGGAN-DRIVER-DONE", flush=True)
