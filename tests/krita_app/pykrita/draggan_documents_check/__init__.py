"""A test-only Krita plugin: drives the DragGAN docker in the real Krita (GUI under Xvfb) the way a person would,
on documents like artists' own, and writes what it saw as JSON. Started by tests/test_krita_documents.py with
DRAGGAN_DOCS_CHECK (the JSON to write) and DRAGGAN_DOCS_WORK (a folder for files) set; does nothing otherwise.

One run checks issue 11's Krita bugs:
1. a 300-dpi document: the lines drawn with the line tool are the pairs listed and sent, before and after Drag,
   and stay where Krita draws them;
2. a drag the daemon refuses at once returns the docker to idle (message, buttons, no preview layer);
3. a hidden layer is never the source (a hidden active layer, a group, a document opened on a hidden top layer);
4. after Drag and Apply, undo takes the result away and then walks back through what the person did;
5. a status stays with its document; the daemon's state reads on Krita's (dark) theme.
"""

from __future__ import annotations

import json
import os
import re
import time
import traceback
from collections.abc import Iterator
from typing import Any

from krita import Extension, Krita

RESULT = os.environ.get("DRAGGAN_DOCS_CHECK")
W, H, DPI = 160, 120, 300.0
# Two strokes with the line tool, as fractions of the canvas widget (press -> release), near the image's middle.
STROKES = [((0.42, 0.42), (0.56, 0.47)), ((0.56, 0.60), (0.50, 0.52))]


def log(*args: Any) -> None:
    """One line on Krita's stdout, which may be ASCII only (a C locale): never let a quote mark stop the check."""
    text = " ".join(str(a) for a in ("DRAGGAN-DOCS:", *args))
    try:
        print(text.encode("ascii", "backslashreplace").decode("ascii"), flush=True)
    except Exception:
        pass


def gradient_bgra(w: int, h: int, shift: int = 0) -> bytes:
    out = bytearray()
    for y in range(h):
        for x in range(w):
            out += bytes(((x * 3 + shift) % 256, (y * 5) % 256, (x + y + shift) % 256, 255))
    return bytes(out)


def build_document(k: Any, name: str) -> Any:
    """300 dpi; Background (a picture); a group with a visible "Inner" under a hidden "Covered"; a hidden "Hidden"
    on top."""
    from PyQt5.QtCore import QByteArray

    doc = k.createDocument(W, H, name, "RGBA", "U8", "", DPI)
    root = doc.rootNode()
    root.childNodes()[0].setPixelData(QByteArray(gradient_bgra(W, H)), 0, 0, W, H)
    group = doc.createGroupLayer("Group")
    root.addChildNode(group, None)
    for layer_name, visible in (("Inner", True), ("Covered", False)):
        node = doc.createNode(layer_name, "paintlayer")
        group.addChildNode(node, None)
        node.setPixelData(QByteArray(gradient_bgra(W, H, 40)), 0, 0, W, H)
        node.setVisible(visible)
    hidden = doc.createNode("Hidden", "paintlayer")
    root.addChildNode(hidden, None)
    hidden.setPixelData(QByteArray(gradient_bgra(W, H, 90)), 0, 0, W, H)
    hidden.setVisible(False)
    return doc


def contrast_ratio(a: Any, b: Any) -> float:
    """WCAG contrast of two QColors (computed here, not taken from the plugin under test)."""

    def lum(c: Any) -> float:
        ch = [v / 255 for v in (c.red(), c.green(), c.blue())]
        ch = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in ch]
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def shown(node: Any) -> bool:
    """Visible on the canvas: the layer and every group above it."""
    while node is not None and node.parentNode() is not None:
        if not node.visible():
            return False
        node = node.parentNode()
    return True


def close(a: list[list[float]], b: list[list[float]], tol: float = 0.01) -> bool:
    return len(a) == len(b) and all(
        len(p) == len(q) and max(abs(x - y) for x, y in zip(p, q, strict=True)) <= tol
        for p, q in zip(a, b, strict=True)
    )


def ink_box(doc: Any, below: Any) -> list[int] | None:
    """The bounding box (x0, y0, x1, y1), in image pixels, of what Krita draws over the opaque layer `below` (the
    top visible one under the points layer): where the document's composite differs from that layer's pixels.
    (A vector layer's own pixelData is empty in Krita 5.1.5.)"""
    doc.refreshProjection()
    doc.waitForDone()
    seen, under = bytes(doc.pixelData(0, 0, W, H)), bytes(below.pixelData(0, 0, W, H))
    xs, ys = [], []
    for i in range(0, len(seen), 4):
        if seen[i : i + 3] != under[i : i + 3]:
            xs.append((i // 4) % W)
            ys.append((i // 4) // W)
    return [min(xs), min(ys), max(xs), max(ys)] if xs else None


class Check:
    def __init__(self, result_path: str) -> None:
        self.result_path = result_path
        self.work = os.environ.get("DRAGGAN_DOCS_WORK") or os.path.dirname(result_path)
        self.out = os.environ.get("DRAGGAN_DOCS_OUT") or self.work
        self.res: dict[str, Any] = {"ok": False, "checks": {}, "details": {}}
        self.t0 = time.monotonic()
        self.started = False
        self.panel: Any = None

    # ------------------------------------------------------------------ sequencing
    def start(self) -> None:
        from PyQt5.QtCore import QTimer

        if self.started:
            return
        self.started = True
        self.steps = self.scenario()
        QTimer.singleShot(800, self.advance)
        limit = float(os.environ.get("DRAGGAN_DOCS_TIMEOUT", "200"))
        QTimer.singleShot(int(limit * 1000), lambda: self.finish(f"the whole check took over {limit:.0f} s"))

    def advance(self) -> None:
        """Run the scenario to its next `yield`: a number of milliseconds to wait, or (condition, what, seconds)."""
        from PyQt5.QtCore import QTimer

        try:
            cmd = next(self.steps)
        except StopIteration:
            self.finish(None)
            return
        except Exception:
            self.finish(traceback.format_exc())
            return
        if isinstance(cmd, (int, float)):
            QTimer.singleShot(int(cmd), self.advance)
            return
        cond, what, limit = cmd
        deadline = time.monotonic() + limit

        def poll() -> None:
            try:
                if cond():
                    self.advance()
                elif time.monotonic() > deadline:
                    self.finish(f"timed out waiting for {what}; the docker says: {self.docker_text()}")
                else:
                    QTimer.singleShot(50, poll)
            except Exception:
                self.finish(traceback.format_exc())

        QTimer.singleShot(50, poll)

    def check(self, name: str, value: bool, detail: Any = None) -> None:
        self.res["checks"][name] = bool(value)
        if detail is not None:
            self.res["details"][name] = detail
        log("check", name, bool(value), "" if detail is None else detail)

    def docker_text(self) -> str:
        p = self.panel
        if p is None:
            return "(no docker)"
        labels = (p.daemon_label, p.source_label, p.status_label, p.error_label)
        return " | ".join(w.text() for w in labels if w.text())

    # ------------------------------------------------------------------ a person's hands
    def canvas(self) -> Any:
        from PyQt5.QtWidgets import QWidget

        win = Krita.instance().activeWindow().qwindow()
        for w in win.findChildren(QWidget):
            if w.metaObject().className() in ("KisOpenGLCanvas2", "KisQPainterCanvas") and w.isVisible():
                return w
        raise RuntimeError("no canvas widget")

    def stroke(self, widget: Any, a: tuple[float, float], b: tuple[float, float]) -> Iterator[Any]:
        """Press at `a`, move to `b` in a few steps, release (fractions of the widget's size)."""
        from PyQt5.QtCore import QEvent, QPointF, Qt
        from PyQt5.QtGui import QMouseEvent
        from PyQt5.QtWidgets import QApplication

        def send(kind: Any, x: float, y: float, button: Any, buttons: Any) -> None:
            p = QPointF(x * widget.width(), y * widget.height())
            ev = QMouseEvent(kind, p, QPointF(widget.mapToGlobal(p.toPoint())), button, buttons, Qt.NoModifier)
            QApplication.sendEvent(widget, ev)

        send(QEvent.MouseMove, *a, Qt.NoButton, Qt.NoButton)
        send(QEvent.MouseButtonPress, *a, Qt.LeftButton, Qt.LeftButton)
        for i in range(1, 9):
            t = i / 8
            yield 25
            send(QEvent.MouseMove, a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, Qt.NoButton, Qt.LeftButton)
        yield 25
        send(QEvent.MouseButtonRelease, *b, Qt.LeftButton, Qt.NoButton)
        yield 150

    def undo(self, name: str = "edit_undo") -> None:
        Krita.instance().action(name).trigger()

    # ------------------------------------------------------------------ what is checked
    def scenario(self) -> Iterator[Any]:
        from draggan_krita import controller as ctl
        from draggan_krita import document as kd
        from draggan_krita.extension import find_docker
        from krita import Selection
        from PyQt5.QtGui import QColor, QPalette
        from PyQt5.QtWidgets import QToolButton

        k = Krita.instance()
        self.res["krita_version"] = k.version()
        saved = os.path.join(self.work, "hidden_on_top.kra")
        other = build_document(k, "saved")
        other.setActiveNode(kd.find_by_name(other, "Hidden"))
        other.setBatchmode(True)
        self.check("saved_a_document", other.saveAs(saved))
        other.close()

        doc = build_document(k, "artist")
        win = k.activeWindow()
        view = win.addView(doc)
        k.setActiveDocument(doc)
        yield 600
        docker = find_docker()
        if docker is None:
            raise RuntimeError("the DragGAN docker is not registered")
        docker.show()
        panel = self.panel = docker.panel
        c = panel.controller
        yield (lambda: panel.link.ready, "the daemon connection", 60)

        def layer(name: str) -> Any:
            return kd.find_by_name(doc, name)

        def names() -> list[str]:
            return [n.name() for n in kd.walk(doc.rootNode())]

        # 5. The daemon's state reads on Krita's own theme (dark by default).
        panel.refresh()
        m = re.search(r"#[0-9a-fA-F]{6}", panel.daemon_label.styleSheet())
        bg = panel.palette().color(QPalette.Window)
        ratio = contrast_ratio(QColor(m.group(0)), bg) if m else 0.0
        self.check("ready_reads_on_the_theme", ratio >= 4.5, [panel.daemon_label.styleSheet(), bg.name(), ratio])

        # 3. Hidden layers are never the source.
        doc.setActiveNode(layer("Hidden"))
        yield 500
        panel.observe()
        text = panel.source_label.text()
        refused = not panel.drag_button.isEnabled() and not panel.fit_button.isEnabled()
        self.check("hidden_active_layer_refused", refused and "“Hidden” is hidden" in text, text)
        doc.setActiveNode(layer("Group"))
        yield 500
        panel.observe()
        src, text = c.source(), panel.source_label.text()
        ok = src is not None and src.name() == "Inner" and "“Group”" in text and panel.drag_button.isEnabled()
        self.check("group_gives_its_visible_paint_layer", ok, text)

        # 1. A 300-dpi document: two lines drawn with the line tool on the points layer.
        doc.setActiveNode(layer("Background"))
        yield 500
        panel.observe()
        self.check("source_background", c.source() is not None and c.source().name() == "Background")
        panel.points_button.click()
        yield 700
        tool = [b for b in win.qwindow().findChildren(QToolButton) if b.objectName() == "KritaShape/KisToolLine"]
        if not tool:
            raise RuntimeError("no line tool button")
        tool[0].click()
        yield 300
        try:
            view.setBrushSize(3.0)  # a thin stroke, so what Krita renders shows where the line is
        except Exception as exc:
            self.res["details"]["brush_size"] = repr(exc)
        canvas = self.canvas()
        for a, b in STROKES:
            yield from self.stroke(canvas, a, b)
        yield 700
        kdoc = c.document()
        points = kdoc.points_layer()
        drawn = [p.as_list() for p in kdoc.pairs()]
        self.res["details"]["drawn"] = drawn
        inside = all(0 <= v[0] <= W and 0 <= v[2] <= W and 0 <= v[1] <= H and 0 <= v[3] <= H for v in drawn)
        self.check("two_lines_drawn_on_the_canvas", len(drawn) == 2 and inside, drawn)
        lines_svg = [s.toSvg() for s in points.shapes()]
        self.res["details"]["line_svg"] = lines_svg

        def where_drawn(name: str) -> None:
            """The pairs say where Krita renders the lines (within half the stroke and antialiasing)."""
            box = ink_box(doc, layer("Inner"))
            pairs = [p.as_list() for p in kdoc.pairs()]
            xs = [v for p in pairs for v in (p[0], p[2])]
            ys = [v for p in pairs for v in (p[1], p[3])]
            width = max(float(kd.geometry.attribute(s, "stroke-width") or 1) for s in lines_svg) * DPI / 72
            tol = width / 2 + 3
            want = [min(xs), min(ys), max(xs), max(ys)]
            ok = box is not None and all(abs(u - v) <= tol for u, v in zip(box, want, strict=True))
            self.check(name, ok, {"rendered": box, "pairs": want, "tolerance": tol})

        where_drawn("pairs_are_where_krita_draws_the_lines")
        panel.observe()
        listed_before = [panel.pairs_list.item(i).text() for i in range(panel.pairs_list.count())]
        self.res["details"]["listed_before"] = listed_before
        self.check("pairs_listed", len(listed_before) == 2)

        panel.steps_spin.setValue(5)
        panel.preview_spin.setValue(1)
        sent: list[tuple[str, dict]] = []
        original_send = panel.link.send

        def send(msg_type: str, content: dict | None = None, buffers: Any = ()) -> str:
            sent.append((msg_type, dict(content or {})))
            return original_send(msg_type, content, buffers)

        panel.link.send = send
        panel.drag_button.click()
        yield (lambda: c.phase == ctl.DONE or (c.phase == ctl.IDLE and bool(c.error)), "the drag", 120)
        self.check("drag_done", c.phase == ctl.DONE and not c.error, c.error or c.status)
        drags = [content.get("points") for kind, content in sent if kind == "drag"]
        self.check("drag_sent_the_drawn_pairs", len(drags) == 1 and close(drags[0], drawn), drags)
        panel.observe()
        after = [p.as_list() for p in kdoc.pairs()]
        listed = [panel.pairs_list.item(i).text() for i in range(panel.pairs_list.count())]
        same = close(after, drawn) and listed == listed_before and [s.toSvg() for s in points.shapes()] == lines_svg
        self.check("pairs_unchanged_by_the_drag", same, {"after": after, "listed": listed})
        where_drawn("lines_still_where_they_were_drawn")
        panel.apply_button.click()
        yield (lambda: c.phase == ctl.IDLE, "Apply", 30)
        result = "Background" + kd.RESULT_SUFFIX
        self.check("applied", result in names() and kd.PREVIEW_LAYER not in names() and not c.error, names())

        # 4. Undo: the result, then the person's own steps (the second line, the first), nothing in between.
        self.undo()
        yield 900
        pairs = [p.as_list() for p in kdoc.pairs()]
        ok = result not in names() and kd.PREVIEW_LAYER not in names() and close(pairs, drawn)
        self.check("undo_1_takes_the_result_away", ok, {"layers": names(), "pairs": pairs})
        self.undo()
        yield 700
        pairs = [p.as_list() for p in kdoc.pairs()]
        ok = close(pairs, drawn[:1]) and result not in names() and kd.PREVIEW_LAYER not in names()
        self.check("undo_2_is_the_second_line", ok, {"layers": names(), "pairs": pairs})
        self.undo()
        yield 700
        pairs = [p.as_list() for p in kdoc.pairs()]
        self.check("undo_3_is_the_first_line", pairs == [], pairs)
        self.undo("edit_redo")
        yield 400
        self.undo("edit_redo")
        yield 700
        pairs = [p.as_list() for p in kdoc.pairs()]
        self.check("redo_brings_the_lines_back", close(pairs, drawn), pairs)

        # 2. A drag the daemon refuses at once: a selection far from the lines (and from where a 72/dpi mistake
        # would put them), fitted first, then Drag.
        sel = Selection()
        sel.select(124, 84, 30, 30, 255)
        doc.setSelection(sel)
        yield 400
        panel.observe()
        panel.fit_button.click()

        def fitted() -> bool:
            return bool(c.error) or (c.phase == ctl.IDLE and c.session is not None and c.session.inverted)

        yield (fitted, "the fit of the selection", 90)
        self.check("fitted_the_selection", not c.error and c.session is not None, c.error or c.status)
        before = names()
        panel.drag_button.click()
        yield (lambda: bool(c.error) or c.phase == ctl.DONE, "the refusal", 60)
        yield 1000  # whatever was still under way has finished
        err = panel.error_label.text()
        self.res["details"]["refusal"] = {"phase": c.phase, "error": err, "status": panel.status_label.text()}
        self.check("refused_drag_is_idle_with_the_message", c.phase == ctl.IDLE and "outside the edited region" in err)
        usable = panel.drag_button.isEnabled() and panel.fit_button.isEnabled() and panel.reset_button.isEnabled()
        idle_bar = not panel.stop_button.isEnabled() and panel.progress.maximum() > 0
        self.check("refused_drag_buttons_usable", usable and idle_bar and "Dragging" not in panel.status_label.text())
        self.check("refused_drag_left_no_layer", names() == before, names())
        self.screenshot("krita_documents_refused.png")

        # 3 and 5. A document opened on a hidden top layer; the first document's message stays with it.
        opened = k.openDocument(saved)
        win.addView(opened)
        k.setActiveDocument(opened)
        yield 900
        panel.observe()
        src, text = c.source(), panel.source_label.text()
        active = opened.activeNode()
        self.res["details"]["opened"] = {"active": active.name() if active else None, "source_label": text}
        editable = panel.drag_button.isEnabled() and src is not None and shown(src)
        refused = not panel.drag_button.isEnabled() and "hidden" in text
        self.check("opened_document_never_edits_a_hidden_layer", editable or refused)
        shown_here = (panel.status_label.text(), panel.error_label.text() if panel.error_label.isVisible() else "")
        self.check("status_stays_with_its_document", shown_here == ("", ""), shown_here)
        view.setVisible()  # back to the first document's view
        yield 900
        panel.observe()
        self.check("status_back_with_its_document", "outside the edited region" in panel.error_label.text())

    # ------------------------------------------------------------------ the end
    def screenshot(self, name: str) -> None:
        try:
            os.makedirs(self.out, exist_ok=True)
            path = os.path.join(self.out, name)
            if Krita.instance().activeWindow().qwindow().grab().save(path):
                self.res.setdefault("screenshots", []).append(path)
        except Exception:
            pass

    def finish(self, error: str | None) -> None:
        if self.res.get("finished"):
            return
        self.res["finished"] = True
        if error:
            self.res["error"] = error
            log("error", error)
            self.screenshot("krita_documents_failure.png")
        self.res["seconds"] = round(time.monotonic() - self.t0, 2)
        self.res["ok"] = not error and bool(self.res["checks"]) and all(self.res["checks"].values())
        with open(self.result_path, "w", encoding="utf-8") as fh:
            json.dump(self.res, fh, indent=1, default=str)
        log("result", json.dumps(self.res, default=str))
        os._exit(0 if self.res["ok"] else 1)


class DocumentsCheck(Extension):
    def __init__(self, parent: Any) -> None:
        super().__init__(parent)
        self.check: Check | None = None

    def setup(self) -> None:
        if RESULT:
            self.check = Check(RESULT)
            Krita.instance().notifier().setActive(True)
            Krita.instance().notifier().windowCreated.connect(self.check.start)

    def createActions(self, window: Any) -> None:
        pass


Krita.instance().addExtension(DocumentsCheck(Krita.instance()))
