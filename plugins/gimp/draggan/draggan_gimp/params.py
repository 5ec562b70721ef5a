"""The plug-in's parameters, declared once.

The same table registers the PDB arguments (so scripts and batch runs pass them by name), fills the dialog, and
turns a run's values into the daemon's drag parameters. GIMP remembers the values of the last successful
interactive run for each procedure argument, which is how the dialog's choices persist between runs.

The arguments that are drag parameters (`wire` names one) take their default, range and help text from the
protocol's parameter table (`draggan_protocol.parameters`), which the daemon and the Krita plug-in read too; their
PDB names stay GIMP's own ('learning-rate', 'mask-strength') so that existing scripts keep working.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from draggan_protocol import parameters as table

from .errors import PluginError


@dataclass(frozen=True)
class Choice:
    """One value of a 'choice' parameter: the word scripts pass, the dialog's label, and a line of help."""

    nick: str
    label: str
    help: str


@dataclass(frozen=True)
class Param:
    name: str  # PDB argument name (GIMP wants lowercase words joined by '-')
    kind: str  # 'int' | 'double' | 'boolean' | 'string' | 'choice'
    label: str
    blurb: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    in_dialog: bool = True
    choices: tuple[Choice, ...] = ()
    wire: str | None = None  # the drag parameter of the protocol's table this argument is, if any

    def nicks(self) -> list[str]:
        return [c.nick for c in self.choices]


_GIMP_KINDS = {"int": "int", "float": "double", "str": "string", "bool": "boolean"}


def from_table(name: str, wire: str, label: str, choices: tuple[Choice, ...] = ()) -> Param:
    """The PDB argument `name` for the table's drag parameter `wire`: its kind, default, range and help from there.

    Only the PDB name and the dialog's label (with its mnemonic) are GIMP's; a choice parameter brings its
    choices' dialog wording, and they must be exactly the table's choices, in its order.
    """
    p = table.get(wire)
    if p.choices is not None and tuple(c.nick for c in choices) != p.choices:
        raise AssertionError(f"{name}: choices {[c.nick for c in choices]} are not the table's {list(p.choices)}")
    return Param(
        name,
        "choice" if p.choices is not None else _GIMP_KINDS[p.kind],
        label,
        p.help,
        p.default,
        p.minimum,
        p.maximum,
        choices=choices,
        wire=wire,
    )


OUTPUT_CHOICES = (
    Choice(
        "transfer",
        "Keep my pixels (move them)",
        "The result is your layer's own pixels, moved the way the generator moved its picture: your detail and "
        "resolution stay; only content that truly appears (an opened mouth, teeth) comes from the generator",
    ),
    Choice(
        "generator",
        "Generator's picture",
        "The region shows the generator's own picture, scaled to the layer: at the model's resolution, so "
        "softer than your layer wherever it is larger than the model",
    ),
)


# The previews' detail: the table's choices and labels, with what each means.
DETAIL_CHOICES = tuple(
    Choice(nick, label, help)
    for nick, label, help in zip(
        table.get("preview_detail").choices,
        table.get("preview_detail").choice_labels,
        (
            "A preview may leave out the finest detail, so that it does not slow the drag",
            "Every preview in full detail, at the drag's expense",
        ),
        strict=True,
    )
)


# The drag presets: this project's settings and the official DragGAN program's, as the table words them.
SETTINGS_CHOICES = tuple(Choice(p.name, p.label, p.help) for p in table.PRESETS)


PARAMS: tuple[Param, ...] = (
    from_table("output", "output", "_Result", OUTPUT_CHOICES),
    from_table("steps", "steps", "_Steps"),
    from_table("learning-rate", "lr", "_Learning rate"),
    from_table("mask-strength", "mask_weight", "_Mask strength"),
    Param("model", "string", "_Model", "Model name on the daemon (empty: the daemon's default model)", ""),
    Param(
        "invert-first",
        "boolean",
        "_Fit my layer into the model first",
        "On (usual): the model first learns to draw your layer, then drags it. Off: your layer is not used; the "
        "model's own picture number 'seed' is dragged instead, placed at the layer's top-left corner at the "
        "model's size, and the strokes must lie on that picture",
        True,
    ),
    Param(
        "seed",
        "int",
        "S_eed (only when not fitting my layer)",
        "Which of the model's own pictures is dragged when 'Fit my layer into the model first' is off",
        0,
        0,
        2**31 - 1,
    ),
    Param(
        "preview-layer",
        "boolean",
        "Show a _preview layer while dragging",
        "Keep a temporary layer updated with the daemon's preview frames",
        False,
    ),
    Param(
        "connection-file",
        "string",
        "Connection file",
        "The daemon's connection file (empty: the default per-user location)",
        "",
        in_dialog=False,
    ),
    Param(
        "timeout",
        "double",
        "Timeout",
        "Seconds without any word from the daemon before the run is given up. The plug-in asks every second and a "
        "working daemon answers at once, so a daemon that is gone is noticed within 4 s whatever this says",
        4.0,
        1.0,
        3600.0,
        in_dialog=False,
    ),
    # New arguments go after `timeout` (the last of the first release), so scripts passing them in order keep working.
    from_table("settings", "preset", "Settin_gs", SETTINGS_CHOICES),
    Param(
        "frames",
        "int",
        "Keep animation _frames every … steps (0: none)",
        "Besides the result layer, open the drag's way there as a new image whose layers are its frames (one every "
        "this many steps, and the result), named 'Frame 1 (80ms) (replace)' …, so that Filters > Animation > "
        "Playback and File > Export As (GIF, as animation) play it at once. 0: no frames",
        0,
        0,
        table.get("steps").maximum,
    ),
    Param(
        "frame-ms",
        "int",
        "Frame _time (ms)",
        "How long each frame shows in the animation, in milliseconds (written into the frame layers' names, which "
        "GIMP's playback and GIF export read)",
        80,
        10,
        60000,
    ),
    Param(
        "daemon-command",
        "string",
        "_Daemon program",
        "What 'Start the daemon' runs when no daemon answers: a draggan program, its virtual environment or the "
        "DragGAN Studio folder (empty: the one the plug-in was installed from, else draggan on PATH); shown while no "
        "daemon answers",
        "",
    ),
    from_table("preview-detail", "preview_detail", "Pre_view detail", DETAIL_CHOICES),
)

BY_NAME = {p.name: p for p in PARAMS}


@dataclass
class RunSettings:
    """Validated values of one run, with Python names."""

    output: str = table.default("output")  # 'transfer' | 'generator' (the drag request's `output`)
    steps: int = table.default("steps")
    learning_rate: float = table.default("lr")  # 0: automatic
    mask_strength: float = table.default("mask_weight")
    model: str = ""
    invert_first: bool = True
    seed: int = 0
    preview_layer: bool = False
    connection_file: str = ""
    timeout: float = 4.0
    settings: str = table.default("preset")  # the drag preset: 'studio' | 'official' (the drag's `params.preset`)
    frames: int = 0  # keep a frame every this many steps (0: none), opened as an animation image
    frame_ms: int = 80  # each frame's time, in its layer's name
    daemon_command: str = ""  # what "Start the daemon" runs (empty: found automatically)
    preview_detail: str = table.default("preview_detail")  # the preview layer's: 'draft' | 'full'

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> RunSettings:
        """Build from PDB-style names ('learning-rate'), clamping numbers into their declared range.

        GIMP already enforces the ranges for PDB calls; clamping again keeps scripts that bypass GIMP honest.
        """
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            param = BY_NAME[f.name.replace("_", "-")]
            value = values.get(param.name, param.default)
            kwargs[f.name] = coerce(param, value)
        return cls(**kwargs)

    def drag_parameters(self) -> dict[str, Any]:
        """The daemon's drag parameters (names as in the protocol's drag request).

        The preset goes along; a learning rate of 0 is left out, so the daemon uses the preset's, or its own
        scaled to the model's resolution.
        """
        values = {"steps": self.steps, "lr": self.learning_rate, "mask_weight": self.mask_strength}
        return table.drag_params({"preset": self.settings, **values})


def coerce(param: Param, value: Any) -> Any:
    """`value` converted to the parameter's type and clamped to its range; defaults for None."""
    if value is None:
        return param.default
    if param.kind == "boolean":
        return bool(value)
    if param.kind == "string":
        return str(value)
    if param.kind == "choice":  # GIMP checks the choices of PDB calls; this catches scripts that bypass it
        text = str(value).strip().lower()
        if text not in param.nicks():
            raise PluginError(f"'{param.name}' must be one of {', '.join(param.nicks())}, not {value!r}.")
        return text
    number = int(round(float(value))) if param.kind == "int" else float(value)
    if param.minimum is not None:
        number = max(number, type(number)(param.minimum))
    if param.maximum is not None:
        number = min(number, type(number)(param.maximum))
    return number
