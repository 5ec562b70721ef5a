"""The GIMP dialog's "Start the daemon" without GIMP (draggan_gimp.starting): a real `draggan serve` started
detached and answering hello; a program that stops at once reported with its log; nothing found said in words."""

from __future__ import annotations

import os
import signal
import sys
import time

from gimp_env import PLUGIN_DIR  # noqa: F401  (puts the plug-in folder on sys.path)

from draggan_gimp import runner  # isort: skip
from draggan_gimp.params import RunSettings  # isort: skip
from draggan_gimp.starting import COMMAND_ENV, Starter  # isort: skip


def program(tmp_path, body: str) -> str:
    path = tmp_path / "draggan"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def settings_for(conn) -> callable:
    return lambda: RunSettings.from_values({"connection-file": str(conn)})


def wait(starter: Starter, timeout: float = 120.0) -> str:
    end = time.monotonic() + timeout
    while starter.poll() == "starting" and time.monotonic() < end:
        time.sleep(0.1)
    return starter.state


def test_started_daemon_answers_and_is_described(tmp_path, monkeypatch):
    serve = f'exec "{sys.executable}" -m draggan_daemon.cli "$@" --no-bundled --builtin-test-model --threads 1'
    monkeypatch.setenv(COMMAND_ENV, program(tmp_path, serve))
    starter = Starter(settings_for(tmp_path / "c.json"), runner.connect)
    try:
        assert "Starting the DragGAN daemon (set in the plugin's settings)" in starter.start()
        assert wait(starter) == "ready", starter.text
        assert runner.model_names(starter.hello) and "running on" in runner.describe_daemon(starter.hello)
        conn = runner.connect(settings_for(tmp_path / "c.json")())  # what OK then does
        conn.close()
    finally:
        if starter.launch is not None and starter.launch.process.poll() is None:
            os.killpg(starter.launch.process.pid, signal.SIGKILL)
            starter.launch.process.wait(10)


def test_a_program_that_stops_at_once_is_reported_with_its_log(tmp_path, monkeypatch):
    monkeypatch.setenv(COMMAND_ENV, program(tmp_path, 'echo "cannot load model: CUDA out of memory" >&2; exit 2'))
    starter = Starter(settings_for(tmp_path / "c.json"), runner.connect)
    starter.start()
    assert wait(starter, 30) == "failed"
    assert "exit status 2" in starter.text and "CUDA out of memory" in starter.text


def test_no_program_found(tmp_path, monkeypatch):
    monkeypatch.setenv(COMMAND_ENV, str(tmp_path / "missing"))
    starter = Starter(settings_for(tmp_path / "c.json"), runner.connect)
    assert "missing" in starter.start() and starter.state == "failed" and starter.launch is None


def test_the_dialogs_daemon_program_comes_before_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(COMMAND_ENV, program(tmp_path, "exit 9"))
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    own = program(chosen, 'echo "the chosen one" >&2; exit 4')
    settings = lambda: RunSettings.from_values({"connection-file": str(tmp_path / "c.json"), "daemon-command": own})  # noqa: E731
    starter = Starter(settings, runner.connect)
    starter.start()
    assert wait(starter, 30) == "failed" and "exit status 4" in starter.text and "the chosen one" in starter.text
