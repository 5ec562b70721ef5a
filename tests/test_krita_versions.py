"""What the plugin relies on in Krita's scripting API, measured in each Krita the tests run (the host's 5.1 and the
trixie chroot's 5.2; tests/krita_env.py): vector shapes and the units of their SVG at 72 and 300 dpi, when
setActiveNode takes effect, the docker, what undo takes back of shape edits, a document's identity across Save As.

One Krita run (tests/krita_app/pykrita/draggan_versions_check, a test-only plugin installed beside the plugin from
its zip) records the facts and checks the plugin's own code on them; no daemon is needed.
"""

from __future__ import annotations

import json

import pytest
from krita_env import use
from test_krita_app import install_check_plugin, install_into_profile, krita, plugin_zip, run_krita_gui, workdir

__all__ = ["krita", "plugin_zip", "workdir"]  # fixtures, used by name

CHECK_NAME = "draggan_versions_check"


@pytest.mark.krita
@pytest.mark.slow
def test_what_the_plugin_relies_on_in_this_krita(krita, plugin_zip, workdir):
    use(krita, gui=True)
    prof, env = install_into_profile(plugin_zip, workdir)
    install_check_plugin(prof, CHECK_NAME)
    result = workdir / "versions.json"
    env.update(
        DRAGGAN_VERSIONS_CHECK=str(result),
        DRAGGAN_VERSIONS_WORK=str(workdir),
        DRAGGAN_VERSIONS_TIMEOUT="120",
    )
    r, res = run_krita_gui(krita, env, result, "krita_versions.log", "krita_versions.json", 200)
    print("Krita", res.get("krita_version"), "Python", res.get("python"))
    print("facts:", json.dumps(res["facts"], indent=1)[:6000])
    failed = sorted(name for name, ok in res["checks"].items() if not ok)
    assert res["ok"] and not failed, json.dumps({"failed": failed, **res}, indent=1, default=str)[:6000]
    assert r.returncode == 0
    facts = res["facts"]
    # Facts geometry.py and document.py are written for, the same in 5.1.5 and 5.2.9: addShapesFromSvg reads the
    # SVG's units as pixels and stores points (a 72/300 matrix at 300 dpi, the unit bug's cause), and all the lines
    # one addShapesFromSvg call adds are one undo step (the next one takes the points layer itself away).
    assert all("matrix(0.24 0 0 0.24 " in svg for svg in facts["added_svg_300dpi"]), facts["added_svg_300dpi"]
    assert all("translate(" in svg for svg in facts["added_svg_72dpi"]), facts["added_svg_72dpi"]
    for tag in ("72dpi", "300dpi"):
        assert facts[f"shapes_after_each_undo_{tag}"][:3] == [2, 0, -1], facts[f"shapes_after_each_undo_{tag}"]
