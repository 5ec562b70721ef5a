"""An end-to-end self-test inside the real Krita, driven through the docker exactly as a person would use it.

Started by the extension when DRAGGAN_KRITA_SELFTEST names a JSON file to write. It opens
DRAGGAN_KRITA_SELFTEST_IMAGE, draws the lines in DRAGGAN_KRITA_SELFTEST_LINES ("x1,y1,x2,y2;…", pixels) on the
points layer, presses Drag, waits, presses Apply, checks the document, tries Undo/Redo, exports the source and the
result as PNG and a screenshot of the window into DRAGGAN_KRITA_SELFTEST_OUT, writes the JSON and quits Krita
(exit code 0 when its own checks passed). The test that starts Krita measures the drag itself on the PNGs.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from krita import Krita
from PyQt5.QtCore import QTimer
from PyQt5.QtGui import QImage

from . import controller as ctl
from .document import PREVIEW_LAYER, RESULT_SUFFIX, find_by_name, node_id
from .geometry import Pair


def log(*args: Any) -> None:
    print("DRAGGAN-SELFTEST:", *args, flush=True)


def parse_lines(text: str) -> list[Pair]:
    pairs = []
    for chunk in filter(None, (c.strip() for c in text.split(";"))):
        x1, y1, x2, y2 = (float(v) for v in chunk.split(","))
        pairs.append(Pair(x1, y1, x2, y2))
    return pairs


def plain_lines_svg(pairs: list[Pair], units_per_px: float = 1.0) -> str:
    """Plain lines, as the line tool draws them, for addShapesFromSvg (which reads the document's pixels)."""
    u = units_per_px
    paths = "".join(
        f'<path fill="none" stroke="#00a0ff" stroke-width="{2 * u:.3f}" '
        f'd="M{p.hx * u:.3f} {p.hy * u:.3f}L{p.tx * u:.3f} {p.ty * u:.3f}"/>'
        for p in pairs
    )
    return f'<svg xmlns="http://www.w3.org/2000/svg">{paths}</svg>'


def save_bgra_png(data: bytes, w: int, h: int, path: str) -> bool:
    # QImage's ARGB32 is B, G, R, A in memory on little-endian machines: Krita's RGBA/U8 byte order.
    img = QImage(data, w, h, w * 4, QImage.Format_ARGB32)
    return img.copy().save(path)


class SelfTest:
    def __init__(self, result_path: str) -> None:
        self.result_path = result_path
        self.out_dir = os.environ.get("DRAGGAN_KRITA_SELFTEST_OUT") or os.path.dirname(result_path)
        self.image_path = os.environ.get("DRAGGAN_KRITA_SELFTEST_IMAGE", "")
        self.lines = parse_lines(os.environ.get("DRAGGAN_KRITA_SELFTEST_LINES", "16,32,24,32"))
        self.timeout = float(os.environ.get("DRAGGAN_KRITA_SELFTEST_TIMEOUT", "150"))
        self.res: dict[str, Any] = {"ok": False, "checks": {}}
        self.t0 = time.monotonic()
        self.started = False

    # ------------------------------------------------------------------ sequencing helpers
    def start(self) -> None:
        if self.started:
            return
        self.started = True
        QTimer.singleShot(800, self.guard(self.open_document))

    def guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception:
                self.finish(traceback.format_exc())

        return run

    def wait_for(self, cond: Callable[[], bool], then: Callable[[], None], what: str, limit: float = 60.0) -> None:
        deadline = time.monotonic() + limit

        def poll() -> None:
            try:
                if cond():
                    then()
                elif time.monotonic() > deadline or time.monotonic() - self.t0 > self.timeout:
                    self.finish(f"timed out waiting for {what}; docker says: {self.docker_text()}")
                else:
                    QTimer.singleShot(100, poll)
            except Exception:
                self.finish(traceback.format_exc())

        QTimer.singleShot(100, poll)

    def check(self, name: str, value: bool) -> None:
        self.res["checks"][name] = bool(value)
        log("check", name, bool(value))

    def docker_text(self) -> str:
        panel = getattr(self, "panel", None)
        if panel is None:
            return "(no docker)"
        return " | ".join(
            t for t in (panel.daemon_label.text(), panel.status_label.text(), panel.error_label.text()) if t
        )

    # ------------------------------------------------------------------ the steps
    def open_document(self) -> None:
        k = Krita.instance()
        self.res["krita_version"] = k.version()
        self.res["python"] = sys.version.split()[0]
        doc = k.openDocument(self.image_path)
        if doc is None:
            raise RuntimeError(f"Krita could not open {self.image_path}")
        win = k.activeWindow()
        win.addView(doc)
        k.setActiveDocument(doc)
        self.doc = doc
        paint = [n for n in doc.rootNode().childNodes() if n.type() == "paintlayer"]
        self.source = paint[0]
        self.source_id = node_id(self.source)
        self.source_name = self.source.name()
        self.w, self.h = doc.width(), doc.height()
        self.source_before = bytes(self.source.pixelData(0, 0, self.w, self.h))
        doc.setActiveNode(self.source)
        QTimer.singleShot(400, self.guard(self.find_docker))

    def find_docker(self) -> None:
        from .extension import find_docker

        docker = find_docker()
        if docker is None:
            raise RuntimeError("the DragGAN docker is not registered")
        docker.show()
        self.docker = docker
        self.panel = docker.panel
        self.panel.observe()  # remembers the active paint layer as the source
        self.wait_for(lambda: self.panel.link.ready, self.guard(self.draw_points), "the daemon connection", 40)

    def draw_points(self) -> None:
        self.res["daemon"] = self.panel.link.describe()
        kdoc = self.panel.controller.document()
        layer = kdoc.ensure_points_layer()
        layer.addShapesFromSvg(plain_lines_svg(self.lines))
        self.lines_svg = [s.toSvg() for s in layer.shapes()]
        pairs = kdoc.pairs()
        self.res["pairs_read"] = [p.as_list() for p in pairs]
        self.check(
            "lines_read_as_pairs",
            len(pairs) == len(self.lines)
            and all(
                max(abs(a - b) for a, b in zip(p.as_list(), q.as_list(), strict=True)) < 0.05
                for p, q in zip(pairs, self.lines, strict=True)
            ),
        )
        self.doc.setActiveNode(layer)  # as after drawing: the points layer is the active one now
        QTimer.singleShot(400, self.guard(self.press_drag))

    def press_drag(self) -> None:
        self.panel.observe()
        self.check("source_kept_while_points_active", "“" + self.source_name + "”" in self.panel.source_label.text())
        self.t_drag = time.monotonic()
        self.panel.drag_button.click()
        c = self.panel.controller
        self.seen_preview_layer = False
        self.drag_statuses: list[str] = []  # what the docker said while dragging (the measured progress)

        def done() -> bool:
            if find_by_name(self.doc, PREVIEW_LAYER) is not None:
                self.seen_preview_layer = True
            if c.phase == ctl.DRAGGING and c.status not in self.drag_statuses[-1:] and len(self.drag_statuses) < 80:
                self.drag_statuses.append(c.status)
            if c.phase == ctl.IDLE and c.error:
                raise RuntimeError(f"the drag failed: {c.error}")
            return c.phase == ctl.DONE

        self.wait_for(done, self.guard(self.press_apply), "the drag to finish", self.timeout)

    def press_apply(self) -> None:
        c = self.panel.controller
        self.res["drag_seconds"] = round(time.monotonic() - self.t_drag, 2)
        self.res["job_done"] = c.last_done
        self.res["previews_shown"] = c.previews_shown
        self.check("preview_layer_during_drag", self.seen_preview_layer)
        self.check("previews_arrived", c.previews_shown >= 1)
        self.res["status_when_done"] = c.status
        self.res["drag_statuses"] = self.drag_statuses
        self.res["output_setting"] = self.panel.params.output
        self.res["warning_when_done"] = self.panel.warning_label.text()
        self.panel.apply_button.click()
        self.wait_for(lambda: c.phase == ctl.IDLE, self.guard(self.after_apply), "Apply", 30)

    def after_apply(self) -> None:
        c = self.panel.controller
        self.doc.waitForDone()
        if c.error:
            raise RuntimeError(f"Apply failed: {c.error}")
        names = [n.name() for n in self.doc.rootNode().childNodes()]
        self.res["layers"] = names
        result = find_by_name(self.doc, self.source_name + RESULT_SUFFIX, "paintlayer")
        self.check("result_layer_exists", result is not None)
        self.check("preview_layer_gone", find_by_name(self.doc, PREVIEW_LAYER) is None)
        source = [n for n in self.doc.rootNode().childNodes() if node_id(n) == self.source_id][0]
        source_after = bytes(source.pixelData(0, 0, self.w, self.h))
        self.check("source_byte_identical", source_after == self.source_before)
        result_px = bytes(result.pixelData(0, 0, self.w, self.h)) if result is not None else b""
        self.check("result_differs_from_source", bool(result_px) and result_px != self.source_before)
        points = self.panel.controller.document().points_layer()
        self.check("lines_left_as_drawn", [s.toSvg() for s in points.shapes()] == self.lines_svg)
        os.makedirs(self.out_dir, exist_ok=True)
        self.res["source_png"] = os.path.join(self.out_dir, "krita_source.png")
        self.res["result_png"] = os.path.join(self.out_dir, "krita_result.png")
        save_bgra_png(self.source_before, self.w, self.h, self.res["source_png"])
        save_bgra_png(result_px, self.w, self.h, self.res["result_png"])
        self.res["size"] = [self.w, self.h]
        self.res["lines"] = [p.as_list() for p in self.lines]
        self.res["status_after_apply"] = c.status
        self.screenshot("krita_docker.png")
        self.result_px = result_px
        Krita.instance().action("edit_undo").trigger()
        QTimer.singleShot(600, self.guard(self.after_undo))

    def after_undo(self) -> None:
        self.check("undo_removes_result", find_by_name(self.doc, self.source_name + RESULT_SUFFIX) is None)
        Krita.instance().action("edit_redo").trigger()
        QTimer.singleShot(600, self.guard(self.after_redo))

    def after_redo(self) -> None:
        result = find_by_name(self.doc, self.source_name + RESULT_SUFFIX, "paintlayer")
        same = result is not None and bytes(result.pixelData(0, 0, self.w, self.h)) == self.result_px
        self.check("redo_restores_result", same)
        self.finish(None)

    def screenshot(self, name: str) -> None:
        win = Krita.instance().activeWindow()
        path = os.path.join(self.out_dir, name)
        ok = win.qwindow().grab().save(path)
        self.res["screenshot"] = path if ok else None

    # ------------------------------------------------------------------ the end
    def environment_facts(self) -> None:
        import draggan_protocol
        import msgpack

        self.res["zmq_imported"] = "zmq" in sys.modules
        self.res["msgpack_file"] = msgpack.__file__
        self.res["msgpack_pure_python"] = msgpack.Packer.__module__ == "msgpack.fallback"
        self.res["protocol_file"] = draggan_protocol.__file__
        link = getattr(getattr(self, "panel", None), "link", None)
        client = getattr(link, "client", None)
        self.res["transport"] = type(client.transport).__name__ if client is not None else None
        self.res["sys_path"] = list(sys.path)

    def finish(self, error: str | None) -> None:
        try:
            self.environment_facts()
        except Exception:
            self.res["facts_error"] = traceback.format_exc()
        if error:
            self.res["error"] = error
            log("error", error)
            try:
                self.screenshot("krita_docker_failure.png")
            except Exception:
                pass
        self.res["seconds"] = round(time.monotonic() - self.t0, 2)
        self.res["ok"] = not error and all(self.res["checks"].values()) and bool(self.res["checks"])
        with open(self.result_path, "w", encoding="utf-8") as fh:
            json.dump(self.res, fh, indent=1, default=str)
        log("result", json.dumps({k: v for k, v in self.res.items() if k != "sys_path"}, default=str))
        os._exit(0 if self.res["ok"] else 1)
