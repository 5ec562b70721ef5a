"""Run by kritarunner (Krita's scripting API without a GUI): the plugin's document code on real Krita documents,
and a real daemon reached from Krita's own Python through the plugin's vendored client.

    QT_QPA_PLATFORM=offscreen PYTHONPATH=<this folder>:<pykrita folder> kritarunner -s draggan_runner_check \
        -f run <result.json> <connection file> <work dir>

kritarunner's exit code is always 0, so failures end with os._exit(1); the JSON says what was checked.
"""

import json
import os
import sys
import traceback
import zipfile

os.environ["DRAGGAN_KRITA_NO_REGISTER"] = "1"

RESULT = {"ok": False, "checks": {}}


def check(name, value, detail=None):
    RESULT["checks"][name] = bool(value)
    if detail is not None:
        RESULT.setdefault("details", {})[name] = detail
    print("DRAGGAN-RUNNER:", name, bool(value), detail if detail is not None else "", flush=True)


# Lines drawn at 300 dpi, stored the way Krita stores vector layers (points, 72 per inch).
LINES_PX = [(30.0, 40.0, 50.0, 44.0), (60.0, 20.0, 66.0, 30.0)]
PT = 72.0 / 300.0


def content_svg():
    paths = "".join(
        f'<path id="l{i}" fill="none" stroke="#00a0ff" stroke-width="1" '
        f'd="M{x1 * PT:.4f} {y1 * PT:.4f}L{x2 * PT:.4f} {y2 * PT:.4f}"/>'
        for i, (x1, y1, x2, y2) in enumerate(LINES_PX)
    )
    return (
        '<?xml version="1.0" standalone="no"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
        'xmlns:xlink="http://www.w3.org/1999/xlink" width="24pt" height="19.2pt" viewBox="0 0 24 19.2">'
        + paths
        + "</svg>\n"
    )


def run(args):
    try:
        _run(*args[:3])
        RESULT["ok"] = all(RESULT["checks"].values()) and bool(RESULT["checks"])
    except Exception:
        RESULT["error"] = traceback.format_exc()
        print(RESULT["error"], flush=True)
    with open(args[0], "w", encoding="utf-8") as fh:
        json.dump(RESULT, fh, indent=1, default=str)
    os._exit(0 if RESULT["ok"] else 1)


def _run(result_path, connection_file, work):
    import draggan_krita  # first: it puts the plugin's vendored libraries on sys.path
    from draggan_krita import document as kd
    from draggan_krita.geometry import Pair
    from krita import InfoObject, Krita, Selection
    from PyQt5.QtCore import QByteArray

    import msgpack  # isort: skip

    RESULT["plugin"] = draggan_krita.__file__
    RESULT["krita_version"] = Krita.instance().version()
    RESULT["python"] = sys.version.split()[0]

    RESULT["msgpack"] = msgpack.__file__
    RESULT["zmq_imported"] = "zmq" in sys.modules
    k = Krita.instance()
    k.setBatchmode(True)
    W, H = 100, 80

    # 1. A document with a paint layer (known colours) and an empty points layer, saved; then the points are
    #    written into the .kra the way Krita stores them (addShapesFromSvg crashes without a GUI).
    doc = k.createDocument(W, H, "runner", "RGBA", "U8", "", 300.0)
    doc.setBatchmode(True)
    layer = doc.createNode("Paint", "paintlayer")
    doc.rootNode().addChildNode(layer, None)
    rgba = bytearray()
    for y in range(H):
        for x in range(W):
            rgba += bytes(((x * 2) % 256, (y * 3) % 256, ((x + y) * 5) % 256, 255))
    bgra = bytearray(rgba)
    bgra[0::4], bgra[2::4] = rgba[2::4], rgba[0::4]
    layer.setPixelData(QByteArray(bytes(bgra)), 0, 0, W, H)
    points = doc.createVectorLayer(kd.POINTS_LAYER)
    doc.rootNode().addChildNode(points, None)
    doc.waitForDone()
    saved = os.path.join(work, "plain.kra")
    check("saved_kra", doc.saveAs(saved))
    doc.close()
    patched = os.path.join(work, "points.kra")
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(patched, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith(".shapelayer/content.svg"):
                data = content_svg().encode()
            kind = zipfile.ZIP_STORED if item.filename == "mimetype" else zipfile.ZIP_DEFLATED
            zout.writestr(item, data, compress_type=kind)
    doc = k.openDocument(patched)
    doc.setBatchmode(True)
    k.setActiveDocument(doc)
    kdoc = kd.KritaDocument(doc)
    src = kd.find_by_name(doc, "Paint", "paintlayer")

    # 2. Pixels are BGRA: the adapter's bytes, and an exported PNG read back in the test, agree on RGBA.
    cap = kdoc.capture(src)
    check("capture_is_bgra", cap.pixels == bytes(bgra) and cap.rect == (0, 0, W, H))
    # Krita's exporter only tries once to lock the image: right after openDocument the image is usually still
    # busy (its projection is recomputed in the background), and exportImage then fails without waiting.
    # waitForDone() is what the scripting API asks for before saving or exporting.
    doc.waitForDone()
    png = os.path.join(work, "layer.png")
    check("export_png", doc.exportImage(png, InfoObject()) and os.path.isfile(png) and os.path.getsize(png) > 0)
    RESULT["png"] = png
    RESULT["rgba_sample"] = list(rgba[(10 * W + 7) * 4 : (10 * W + 7) * 4 + 4])

    # 3. Vector-layer lines -> pairs, in pixels at 300 dpi.
    pairs = kdoc.pairs()
    ok = len(pairs) == len(LINES_PX) and all(
        max(abs(a - b) for a, b in zip(p.as_list(), q, strict=True)) < 0.01
        for p, q in zip(pairs, LINES_PX, strict=True)
    )
    check("vector_lines_to_pairs", ok, [p.as_list() for p in pairs])

    # 4. Selection -> mask and region.
    sel = Selection()
    sel.select(20, 15, 40, 30, 255)
    doc.setSelection(sel)
    cap = kdoc.capture(src)
    x, y, w, h = cap.rect
    inside = cap.selection[(30 - y) * w + (35 - x)]
    check(
        "selection_mask_and_region",
        cap.region == (20 - x, 15 - y, 40, 30) and cap.selection.count(255) == 40 * 30 and inside == 255,
        [cap.rect, cap.region],
    )
    check("selection_crop_pixels", cap.pixels[:4] == bytes(bgra[(y * W + x) * 4 : (y * W + x) * 4 + 4]))

    # 5. A real daemon, from Krita's Python, through the vendored client and the pure-Python transport.
    from draggan_protocol import Client

    client = Client.connect(connection_file, transport_kind="zmtp", client_name="kritarunner")
    info = client.hello()
    RESULT["daemon"] = {k: info.get(k) for k in ("device", "default_model")}
    RESULT["transport"] = type(client.transport).__name__
    s = client.open_layer_session(
        cap.pixels, w, h, offset=(x, y), format="BGRA8", selection=cap.selection, region=cap.region, name="Paint"
    )
    sid = s["session_id"]
    inv = client.run_job("invert", {"session_id": sid, "params": {"w_steps": 4, "wplus_steps": 4, "pti_steps": 0}})
    check("daemon_invert", inv.get("state") == "done")
    drag_pairs = [Pair(35, 30, 45, 32).shifted(-x, -y).as_list()]
    done = client.drag(sid, drag_pairs, params={"steps": 5}, preview_every=0)
    check("daemon_drag", done.get("state") == "done" and done.get("steps") == 5)
    img = client.get_result(sid, area="changed", format="BGRA8")
    client.close_session(sid)
    client.close()
    before = bytes(src.pixelData(0, 0, W, H))
    preview = kdoc.ensure_preview(src)
    kdoc.write_pixels(preview, img.pixels, img.offset[0], img.offset[1], img.width, img.height)
    result = kdoc.finish_preview("Paint")
    doc.waitForDone()
    back = bytes(result.pixelData(img.offset[0], img.offset[1], img.width, img.height))
    check("result_written_bgra", back == img.pixels, [img.offset, img.width, img.height])
    check("result_layer_named", result.name() == "Paint" + kd.RESULT_SUFFIX)
    check("source_unchanged", bytes(src.pixelData(0, 0, W, H)) == before == bytes(bgra))
    outside = bytes(result.pixelData(0, 0, W, 10))
    check("result_outside_region_is_source", outside == bytes(bgra[: W * 10 * 4]))
    doc.close()
