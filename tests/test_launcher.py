"""Starting the daemon from an editor (draggan_protocol.launcher): finding `draggan`, a real detached daemon that a
client then reaches through its connection file, and a daemon that fails at once reported with its log."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from draggan_protocol import Client
from draggan_protocol.launcher import HINT_FILE, DaemonLaunch, find_daemon_command, installer_hint


def fake_draggan(folder: Path) -> Path:
    exe = folder / ".venv" / "bin" / "draggan"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return exe


def test_the_command_is_found_in_the_settings_the_installation_then_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    project = tmp_path / "DragGAN Studio"
    exe = fake_draggan(project)
    # the setting: the project folder, its venv, or the program itself
    for configured in (project, project / ".venv", exe):
        assert find_daemon_command(str(configured)) == ([str(exe)], "set in the plugin's settings")
    command, why = find_daemon_command(str(tmp_path / "nowhere"))
    assert command is None and "nowhere" in why
    # the installer's hint next to the plugin
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    assert find_daemon_command("", [plugin])[0] is None
    (plugin / HINT_FILE).write_text(json.dumps({"command": ["/no/such/python", "-m", "x"], "project": str(project)}))
    assert find_daemon_command("", [plugin]) == ([str(exe)], "from the plugin's installation")
    (plugin / HINT_FILE).write_text(json.dumps(installer_hint()))
    assert find_daemon_command("", [plugin])[0] == [sys.executable, "-m", "draggan_daemon.cli"]
    (plugin / HINT_FILE).write_text("{not json")
    command, why = find_daemon_command("", [plugin])
    assert command is None and "make run" in why
    # PATH last
    monkeypatch.setenv("PATH", str(exe.parent))
    assert find_daemon_command("", [plugin]) == ([str(exe)], "on PATH")


DAEMON = [sys.executable, "-m", "draggan_daemon.cli"]
TEST_MODEL = ["--no-bundled", "--builtin-test-model", "--threads", "1"]


def wait_state(launch: DaemonLaunch, timeout: float = 120.0) -> str:
    end = time.monotonic() + timeout
    while launch.state() == "starting" and time.monotonic() < end:
        time.sleep(0.1)
    return launch.state()


def test_a_daemon_started_detached_is_reached_through_its_connection_file(tmp_path):
    conn = tmp_path / "conf" / "connection.json"
    launch = DaemonLaunch(DAEMON, conn, TEST_MODEL)
    try:
        assert wait_state(launch) == "running", launch.failure_text()
        assert os.getsid(launch.process.pid) == launch.process.pid  # its own session: outlives the editor's
        with Client.connect(conn) as c:
            assert c.hello()["models"]
        assert launch.log_path.is_file() and "starting:" in launch.log_tail()
    finally:
        launch.process.kill()
        launch.process.wait(10)


def test_a_daemon_that_exits_at_once_is_reported_with_its_log(tmp_path):
    conn = tmp_path / "connection.json"
    launch = DaemonLaunch(DAEMON, conn, ["--no-bundled", "--model", str(tmp_path / "missing.pkl")])
    assert wait_state(launch, 60.0) == "exited"
    text = launch.failure_text()
    assert "stopped right after starting" in text and "missing.pkl" in text and str(launch.log_path) in text
    assert not conn.exists()


def test_a_stale_connection_file_does_not_count_as_running(tmp_path):
    conn = tmp_path / "connection.json"
    conn.write_text("{}")
    old = time.time() - 3600
    os.utime(conn, (old, old))
    launch = DaemonLaunch([sys.executable, "-c", "import time; time.sleep(30)"], conn)
    try:
        assert launch.state() == "starting"
    finally:
        launch.process.kill()
        launch.process.wait(10)
