"""`draggan models suggest IMAGE` (issue 13, item 3): a short fit with each candidate, best first. A picture the
bundled model drew ranks the bundled model above the disk fixture; a model of the wrong shape is not tried; a
broken file is reported in the ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from draggan_daemon import models_cli
from draggan_daemon.engine.generator import Generator, GeneratorConfig
from draggan_daemon.engine.loaders import load_generator
from draggan_daemon.engine.suggest import aspect_mismatch, rank_models
from draggan_daemon.server.models import BUNDLED_FILE
from PIL import Image

DISK = Path(__file__).resolve().parent / "fixtures" / "disk_generator.safetensors"


def bundled_picture(seed: int = 5) -> np.ndarray:
    G = load_generator(BUNDLED_FILE).generator
    with torch.no_grad():
        img = G.synthesis(G.z_to_ws(seed, 0.7))
    rgb = ((img[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])


def test_the_model_that_drew_a_picture_ranks_first(tmp_path, capsys):
    torch.set_num_threads(1)
    Image.fromarray(bundled_picture()).save(tmp_path / "face.png")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    rc = models_cli.main(
        ["suggest", str(tmp_path / "face.png"), "--models-dir", str(tmp_path / "none"), "--model", str(DISK),
         "--model", str(broken), "--steps", "8"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    ranked = [line.split(".", 1)[1].split("(")[0].strip() for line in out.splitlines() if line.startswith("  1.")]
    assert ranked == ["bundled"], out
    assert "2. disk_generator" in out and "broken: not tried, it does not load" in out


def test_a_model_of_the_wrong_shape_is_not_tried():
    tall = Generator(GeneratorConfig(z_dim=32, w_dim=32, img_resolution=32, channel_base=256, channel_max=32,
                                     mapping_layers=2, square=False))  # fmt: skip
    wide_layer = np.zeros((40, 120, 4), np.uint8)
    wide_layer[..., :3], wide_layer[..., 3] = 128, 255
    assert "0.5:1" in aspect_mismatch(120, 40, tall) and aspect_mismatch(60, 110, tall) == ""
    fits = rank_models(wide_layer, [("humans", lambda: tall)], steps=2)
    assert fits[0].psnr_db is None and "width:height" in fits[0].skipped


def test_no_models_is_a_clear_error(tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    assert models_cli.main(["suggest", str(tmp_path / "x.png"), "--models-dir", str(tmp_path), "--no-bundled"]) == 1
    assert "no models to try" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["nope.png"])
def test_an_unreadable_image_is_a_clear_error(tmp_path, capsys, missing):
    assert models_cli.main(["suggest", str(tmp_path / missing), "--models-dir", str(tmp_path)]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_suggest_models_through_a_real_daemon():
    """The plugins' Suggest: a layer session, a suggest_models job over every model the daemon serves, the ranking."""
    from draggan_protocol.progress import progress_words
    from test_daemon_support import client_for, running_daemon

    with running_daemon() as server:
        server.registry.add_generator("bundled", load_generator(BUNDLED_FILE).generator.eval().requires_grad_(False))
        face = bundled_picture()
        with client_for(server) as c:
            sid = c.open_layer_session(face.tobytes(), face.shape[1], face.shape[0])["session_id"]
            events = []
            ranking = c.suggest_models(sid, steps=6, on_progress=events.append)
            assert [r["model"] for r in ranking][0] == "bundled", ranking
            assert {r["model"] for r in ranking} == {"bundled", "tiny"}
            assert ranking[0]["psnr_db"] > ranking[1]["psnr_db"]
            assert ranking[0]["domain"]
            shown = [progress_words(e.content)[1] for e in events if e.msg_type == "progress"]
            assert any(w.startswith("Trying model bundled") for w in shown), shown
            seed = c.open_seed_session(seed=1)["session_id"]
            with pytest.raises(Exception) as refused:
                c.suggest_models(seed)
            assert "layer session" in str(refused.value)
