"""A test-only Krita plugin: "Keep frames", Drag, "Apply as animation" in the real docker, then what Krita holds.

Started by tests/test_krita_frames.py with DRAGGAN_FRAMES_CHECK (the JSON to write) set; does nothing otherwise.
It opens a 64-px document, adds one line to the points layer, ticks Keep frames, drags a few steps, notes the
preview layer's pixels (the result), presses Apply as animation, and reports: the new layer's type and whether it
is animated, which times have keyframes, each keyframe's pixels (read at that time) against the source and the
result, the document's clip range, and what one undo after another takes away until the document is as before.
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


def digest(data: Any) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()[:16]


class Check(ScenarioCheck):
    error_key = "error_in_check"

    def scenario(self):
        from draggan_krita import controller as ctl
        from draggan_krita.document import KritaDocument, find_by_name
        from draggan_krita.extension import find_docker
        from draggan_krita.geometry import Pair
        from PyQt5.QtCore import QByteArray

        k = Krita.instance()
        r = self.res
        r["krita_version"] = k.version()
        doc = k.createDocument(SIDE, SIDE, "frames", "RGBA", "U8", "", 72.0)
        pixels = bytearray()
        for y in range(SIDE):
            for x in range(SIDE):
                pixels += bytes(((x * 4) % 256, (y * 4) % 256, (x * y) % 256, 255))
        source = doc.rootNode().childNodes()[0]
        source.setPixelData(QByteArray(bytes(pixels)), 0, 0, SIDE, SIDE)
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
        made = find_by_name(doc, c.animation.get("group", "?"))
        total = int((r["kept"] or {}).get("total") or 0)
        if made is not None:
            r["made"] = {"name": made.name(), "type": made.type(), "animated": bool(made.animated())}
            r["keyframes"] = [t for t in range(total + 3) if made.hasKeyframeAtTime(t)]
            r["children"] = [n.name() for n in made.childNodes()]
            shown = []
            for t in range(total if made.animated() else 0):
                doc.setCurrentTime(t)
                yield 300
                shown.append(digest(made.pixelData(0, 0, SIDE, SIDE)))
            r["frame_digests"] = shown
            r["clip_range"] = [doc.fullClipRangeStartTime(), doc.fullClipRangeEndTime()]
        r["source_digest"] = before
        r["source_unchanged"] = digest(source.pixelData(0, 0, SIDE, SIDE)) == before
        undo = k.action("edit_undo")
        walked = []
        for _ in range(6):
            if made is None or find_by_name(doc, r["animation"].get("group", "?")) is None:
                break
            undo.trigger()
            yield 400
            walked.append([n.name() for n in doc.rootNode().childNodes()])
        r["undo_walk"] = walked
        yield 100


register(lambda: Check(RESULT, 200), RESULT)
