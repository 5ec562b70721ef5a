"""Cancel the daemon's job when the plug-in process dies.

GIMP's Cancel button on a plug-in's progress bar does not ask the plug-in to stop: GIMP closes the plug-in's
pipe and kills the process about 10 ms later. A killed plug-in cannot tell the daemon anything, and the daemon
would go on dragging until the plug-in's heartbeats are missed. So for the length of a run the plug-in keeps a
tiny companion process that holds nothing but a pipe from the plug-in. When that pipe closes while a job is
running, the companion connects with the plug-in's client identity (the daemon ties jobs to it) and cancels the
job, so the daemon stops within one step of the click.

Parent side: `Watchdog`. Child side: `python -m draggan_gimp.watchdog`, fed JSON lines on stdin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CANCEL_DEADLINE = 5.0  # seconds the companion keeps trying to reach the daemon
RESEND_EVERY = 0.3


class Watchdog:
    """Spawns the companion; `arm(job_id)` while a job runs, `disarm()` after, `close()` at the end of the run."""

    def __init__(self, endpoint: str, key: str, client_id: str, curve: list[str] | None = None) -> None:
        here = Path(__file__).resolve().parent.parent  # the plug-in folder, which holds draggan_gimp
        paths = [str(here), str(here / "vendor"), *sys.path]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "draggan_gimp.watchdog"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self._send({"endpoint": endpoint, "key": key, "client_id": client_id, "curve": curve})

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _send(self, obj: dict[str, Any]) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write((json.dumps(obj) + "\n").encode("utf-8"))
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the companion is gone; a missing safety net must not break the run itself

    def arm(self, job_id: str) -> None:
        self._send({"arm": job_id})

    def disarm(self) -> None:
        self._send({"arm": None})

    def close(self) -> None:
        self._send({"quit": True})
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self._proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def cancel_as(config: dict[str, Any], job_id: str, deadline: float = CANCEL_DEADLINE) -> bool:
    """Cancel `job_id` speaking as the client `config['client_id']`. True when the daemon answered."""
    from draggan_protocol import Client, DaemonError, DaemonUnreachable
    from draggan_protocol.signing import plain_credentials
    from draggan_protocol.transport import open_transport

    curve = tuple(c.encode("ascii") for c in config["curve"]) if config.get("curve") else None
    identity = config["client_id"].encode("ascii")
    # The daemon still holds the dead plug-in's connection for a moment and refuses a second peer with the same
    # identity until it notices; the socket reconnects by itself, and resending covers a message lost meanwhile.
    plain = None if curve else plain_credentials(config["key"])
    transport = open_transport(config["endpoint"], identity=identity, curve=curve, plain=plain)
    client = Client(config["endpoint"], config["key"], transport=transport)
    client.client_id = config["client_id"]
    end = time.monotonic() + deadline
    try:
        while time.monotonic() < end:
            try:
                client.request("cancel", {"job_id": job_id}, timeout=RESEND_EVERY)
                return True
            except DaemonError:
                return True  # e.g. the job had already finished: nothing left to stop
            except (DaemonUnreachable, OSError):
                continue
        return False
    finally:
        client.close()


def child_main(stream: Any = None) -> int:
    """Read the plug-in's instructions until its pipe closes; cancel the armed job if it closed unexpectedly."""
    stream = stream or sys.stdin.buffer
    config: dict[str, Any] | None = None
    armed: str | None = None
    for raw in stream:
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        if "endpoint" in msg:
            config = msg
        elif "arm" in msg:
            armed = msg["arm"]
        elif msg.get("quit"):
            return 0
    if config is None or not armed:
        return 0
    return 0 if cancel_as(config, armed) else 1


if __name__ == "__main__":
    raise SystemExit(child_main())
