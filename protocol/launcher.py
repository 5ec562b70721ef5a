"""Starting the daemon from an editor: find `draggan`, start it detached, tell how it went.

A painter who has never seen a terminal presses "Start the daemon" in the docker or the dialog. The plugin then
needs a command that works on this machine: the one set in its settings, else the one the installer wrote next to
the plugin (`draggan install krita|gimp` runs from the project's `.venv`, so it knows where that is), else the
project's `.venv` found from a folder, else `draggan` on PATH. The daemon is started in its own session with its
output going to a log file, so it outlives the editor's plugin call and an editor that closes; once it runs, the
plugin connects through the connection file as for a daemon started by hand, and a daemon that exits at once is
reported with the end of its log.

Pure standard library: it runs inside Krita's and GIMP's Pythons.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .outcome import START_DAEMON

HINT_FILE = "daemon_command.json"
"""Written by the plugin installers next to the plugin's package: {"command": [...], "project": "..."}."""

LOG_TAIL_LINES = 12


def _venv_draggan(folder: Path) -> Path | None:
    """`draggan` inside a virtual environment folder, or inside a project folder's `.venv`."""
    for venv in (folder, folder / ".venv"):
        for rel in ("bin/draggan", "Scripts/draggan.exe"):
            exe = venv / rel
            if exe.is_file() and os.access(exe, os.X_OK):
                return exe
    return None


def _from_setting(configured: str) -> list[str] | None:
    path = Path(configured).expanduser()
    if path.is_dir():
        exe = _venv_draggan(path)
        return [str(exe)] if exe else None
    if path.is_file() and os.access(path, os.X_OK):
        return [str(path)]
    found = shutil.which(configured)
    return [found] if found else None


def _from_hint(hint_dirs: Sequence[Path]) -> list[str] | None:
    for folder in hint_dirs:
        try:
            hint = json.loads((Path(folder) / HINT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        command = hint.get("command") if isinstance(hint, dict) else None
        if isinstance(command, list) and command and all(isinstance(c, str) for c in command):
            if Path(command[0]).is_file():
                return list(command)
        project = hint.get("project") if isinstance(hint, dict) else None
        if isinstance(project, str):
            exe = _venv_draggan(Path(project))
            if exe:
                return [str(exe)]
    return None


def find_daemon_command(configured: str = "", hint_dirs: Sequence[Path] = ()) -> tuple[list[str] | None, str]:
    """(the command that runs `draggan`, without `serve`; how it was found) or (None, where it looked, in words).

    `configured`: the plugin's setting (a `draggan` executable, a virtual environment or the project folder);
    `hint_dirs`: folders that may hold the installer's HINT_FILE."""
    if configured:
        command = _from_setting(configured)
        if command:
            return command, "set in the plugin's settings"
        return None, (
            f"The daemon command set in the plugin's settings ({configured}) is neither a program nor a folder "
            "with the daemon's .venv."
        )
    command = _from_hint(hint_dirs)
    if command:
        return command, "from the plugin's installation"
    found = shutil.which("draggan")
    if found:
        return [found], "on PATH"
    return None, (
        "No DragGAN daemon program was found (not next to the plugin's installation, not on PATH). Set the DragGAN "
        f"Studio folder in the plugin's settings, or start it by hand with: {START_DAEMON}."
    )


def installer_hint(project: Path | None = None) -> dict[str, object]:
    """What an installer writes into HINT_FILE: this Python's `draggan_daemon` (the `.venv` it runs from)."""
    hint: dict[str, object] = {"command": [sys.executable, "-m", "draggan_daemon.cli"]}
    if project is not None:
        hint["project"] = str(project)
    return hint


def default_log_path(connection_file: Path) -> Path:
    """Where a daemon started from an editor writes its output: next to its connection file."""
    return connection_file.parent / "daemon-started-from-editor.log"


class DaemonLaunch:
    """A `draggan serve` started detached; `state()` says "starting", "exited" (with `failure_text()`) or "running".

    "running" means the process is alive and its connection file was written after the start; whether it answers is
    for the client to find out (as for any daemon)."""

    def __init__(
        self,
        command: Sequence[str],
        connection_file: Path,
        serve_args: Sequence[str] = (),
        log_path: Path | None = None,
    ) -> None:
        self.connection_file = Path(connection_file)
        self.log_path = log_path or default_log_path(self.connection_file)
        self.argv = [*command, "serve", "--connection-file", str(self.connection_file), *serve_args]
        self.started = time.time()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(self.argv)}\n".encode())
            log.flush()
            kwargs: dict[str, object] = {}
            if os.name == "nt":
                kwargs["creationflags"] = 0x00000008 | 0x00000200  # DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP
            else:
                kwargs["start_new_session"] = True  # not killed with the editor's process group
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, close_fds=True, **kwargs
            )

    def state(self) -> str:
        if self.process.poll() is not None:
            return "exited"
        try:
            fresh = self.connection_file.stat().st_mtime >= self.started - 1.0
        except OSError:
            fresh = False
        return "running" if fresh else "starting"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def failure_text(self) -> str:
        """Why the daemon is not running, in words, with the end of its log."""
        code = self.process.poll()
        head = f"The DragGAN daemon stopped right after starting (exit status {code})."
        if code is None:
            head = "The DragGAN daemon has not written its connection file yet."
        return f"{head} Its log ({self.log_path}) ends with:\n{self.log_tail()}"
