"""A test-only Krita plugin: what the DragGAN plugin relies on in Krita's scripting API, measured in the running Krita
(GUI under Xvfb), so that a Krita version that behaves otherwise is seen. Started by tests/test_krita_versions.py with
DRAGGAN_VERSIONS_CHECK (the JSON to write) and DRAGGAN_VERSIONS_WORK (a folder for files); does nothing otherwise.

It records raw facts (in "facts": the SVG Krita reports, when setActiveNode takes effect, what one undo takes away)
and checks the plugin's own code on them (in "checks"): the test asserts the checks on every Krita and compares the
facts with what is known of each version.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

from draggan_check_runner import ScenarioCheck, register
from krita import Krita

RESULT = os.environ.get("DRAGGAN_VERSIONS_CHECK")
W, H = 200, 160


def log(*args: Any) -> None:
    text = " ".join(str(a) for a in ("DRAGGAN-VERSIONS:", *args))
    try:
        print(text.encode("ascii", "backslashreplace").decode("ascii"), flush=True)
    except Exception:
        pass


def near(a: list[list[float]], b: list[list[float]], tol: float = 0.05) -> bool:
    return len(a) == len(b) and all(
        len(p) == len(q) and max(abs(x - y) for x, y in zip(p, q, strict=True)) <= tol
        for p, q in zip(a, b, strict=True)
    )


class Check(ScenarioCheck):
    def __init__(self, result_path: str) -> None:
        super().__init__(result_path, float(os.environ.get("DRAGGAN_VERSIONS_TIMEOUT", "120")))
        self.work = os.environ.get("DRAGGAN_VERSIONS_WORK") or os.path.dirname(result_path)
        self.res.update(checks={}, facts={})
        self.t0 = time.monotonic()

    def passed(self) -> bool:
        return bool(self.res["checks"]) and all(self.res["checks"].values())

    def check(self, name: str, value: bool, detail: Any = None) -> None:
        self.res["checks"][name] = bool(value)
        if detail is not None:
            self.res.setdefault("details", {})[name] = detail
        log("check", name, bool(value), "" if detail is None else detail)

    def fact(self, name: str, value: Any) -> None:
        self.res["facts"][name] = value
        log("fact", name, value)

    def scenario(self) -> Iterator[int]:
        import sys

        from draggan_krita import document as kd
        from draggan_krita.extension import find_docker
        from draggan_krita.geometry import Pair
        from PyQt5.QtCore import QPointF
        from PyQt5.QtWidgets import QApplication

        k = Krita.instance()
        self.res["krita_version"] = k.version()
        self.res["python"] = sys.version.split()[0]
        win = k.activeWindow()

        # The docker: registered through the factory, found by its object name, with its panel.
        docker = find_docker()
        self.check("docker_found", docker is not None and hasattr(docker, "panel"))
        self.fact("dockers", sorted(d.objectName() for d in k.dockers())[:80])

        for dpi in (72.0, 300.0):
            tag = f"{dpi:.0f}dpi"
            doc = k.createDocument(W, H, f"versions-{tag}", "RGBA", "U8", "", dpi)
            win.addView(doc)
            k.setActiveDocument(doc)
            yield 500
            kdoc = kd.KritaDocument(doc)
            paint = doc.rootNode().childNodes()[0]

            # setActiveNode: when does activeNode() follow? (The plugin never relies on it being at once.) First as
            # the docker's "Points layer" does it: on a layer just made, at once; then on layers that exist.
            points = kdoc.ensure_points_layer()
            doc.setActiveNode(points)
            fresh = doc.activeNode().name() if doc.activeNode() else None
            yield 300
            fresh_later = doc.activeNode().name() if doc.activeNode() else None
            self.fact(f"set_active_node_new_layer_{tag}", {"at_once": fresh, "later": fresh_later})
            doc.setActiveNode(paint)
            yield 500
            doc.setActiveNode(points)
            at_once = doc.activeNode().name() if doc.activeNode() else None
            QApplication.processEvents()
            after_events = doc.activeNode().name() if doc.activeNode() else None
            yield 400
            later = doc.activeNode().name() if doc.activeNode() else None
            self.fact(f"set_active_node_{tag}", {"at_once": at_once, "after_events": after_events, "later": later})
            self.check(f"set_active_node_takes_effect_{tag}", later == kd.POINTS_LAYER, later)
            # The source the plugin picks while the points layer is active: the paint layer the person had.
            source, _ = kdoc.choose_source(kd.node_id(paint))
            self.check(f"source_while_points_active_{tag}", source is not None and source.name() == paint.name())

            # Lines added from SVG (the plugin's add_arrows and its self-test): the pairs read back are the pairs
            # written, in pixels, whatever the resolution (5.1.5 reads addShapesFromSvg's units as pixels).
            pairs = [Pair(40.0, 30.0, 70.0, 42.0), Pair(120.0, 100.0, 110.0, 80.0)]
            kdoc.add_arrows(pairs)
            yield 300
            shapes = points.shapes()
            self.fact(f"added_svg_{tag}", [s.toSvg()[:400] for s in shapes])
            read = [p.as_list() for p in kdoc.pairs()]
            want = [p.as_list() for p in pairs]
            self.check(f"added_lines_read_back_{tag}", near(read, want), {"read": read, "want": want})

            # Moving a shape (as the move tool does): Shape.position is in points; the pair moves by that many
            # points times dpi/72 pixels.
            if shapes:
                first = shapes[0]
                pos = first.position()
                first.setPosition(QPointF(pos.x() + 9.0, pos.y() + 4.5))
                yield 300
                moved = [p.as_list() for p in kdoc.pairs()]
                f = dpi / 72.0
                want_moved = [[v + (9.0 * f if i % 2 == 0 else 4.5 * f) for i, v in enumerate(want[0])], want[1]]
                self.fact(f"moved_svg_{tag}", points.shapes()[0].toSvg()[:400])
                detail = {"read": moved, "want": want_moved}
                self.check(f"moved_line_read_in_pixels_{tag}", near(moved, want_moved), detail)

            # Undo of shape edits: what one Ctrl+Z takes back after adding two lines at once and moving one.
            counts = [len(points.shapes())]
            for _ in range(3):
                k.action("edit_undo").trigger()
                yield 400
                layer = kdoc.points_layer()
                counts.append(len(layer.shapes()) if layer is not None else -1)
            self.fact(f"shapes_after_each_undo_{tag}", counts)
            for _ in range(3):
                k.action("edit_redo").trigger()
                yield 300
            back = [p.as_list() for p in kdoc.pairs()]
            self.fact(f"pairs_after_redo_{tag}", back)

            # Clear: the points layer goes in one step; one undo brings every line back.
            before = [p.as_list() for p in kdoc.pairs()]
            gone = kdoc.clear_points()
            yield 300
            cleared = kdoc.points_layer() is None and kdoc.pairs() == []
            k.action("edit_undo").trigger()
            yield 500
            restored = [p.as_list() for p in kdoc.pairs()]
            self.check(
                f"clear_is_one_undo_step_{tag}",
                gone == len(before) and cleared and near(restored, before),
                {"removed": gone, "before": before, "restored": restored},
            )

            # The document's identity survives saving under a name (the plugin's per-document state hangs on it).
            key = kd.doc_key(doc)
            doc.setBatchmode(True)
            saved = doc.saveAs(os.path.join(self.work, f"versions-{tag}.kra"))
            doc.setBatchmode(False)
            yield 300
            self.check(f"doc_key_survives_save_as_{tag}", saved and kd.doc_key(doc) == key)
            yield 300

    def finish(self, error: str | None) -> None:
        if self.res.get("finished"):
            return
        if error:
            log("error", error)
        self.res["seconds"] = round(time.monotonic() - self.t0, 2)
        log("result", json.dumps({**self.res, "error": error}, default=str))
        super().finish(error)


register(lambda: Check(RESULT), RESULT)
