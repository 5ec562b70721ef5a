"""One parameter table (issue 11, item 2): the daemon, the engine and both plug-ins take their defaults from it."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import gimp_env  # noqa: F401  (puts the GIMP plug-in folder on sys.path)
import pytest
from draggan_protocol import parameters as table
from draggan_protocol.errors import ProtocolError
from draggan_protocol.validation import SCHEMAS, validate_request
from fake_krita.support import use_fake_krita

use_fake_krita()

from draggan_gimp import params as gimp_params  # noqa: E402
from draggan_krita import settings as krita_settings  # noqa: E402

PROTOCOL_DIR = Path(table.__file__).resolve().parent
NUMERIC = [p.name for p in table.TABLE if p.minimum is not None]
CHOICE = [p.name for p in table.TABLE if p.choices is not None]


def _request(name: str, value: object) -> dict:
    """A minimal drag request with `name` set to `value` where the protocol keeps it."""
    content: dict = {"session_id": "s", "points": [[1, 2, 3, 4]]}
    if table.get(name).place == table.PARAMS:
        content["params"] = {name: value}
    else:
        content[name] = value
    return content


def _validated(name: str, value: object) -> object:
    out = validate_request("drag", _request(name, value))
    return out["params"][name] if table.get(name).place == table.PARAMS else out[name]


def _path(name: str) -> str:
    return f"params.{name}" if table.get(name).place == table.PARAMS else name


# ---------------------------------------------------------------- the table itself
def test_table_imports_with_nothing_but_the_standard_library() -> None:
    """Krita's and GIMP's Pythons carry no third-party packages: the module must import alone, without site."""
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(PROTOCOL_DIR)!r})\n"
        "before = set(sys.modules)\n"
        "import parameters\n"
        "new = sorted(m for m in set(sys.modules) - before if m != 'parameters')\n"
        "bad = [m for m in new if m.split('.')[0] not in sys.stdlib_module_names]\n"
        "print('BAD', bad)\n"
        "print('STEPS', parameters.default('steps'))\n"
    )
    run = subprocess.run([sys.executable, "-S", "-I", "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "BAD []" in run.stdout and "STEPS 200" in run.stdout, run.stdout


def test_table_source_keeps_to_python_3_10() -> None:
    """The plug-ins' hosts may run 3.10: no syntax newer than that, no `match`, no dataclass options of 3.10+."""
    source = (PROTOCOL_DIR / "parameters.py").read_text(encoding="utf-8")
    tree = ast.parse(source, feature_version=(3, 10))
    assert not any(isinstance(node, ast.Match) for node in ast.walk(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "dataclass":
            assert {k.arg for k in node.keywords} <= {"frozen", "eq", "order", "init", "repr", "unsafe_hash"}
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert all(n.level == 0 for n in imports), "a relative import would not work when loaded on its own"


def test_every_wire_field_of_a_drag_is_in_the_table_and_nothing_else() -> None:
    drag = SCHEMAS["drag"]
    assert set(table.names(table.PARAMS)) == set(drag["params"].schema)
    structural = {"session_id", "points", "mask", "params", "invert_params", "frames"}  # drawn or kept, not set
    assert set(table.names(table.REQUEST)) == set(drag) - structural


@pytest.mark.parametrize("p", table.TABLE, ids=lambda p: p.name)
def test_each_entry_says_what_it_is_in_words(p: table.Parameter) -> None:
    assert p.kind in table.KINDS and p.label and len(p.help) > 30
    assert p.help[0].isupper() or p.help[0] == "'"
    if p.default is not None and p.minimum is not None:
        assert p.minimum <= p.default <= p.maximum
    if p.automatic is not None:  # "Auto" must be a value a number field can hold
        assert p.minimum <= p.automatic <= p.maximum and "automatic" in p.help


def test_clamp_pulls_values_into_range_and_falls_back_to_the_default() -> None:
    assert table.clamp("steps", 10**9) == 5000 and table.clamp("steps", -3) == 1
    assert table.clamp("steps", 7.6) == 8 and isinstance(table.clamp("steps", 7.6), int)
    assert table.clamp("steps", None) == 200 and table.clamp("steps", float("nan")) == 200
    assert table.clamp("lr", 99) == 0.1 and table.clamp("lr", -1) == 0.0
    assert table.clamp("output", "sideways") == "transfer" and table.clamp("output", "generator") == "generator"
    assert table.clamp("measured_arrival", "off") is False and table.clamp("measured_arrival", 1) is True
    assert table.clamp("r1", None) is None  # automatic stays automatic
    with pytest.raises(ValueError):
        table.clamp("steps", "lots")
    with pytest.raises(KeyError, match="known: preset, output, steps"):
        table.clamp("step", 3)


def test_drag_params_leave_automatic_values_to_the_daemon() -> None:
    assert table.drag_params({"steps": 50, "lr": 0.0, "mask_weight": 3, "r1": None}) == {
        "steps": 50,
        "mask_weight": 3.0,
    }
    assert table.drag_params({"lr": 0.5}) == {"lr": 0.1}
    with pytest.raises(KeyError, match="request itself"):
        table.drag_params({"preview_every": 5})


def test_limits_are_typed_for_spin_boxes() -> None:
    assert table.limits("steps") == (1, 5000) and all(type(v) is int for v in table.limits("steps"))
    assert table.limits("lr") == (0.0, 0.1) and all(type(v) is float for v in table.limits("lr"))
    with pytest.raises(ValueError):
        table.limits("output")


# ---------------------------------------------------------------- the daemon
@pytest.mark.parametrize("name", NUMERIC)
def test_validation_accepts_the_tables_range_and_refuses_just_outside(name: str) -> None:
    p = table.get(name)
    lo, hi = p.limits()
    assert _validated(name, lo) == lo and _validated(name, hi) == hi
    if p.kind == "int":
        below, above = lo - 1, hi + 1
    else:
        below, above = math.nextafter(lo, -math.inf), math.nextafter(hi, math.inf)
    for bad in (below, above):
        with pytest.raises(ProtocolError) as err:
            validate_request("drag", _request(name, bad))
        assert err.value.field == _path(name)


@pytest.mark.parametrize("name", CHOICE)
def test_validation_accepts_exactly_the_tables_choices(name: str) -> None:
    for choice in table.get(name).choices:
        assert _validated(name, choice) == choice
    with pytest.raises(ProtocolError) as err:
        validate_request("drag", _request(name, "sideways"))
    assert err.value.field == _path(name)


def test_a_bare_drag_gets_the_tables_defaults() -> None:
    out = validate_request("drag", {"session_id": "s", "points": [[1, 2, 3, 4]]})
    assert out["params"] == {"steps": table.default("steps")}  # the rest: the engine's defaults, below
    for name in table.names(table.REQUEST):
        if table.default(name) is None:
            assert name not in out  # the daemon's own choice
        else:
            assert out[name] == table.default(name)
    assert SCHEMAS["invert"]["preset"].default == table.default("invert_preset")
    assert SCHEMAS["invert"]["preset"].choices == table.get("invert_preset").choices


def test_the_engines_defaults_are_the_tables() -> None:
    from draggan_daemon.engine.drag import DragConfig

    config = DragConfig()
    assert config.max_steps == table.default("steps") == 200
    for name in ("mask_weight", "latent_space", "seed", "tracking", "jump_guard"):
        assert getattr(config, name) == table.default(name), name
    for name in ("lr", "r1", "r2", "optimised_layers", "stop_distance"):  # worked out by model size
        assert getattr(config, name) is None and table.get(name).is_automatic(table.default(name)), name


@pytest.mark.slow
def test_the_daemon_treats_a_learning_rate_of_zero_as_automatic_and_takes_the_maximum() -> None:
    """lr 0 must mean "the daemon's choice", exactly as leaving it out; pinning an Adam step of 0 would not move."""
    from test_daemon_support import client_for, running_daemon

    with running_daemon() as server, client_for(server) as c:
        sid = c.open_seed_session(seed=1)["session_id"]
        start = c.get_result(sid).pixels
        pictures = {}
        for lr in (None, 0.0, table.limits("lr")[1]):
            params = {"steps": 3} if lr is None else {"steps": 3, "lr": lr}
            events = []
            done = c.drag(sid, [(10, 12, 18, 14)], params=params, preview_every=0, on_progress=events.append)
            assert done["state"] == "done" and done["steps"] >= 1, done
            assert {m.content.get("max_steps") for m in events if m.msg_type == "progress"} == {3}
            pictures[lr] = c.get_result(sid).pixels
            c.undo(sid)
        assert pictures[0.0] == pictures[None] != start
        assert pictures[table.limits("lr")[1]] != pictures[None]


# ---------------------------------------------------------------- the plug-ins
def test_krita_params_are_the_tables() -> None:
    Params = krita_settings.Params
    fresh = Params()
    for name in (*krita_settings.NUMBERS, *krita_settings.CHOICES):
        assert getattr(fresh, name) == table.default(name), name
    assert Params.LIMITS == {name: table.limits(name) for name in ("steps", "lr", "mask_weight", "preview_every")}
    assert all(type(v) is int for v in Params.LIMITS["steps"] + Params.LIMITS["preview_every"])  # QSpinBox
    assert Params.OUTPUTS == table.get("output").choices
    # lr automatic: left to the daemon (and the preset)
    assert fresh.drag_params() == {"preset": "studio", "steps": 200, "mask_weight": 20.0}
    wild = Params(steps=10**6, lr=3.0, mask_weight=-5.0, preview_every=-1, invert_preset="best", output="x", preset="y")
    wild.clamp()
    assert (wild.steps, wild.lr, wild.mask_weight, wild.preview_every) == (5000, 0.1, 0.0, 0)
    assert (wild.invert_preset, wild.output, wild.preset) == ("fast", "transfer", "studio")
    sent = validate_request("drag", {"session_id": "s", "points": [[1, 2, 3, 4]], "params": wild.drag_params()})
    assert sent["params"] == {"preset": "studio", "steps": 5000, "lr": 0.1, "mask_weight": 0.0}


def test_gimp_params_are_the_tables() -> None:
    mapped = {p.name: p for p in gimp_params.PARAMS if p.wire is not None}
    # GIMP's own names stay, so scripts keep working; these are the table's.
    assert {n: p.wire for n, p in mapped.items()} == {
        "settings": "preset",
        "output": "output",
        "steps": "steps",
        "learning-rate": "lr",
        "mask-strength": "mask_weight",
        "preview-detail": "preview_detail",
    }
    unmapped = {p.name for p in gimp_params.PARAMS if p.wire is None}
    # Not drag parameters: 'seed' is the open_session seed (which picture), not the drag's noise seed.
    assert unmapped == {
        "model", "invert-first", "seed", "preview-layer", "connection-file", "timeout", "frames", "frame-ms",
        "daemon-command",
    }  # fmt: skip
    for p in mapped.values():
        entry = table.get(p.wire)
        assert (p.default, p.minimum, p.maximum, p.blurb) == (
            entry.default,
            entry.minimum,
            entry.maximum,
            entry.help,
        ), p.name
        if entry.choices is not None:
            assert p.kind == "choice" and tuple(p.nicks()) == entry.choices
    run = gimp_params.RunSettings.from_values({})
    assert (run.output, run.steps, run.learning_rate, run.mask_strength, run.settings) == tuple(
        table.default(n) for n in ("output", "steps", "lr", "mask_weight", "preset")
    )
    assert run.drag_parameters() == {"preset": "studio", "steps": 200, "mask_weight": 20.0}
