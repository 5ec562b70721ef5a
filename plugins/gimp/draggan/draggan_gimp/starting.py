"""The dialog's "Start the daemon", without GIMP: start `draggan serve` detached, then watch until it answers.

The daemon program is found by the client core (draggan_protocol.launcher): the dialog's "Daemon program" (the
`daemon-command` argument, remembered by GIMP) or $DRAGGAN_DAEMON_COMMAND when set (a `draggan` program, its
virtual environment or the DragGAN Studio folder), else the one the installer noted next to the plug-in, else
`draggan` on PATH. The dialog polls `Starter.poll` from a GLib timer, so GIMP stays usable
while the model loads; once the daemon answers hello, the dialog shows it like a daemon that was running already.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from draggan_protocol import default_connection_file
from draggan_protocol.launcher import DaemonLaunch, find_daemon_command

from .errors import PluginError
from .params import RunSettings

COMMAND_ENV = "DRAGGAN_DAEMON_COMMAND"
START_TIMEOUT = 180.0  # a first start loads torch and the model; a slow disk takes a while
PLUGIN_FOLDER = Path(__file__).resolve().parent.parent  # holds the installer's daemon_command.json


class Starter:
    """One press of "Start the daemon" and what came of it: `state` is idle, starting, ready or failed."""

    def __init__(self, settings: Callable[[], RunSettings], connect: Callable[..., Any]) -> None:
        self.settings = settings
        self.connect = connect  # runner.connect
        self.state = "idle"
        self.text = ""
        self.hello: dict[str, Any] = {}
        self.launch: DaemonLaunch | None = None
        self._deadline = 0.0

    @property
    def busy(self) -> bool:
        return self.state == "starting"

    def connection_file(self) -> Path:
        configured = self.settings().connection_file
        return Path(configured).expanduser() if configured else default_connection_file()

    def start(self) -> str:
        configured = self.settings().daemon_command or os.environ.get(COMMAND_ENV, "")
        command, how = find_daemon_command(configured, [PLUGIN_FOLDER])
        if command is None:
            self.state, self.text = "failed", how
            return self.text
        try:
            self.launch = DaemonLaunch(command, self.connection_file())
        except OSError as exc:
            self.state, self.text = "failed", f"The DragGAN daemon could not be started ({command[0]}: {exc})."
            return self.text
        self.state = "starting"
        self.text = f"Starting the DragGAN daemon ({how}); the first start can take a minute…"
        self._deadline = time.monotonic() + START_TIMEOUT
        return self.text

    def poll(self) -> str:
        """Look once (call it from a timer while `state` is starting); returns the state."""
        if self.state != "starting" or self.launch is None:
            return self.state
        launched = self.launch.state()
        if launched == "exited":
            self.state, self.text = "failed", self.launch.failure_text()
        elif launched == "running":
            try:
                conn = self.connect(self.settings(), hello_timeout=2.0)
            except PluginError:
                pass  # written its file, not answering yet: look again
            else:
                self.hello = dict(conn.hello)
                conn.close()
                self.state, self.text = "ready", "The DragGAN daemon is running."
        if self.state == "starting" and time.monotonic() > self._deadline:
            self.state = "failed"
            self.text = f"The DragGAN daemon did not answer within {START_TIMEOUT:.0f} s. " + self.launch.failure_text()
        return self.state
