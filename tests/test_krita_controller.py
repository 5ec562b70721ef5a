"""The docker and its state machine (fake `krita`, PyQt5 offscreen) against a real daemon on loopback.

The daemon runs in this process on a background thread (small random-weight generator); the plugin talks to it
through the connection file and the pure-Python ZMTP transport, exactly as inside Krita. Inversion is shortened
to a few steps so each test takes a second or two.
"""

from __future__ import annotations

import re
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from fake_krita.support import ROOT, gradient_bgra, use_fake_krita

use_fake_krita()

import krita  # noqa: E402  (the fake)
from draggan_daemon.engine import inversion  # noqa: E402
from draggan_krita import controller as ctl  # noqa: E402
from draggan_krita import settings as st  # noqa: E402
from draggan_krita.docker import DragPanel  # noqa: E402
from draggan_krita.document import PREVIEW_LAYER, KritaDocument, find_by_name  # noqa: E402
from draggan_krita.geometry import Pair  # noqa: E402
from draggan_krita.link import OFFLINE, READY, DaemonLink  # noqa: E402
from draggan_protocol import outcome  # noqa: E402
from draggan_protocol.connection import ConnectionInfo, write_connection_file  # noqa: E402
from draggan_protocol.outcome import arrival_text  # noqa: E402
from PyQt5.QtCore import QByteArray  # noqa: E402
from PyQt5.QtGui import QColor, QPalette  # noqa: E402
from test_daemon_support import TEST_RESOLUTION, client_for, running_daemon  # noqa: E402

R = TEST_RESOLUTION


class MemoryStore:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def read(self, key: str) -> str | None:
        return self.values.get(key)

    def write(self, key: str, value: str) -> None:
        self.values[key] = value


@pytest.fixture(autouse=True)
def short_inversion(monkeypatch):
    original = inversion.InversionConfig.from_preset.__func__

    def tiny(cls, name="fast", **kw):
        return original(cls, name, **{**kw, "w_steps": 4, "wplus_steps": 4, "pti_steps": 0, "w_avg_samples": 64})

    monkeypatch.setattr(inversion.InversionConfig, "from_preset", classmethod(tiny))


@pytest.fixture
def daemon(tmp_path):
    with running_daemon(tmp_path / "d.json") as server:
        yield server


@pytest.fixture
def seed_image(daemon):
    with client_for(daemon) as c:
        s = c.open_seed_session(seed=4)
        return c.get_result(s["session_id"], format="BGRA8").pixels


def make_doc(pixels: bytes, model: str = "RGBA", depth: str = "U8", res: float = 72.0):
    app = krita.Krita.reset()
    doc = app.createDocument(R, R, "t", model, depth, "", res)
    app.setActiveDocument(doc)
    if model == "RGBA" and depth == "U8":
        doc.rootNode().childNodes()[0].setPixelData(QByteArray(pixels), 0, 0, R, R)
    return app, doc


def make_panel(qtbot, app, connection_file, store=None):
    link = DaemonLink(connection_file=connection_file, retry_s=0.2, poll_ms=10)
    panel = DragPanel(app, link, store or MemoryStore())
    link.setParent(panel)  # goes with the panel: no messages for a deleted controller after the test
    qtbot.addWidget(panel)
    link.start()
    return panel


def wait_ready(qtbot, panel):
    qtbot.waitUntil(lambda: panel.link.state == READY, timeout=10000)


def record_requests(panel) -> list[tuple[str, dict]]:
    """Every request the panel sends from now on, as (type, content), still sent to the daemon."""
    sent: list[tuple[str, dict]] = []
    original = panel.link.send

    def send(msg_type, content=None, buffers=()):
        sent.append((msg_type, dict(content or {})))
        return original(msg_type, content, buffers)

    panel.link.send = send
    return sent


def test_drag_preview_apply_and_undo(qtbot, daemon, seed_image):
    app, doc = make_app_doc = make_doc(seed_image)
    kdoc = KritaDocument(doc)
    kdoc.add_arrows([Pair(10, 16, 16, 16)])
    panel = make_panel(qtbot, app, daemon.connection_file)
    panel.steps_spin.setValue(12)
    panel.preview_spin.setValue(3)
    wait_ready(qtbot, panel)
    assert panel.daemon_label.text().startswith("Ready — cpu, model tiny")
    assert panel.drag_button.isEnabled() and not panel.apply_button.isEnabled()
    panel.observe()
    assert "1 pair" in panel.points_label.text() and panel.pairs_list.count() == 1
    src = doc.rootNode().childNodes()[0]
    before = bytes(src.pixelData(0, 0, R, R))
    sent = record_requests(panel)

    panel.drag_button.click()
    c = panel.controller
    assert c.phase in (ctl.OPENING, ctl.QUEUED) and not panel.drag_button.isEnabled()
    qtbot.waitUntil(lambda: c.phase == ctl.DONE or bool(c.error), timeout=30000)
    assert not c.error, c.error
    assert c.last_done["steps"] == 12 and c.previews_shown == 4
    drags = [content for kind, content in sent if kind == "drag"]
    assert len(drags) == 1 and drags[0]["output"] == "transfer" and drags[0]["params"]["steps"] == 12
    status = panel.status_label.text()
    assert status.startswith("Done after 12 steps. ") and panel.apply_button.isEnabled()
    assert arrival_text(c.last_done) in status and "targets reached)" not in status
    assert not panel.warning_label.isVisibleTo(panel)  # a 32-px layer on a 32-px model: nothing to warn about
    preview = kdoc.preview_layer()
    assert preview is not None
    assert bytes(preview.pixelData(0, 0, R, R)) != before
    assert bytes(src.pixelData(0, 0, R, R)) == before

    panel.apply_button.click()
    qtbot.waitUntil(lambda: c.phase == ctl.IDLE, timeout=10000)
    names = [n.name() for n in doc.rootNode().childNodes()]
    assert "Background (DragGAN)" in names and PREVIEW_LAYER not in names
    assert "Applied as the new layer" in panel.status_label.text()
    assert bytes(src.pixelData(0, 0, R, R)) == before
    app.action("edit_undo").trigger()
    assert "Background (DragGAN)" not in [n.name() for n in doc.rootNode().childNodes()]
    assert make_app_doc  # keep references alive

    # A second drag on the same, unchanged layer reuses the session (no second upload, no second fit).
    sid = c.session.session_id
    panel.drag_button.click()
    qtbot.waitUntil(lambda: c.phase == ctl.DONE or bool(c.error), timeout=30000)
    assert c.session.session_id == sid and not c.error
    panel.reset_button.click()
    assert kdoc.preview_layer() is None and c.phase == ctl.IDLE


def test_selection_is_sent_as_mask_and_region(qtbot, daemon, seed_image):
    app, doc = make_doc(seed_image)
    sel = krita.Selection()
    sel.select(8, 8, 14, 12, 255)
    doc.setSelection(sel)
    KritaDocument(doc).add_arrows([Pair(12, 14, 17, 14)])
    panel = make_panel(qtbot, app, daemon.connection_file)
    panel.steps_spin.setValue(6)
    panel.output_combo.setCurrentIndex(panel.output_combo.findData("generator"))
    wait_ready(qtbot, panel)
    panel.observe()
    assert "the selection, 14×12 at (8, 8)" in panel.region_label.text()
    sent = record_requests(panel)
    panel.drag_button.click()
    c = panel.controller
    qtbot.waitUntil(lambda: c.phase == ctl.DONE or bool(c.error), timeout=30000)
    assert not c.error, c.error
    preview = KritaDocument(doc).preview_layer()
    src = doc.rootNode().childNodes()[0]
    # Outside the selection the preview is the source, byte for byte; inside, something moved.
    changed_outside = changed_inside = 0
    for y in range(R):
        for x in range(R):
            same = bytes(preview.pixelData(x, y, 1, 1)) == bytes(src.pixelData(x, y, 1, 1))
            inside = 8 <= x < 22 and 8 <= y < 20
            changed_inside += inside and not same
            changed_outside += (not inside) and not same
    assert changed_outside == 0 and changed_inside > 0
    assert [content["output"] for kind, content in sent if kind == "drag"] == ["generator"]


def test_queue_position_is_shown_while_another_job_runs(qtbot, daemon, seed_image):
    app, doc = make_doc(seed_image)
    KritaDocument(doc).add_arrows([Pair(10, 16, 16, 16)])
    panel = make_panel(qtbot, app, daemon.connection_file)
    panel.steps_spin.setValue(5)
    wait_ready(qtbot, panel)
    with client_for(daemon) as other:
        s = other.open_seed_session(seed=1)
        job = other.request(
            "drag",
            {"session_id": s["session_id"], "points": [[5, 5, 20, 20]], "params": {"steps": 4000, "stop_distance": 0}},
        )
        panel.drag_button.click()
        c = panel.controller
        qtbot.waitUntil(lambda: c.queue_position >= 1, timeout=10000)
        assert "number 1 in the daemon's queue" in panel.daemon_label.text()
        assert "queue" in panel.status_label.text()
        other.cancel(job.content["job_id"])
        qtbot.waitUntil(lambda: c.phase == ctl.DONE or bool(c.error), timeout=30000)
    assert not c.error and c.queue_position == 0


def test_stop_within_a_step_keeps_the_partial_result(qtbot, daemon, seed_image):
    app, doc = make_doc(seed_image)
    KritaDocument(doc).add_arrows([Pair(10, 16, 16, 16)])
    panel = make_panel(qtbot, app, daemon.connection_file)
    panel.steps_spin.setValue(3000)
    panel.lr_spin.setValue(0.0001)  # a drag that cannot arrive early: it must still be running when stopped
    panel.preview_spin.setValue(1)
    wait_ready(qtbot, panel)
    panel.drag_button.click()
    c = panel.controller
    qtbot.waitUntil(lambda: c.phase == ctl.DRAGGING, timeout=30000)
    assert panel.stop_button.isEnabled()
    panel.stop_button.click()
    assert c.phase == ctl.STOPPING
    qtbot.waitUntil(lambda: c.phase in (ctl.DONE, ctl.IDLE), timeout=10000)
    assert c.last_done["state"] == "cancelled" and 0 < c.last_done["steps"] < 3000
    assert "Stopped after" in panel.status_label.text()


def test_daemon_gone_mid_drag_leaves_the_document_as_it_was(qtbot, tmp_path, seed_image):
    with running_daemon() as server:
        path = write_connection_file(ConnectionInfo(server.endpoint, server.config.key.decode()), tmp_path / "x.json")
        app, doc = make_doc(seed_image)
        KritaDocument(doc).add_arrows([Pair(10, 16, 16, 16)])
        before = [n.name() for n in doc.rootNode().childNodes()]
        panel = make_panel(qtbot, app, path)
        panel.steps_spin.setValue(3000)
        panel.lr_spin.setValue(0.0001)  # a drag that cannot arrive early: it must still be running when stopped
        wait_ready(qtbot, panel)
        panel.drag_button.click()
        c = panel.controller
        qtbot.waitUntil(lambda: c.phase == ctl.DRAGGING, timeout=30000)
        threading.Thread(target=server.stop).start()
        qtbot.waitUntil(lambda: bool(c.error), timeout=20000)
    assert "went away" in c.error and "as it was" in c.error
    assert [n.name() for n in doc.rootNode().childNodes()] == before
    assert panel.link.state == OFFLINE and "draggan serve" in panel.daemon_label.text()
    assert not panel.drag_button.isEnabled()


def test_link_broken_while_sending_keeps_the_fuller_message(qtbot, daemon, seed_image, monkeypatch):
    """The drag's end asks for the final pixels; if that send finds the daemon gone, the person still reads that
    the document is as it was (the bare transport reason must not replace it)."""
    app, doc = make_doc(seed_image)
    KritaDocument(doc).add_arrows([Pair(10, 16, 16, 16)])
    before = [n.name() for n in doc.rootNode().childNodes()]
    panel = make_panel(qtbot, app, daemon.connection_file)
    panel.steps_spin.setValue(30)
    panel.lr_spin.setValue(0.0001)  # runs all 30 steps: still dragging when the pipe is broken below
    wait_ready(qtbot, panel)
    panel.drag_button.click()
    c = panel.controller
    qtbot.waitUntil(lambda: c.phase == ctl.DRAGGING, timeout=30000)

    def broken_pipe(*_a, **_k):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(panel.link.client, "send", broken_pipe)
    qtbot.waitUntil(lambda: bool(c.error), timeout=30000)
    assert "went away" in c.error and "draggan serve" in c.error and "as it was" in c.error, c.error
    assert [n.name() for n in doc.rootNode().childNodes()] == before


def test_not_running_says_how_to_start_it(qtbot, tmp_path):
    app, _doc = make_doc(bytes(R * R * 4))
    panel = make_panel(qtbot, app, tmp_path / "missing.json")
    qtbot.waitUntil(lambda: "not running" in panel.daemon_label.text(), timeout=5000)
    assert "draggan serve" in panel.daemon_label.text()
    assert not panel.drag_button.isEnabled() and not panel.fit_button.isEnabled()
    panel.controller.drag()  # even when called directly: a plain message, nothing else
    assert "not running" in panel.error_label.text()


def test_stale_connection_file_is_reported(qtbot, tmp_path):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        port = listener.getsockname()[1]
        listener.close()
        path = write_connection_file(ConnectionInfo(f"tcp://127.0.0.1:{port}", "00" * 16), tmp_path / "s.json")
        app, _doc = make_doc(bytes(R * R * 4))
        panel = make_panel(qtbot, app, path)
        qtbot.waitUntil(lambda: "not running" in panel.daemon_label.text(), timeout=5000)
    finally:
        listener.close()


def test_a_connection_file_with_another_key_says_the_daemon_refused_it(qtbot, daemon, tmp_path):
    """A daemon is running, but the file holds another key (e.g. copied from an earlier run): the handshake is
    refused (protocol 2.0), and the docker says so instead of "not running, start it"."""
    path = write_connection_file(ConnectionInfo(daemon.endpoint, "11" * 32), tmp_path / "other-key.json")
    app, _doc = make_doc(bytes(R * R * 4))
    panel = make_panel(qtbot, app, path)
    qtbot.waitUntil(lambda: "did not let the plugin in" in panel.daemon_label.text(), timeout=8000)
    assert "refused this connection's key" in panel.daemon_label.text()
    assert "not running" not in panel.daemon_label.text()
    assert daemon.stats["received"] == 0


def test_cmyk_and_missing_points_are_explained(qtbot, daemon, seed_image):
    app, doc = make_doc(b"", model="CMYKA")
    panel = make_panel(qtbot, app, daemon.connection_file)
    wait_ready(qtbot, panel)
    assert "8-bit RGB" in panel.source_label.text()  # said before anything is pressed, and nothing to press
    assert not panel.drag_button.isEnabled() and not panel.fit_button.isEnabled()
    panel.controller.drag()
    assert "8-bit RGB" in panel.error_label.text() and panel.controller.phase == ctl.IDLE
    app2, doc2 = make_doc(seed_image)
    panel2 = make_panel(qtbot, app2, daemon.connection_file)
    wait_ready(qtbot, panel2)
    panel2.drag_button.click()
    assert "No points yet" in panel2.error_label.text()
    assert KritaDocument(doc2).points_layer() is not None  # created, ready for drawing
    assert len(doc2.rootNode().childNodes()) == 2


def test_fit_reports_progress_then_drag_reuses_it(qtbot, daemon, seed_image):
    app, doc = make_doc(seed_image)
    panel = make_panel(qtbot, app, daemon.connection_file)
    wait_ready(qtbot, panel)
    panel.fit_button.click()
    c = panel.controller
    phases = set()
    bars: list[tuple[int, int]] = []
    c.changed.connect(lambda: phases.add(c.phase))
    c.changed.connect(lambda: bars.append(c.progress) if c.phase == ctl.FITTING and c.progress[1] else None)
    qtbot.waitUntil(lambda: c.phase == ctl.IDLE and c.session is not None and c.session.inverted, timeout=30000)
    # One bar over all fitting stages: a fixed maximum and a value that never goes back.
    assert bars and len({m for _, m in bars}) == 1, bars
    assert [v for v, _ in bars] == sorted(v for v, _ in bars) and bars[-1][0] == bars[-1][1], bars
    assert ctl.FITTING in phases and "Fitted" in panel.status_label.text()


def test_parameters_are_remembered(qtbot, tmp_path):
    store = MemoryStore()
    app, _doc = make_doc(bytes(R * R * 4))
    panel = make_panel(qtbot, app, tmp_path / "none.json", store)
    assert panel.lr_spin.text() == "Auto" and "lr" not in panel.params.drag_params()  # the daemon's own choice
    panel.advanced_toggle.setChecked(True)
    panel.steps_spin.setValue(77)
    panel.lr_spin.setValue(0.004)
    panel.mask_spin.setValue(5.5)
    assert panel.output_combo.currentData() == "transfer" and panel.params.output == "transfer"  # the default
    assert panel.output_combo.currentText() == "Keep my pixels (move them)"
    tip = panel.output_combo.toolTip()
    assert "your own layer" in tip and "Generator's picture" in tip
    panel.output_combo.setCurrentIndex(panel.output_combo.findData("generator"))
    assert store.values["output"] == "generator"
    panel2 = make_panel(qtbot, app, tmp_path / "none.json", store)
    assert panel2.steps_spin.value() == 77 and panel2.lr_spin.value() == pytest.approx(0.004)
    assert panel2.mask_spin.value() == pytest.approx(5.5) and panel2.advanced_toggle.isChecked()
    assert panel2.params.drag_params() == {
        "preset": "studio",
        "steps": 77,
        "lr": pytest.approx(0.004),
        "mask_weight": 5.5,
    }
    assert panel2.output_combo.currentText() == "Generator's picture" and panel2.params.output == "generator"
    store.values["output"] = "sideways"  # a hand-edited value: back to the default
    assert make_panel(qtbot, app, tmp_path / "none.json", store).params.output == "transfer"


def test_the_settings_choice_is_sent_and_remembered(qtbot, tmp_path):
    """Issue 12: the official DragGAN settings one choice away in the Parameters section."""
    store = MemoryStore()
    app, _doc = make_doc(bytes(R * R * 4))
    panel = make_panel(qtbot, app, tmp_path / "none.json", store)
    combo = panel.settings_combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["studio", "official"]
    assert combo.currentText() == "DragGAN Studio" and "official DragGAN" in combo.toolTip()
    combo.setCurrentIndex(combo.findData("official"))
    assert store.values["preset"] == "official" and panel.params.drag_params()["preset"] == "official"
    panel2 = make_panel(qtbot, app, tmp_path / "none.json", store)
    assert panel2.settings_combo.currentText() == "Official DragGAN" and panel2.params.preset == "official"


def test_the_preview_detail_is_sent_and_remembered(qtbot, daemon, seed_image):
    """Protocol 2.1's preview_detail one choice away in the Parameters section: draft by default (previews at the
    drag's pace), full when asked, sent with the drag and remembered."""
    store = MemoryStore()
    app, doc = make_doc(seed_image)
    KritaDocument(doc).add_arrows([Pair(10, 16, 16, 16)])
    panel = make_panel(qtbot, app, daemon.connection_file, store)
    combo = panel.detail_combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["draft", "full"] and combo.currentData() == "draft"
    assert "full detail" in combo.toolTip()
    combo.setCurrentIndex(combo.findData("full"))
    assert store.values["preview_detail"] == "full"
    panel.steps_spin.setValue(2)
    wait_ready(qtbot, panel)
    sent = record_requests(panel)
    c = panel.controller
    panel.drag_button.click()
    qtbot.waitUntil(lambda: c.phase == ctl.DONE or bool(c.error), timeout=30000)
    assert not c.error, c.error
    assert [content["preview_detail"] for kind, content in sent if kind == "drag"] == ["full"]
    panel2 = make_panel(qtbot, app, daemon.connection_file, store)
    assert panel2.detail_combo.currentData() == "full" and panel2.params.preview_detail == "full"


def test_settings_through_krita_and_qsettings(tmp_path):
    app = krita.Krita.reset()
    store = st.default_store(app)
    assert isinstance(store, st.KritaStore)
    st.save(store, st.Params(steps=42, model="faces", show_advanced=True))
    assert app.readSetting("DragGAN", "steps", "") == "42"
    loaded = st.load(store)
    assert (loaded.steps, loaded.model, loaded.show_advanced) == (42, "faces", True)
    app.writeSetting("DragGAN", "steps", "lots")
    app.writeSetting("DragGAN", "lr", "99")
    loaded = st.load(store)
    assert loaded.steps == 200 and loaded.lr == 0.1  # garbage -> default; out of range -> clamped
    from PyQt5.QtCore import QSettings

    qs = st.QtStore(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    st.save(qs, st.Params(preview_every=9))
    assert st.load(st.QtStore(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))).preview_every == 9


def test_error_texts_are_the_client_cores():
    assert "too large" in ctl.error_text("too_large", "the layer is 9000x9000")
    assert not hasattr(ctl, "plain_error") and not hasattr(ctl, "_CODE_HINTS")  # one wording, in draggan_protocol


def test_registration_with_krita():
    import importlib

    import draggan_krita

    app = krita.Krita.reset()
    assert importlib.reload(draggan_krita).register() is True
    assert len(app.extensions) == 1 and app.docker_factories[0].id == "draggan_docker"


def test_model_list_names_tall_models(qtbot, tmp_path, monkeypatch):
    app, _doc = make_doc(bytes(R * R * 4))
    panel = make_panel(qtbot, app, tmp_path / "none.json")
    models = [
        {"name": "faces", "resolution": 512, "picture": [512, 512]},
        {"name": "humans", "resolution": 512, "picture": [512, 256]},
        {"name": "afhq-cat", "resolution": 512, "domain": "cat faces", "licence": "NVIDIA Source Code License-NC"},
    ]
    monkeypatch.setattr(panel.link, "models", lambda: models)
    panel._fill_models()
    labels = [panel.model_combo.itemText(i) for i in range(panel.model_combo.count())]
    assert labels == ["daemon default", "faces (512 px)", "humans (256×512 px, padded)", "afhq-cat (512 px, cat faces)"]
    from PyQt5.QtCore import Qt

    assert "NVIDIA Source Code License-NC" in panel.model_combo.itemData(3, Qt.ToolTipRole)


# ---------------------------------------------------------------------------------------------- the words
ARRIVAL = {"asked": [12.0, 14.0], "moved": [7.0, 11.0], "remaining": [5.2, 3.0], "stop_distance": 1.0}


def progress_event(job_id: str, step: int, **fields) -> SimpleNamespace:
    content = {"job_id": job_id, "phase": "drag", "step": step, "max_steps": 200, "loss": 0.5, **fields}
    return SimpleNamespace(msg_type="progress", content=content, buffers=[], parent=None, is_error=False)


def running_drag(c) -> None:
    """Make `c` follow a drag job "j1" that the daemon has accepted (as the client core's tracker sees it)."""
    from draggan_protocol import jobs

    c.job = jobs.Job("drag", max_steps=200)
    c.job.request_id = "r1"
    c.job.handle(SimpleNamespace(msg_type="drag_reply", parent="r1", content={"job_id": "j1"}, is_error=False))
    c.phase = ctl.DRAGGING


def test_measured_progress_and_outcome_in_plain_words(qtbot, tmp_path):
    """What the docker says for a 1.1 daemon's events: the measured progress while dragging, then the measured
    outcome (not the tracker's claim), a fallback, and the right grammar for one step."""
    app, _doc = make_doc(bytes(R * R * 4))
    panel = make_panel(qtbot, app, tmp_path / "none.json")
    c = panel.controller
    running_drag(c)
    c._on_message(progress_event("j1", 5))  # a step without a preview: no measurement yet
    assert panel.status_label.text() == "Dragging, step 5 (at most 200)."  # a limit, not a plan; no loss figure
    assert c.progress == (25, 1000)
    c._on_message(progress_event("j1", 10, output="transfer", **ARRIVAL))
    measured = "Handles moved 7 of 12 px and 11 of 14 px; not reached (5.2 px still to go)."
    assert panel.status_label.text() == "Dragging, step 10 (at most 200) – " + measured
    assert c.progress == (round(1000 * 7 / 12), 1000)  # the slowest handle's share, more than 10 of 200 steps
    c._on_message(progress_event("j1", 11))  # later steps keep the latest measurement
    assert panel.status_label.text().startswith("Dragging, step 11 (at most 200) – Handles moved 7 of 12 px")
    c._on_message(progress_event("other", 12))  # another job's event is not this one's
    assert panel.status_label.text().startswith("Dragging, step 11")

    # Not reached, although the point tracker claims it: the measured words win.
    c.last_done = {"state": "done", "steps": 37, "reached": False, "tracker_reached": True, "output": "transfer"}
    c.last_done.update(ARRIVAL)
    done = c._done_text()
    assert done.startswith("Done after 37 steps. Handles moved 7 of 12 px and 11 of 14 px; not reached (5.2 px")
    assert "targets reached" not in done.lower() and done.endswith("Reset discards it.")
    # Reached, by the measurement.
    c.last_done = {"state": "done", "steps": 1, "reached": True, "output": "transfer", "stop_distance": 1.0}
    c.last_done.update(asked=[9.0], moved=[8.4], remaining=[0.7])
    done = c._done_text()
    assert done.startswith("Done after 1 step. Targets reached: handle moved 8.4 of 9 px (within 0.7 px). Apply")
    # Stopped early, with a fallback to the generator's picture.
    c.last_done = {"state": "cancelled", "steps": 4, "reached": False, "output": "generator", **ARRIVAL}
    c.last_done["fallback"] = "the motion field was not finite"
    done = c._done_text()
    assert done.startswith("Stopped after 4 steps. Handles moved 7 of 12 px")
    assert "The generator's picture was used instead of your pixels here: the motion field was not finite." in done
    # A 1.0 daemon: no measurement, said as such.
    c.last_done = {"state": "done", "steps": 20, "reached": True}
    done = c._done_text()
    assert "point tracker says the handles arrived" in done and "older daemon" in done


def test_large_region_warning_when_the_session_opens(qtbot, daemon):
    """A 256-px layer on the 32-px test model (8×): the docker warns once the daemon has opened the session."""
    side = 8 * R
    app = krita.Krita.reset()
    doc = app.createDocument(side, side, "big", "RGBA", "U8", "", 72.0)
    app.setActiveDocument(doc)
    doc.rootNode().childNodes()[0].setPixelData(QByteArray(gradient_bgra(side, side)), 0, 0, side, side)
    panel = make_panel(qtbot, app, daemon.connection_file)
    wait_ready(qtbot, panel)
    assert not panel.warning_label.isVisibleTo(panel)
    panel.fit_button.click()
    c = panel.controller
    qtbot.waitUntil(lambda: c.session is not None, timeout=30000)
    assert c.session.warning == outcome.region_warning({"region": [0, 0, side, side], "resolution": R}) != ""
    assert panel.warning_label.isVisibleTo(panel)
    assert panel.warning_label.text().startswith(f"The region is 8× the model's {R}-px picture: your pixels are kept")
    qtbot.waitUntil(lambda: c.phase == ctl.IDLE, timeout=30000)
    assert panel.warning_label.isVisibleTo(panel) and not c.error


# ---------------------------------------------------------------------------------------------- issue 11
def pair_texts(panel) -> list[str]:
    return [panel.pairs_list.item(i).text() for i in range(panel.pairs_list.count())]


def test_300_dpi_lines_are_the_pairs_shown_and_sent_before_and_after_drag(qtbot, daemon, seed_image):
    """The lines a person drew with the line tool on a 300-dpi document are the pairs listed and sent, and stay
    where they were drawn: a drag must not rewrite them (it once moved them by 72/300)."""
    app, doc = make_doc(seed_image, res=300.0)
    kdoc = KritaDocument(doc)
    layer = kdoc.ensure_points_layer()
    layer.draw_line(10, 16, 16, 16)
    layer.draw_line(20, 8, 22, 12, color="#00a0ff")
    drawn = [[10, 16, 16, 16], [20, 8, 22, 12]]
    lines = [s.toSvg() for s in layer.shapes()]
    doc.setActiveNode(doc.rootNode().childNodes()[0])
    panel = make_panel(qtbot, app, daemon.connection_file)
    panel.steps_spin.setValue(4)
    wait_ready(qtbot, panel)
    panel.observe()
    shown = ["1: (10, 16) → (16, 16)", "2: (20, 8) → (22, 12)"]
    assert pair_texts(panel) == shown
    sent = record_requests(panel)
    c = panel.controller
    for _ in range(2):  # the second drag reads the points again
        panel.drag_button.click()
        qtbot.waitUntil(lambda: c.phase == ctl.DONE or bool(c.error), timeout=30000)
        assert not c.error, c.error
        panel.observe()
        assert pair_texts(panel) == shown
        assert [p.as_list() for p in kdoc.pairs()] == [pytest.approx(d, abs=1e-3) for d in drawn]
        assert [s.toSvg() for s in layer.shapes()] == lines  # the person's own lines, untouched
    drags = [content["points"] for kind, content in sent if kind == "drag"]
    assert len(drags) == 2 and all(d == [pytest.approx(x, abs=1e-3) for x in drawn] for d in drags), drags


def test_a_drag_refused_at_once_returns_the_docker_to_idle(qtbot, daemon, seed_image, monkeypatch):
    """The daemon refuses a handle outside the edited region as soon as the drag starts. Krita runs the event loop
    inside its node calls, so the refusal can arrive while the docker is still setting the drag up: it must still
    end idle, with the message, usable buttons and no preview layer (nor an undo step for one)."""
    app, doc = make_doc(seed_image)
    sel = krita.Selection()
    sel.select(2, 2, 8, 8, 255)
    doc.setSelection(sel)
    KritaDocument(doc).add_arrows([Pair(26, 26, 29, 29)])  # far outside the selection
    panel = make_panel(qtbot, app, daemon.connection_file)
    wait_ready(qtbot, panel)
    c = panel.controller
    panel.fit_button.click()  # fitted first: the drag's only work is the check that refuses it
    qtbot.waitUntil(lambda: c.phase == ctl.IDLE and c.session is not None and c.session.inverted, timeout=30000)
    names, steps = [n.name() for n in doc.rootNode().childNodes()], doc.undo_steps()
    monkeypatch.setattr(krita.Document, "pump_ms", 300.0)  # node calls take a while, as Krita's do
    panel.drag_button.click()
    qtbot.waitUntil(lambda: bool(c.error), timeout=15000)
    qtbot.wait(400)  # whatever was still under way has finished
    assert c.phase == ctl.IDLE and "outside the edited region" in panel.error_label.text(), (c.phase, c.error)
    assert panel.drag_button.isEnabled() and panel.fit_button.isEnabled() and panel.reset_button.isEnabled()
    assert not panel.stop_button.isEnabled() and panel.progress.maximum() > 0  # no busy bar
    assert "Dragging" not in panel.status_label.text()
    assert [n.name() for n in doc.rootNode().childNodes()] == names and doc.undo_steps() == steps


def test_hidden_layers_are_never_the_source(qtbot, daemon, seed_image):
    app, doc = make_doc(seed_image)
    root = doc.rootNode()
    group = doc.createGroupLayer("Group")
    root.addChildNode(group, None)
    inner = doc.createNode("Inner", "paintlayer")
    group.addChildNode(inner, None)
    inner.setPixelData(QByteArray(seed_image), 0, 0, R, R)
    covered = doc.createNode("Hidden inner", "paintlayer")  # the group's top layer, hidden
    group.addChildNode(covered, None)
    covered.setVisible(False)
    hidden = doc.createNode("Hidden", "paintlayer")  # the document's top layer, hidden
    root.addChildNode(hidden, None)
    hidden.setVisible(False)
    KritaDocument(doc).add_arrows([Pair(10, 16, 16, 16)])
    panel = make_panel(qtbot, app, daemon.connection_file)
    wait_ready(qtbot, panel)
    c = panel.controller
    sent = record_requests(panel)

    doc.setActiveNode(hidden)  # as when a document opens on its hidden top layer
    panel.observe()
    assert "“Hidden” is hidden" in panel.source_label.text(), panel.source_label.text()
    assert not panel.drag_button.isEnabled() and not panel.fit_button.isEnabled()
    c.drag()
    assert "hidden" in c.error and c.phase == ctl.IDLE and not sent

    doc.setActiveNode(group)  # a group: its top visible paint layer, and the docker says so
    panel.observe()
    assert c.source() is inner
    assert "“Inner”" in panel.source_label.text() and "“Group”" in panel.source_label.text()
    assert panel.drag_button.isEnabled() and panel.fit_button.isEnabled()

    doc.setActiveNode(KritaDocument(doc).points_layer())  # drawing points: the last visible paint layer stays
    panel.observe()
    assert c.source() is inner
    hidden.setVisible(True)  # shown again, and made active: now it may be edited
    doc.setActiveNode(hidden)
    panel.observe()
    assert c.source() is hidden and panel.drag_button.isEnabled()


def test_drag_and_apply_add_one_undo_step(qtbot, daemon, seed_image):
    """After Apply, one Ctrl+Z takes the result away, and the next one undoes what the person did before (their
    line), never a step the plugin added behind their back (a line swapped for an arrow, a stale pair)."""
    app, doc = make_doc(seed_image)
    kdoc = KritaDocument(doc)
    kdoc.ensure_points_layer()
    kdoc.points_layer().draw_line(10, 16, 16, 16)
    steps = doc.undo_steps()
    panel = make_panel(qtbot, app, daemon.connection_file)
    panel.steps_spin.setValue(4)
    wait_ready(qtbot, panel)
    c = panel.controller
    panel.drag_button.click()
    qtbot.waitUntil(lambda: c.phase == ctl.DONE or bool(c.error), timeout=30000)
    assert not c.error, c.error
    panel.apply_button.click()
    qtbot.waitUntil(lambda: c.phase == ctl.IDLE, timeout=10000)
    assert doc.undo_steps() == steps + 1  # the result layer, nothing else
    app.action("edit_undo").trigger()
    assert "Background (DragGAN)" not in [n.name() for n in doc.rootNode().childNodes()]
    assert [p.as_list() for p in kdoc.pairs()] == [pytest.approx([10, 16, 16, 16])]
    app.action("edit_undo").trigger()  # the person's line
    assert kdoc.pairs() == []


def test_apply_as_animation_without_keyframes_is_one_group_in_one_undo(qtbot, daemon, seed_image):
    """Where Krita cannot take an animated layer (this fake opens no documents, as a Krita without the scripting
    call would not), Apply as animation puts the frames in as a group, one layer per kept step, the first the
    source's pixels and the last the result, in one undo step above the preview's removal."""
    app, doc = make_doc(seed_image)
    kdoc = KritaDocument(doc)
    kdoc.add_arrows([Pair(10, 16, 16, 16)])
    src = doc.rootNode().childNodes()[0]
    before = bytes(src.pixelData(0, 0, R, R))
    layers_before = [n.name() for n in doc.rootNode().childNodes()]
    panel = make_panel(qtbot, app, daemon.connection_file)
    panel.steps_spin.setValue(4)
    panel.frames_check.setChecked(True)
    wait_ready(qtbot, panel)
    c = panel.controller
    panel.drag_button.click()
    qtbot.waitUntil(lambda: c.phase == ctl.DONE or bool(c.error), timeout=30000)
    assert not c.error, c.error
    assert c.has_frames and panel.animation_button.isEnabled()
    result = bytes(kdoc.preview_layer().pixelData(0, 0, R, R))
    steps = doc.undo_steps()
    panel.animation_button.click()
    qtbot.waitUntil(lambda: c.phase == ctl.IDLE, timeout=10000)
    assert not c.error, c.error
    assert "Applied as the layer group" in panel.status_label.text() and not c.animation["timeline"]
    group = find_by_name(doc, "Background (DragGAN animation)", "grouplayer")
    frames = group.childNodes()
    n = int(c.last_done["frames"]["total"])
    assert len(frames) == n and [f.name() for f in frames][:2] == ["Frame 1 (step 0)", "Frame 2 (step 1)"]
    assert bytes(frames[0].pixelData(0, 0, R, R)) == before and bytes(frames[-1].pixelData(0, 0, R, R)) == result
    assert doc.undo_steps() == steps + 2  # the preview's removal, the group (filling it was none)
    app.action("edit_undo").trigger()
    assert [n.name() for n in doc.rootNode().childNodes()] == layers_before
    assert bytes(src.pixelData(0, 0, R, R)) == before


def test_status_stays_with_its_document(qtbot, daemon, seed_image):
    app, doc = make_doc(seed_image)
    panel = make_panel(qtbot, app, daemon.connection_file)
    wait_ready(qtbot, panel)
    c = panel.controller
    panel.drag_button.click()  # no points: an error about this document
    assert "No points yet" in panel.error_label.text()
    panel.fit_button.click()
    qtbot.waitUntil(lambda: c.phase == ctl.IDLE and c.session is not None and c.session.inverted, timeout=30000)
    assert panel.status_label.text().startswith("Fitted")
    other = app.createDocument(R, R, "other", "RGBA", "U8", "", 72.0)
    app.setActiveDocument(other)
    panel.observe()
    assert panel.status_label.text() == "" and not panel.error_label.isVisibleTo(panel)
    assert not panel.reset_button.isEnabled()
    app.setActiveDocument(doc)
    panel.observe()
    assert panel.status_label.text().startswith("Fitted") and panel.reset_button.isEnabled()


def test_texts_name_a_start_command_that_works_after_make_run():
    from draggan_krita import link

    words = link.START_COMMAND
    assert "make run" in words and ".venv/bin/draggan serve" in words, words
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^VENV \?= \.venv$", makefile, re.M)
    assert re.search(r"^run: .*\n\t\$\(VENV\)/bin/draggan serve$", makefile, re.M)  # what `make run` runs
    assert f"Start it with: {words}" in link.DaemonLink(connection_file="/nonexistent/d.json").not_running_text()


def test_daemon_lost_sentence_ends_before_the_document_is_as_it_was(qtbot, tmp_path):
    from draggan_krita.link import _gone

    app, _doc = make_doc(bytes(R * R * 4))
    panel = make_panel(qtbot, app, tmp_path / "none.json")
    c = panel.controller
    c.phase = ctl.DRAGGING
    c._on_lost(_gone(ConnectionResetError(104, "Connection reset by peer")))
    assert re.search(r"[.!?] The document is as it was before the drag\.$", c.error), c.error
    assert ".." not in c.error


def contrast(a: QColor, b: QColor) -> float:
    def lum(c: QColor) -> float:
        ch = [v / 255 for v in (c.red(), c.green(), c.blue())]
        ch = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in ch]
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def style_color(widget) -> QColor:
    m = re.search(r"color:\s*(#[0-9a-fA-F]{6})", widget.styleSheet())
    assert m, widget.styleSheet()
    return QColor(m.group(1))


@pytest.mark.parametrize(("window", "text"), [("#31363b", "#eff0f1"), ("#efefef", "#1e1e1e")])  # Krita dark / light
def test_coloured_texts_are_readable_on_dark_and_light_themes(qtbot, tmp_path, window, text):
    app, _doc = make_doc(bytes(R * R * 4))
    panel = make_panel(qtbot, app, tmp_path / "none.json")
    pal = QPalette(panel.palette())
    for role, colour in ((QPalette.Window, window), (QPalette.WindowText, text), (QPalette.Base, window)):
        pal.setColor(role, QColor(colour))
    panel.setPalette(pal)
    panel.link.state, panel.link.info = READY, {"device": "cpu", "default_model": "tiny", "models": []}
    panel.controller.error = "Something went wrong."
    panel.refresh()
    background = panel.palette().color(QPalette.Window)
    for widget in (panel.daemon_label, panel.error_label):
        assert contrast(style_color(widget), background) >= 4.5, (widget.styleSheet(), window)
    panel.link.state = OFFLINE
    panel.refresh()
    assert contrast(style_color(panel.daemon_label), background) >= 4.5


def test_krita_readme_names_the_kritarc_key_the_installer_writes():
    from draggan_daemon.plugin_install import krita as inst

    text = (ROOT / "plugins" / "krita" / "README.md").read_text()
    assert f"enable_{inst.PLUGIN_NAME}=true" in text and "enable_draggan=true" not in text


def test_suggest_chooses_the_model_that_reproduces_the_layer(qtbot, daemon):
    """Issue 13, item 3: "Suggest" ranks the daemon's models for the source layer and selects the best."""
    import torch
    from draggan_daemon.engine.loaders import load_generator
    from draggan_daemon.server.models import BUNDLED_FILE

    G = load_generator(BUNDLED_FILE).generator.eval().requires_grad_(False)
    daemon.registry.add_generator("bundled", G)
    with torch.no_grad():
        img = G.synthesis(G.z_to_ws(5, 0.7))
    rgb = ((img[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    bgra = bytes(np.dstack([rgb[..., ::-1], np.full((64, 64), 255, np.uint8)]).tobytes())
    app = krita.Krita.reset()
    doc = app.createDocument(64, 64, "face", "RGBA", "U8", "", 72.0)
    app.setActiveDocument(doc)
    doc.rootNode().childNodes()[0].setPixelData(QByteArray(bgra), 0, 0, 64, 64)
    panel = make_panel(qtbot, app, daemon.connection_file)
    wait_ready(qtbot, panel)
    panel.observe()
    assert panel.suggest_button.isEnabled() and panel.model_combo.currentData() == ""
    panel.suggest_button.click()
    c = panel.controller
    qtbot.waitUntil(lambda: c.phase == ctl.IDLE and (c.error or "Best fit" in c.status), timeout=60000)
    assert not c.error, c.error
    assert c.status.startswith("Best fit: bundled (") and "then tiny (" in c.status, c.status
    assert panel.model_combo.currentData() == "bundled" and panel.params.model == "bundled"
