"""A test-only Krita plugin: "Keep frames", Drag, "Apply as animation" in the real docker, then what Krita holds.

Started by tests/test_krita_frames.py with DRAGGAN_FRAMES_CHECK (the JSON to write) set; does nothing otherwise.
It opens a 64-px document, adds one line to the points layer, ticks Keep frames, drags a few steps, notes the
preview layer's pixels (the result), presses Apply as animation, and reports: the new layer's type and whether it
is animated, which times have keyframes, each keyframe's pixels (read with pixelDataAtTime: a time switch would be
an undo step of its own) against the source and the result, the current time and what the layer shows there, the
document's clip range, the open documents and views before and after (the Krita file the frames are read from is
opened without a view and closed) and the active document, Krita's Undo History docker (rows and current row)
before the drag, after it and after Apply, what one undo after another takes away until the animation's name is
gone, and, after as many redos, the layers, keyframes and frames again (this time also through the canvas,
switching to each time).
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from draggan_check_runner import ScenarioCheck, register
from krita import Krita

RESULT = os.environ.get("DRAGGAN_FRAMES_CHECK")
SIDE = 64
OVER = 8  # how far the source layer reaches past the canvas on each side


def digest(data: Any) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()[:16]


class Check(ScenarioCheck):
    error_key = "error_in_check"

    def scenario(self):
        from draggan_krita import controller as ctl
        from draggan_krita.document import KritaDocument, doc_key, find_by_name
        from draggan_krita.extension import find_docker
        from draggan_krita.geometry import Pair
        from PyQt5.QtCore import QByteArray

        k = Krita.instance()
        r = self.res
        r["krita_version"] = k.version()
        # A 300-dpi document whose layer reaches past the canvas (pixels the frames must keep too), with an opacity
        # and a blending mode of its own (the animated layer takes them).
        doc = k.createDocument(SIDE, SIDE, "frames", "RGBA", "U8", "", 300.0)
        pixels = bytearray()
        for y in range(-OVER, SIDE + OVER):
            for x in range(-OVER, SIDE + OVER):
                pixels += bytes(((x * 4) % 256, (y * 4) % 256, (x * y) % 256, 255))
        source = doc.rootNode().childNodes()[0]
        source.setPixelData(QByteArray(bytes(pixels)), -OVER, -OVER, SIDE + 2 * OVER, SIDE + 2 * OVER)
        source.setOpacity(200)
        source.setBlendingMode("multiply")
        k.activeWindow().addView(doc)
        k.setActiveDocument(doc)
        yield 600
        docker = find_docker()
        docker.show()
        panel = docker.panel
        c = panel.controller
        end = time.monotonic() + 60
        while not panel.link.ready:
            if time.monotonic() > end:
                raise RuntimeError("no daemon connection: " + panel.daemon_label.text())
            yield 100
        KritaDocument(doc).add_arrows([Pair(20, 30, 30, 34)])
        doc.setActiveNode(source)
        yield 900
        before = digest(source.pixelData(0, 0, SIDE, SIDE))
        r["layers_before"] = [n.name() for n in doc.rootNode().childNodes()]
        r["history_before"] = history_rows(k)
        panel.steps_spin.setValue(6)
        panel.frames_check.setChecked(True)
        panel.observe()
        panel.refresh()
        r["animation_enabled_before"] = panel.animation_button.isEnabled()
        panel.drag_button.click()
        end = time.monotonic() + 120
        while c.phase != ctl.DONE:
            if time.monotonic() > end or (c.phase == ctl.IDLE and c.error):
                raise RuntimeError("the drag did not finish: " + (c.error or c.status))
            yield 100
        yield 300
        panel.refresh()
        r["done_status"] = c.status
        r["kept"] = c.last_done.get("frames")
        r["steps"] = c.last_done.get("steps")
        r["animation_enabled_after_drag"] = panel.animation_button.isEnabled()
        preview = find_by_name(doc, "DragGAN preview", "paintlayer")
        r["result"] = digest(preview.pixelData(0, 0, SIDE, SIDE)) if preview is not None else None
        r["layers_done"] = [n.name() for n in doc.rootNode().childNodes()]
        r["history_done"] = history_rows(k)
        r["docker_names"] = [d.objectName() for d in k.dockers()]
        r["documents_before"] = [d.name() for d in k.documents()]
        r["views_before"] = len(k.activeWindow().views())
        panel.animation_button.click()
        end = time.monotonic() + 60
        while c.phase != ctl.IDLE:
            if time.monotonic() > end:
                raise RuntimeError("Apply as animation did not finish: " + c.status)
            yield 100
        r["status"] = c.status
        r["error"] = c.error
        r["animation"] = dict(c.animation)
        r["layers_after"] = [(n.name(), n.type(), bool(n.animated())) for n in doc.rootNode().childNodes()]
        r["documents_after"] = [d.name() for d in k.documents()]  # the frames' own document is closed
        r["views_after"] = len(k.activeWindow().views())
        active = k.activeDocument()
        r["active_is_the_document"] = active is not None and doc_key(active) == doc_key(doc)
        name = c.animation.get("group", "?")
        made = find_by_name(doc, name)
        total = int((r["kept"] or {}).get("total") or 0)
        r["history_after"] = history_rows(k)
        r["time_after_apply"] = doc.currentTime()
        if made is not None:
            r["made"] = {"name": made.name(), "type": made.type(), "animated": bool(made.animated())}
            r["made_look"] = [made.opacity(), made.blendingMode(), made.colorProfile(), made.visible()]
            r["source_look"] = [source.opacity(), source.blendingMode(), source.colorProfile(), source.visible()]
            r["shown_after_apply"] = digest(made.pixelData(0, 0, SIDE, SIDE))  # what the canvas shows now
            r["keyframes"] = keyframes(made, total)
            r["children"] = [n.name() for n in made.childNodes()]
            # Each keyframe's pixels read without a time switch (one would be an undo step of its own).
            r["frame_digests"] = [digest(made.pixelDataAtTime(0, 0, SIDE, SIDE, t)) for t in range(total)]
            # Past the canvas (a strip above it and one to its right), every frame holds the source's pixels.
            strips = [(-OVER, -OVER, SIDE + 2 * OVER, OVER), (SIDE, 0, OVER, SIDE)]
            r["source_past_canvas"] = [digest(source.pixelData(*box)) for box in strips]
            r["frames_past_canvas"] = [[digest(made.pixelDataAtTime(*box, t)) for box in strips] for t in range(total)]
            r["clip_range"] = [doc.fullClipRangeStartTime(), doc.fullClipRangeEndTime()]
        r["source_digest"] = before
        r["history_after_reading"] = history_rows(k)
        walked = []
        for _ in range(6):  # undo until the animation's name is gone from the document
            if made is None or find_by_name(doc, name) is None:
                break
            k.action("edit_undo").trigger()
            yield 400
            walked.append([n.name() for n in doc.rootNode().childNodes()])
            r.setdefault("undo_walk_types", []).append(getattr(find_by_name(doc, name), "type", lambda: None)())
        r["undo_walk"] = walked
        r["history_after_undo"] = history_rows(k)
        r["layers_undone_types"] = [(n.name(), n.type()) for n in doc.rootNode().childNodes()]
        for _ in walked:  # and redo as many
            k.action("edit_redo").trigger()
            yield 400
        r["layers_redone"] = [(n.name(), n.type(), bool(n.animated())) for n in doc.rootNode().childNodes()]
        again = find_by_name(doc, name)
        if again is not None and again.animated():
            r["redo_time"] = doc.currentTime()
            r["redo_shown"] = digest(again.pixelData(0, 0, SIDE, SIDE))
            r["redo_keyframes"] = keyframes(again, total)
            shown = []
            for t in range(total):  # now through the canvas: each time switched to, the layer's pixels there
                doc.setCurrentTime(t)
                yield 300
                shown.append(digest(again.pixelData(0, 0, SIDE, SIDE)))
            r["redo_frame_digests"] = shown
            r["redo_frames_at_time"] = [digest(again.pixelDataAtTime(0, 0, SIDE, SIDE, t)) for t in range(total)]
        r["source_unchanged"] = digest(source.pixelData(0, 0, SIDE, SIDE)) == before
        yield 100


def keyframes(node: Any, total: int) -> list[int]:
    return [t for t in range(total + 3) if node.hasKeyframeAtTime(t)]


def history_rows(k: Any) -> list[int] | None:
    """Krita's Undo History docker (object name "History", its undo stack): [rows, the current row] (a row per
    step and one for the empty state; undone steps keep their rows until something new is done), or None where it
    cannot be read."""

    from PyQt5.QtWidgets import QAbstractItemView

    for dock in k.dockers():
        if dock.objectName() == "History":
            for view in dock.findChildren(QAbstractItemView):
                if view.model() is not None:
                    return [int(view.model().rowCount()), int(view.currentIndex().row())]
    return None


register(lambda: Check(RESULT, 200), RESULT)
