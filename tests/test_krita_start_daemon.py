"""The docker's "Start the daemon" (issue 11): with no daemon running the button is offered, pressing it starts a
real `draggan serve` detached, and the docker connects through its connection file; a daemon that dies at once is
reported with its log; a daemon that stops answering while it works is reported within five seconds."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
from fake_krita.support import gradient_bgra, use_fake_krita

use_fake_krita()

import krita  # noqa: E402  (the fake)
from draggan_krita import controller as ctl  # noqa: E402
from draggan_krita.docker import DAEMON_COMMAND_KEY, DragPanel  # noqa: E402
from draggan_krita.document import KritaDocument  # noqa: E402
from draggan_krita.geometry import Pair  # noqa: E402
from draggan_krita.link import OFFLINE, READY, DaemonLink  # noqa: E402
from draggan_protocol.outcome import START_DAEMON  # noqa: E402
from PyQt5.QtCore import QByteArray  # noqa: E402

SIDE = 64


class MemoryStore:
    def __init__(self, **values: str) -> None:
        self.values = dict(values)

    def read(self, key: str) -> str | None:
        return self.values.get(key)

    def write(self, key: str, value: str) -> None:
        self.values[key] = value


def script(tmp_path, body: str) -> str:
    """A 'draggan' program for the setting: the launcher runs it with `serve --connection-file FILE`."""
    path = tmp_path / "draggan"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def panel_for(qtbot, tmp_path, store: MemoryStore) -> DragPanel:
    app = krita.Krita.reset()
    doc = app.createDocument(SIDE, SIDE, "t", "RGBA", "U8", "", 72.0)
    app.setActiveDocument(doc)
    doc.rootNode().childNodes()[0].setPixelData(QByteArray(gradient_bgra(SIDE, SIDE)), 0, 0, SIDE, SIDE)
    link = DaemonLink(connection_file=tmp_path / "conn" / "d.json", retry_s=0.2, poll_ms=10)
    panel = DragPanel(app, link, store)
    link.setParent(panel)
    qtbot.addWidget(panel)
    link.start()
    return panel


@pytest.fixture
def stop_started():
    panels: list[DragPanel] = []
    yield panels.append
    for panel in panels:
        launched = panel.link.launched
        if launched is not None and launched.process.poll() is None:
            os.killpg(launched.process.pid, signal.SIGKILL)
            launched.process.wait(10)


def test_start_the_daemon_connects_then_a_silent_daemon_is_reported_within_5_s(qtbot, tmp_path, stop_started):
    serve = f'exec "{sys.executable}" -m draggan_daemon.cli "$@" --no-bundled --builtin-test-model --threads 1'
    panel = panel_for(qtbot, tmp_path, MemoryStore(**{DAEMON_COMMAND_KEY: script(tmp_path, serve)}))
    stop_started(panel)
    assert panel.link.state == OFFLINE and START_DAEMON in panel.daemon_label.text()
    assert panel.start_daemon_button.isVisibleTo(panel) and not panel.drag_button.isEnabled()
    panel.start_daemon_button.click()
    assert "Starting the DragGAN daemon" in panel.daemon_label.text() and not panel.start_daemon_button.isEnabled()
    qtbot.waitUntil(lambda: panel.link.state == READY, timeout=120000)
    assert not panel.start_daemon_button.isVisibleTo(panel) and panel.daemon_label.text().startswith("Ready")
    assert panel.link.launched.process.poll() is None

    # A long drag (the layer is fitted first), then the daemon freezes (SIGSTOP: its connection stays open, as
    # with a remote machine gone to sleep), so only the missed heartbeats can tell.
    KritaDocument(panel.app.activeDocument()).add_arrows([Pair(20, 30, 40, 30)])
    panel.steps_spin.setValue(5000)
    panel.observe()
    panel.drag_button.click()
    c = panel.controller
    qtbot.waitUntil(lambda: c.phase in (ctl.FITTING, ctl.DRAGGING), timeout=60000)
    os.killpg(panel.link.launched.process.pid, signal.SIGSTOP)
    frozen = time.monotonic()
    qtbot.waitUntil(lambda: c.phase == ctl.IDLE, timeout=10000)
    took = time.monotonic() - frozen
    assert took < 5.0, f"the silent daemon was reported after {took:.1f} s"
    assert "stopped answering" in c.error and "The document is as it was" in c.error and not c.busy
    assert c.job is not None and c.job.state == "lost"
    assert panel.start_daemon_button.isVisibleTo(panel)  # offered again


def test_a_daemon_that_stops_at_once_is_reported_with_its_log(qtbot, tmp_path, stop_started):
    failing = script(tmp_path, 'echo "draggan serve: no model named ffhq-1024" >&2; exit 3')
    panel = panel_for(qtbot, tmp_path, MemoryStore(**{DAEMON_COMMAND_KEY: failing}))
    stop_started(panel)
    panel.start_daemon_button.click()
    qtbot.waitUntil(lambda: "stopped right after starting" in panel.daemon_label.text(), timeout=20000)
    text = panel.daemon_label.text()
    assert "exit status 3" in text and "no model named ffhq-1024" in text
    assert panel.start_daemon_button.isEnabled()  # try again after fixing it


def test_no_daemon_program_found_says_where_to_set_it(qtbot, tmp_path, stop_started):
    panel = panel_for(qtbot, tmp_path, MemoryStore(**{DAEMON_COMMAND_KEY: str(tmp_path / "nowhere")}))
    stop_started(panel)
    panel.start_daemon_button.click()
    assert "nowhere" in panel.daemon_label.text() and panel.link.launched is None
