"""The GIMP dialog's "Suggest a model" without GIMP (draggan_gimp.suggesting), against a real daemon on loopback
serving two models: the layer the bundled model drew is ranked to the bundled model; a daemon that is not there
is said in words."""

from __future__ import annotations

import time

import numpy as np
import torch
from draggan_daemon.engine.loaders import load_generator
from draggan_daemon.server.models import BUNDLED_FILE
from gimp_env import start_daemon

from draggan_gimp import runner  # isort: skip
from draggan_gimp.params import RunSettings  # isort: skip
from draggan_gimp.suggesting import Suggester  # isort: skip


def bundled_layer() -> runner.LayerInput:
    G = load_generator(BUNDLED_FILE).generator
    with torch.no_grad():
        img = G.synthesis(G.z_to_ws(5, 0.7))
    rgb = ((img[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    return runner.LayerInput(rgba.tobytes(), 64, 64, (0, 0), "Face")


def test_suggest_picks_the_model_that_drew_the_layer(tmp_path):
    daemon = start_daemon(tmp_path / "c.json")
    daemon.server.registry.add_generator("bundled", load_generator(BUNDLED_FILE).generator.eval().requires_grad_(False))
    try:
        settings = lambda: RunSettings.from_values({"connection-file": str(tmp_path / "c.json")})  # noqa: E731
        s = Suggester(settings, runner.connect, bundled_layer)
        assert s.start().startswith("Sending the layer") and s.state == "running"
        end = time.monotonic() + 120
        texts = set()
        while s.poll() == "running" and time.monotonic() < end:
            texts.add(s.text)
            time.sleep(0.05)
        assert s.state == "done" and s.best == "bundled", s.text
        assert s.text.startswith("Best fit: bundled (") and "then builtin-test (" in s.text, s.text
        assert any(t.startswith("Trying model") for t in texts), texts
        assert not daemon.server.store.sessions  # the suggestion's session is closed again
    finally:
        daemon.stop()


def test_no_daemon_is_said_in_words(tmp_path):
    settings = lambda: RunSettings.from_values({"connection-file": str(tmp_path / "none.json")})  # noqa: E731
    s = Suggester(settings, runner.connect, bundled_layer)
    assert "not running" in s.start() and s.state == "failed"
