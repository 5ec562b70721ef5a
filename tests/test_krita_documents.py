"""The docker in the real Krita (GUI under Xvfb) on documents like artists' own: issue 11's Krita bugs.

One Krita run (tests/krita_app/pykrita/draggan_documents_check, a test-only plugin installed beside the plugin
from its zip) drives the docker as a person would on a 300-dpi document with a group, hidden layers and a
selection: lines drawn with the line tool, Drag, Apply, undo and redo, a drag the daemon refuses at once, a
document opened on a hidden top layer, a second document. The daemon runs in this process, with the small test
generator and fits of a few steps: what is checked is the docker, not the drag's quality (test_krita_app does that).
It runs against each Krita of tests/krita_env.py (the host's 5.1 and the trixie chroot's 5.2: the `krita` fixture).
"""

from __future__ import annotations

import json

import pytest
from draggan_daemon.engine import inversion
from krita_env import use
from test_daemon_support import running_daemon
from test_krita_app import (
    install_check_plugin,
    install_into_profile,
    keep_artifacts,
    krita,
    plugin_zip,
    run_krita_gui,
    workdir,
)

__all__ = ["krita", "plugin_zip", "workdir"]  # fixtures, used by name

CHECK_NAME = "draggan_documents_check"


@pytest.fixture(scope="module")
def quick_daemon(tmp_path_factory):
    """A daemon on a background thread of this process: the small test generator, fits of a few steps."""
    patch = pytest.MonkeyPatch()
    original = inversion.InversionConfig.from_preset.__func__

    def few_steps(cls, name="fast", **kw):
        return original(cls, name, **{**kw, "w_steps": 4, "wplus_steps": 4, "pti_steps": 0, "w_avg_samples": 64})

    patch.setattr(inversion.InversionConfig, "from_preset", classmethod(few_steps))
    try:
        with running_daemon(tmp_path_factory.mktemp("daemon") / "daemon.json") as server:
            yield server.connection_file
    finally:
        patch.undo()


@pytest.mark.krita
@pytest.mark.slow
def test_docker_on_documents_like_artists_own(krita, plugin_zip, quick_daemon, workdir):
    use(krita, gui=True)
    prof, env = install_into_profile(plugin_zip, workdir)
    install_check_plugin(prof, CHECK_NAME)
    result = workdir / "documents.json"
    out = krita.artifacts if krita.root is None else workdir / "out"
    env.update(
        DRAGGAN_CONNECTION_FILE=krita.place(quick_daemon, workdir),
        DRAGGAN_DOCS_CHECK=str(result),
        DRAGGAN_DOCS_WORK=str(workdir),
        DRAGGAN_DOCS_OUT=str(out),
        DRAGGAN_DOCS_TIMEOUT="200",
    )
    r, res = run_krita_gui(krita, env, result, "krita_documents.log", "krita_documents.json", 260)
    keep_artifacts(krita, out)
    print("Krita", res.get("krita_version"))
    failed = sorted(name for name, ok in res["checks"].items() if not ok)
    print("checks:", ", ".join(f"{k}={'ok' if v else 'FAILED'}" for k, v in res["checks"].items()))
    print("details:", json.dumps(res.get("details", {}), default=str)[:3000])
    assert res["ok"] and not failed, json.dumps({"failed": failed, **res}, indent=1, default=str)[:6000]
    assert r.returncode == 0
