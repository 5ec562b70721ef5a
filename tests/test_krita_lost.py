"""Issue 11: in the real Krita (GUI under Xvfb, 5.1 on the host and 5.2 in the trixie chroot), a daemon that stops
answering mid-drag is reported by the docker within 5 s, and the docker is idle and usable again.

The daemon is `draggan serve` in its own process; once the docker says the drag runs, the test freezes it with
SIGSTOP (its TCP connection stays open, as with a machine gone to sleep or a hung process), so the only way to
notice is the heartbeats it no longer answers. The test-only plugin tests/krita_app/pykrita/draggan_lost_check
drives the docker and writes what it saw.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from gimp_env import spawn_daemon_process
from krita_env import use
from test_krita_app import install_check_plugin, install_into_profile, krita, plugin_zip, run_krita_gui, workdir

__all__ = ["krita", "plugin_zip", "workdir"]  # fixtures, used by name

CHECK_NAME = "draggan_lost_check"
REPORTED_WITHIN = 5.0


@pytest.mark.krita
@pytest.mark.slow
def test_a_frozen_daemon_is_reported_within_5_s(krita, plugin_zip, workdir, tmp_path):
    use(krita, gui=True)
    daemon = spawn_daemon_process(tmp_path / "daemon.json")
    frozen_at: list[float] = []

    def freeze_when_dragging() -> None:
        end = time.monotonic() + 200
        while time.monotonic() < end and daemon.poll() is None:
            if (workdir / "dragging").exists():
                os.kill(daemon.pid, signal.SIGSTOP)
                frozen_at.append(time.time())
                (workdir / "frozen").write_text(str(frozen_at[0]))
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=freeze_when_dragging, daemon=True)
    try:
        prof, env = install_into_profile(plugin_zip, workdir)
        install_check_plugin(prof, CHECK_NAME)
        result = workdir / "lost.json"
        env.update(
            DRAGGAN_CONNECTION_FILE=krita.place(tmp_path / "daemon.json", workdir),
            DRAGGAN_LOST_CHECK=krita.inside(result),
            DRAGGAN_LOST_WORK=krita.inside(workdir),
        )
        watcher.start()
        r, res = run_krita_gui(krita, env, result, "krita_lost.log", "krita_lost.json", 260)
    finally:
        daemon.kill()  # SIGKILL ends a stopped process too
        daemon.wait(10)
    print(json.dumps(res, indent=1, default=str))
    assert res["ok"], res.get("error_in_check")
    waited = res["idle_at"] - frozen_at[0]
    print(f"{krita.label}: the docker reported the frozen daemon {waited:.1f} s after it froze")
    assert waited < REPORTED_WITHIN, res
    assert "stopped answering" in res["error"] and "The document is as it was" in res["error"], res
    assert res["buttons_usable"] and "DragGAN preview" not in res["layers"], res
    assert r.returncode == 0
