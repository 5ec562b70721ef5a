"""A test-only Krita plugin: a daemon that stops answering mid-drag is reported by the real docker within seconds.

Started by tests/test_krita_lost.py with DRAGGAN_LOST_CHECK (the JSON to write) and DRAGGAN_LOST_WORK (a folder
shared with the test) set; does nothing otherwise. It opens a document, adds one line to the points layer, presses
Drag (thousands of steps), and once the docker says the drag runs writes WORK/dragging; the test then freezes the
daemon (SIGSTOP: its connection stays open, so only missed heartbeats can tell) and writes WORK/frozen. The plugin
writes when the docker went back to idle (wall clock, shared with the test), its error text and its buttons.
"""

from __future__ import annotations

import os
import time

from draggan_check_runner import ScenarioCheck, register
from krita import Krita

RESULT = os.environ.get("DRAGGAN_LOST_CHECK")
WORK = os.environ.get("DRAGGAN_LOST_WORK", "")
SIDE = 64


class Check(ScenarioCheck):
    error_key = "error_in_check"  # "error" is the docker's error text

    def scenario(self):
        from draggan_krita import controller as ctl
        from draggan_krita.document import KritaDocument
        from draggan_krita.extension import find_docker
        from draggan_krita.geometry import Pair
        from PyQt5.QtCore import QByteArray

        k = Krita.instance()
        self.res["krita_version"] = k.version()
        doc = k.createDocument(SIDE, SIDE, "lost", "RGBA", "U8", "", 72.0)
        pixels = bytearray()
        for y in range(SIDE):
            for x in range(SIDE):
                pixels += bytes(((x * 4) % 256, (y * 4) % 256, 128, 255))
        doc.rootNode().childNodes()[0].setPixelData(QByteArray(bytes(pixels)), 0, 0, SIDE, SIDE)
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
        KritaDocument(doc).add_arrows([Pair(20, 30, 44, 30)])
        doc.setActiveNode(doc.rootNode().childNodes()[0])
        yield 900
        panel.steps_spin.setValue(5000)
        panel.observe()
        panel.drag_button.click()
        end = time.monotonic() + 90
        while c.phase not in (ctl.FITTING, ctl.DRAGGING):
            if time.monotonic() > end or (c.phase == ctl.IDLE and c.error):
                raise RuntimeError("the drag did not start: " + (c.error or c.status))
            yield 50
        self.res["running_phase"] = c.phase
        with open(os.path.join(WORK, "dragging"), "w") as fh:
            fh.write(str(time.time()))
        end = time.monotonic() + 60
        while not os.path.exists(os.path.join(WORK, "frozen")):
            if time.monotonic() > end:
                raise RuntimeError("the test never froze the daemon")
            yield 20
        end = time.monotonic() + 30
        while c.phase != ctl.IDLE:
            if time.monotonic() > end:
                raise RuntimeError("the docker still says: " + c.status)
            yield 20
        self.res["idle_at"] = time.time()
        self.res["error"] = panel.error_label.text()
        self.res["status"] = panel.status_label.text()
        self.res["daemon_label"] = panel.daemon_label.text()
        self.res["buttons_usable"] = not panel.stop_button.isEnabled() and panel.progress.maximum() > 0
        self.res["layers"] = [n.name() for n in doc.rootNode().childNodes()]
        yield 100


register(lambda: Check(RESULT, 240), RESULT)
