"""Presets (issue 12, item 3): the official DragGAN GUI's settings one choice away, in the protocol, the daemon,
`draggan edit` and both plug-ins."""

from __future__ import annotations

import gimp_env  # noqa: F401  (puts the GIMP plug-in folder on sys.path)
import pytest
import torch
from draggan_daemon.engine.drag import DragConfig, DragOptimizer
from draggan_daemon.server.edit_cli import build_parser, drag_fields, parse_setting
from draggan_daemon.server.engine_ops import drag_config
from draggan_protocol import parameters as table
from draggan_protocol.errors import ProtocolError
from draggan_protocol.spec import ErrorCode
from draggan_protocol.validation import validate_request
from fake_krita.support import use_fake_krita

use_fake_krita()

from draggan_gimp import params as gimp_params  # noqa: E402
from draggan_krita import settings as krita_settings  # noqa: E402


def _drag(params: dict) -> dict:
    return {"session_id": "s", "points": [[1, 2, 3, 4]], "params": params}


# ---------------------------------------------------------------- the table and the engine
def test_the_presets_are_the_studio_default_and_the_official_gui() -> None:
    assert [p.name for p in table.PRESETS] == ["studio", "official"]
    assert table.default("preset") == "studio" and table.get("preset").choices == ("studio", "official")
    assert table.preset("studio").values == {}  # the table's own defaults, nothing else
    assert dict(table.preset("official").values) == {
        "lr": 1e-3,  # viz/latent_widget.py
        "latent_space": "w+",
        "optimised_layers": 6,  # viz/renderer.py: ws = cat(ws[:, :6], w0[:, 6:])
        "mask_weight": 20.0,  # viz/drag_widget.py lambda_mask
        "tracking": "nearest",
        "jump_guard": False,
        "measured_arrival": False,
    }
    with pytest.raises(KeyError, match="known: studio, official"):
        table.preset("fancy")


@pytest.mark.parametrize(
    ("size", "r1", "r2", "stop"),
    [(512, 3.0, 12, 2.0), (1024, 6.0, 24, 4.0), (256, 2.0, 6, 2.0), (64, 1.0, 2, 2.0)],
)
def test_the_official_preset_resolves_to_the_official_values(size: int, r1: float, r2: int, stop: float) -> None:
    """round(3/512 H), round(12/512 H), stop max(2/512 H, 2), lr 1e-3, 6 ws; at 64 px the official r1 rounds to 0
    (nothing supervised), so 1."""
    config, check_arrival = drag_config({"preset": "official"})
    assert not check_arrival and config.tracking == "nearest" and not config.jump_guard
    assert config.latent_space == "w+" and config.mask_weight == 20.0 and config.scaling == "official"
    resolved = config.resolve(size)
    assert (resolved.lr, resolved.optimised_layers) == (1e-3, 6)
    assert (resolved.r1, resolved.r2, resolved.stop_distance) == (r1, r2, stop)
    assert resolved.min_motion == 1.0  # the official code moves a handle only while it is more than 1 px away
    assert round(3 / 512 * size) == r1 or size < 86


def test_the_studio_preset_is_the_engines_defaults() -> None:
    for params in ({}, {"preset": "studio"}):
        config, check_arrival = drag_config(params)
        assert check_arrival and config.tracking == "subpixel" and config.jump_guard
        for size in (64, 256, 512):
            assert config.resolve(size) == DragConfig().resolve(size)
    assert DragConfig().resolve(512).lr == 2e-3 and DragConfig().resolve(512).stop_distance == 2.0
    assert DragConfig().resolve(256).stop_distance == 1.0


def test_explicit_values_win_over_the_preset_and_automatic_ones_take_its_value() -> None:
    config, check_arrival = drag_config({"preset": "official", "lr": 0.004, "tracking": "subpixel", "r1": 5.0})
    resolved = config.resolve(512)
    assert (resolved.lr, resolved.r1, resolved.r2) == (0.004, 5.0, 12)
    assert config.tracking == "subpixel" and not check_arrival
    config, _ = drag_config({"preset": "official", "lr": 0.0, "r1": None})  # "Auto": the preset's
    assert config.resolve(512).lr == 1e-3 and config.resolve(512).r1 == 3.0
    config, check_arrival = drag_config({"preset": "official", "measured_arrival": True, "steps": 30})
    assert check_arrival and config.max_steps == 30


def test_the_official_preset_tracks_like_the_official_loop() -> None:
    """The engine with nothing but `preset: official` does what the official code does at its own defaults
    (lr 1e-3, r1 round(3/512 H), r2 round(12/512 H), 6 ws, stop max(2/512 H, 2)): the same tracked path."""
    from test_drag_engine import HANDLES, TARGETS, _generator, _reference_module

    G = _generator(256)
    ws = G.z_to_ws(28)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = _reference_module().ReferenceDrag(G, ws, lr=1e-3, r1=round(3 / 512 * 256), r2=round(12 / 512 * 256))
        ours = DragOptimizer(G, ws, drag_config({"preset": "official"})[0])
        ref.set_points(HANDLES, TARGETS)
        ours.set_points(HANDLES, TARGETS)
        for _ in range(5):
            a, b = ref.step(), ours.step()
            assert b.handles == a["handles"]
        assert (ours.ws - ref.current_ws()).abs().max() < 1e-5
        assert b.handles != [tuple(h) for h in HANDLES]  # the handles did move
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- the protocol
def test_a_drag_may_name_a_preset_and_an_unknown_one_is_refused() -> None:
    out = validate_request("drag", _drag({"preset": "official", "lr": 0.002, "tracking": "nearest"}))
    assert out["params"] == {"preset": "official", "lr": 0.002, "tracking": "nearest", "steps": 200}
    assert "preset" not in validate_request("drag", _drag({}))["params"]  # omitted: the engine's (studio)
    with pytest.raises(ProtocolError) as err:
        validate_request("drag", _drag({"preset": "fancy"}))
    assert err.value.code == ErrorCode.INVALID_CONTENT and err.value.field == "params.preset"
    assert "studio" in str(err.value) and "official" in str(err.value)
    for bad in ({"tracking": "bilinear"}, {"jump_guard": "yes"}):
        with pytest.raises(ProtocolError):
            validate_request("drag", _drag(bad))


def test_the_daemon_lists_the_presets_and_refuses_an_unknown_one() -> None:
    from draggan_protocol import DaemonError
    from test_daemon_support import client_for, running_daemon

    with running_daemon() as server, client_for(server) as c:
        hello = c.hello()
        presets = hello["capabilities"]["presets"]
        assert [p["name"] for p in presets] == ["studio", "official"]
        official = presets[1]
        assert official["values"]["lr"] == 1e-3 and official["scaling"] == "official" and official["label"]
        sid = c.open_seed_session(seed=1)["session_id"]
        with pytest.raises(DaemonError) as err:
            c.drag(sid, [(10, 12, 18, 14)], params={"preset": "fancy", "steps": 1}, preview_every=0)
        assert err.value.code == "invalid_content" and "params.preset" in err.value.message


# ---------------------------------------------------------------- draggan edit
def _edit_args(*extra: str):
    return build_parser().parse_args(["in.png", "--drag", "1,2:3,4", "-o", "out.png", *extra])


def test_edit_preset_and_set_build_the_drag_fields() -> None:
    params, request = drag_fields(_edit_args("--preset", "official"))
    assert params == {"steps": 200, "preset": "official"}
    assert drag_config(params)[0] == drag_config({"preset": "official"})[0]  # the engine's official preset
    args = _edit_args(
        "--preset",
        "official",
        "--lr",
        "0.01",
        "--set",
        "lr=0.002",
        "--set",
        "r1=auto",
        "--set",
        "tracking=subpixel",
        "--set",
        "jump-guard=on",
        "--set",
        "steps=40",
        "--set",
        "preview_every=3",
        "--set",
        "new_content=0.5",
        "--set",
        "output=generator",
    )
    params, request = drag_fields(args)
    assert params == {"steps": 40, "preset": "official", "lr": 0.002, "tracking": "subpixel", "jump_guard": True}
    assert request == {"preview_every": 3, "new_content": 0.5} and args.output_mode == "generator"
    assert validate_request("drag", {**_drag(params), **request})["params"] == params


def test_every_drag_field_can_be_set() -> None:
    for p in table.TABLE:
        if p.choices:
            text, expected = p.choices[-1], p.choices[-1]
        elif p.kind == "bool":
            text, expected = "off", False
        else:  # its upper limit, exactly
            expected = p.limits()[1]
            text = str(expected)
        name, value = parse_setting(f"{p.name}={text}")
        assert name == p.name and value == expected and type(value) is type(expected), p.name
        if p.default is None:
            assert parse_setting(f"{p.name}=auto") == (p.name, None)


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("lr=0.5", "lr must be a number from 0 to 0.1, not '0.5'"),
        ("steps=2.5", "steps must be an integer from 1 to 5000"),
        ("steps=0", "steps must be an integer from 1 to 5000"),
        ("r2=300", "r2 must be a number from 0.5 to 256, or 'auto'"),
        ("tracking=bilinear", "tracking must be one of: subpixel, nearest"),
        ("preset=fancy", "preset must be one of: studio, official"),
        ("jump_guard=maybe", "jump_guard must be true or false"),
        ("lr=nan", "lr must be a number"),
        ("stepz=3", "no drag field 'stepz'; the fields are: preset, output, steps"),
        ("steps", "expected FIELD=VALUE"),
    ],
)
def test_edit_set_refuses_with_the_field_and_its_range(setting: str, words: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        _edit_args("--set", setting)
    assert exit_.value.code == 2
    assert words in capsys.readouterr().err


def test_edit_options_take_their_defaults_from_the_table() -> None:
    args = _edit_args()
    assert args.steps == table.default("steps") and args.preset is None and args.set == []
    assert args.invert_preset == table.default("invert_preset") and args.output_mode == table.default("output")


# ---------------------------------------------------------------- the plug-ins
def test_krita_params_carry_the_preset() -> None:
    Params = krita_settings.Params
    assert Params().preset == "studio" and Params.PRESETS == (
        ("studio", "DragGAN Studio"),
        ("official", "Official DragGAN"),
    )
    sent = Params(preset="official").drag_params()
    assert sent == {"preset": "official", "steps": 200, "mask_weight": 20.0}  # lr Auto: the preset's 1e-3
    assert drag_config(sent)[0].resolve(512).lr == 1e-3

    class Memory:
        def __init__(self) -> None:
            self.data: dict[str, str] = {}

        def read(self, key: str) -> str | None:
            return self.data.get(key)

        def write(self, key: str, value: str) -> None:
            self.data[key] = value

    store = Memory()
    krita_settings.save(store, Params(preset="official"))
    assert krita_settings.load(store).preset == "official"
    store.data["preset"] = "fancy"  # hand-edited: back to the default
    assert krita_settings.load(store).preset == "studio"


def test_gimp_params_carry_the_preset() -> None:
    p = gimp_params.BY_NAME["settings"]
    assert p.kind == "choice" and p.wire == "preset" and p.default == "studio"
    assert tuple(p.nicks()) == ("studio", "official") and p.blurb == table.get("preset").help
    # after every argument of the earlier release: scripts that pass arguments in order keep working
    names = [q.name for q in gimp_params.PARAMS]
    assert names.index("settings") > names.index("timeout")
    run = gimp_params.RunSettings.from_values({"settings": "Official"})
    assert run.settings == "official"
    assert run.drag_parameters() == {"preset": "official", "steps": 200, "mask_weight": 20.0}
    assert gimp_params.RunSettings.from_values({}).drag_parameters()["preset"] == "studio"


def test_edit_preset_official_tracks_the_path_of_the_official_preset(tmp_path, monkeypatch, capsys) -> None:
    """`draggan edit --preset official --set lr=...` drags as a request naming the preset does, step for step, and
    not as the studio settings do."""
    import numpy as np
    from draggan_daemon.server import edit_cli
    from draggan_protocol import Client, ConnectionInfo, drag_request, write_connection_file
    from PIL import Image
    from test_daemon_support import client_for, running_daemon

    rng = np.random.default_rng(5)
    src = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(src).save(tmp_path / "in.png")
    paths: list[list] = []
    run_job = Client.run_job

    def recording(self, kind, content, buffers, on_progress=None, **kw):
        path: list = []
        paths.append(path)

        def on(msg):
            if msg.content.get("phase") == "drag":
                path.append(msg.content["handles"])
            if on_progress is not None:
                on_progress(msg)

        return run_job(self, kind, content, buffers, on_progress=on, **kw)

    monkeypatch.setattr(Client, "run_job", recording)
    drag, inv = [(14.0, 20.0, 20.0, 24.0)], {"w_steps": 2, "wplus_steps": 2, "pti_steps": 2}
    with running_daemon() as server:
        conn = write_connection_file(
            ConnectionInfo(endpoint=server.endpoint, key=server.config.key.decode()), tmp_path / "daemon.json"
        )
        args = [
            str(tmp_path / "in.png"),
            "--drag",
            "14,20:20,24",
            "--steps",
            "6",
            "--invert-steps",
            "2",
            "--set",
            "lr=0.05",
        ]
        rc = edit_cli.main(
            [*args, "--preset", "official", "-o", str(tmp_path / "o.png"), "--connection-file", str(conn)]
        )
        assert rc in (0, 1), capsys.readouterr().err
        with client_for(server) as c:
            for params in ({"steps": 6, "preset": "official", "lr": 0.05}, {"steps": 6, "lr": 0.05}):
                sid = c.open_layer_session(_rgba(src), 40, 40)["session_id"]
                content, buffers = drag_request(sid, drag, None, params, 0, invert_params=inv)
                c.run_job("drag", content, buffers)
    edit_path, official_path, studio_path = paths
    assert len(edit_path) >= 1 and edit_path == official_path
    assert edit_path[-1] != edit_path[0]  # the handle did move
    assert studio_path != official_path


def _rgba(rgb) -> bytes:
    import numpy as np

    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]).tobytes()
