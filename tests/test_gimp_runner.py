"""The plug-in's daemon conversation against a real daemon on loopback, without GIMP.

Seed sessions keep these quick (no inversion): what is under test is the conversation — errors in plain words,
cancel, a daemon that dies mid-run, and the watchdog that cancels the job when GIMP kills the plug-in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gimp_env import PLUGIN_DIR, spawn_daemon_process, start_daemon

from draggan_gimp import params, runner  # isort: skip
from draggan_gimp.errors import Cancelled, PluginError  # isort: skip
from draggan_gimp.pairs import strokes_to_pairs  # isort: skip

PAIRS = strokes_to_pairs([[(20.0, 40.0), (16.0, 35.0)], [(44.0, 40.0), (48.0, 35.0)]], size=(64, 64)).pairs
NO_LAYER = runner.LayerInput(b"", 64, 64, (5, 7), "seed")


class Recorder:
    def __init__(self, stop_after: int | None = None) -> None:
        self.events: list[tuple[float, str]] = []
        self.statuses: list[str] = []
        self.messages: list[str] = []
        self.stop_after = stop_after

    def status(self, text: str) -> None:
        self.statuses.append(text)

    def progress(self, fraction: float, text: str) -> None:
        self.events.append((fraction, text))

    def preview(self, image) -> None:
        pass

    def message(self, text: str) -> None:
        self.messages.append(text)

    def stop_requested(self) -> bool:
        return self.stop_after is not None and len(self.events) >= self.stop_after


@pytest.fixture
def daemon(tmp_path: Path):
    d = start_daemon(tmp_path / "daemon.json")
    yield d
    d.stop()


def _settings(daemon, **values) -> params.RunSettings:
    values = {"connection-file": str(daemon.connection_file), "invert-first": False, **values}
    return params.RunSettings.from_values(values)


def _wait_idle(daemon, limit: float) -> float:
    t0 = time.monotonic()
    while daemon.server.worker.running is not None and time.monotonic() - t0 < limit:
        time.sleep(0.02)
    return time.monotonic() - t0


def test_connect_explains_a_missing_or_silent_daemon(tmp_path: Path) -> None:
    settings = params.RunSettings.from_values({"connection-file": str(tmp_path / "none.json")})
    with pytest.raises(PluginError, match="not running") as err:
        runner.connect(settings)
    assert "draggan serve" in str(err.value)
    stale = tmp_path / "stale.json"
    stale.write_text('{"endpoint": "tcp://127.0.0.1:9", "key": "00"}')
    t0 = time.monotonic()
    with pytest.raises(PluginError, match="does not answer"):
        runner.connect(params.RunSettings.from_values({"connection-file": str(stale)}), hello_timeout=1.5)
    assert time.monotonic() - t0 < 3.0


@pytest.mark.parametrize("output", ["transfer", "generator"])
def test_seed_drag_returns_the_result_and_reports_steps(daemon, output: str) -> None:
    conn = runner.connect(_settings(daemon))
    assert runner.model_names(conn.hello) == ["builtin-test"]
    rec = Recorder()
    out = runner.run_drag(conn.client, NO_LAYER, None, PAIRS, _settings(daemon, steps=4, output=output), rec)
    conn.close()
    assert out.state == "done" and 1 <= out.steps <= 4 and out.phases == ["drag"]
    assert (out.image.width, out.image.height, out.image.offset) == (64, 64, (5, 7))
    assert len(out.image.pixels) == 64 * 64 * 4 and len(out.handles) == 2
    assert rec.events[-2][1].startswith(f"DragGAN: dragging, step {out.steps} (at most 4)")
    # The bar ends full, with the outcome in words as the daemon measured it: "Targets reached" only when
    # job_done says reached.
    assert out.summary and rec.events[-1] == (1.0, f"DragGAN: done after {out.steps} steps. {out.summary}")
    assert out.summary.startswith("Targets reached") == out.reached
    assert rec.messages == []  # a seed session has no region to warn about


@pytest.mark.parametrize("detail", ["draft", "full"])
def test_the_preview_detail_goes_with_the_drag(daemon, detail: str) -> None:
    conn = runner.connect(_settings(daemon))
    sent = []
    send = conn.client.send

    def recording(msg_type, content=None, buffers=()):
        sent.append((msg_type, dict(content or {})))
        return send(msg_type, content, buffers)

    conn.client.send = recording
    settings = _settings(daemon, steps=2, **{"preview-layer": True, "preview-detail": detail})
    out = runner.run_drag(conn.client, NO_LAYER, None, PAIRS, settings, Recorder())
    conn.close()
    assert out.state == "done"
    assert [c["preview_detail"] for kind, c in sent if kind == "drag"] == [detail]
    assert params.RunSettings.from_values({}).preview_detail == "draft"
    with pytest.raises(PluginError, match="'preview-detail' must be one of draft, full"):
        params.RunSettings.from_values({"preview-detail": "best"})


def test_seed_mode_refuses_strokes_off_the_models_picture(daemon) -> None:
    """Issue 11, bug 8: the seed picture is the model's 64 px at the layer's corner; strokes drawn for a larger
    layer beyond it are refused in words before anything is dragged (the old plug-in sent them and failed)."""
    conn = runner.connect(_settings(daemon))
    off_picture = strokes_to_pairs([[(20.0, 40.0), (16.0, 35.0)], [(70.0, 47.0), (66.0, 43.0)]]).pairs
    rec = Recorder()
    try:
        with pytest.raises(PluginError, match="does not lie on it") as err:
            runner.run_drag(conn.client, NO_LAYER, None, off_picture, _settings(daemon, steps=4), rec)
    finally:
        conn.close()
    assert "64 × 64 px, from (5, 7) to (68, 70)" in str(err.value) and "Stroke 2, (75, 54)" in str(err.value)
    assert rec.events == []  # no drag step
    _wait_idle(daemon, 5.0)
    assert not daemon.server.store.sessions  # and the session was closed again


def test_a_drag_the_daemon_stops_by_itself_is_an_error(daemon) -> None:
    conn = runner.connect(_settings(daemon))
    threading.Thread(target=lambda: (time.sleep(1.0), daemon.server.worker.running.cancel.set()), daemon=True).start()
    with pytest.raises(PluginError, match="stopped the drag"):
        runner.run_drag(conn.client, NO_LAYER, None, PAIRS, _settings(daemon, steps=5000), Recorder())
    conn.close()


def test_stop_request_cancels_within_a_step(daemon) -> None:
    conn = runner.connect(_settings(daemon))
    rec = Recorder(stop_after=2)
    with pytest.raises(Cancelled):
        runner.run_drag(conn.client, NO_LAYER, None, PAIRS, _settings(daemon, steps=5000), rec)
    conn.close()
    assert len(rec.events) < 20  # a few steps went by between the request and the stop, not thousands
    assert _wait_idle(daemon, 5.0) < 5.0


@pytest.mark.slow
def test_daemon_dying_mid_run_is_a_clear_error(tmp_path: Path) -> None:
    """Issue 11, bug 7: reported from missed heartbeats within 5 s, even with the 60-s timeout old profiles keep."""
    proc = spawn_daemon_process(tmp_path / "doomed.json")
    settings = params.RunSettings.from_values(
        {"connection-file": str(tmp_path / "doomed.json"), "invert-first": False, "steps": 5000, "timeout": 60.0}
    )
    conn = runner.connect(settings)
    killed_at: list[float] = []

    class KillOnFirstStep(Recorder):
        def progress(self, fraction: float, text: str) -> None:
            super().progress(fraction, text)
            if not killed_at:  # the daemon crashes while the drag is under way
                proc.kill()
                killed_at.append(time.monotonic())

    rec = KillOnFirstStep()
    try:
        with pytest.raises(PluginError, match="stopped answering"):
            runner.run_drag(conn.client, NO_LAYER, None, PAIRS, settings, rec)
    finally:
        conn.close()
        proc.kill()
        proc.wait()
    assert killed_at, "the drag never started"
    waited = time.monotonic() - killed_at[0]
    print(f"the plug-in gave up {waited:.1f} s after the daemon was killed")
    assert waited < 5.0


KILLED_PLUGIN = """
import sys, time
from draggan_gimp import params, runner
from draggan_gimp.pairs import strokes_to_pairs
from draggan_gimp.watchdog import Watchdog

settings = params.RunSettings.from_values({"connection-file": sys.argv[1], "invert-first": False, "steps": 5000})
conn = runner.connect(settings)
dog = Watchdog(conn.info.endpoint, conn.info.key, conn.client.client_id)

class Feedback:
    def status(self, text): pass
    def progress(self, fraction, text):
        print("STEP", text, flush=True)
    def preview(self, image): pass
    def message(self, text): pass
    def stop_requested(self): return False

pairs = strokes_to_pairs([[(20.0, 40.0), (16.0, 35.0)]], size=(64, 64)).pairs
runner.run_drag(conn.client, runner.LayerInput(b"", 64, 64), None, pairs, settings, Feedback(), dog)
"""


def test_watchdog_cancels_the_job_when_the_plugin_is_killed(daemon) -> None:
    """GIMP's Cancel kills the plug-in; the daemon must still stop dragging within about a step."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_PLUGIN, str(daemon.connection_file)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        for _ in range(3):  # the drag is under way
            line = proc.stdout.readline()
            assert line.startswith("STEP"), line
        assert daemon.server.worker.running is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        waited = _wait_idle(daemon, 10.0)
        print(f"daemon idle {waited:.2f} s after the plug-in was killed")
        assert daemon.server.worker.running is None and waited < 3.0
    finally:
        if proc.poll() is None:
            proc.kill()
