"""The drag parameters a person or a script may set: one table that the daemon and every plug-in are built from.

Each entry names a field of the drag request by its wire name (PROTOCOL.md §6, drag), with its type, the value
it starts at, its range or choices, its unit, and a label and help text in words a painter understands. The
daemon's request checks (`validation`), the engine's defaults (`DragConfig`), Krita's `Params` and GIMP's PDB
arguments all read their defaults and ranges from here, so that a default changed here changes everywhere and
two places can no longer disagree (they did: 300 steps in the engine and 200 on the wire, learning-rate ceilings
of 0.1, 0.5 and 1).

This module uses nothing but the standard library and no relative imports, and keeps to Python 3.10: Krita's and
GIMP's embedded Pythons import it, and a test imports it on its own with `python -S -I`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Where a field sits in a drag request: inside its `params` map, or beside `points` in the request itself.
PARAMS = "params"
REQUEST = "request"

KINDS = ("int", "float", "str", "bool")


@dataclass(frozen=True)
class Parameter:
    """One settable field of a drag request.

    `default` is what a plug-in starts at and what the daemon uses when a client sends nothing; None means the
    daemon works the value out itself (from the model's size, mostly), and then the field is best left out of the
    request. `automatic`, where not None, is a value inside the range that means the same as leaving the field out
    (the learning rate's 0): plug-ins can offer it as "Auto" in a number field. `nullable` says whether the wire
    accepts nil for the field.
    """

    name: str  # the wire name, as in PROTOCOL.md §6
    kind: str  # one of KINDS
    default: Any
    label: str
    help: str
    place: str = PARAMS
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    unit: str = ""
    automatic: Any = None
    nullable: bool = False
    choice_labels: tuple[str, ...] | None = None  # what a plug-in's menu shows for each of `choices`, in order

    def limits(self) -> tuple[Any, Any]:
        """(minimum, maximum) in the parameter's own type, for a number field's range."""
        if self.minimum is None or self.maximum is None:
            raise ValueError(f"{self.name} has no numeric range")
        if self.kind == "int":
            return int(self.minimum), int(self.maximum)
        return float(self.minimum), float(self.maximum)

    def is_automatic(self, value: Any) -> bool:
        """Whether `value` leaves the choice to the daemon (None, or the parameter's 'automatic' value)."""
        return value is None or (self.automatic is not None and value == self.automatic)


@dataclass(frozen=True)
class Preset:
    """A named set of drag settings that a request's `params.preset` selects; the request's own values win.

    `values` are wire values of `params` fields; a field it leaves out keeps the table's default. `scaling` says
    how the engine works out what stays automatic (None) from the model's size: "studio" with this project's
    rules (`DragConfig.resolve`), "official" with the official code's own rounding of its 512-pixel radii.
    """

    name: str
    label: str
    help: str
    values: Mapping[str, Any]
    scaling: str


#: The project's own settings, and the official DragGAN GUI's. The studio's differ from the GUI's on purpose:
#: a learning rate of 2e-3 (the paper's for FFHQ, AFHQ-cat and LSUN-car, the GUI's 1e-3 takes about twice the
#: steps), raised below 256 px where one pixel is a larger share of the picture; sub-pixel tracking, so handles
#: can settle within 1 px instead of the GUI's 2 (a large error on a 64-pixel model); a guard against handles
#: jumping to look-alikes; arrival checked against the picture's measured motion; and radii and optimised ws
#: widened for models below 256 px, where the official rounding leaves no grip (r1 = round(3/512 H) is 0 below
#: 86 px). The measurements behind each are in `DragConfig.resolve`.
#: The official values (XingangPan/DragGAN `viz/`): `latent_widget.py` lr 0.001 and w+; `drag_widget.py` r1 3,
#: r2 12 and lambda_mask 20; `renderer.py` ws = cat(ws[:, :6], w0[:, 6:]), tracking by the nearest feature on
#: whole pixels, r1 and r2 scaled as round(r / 512 H), stop when every handle is within max(2 / 512 H, 2) px;
#: no arrival check beyond the tracker's, no guard.
PRESETS: tuple[Preset, ...] = (
    Preset(
        "studio",
        "DragGAN Studio",
        "This project's own settings: sub-pixel tracking guarded against jumps, arrival checked against the "
        "picture's motion, stop within 1 px, a learning rate of 2e-3 (the paper's; more for models below 256 px), "
        "grip and search radii widened for small models",
        {},
        "studio",
    ),
    Preset(
        "official",
        "Official DragGAN",
        "The official DragGAN program's settings, to compare with it: learning rate 1e-3, the first 6 layers "
        "changed, whole-pixel tracking within 12 px, a 3-pixel grip (both at 512 px, scaled with the "
        "model's size), stop within 2 px, the tracker alone decides arrival",
        {
            "lr": 1e-3,
            "latent_space": "w+",
            "optimised_layers": 6,
            "mask_weight": 20.0,
            "tracking": "nearest",
            "jump_guard": False,
            "measured_arrival": False,
        },
        "official",
    ),
)

PRESETS_BY_NAME: dict[str, Preset] = {p.name: p for p in PRESETS}

# The painter-facing parameters come first, in the order the plug-ins show them; the tuning knobs after.
TABLE: tuple[Parameter, ...] = (
    Parameter(
        "preset",
        "str",
        PRESETS[0].name,
        "Settings",
        "Which settings a drag starts from; values set by hand win. "
        + "; ".join(f"'{p.name}': {p.help[0].lower()}{p.help[1:]}" for p in PRESETS),
        choices=tuple(p.name for p in PRESETS),
    ),
    Parameter(
        "output",
        "str",
        "transfer",
        "Result",
        "What the new layer is made of. 'transfer': your layer's own pixels, moved the way the generator moved its "
        "picture (your detail and resolution stay; content that truly appears, such as an opened mouth, comes from "
        "the generator). 'generator': the generator's own picture of the region, scaled up to the layer (softer)",
        place=REQUEST,
        choices=("transfer", "generator"),
    ),
    Parameter(
        "steps",
        "int",
        200,
        "Steps",
        "The most steps the drag may take. It stops earlier once every handle has reached its target; more steps "
        "let a long drag get there, at the cost of time",
        minimum=1,
        maximum=5000,
        unit="steps",
    ),
    Parameter(
        "lr",
        "float",
        0.0,
        "Learning rate",
        "How far the picture may change in one step; 0 = automatic: the daemon picks it for the model's size, "
        "which suits most pictures. Larger values get there in fewer steps but can smear or jump",
        minimum=0.0,
        maximum=0.1,
        automatic=0.0,
    ),
    Parameter(
        "mask_weight",
        "float",
        20.0,
        "Mask strength",
        "How firmly the parts outside the selection are held in place while dragging (0 = not at all). Raise it "
        "when parts you did not select still change",
        minimum=0.0,
        maximum=1000.0,
    ),
    Parameter(
        "preview_every",
        "int",
        5,
        "Preview every",
        "Show the picture as it is every this many steps (0 = no previews by count). Previews never slow the drag "
        "by more than about a third: where they would, some are drawn in less detail or left out, unless "
        "'Preview detail' is 'full'",
        place=REQUEST,
        minimum=0,
        maximum=5000,
        unit="steps",
    ),
    Parameter(
        "preview_seconds",
        "float",
        None,
        "Preview every (seconds)",
        "Also show the picture when this many seconds have passed since the last preview (empty = only by count)",
        place=REQUEST,
        minimum=0.0,
        maximum=3600.0,
        unit="seconds",
        nullable=True,
    ),
    Parameter(
        "preview_detail",
        "str",
        "draft",
        "Preview detail",
        "'draft': a preview leaves out the finest detail when drawing it in full would slow the drag down (on a "
        "CPU it mostly does); 'full': every preview in full detail, at the drag's expense. The result is always "
        "in full detail",
        place=REQUEST,
        choices=("draft", "full"),
        choice_labels=("Draft (faster drag)", "Full (slower drag)"),
    ),
    Parameter(
        "invert_preset",
        "str",
        "fast",
        "Fit quality",
        "How carefully the model learns to draw your layer before the first drag: 'fast' takes seconds, "
        "'quality' takes longer and keeps more of the likeness",
        place=REQUEST,
        choices=("fast", "quality"),
    ),
    Parameter(
        "new_content",
        "float",
        None,
        "New content",
        "With 'transfer' only: how much of what the generator adds that moving your pixels cannot explain (an "
        "opened mouth) is painted in, from 0 (none) to 1 (all). Empty = the daemon's choice (none today)",
        place=REQUEST,
        minimum=0.0,
        maximum=1.0,
        unit="share",
        nullable=True,
    ),
    Parameter(
        "latent_space",
        "str",
        "w+",
        "Latent space",
        "'w+': each layer of the generator may change on its own (follows the drag more closely); 'w': all of "
        "them together (changes the picture more evenly)",
        choices=("w", "w+"),
    ),
    Parameter(
        "optimised_layers",
        "int",
        None,
        "Layers changed",
        "How many of the generator's first layers the drag may change: fewer keep the look, more let shapes move "
        "further. Empty = automatic, by the model's size",
        minimum=1,
        maximum=64,
        unit="layers",
    ),
    Parameter(
        "r1",
        "float",
        None,
        "Grip radius",
        "How large a patch around each handle is pushed towards its target. Empty = automatic, by the model's size",
        minimum=0.5,
        maximum=256.0,
        unit="model pixels",
    ),
    Parameter(
        "r2",
        "float",
        None,
        "Search radius",
        "How far from its last place a handle is looked for after each step. Empty = automatic, by the model's size",
        minimum=0.5,
        maximum=256.0,
        unit="model pixels",
    ),
    Parameter(
        "stop_distance",
        "float",
        None,
        "Close enough",
        "A handle this close to its target counts as arrived. Empty = automatic, by the model's size",
        minimum=0.0,
        maximum=1e4,
        unit="model pixels",
    ),
    Parameter(
        "tracking",
        "str",
        "subpixel",
        "Tracking",
        "How a handle is found again after each step: 'subpixel' between pixels (handles can settle closer), "
        "'nearest' on whole pixels, as the original DragGAN",
        choices=("subpixel", "nearest"),
    ),
    Parameter(
        "jump_guard",
        "bool",
        True,
        "Jump guard",
        "On: a handle that the tracker would move further than its grip in one step, to a look-alike, is held "
        "where it was. Off: the tracker's answer is taken as it is, as in the original DragGAN",
    ),
    Parameter(
        "seed",
        "int",
        0,
        "Noise seed",
        "Which random noise a model that draws with fresh noise every step uses; the same seed repeats a drag",
        minimum=0,
        maximum=2**32 - 1,
    ),
    Parameter(
        "measured_arrival",
        "bool",
        True,
        "Check arrival",
        "On: the daemon checks that the picture really moved before it believes a handle has arrived. Off: the "
        "point tracker alone decides, as in the original DragGAN",
    ),
)

BY_NAME: dict[str, Parameter] = {p.name: p for p in TABLE}


def get(name: str) -> Parameter:
    """The entry for wire name `name`; a KeyError that lists the known names otherwise (a typo fails loudly)."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no drag parameter {name!r}; known: {', '.join(BY_NAME)}") from None


def names(place: str | None = None) -> tuple[str, ...]:
    """Wire names in table order, all or only those at `place` (PARAMS or REQUEST)."""
    return tuple(p.name for p in TABLE if place is None or p.place == place)


def default(name: str) -> Any:
    """The default of one parameter (None: the daemon works it out)."""
    return get(name).default


def defaults(place: str | None = None) -> dict[str, Any]:
    """Every default by wire name, all or only those at `place`: what a fresh plug-in or a bare request means."""
    return {p.name: p.default for p in TABLE if place is None or p.place == place}


def preset(name: str) -> Preset:
    """The preset called `name`; a KeyError that lists the known presets otherwise."""
    try:
        return PRESETS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"no drag preset {name!r}; known: {', '.join(PRESETS_BY_NAME)}") from None


def with_preset(params: Mapping[str, Any]) -> tuple[dict[str, Any], Preset]:
    """A drag's `params` with its preset's values filled in beneath its own, and the preset.

    `params` may name its preset (`preset`, else the table's default); every other value it gives wins over the
    preset's, except an automatic one (None, a learning rate of 0), which asks for the preset's value or, where
    the preset has none, the engine's choice. The result no longer holds `preset` and holds no automatic value.
    """
    chosen = preset(str(params.get("preset") or default("preset")))
    merged: dict[str, Any] = dict(chosen.values)
    for name, value in params.items():
        if name != "preset" and not get(name).is_automatic(value):
            merged[name] = value
    return merged, chosen


def describe_presets() -> list[dict[str, Any]]:
    """The presets as plain data (name, label, help, values, scaling), for `hello_reply.capabilities`."""
    return [
        {"name": p.name, "label": p.label, "help": p.help, "values": dict(p.values), "scaling": p.scaling}
        for p in PRESETS
    ]


def limits(name: str) -> tuple[Any, Any]:
    """(minimum, maximum) of a numeric parameter, typed like it: a spin box's range."""
    return get(name).limits()


def clamp(name: str, value: Any) -> Any:
    """`value` made acceptable for `name`: converted to its type and pulled into its range.

    None, NaN and a choice that is not one of the choices give the default, so a hand-edited or stale setting
    falls back to something sensible instead of a request the daemon refuses. Integers are rounded, not cut:
    7.6 steps is 8. A value that cannot be read as the type at all raises ValueError (or TypeError), as int()
    and float() do: that is the caller's to report.
    """
    p = get(name)
    if value is None:
        return p.default
    if p.kind == "bool":
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if p.kind == "str":
        text = str(value)
        if p.choices is not None and text not in p.choices:
            return p.default
        return text
    number = float(value)
    if math.isnan(number):
        return p.default
    if p.minimum is not None:
        number = max(number, float(p.minimum))
    if p.maximum is not None:
        number = min(number, float(p.maximum))
    if p.kind == "int":
        return int(round(number)) if math.isfinite(number) else p.default
    return number


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_AUTOMATIC = ("", "auto", "none")


def describe_range(name: str) -> str:
    """What `name` accepts, in words: "an integer from 1 to 5000", "one of: fast, quality", "true or false"."""
    p = get(name)
    if p.kind == "bool":
        text = "true or false"
    elif p.choices is not None:
        text = "one of: " + ", ".join(p.choices)
    elif p.minimum is not None and p.maximum is not None:
        lo, hi = p.limits()
        text = f"an integer from {lo} to {hi}" if p.kind == "int" else f"a number from {lo:g} to {hi:g}"
    else:
        text = "a text"
    if p.default is None:
        text += ", or 'auto' (the daemon's choice)"
    return text


def parse(name: str, text: str) -> Any:
    """The value of `name` written as `text` (a command line's FIELD=VALUE): read as the field's kind and
    checked against its range or choices, never clamped. 'auto' (or nothing) gives None where the default is
    None. Raises ValueError naming the field and what it accepts (KeyError for an unknown field)."""
    p = get(name)
    word = text.strip()
    if p.default is None and word.lower() in _AUTOMATIC:
        return None
    bad = ValueError(f"{name} must be {describe_range(name)}, not {text!r}")
    if p.kind == "bool":
        if word.lower() in _TRUE:
            return True
        if word.lower() in _FALSE:
            return False
        raise bad
    if p.kind == "str":
        if p.choices is not None and word not in p.choices:
            raise bad
        return word
    try:
        number: Any = int(word) if p.kind == "int" else float(word)
    except ValueError:
        raise bad from None
    if not math.isfinite(number):
        raise bad
    if (p.minimum is not None and number < p.minimum) or (p.maximum is not None and number > p.maximum):
        raise bad
    return number


def drag_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """The `params` map of a drag request from `values` (wire names), each clamped, automatic ones left out.

    Leaving an automatic value (None, a learning rate of 0) out is what lets the daemon choose it for the model;
    sending it would pin it. A name that is not a `params` field raises KeyError: a plug-in that sends
    `preview_every` inside `params` would otherwise be ignored without a word.
    """
    sent: dict[str, Any] = {}
    for name, value in values.items():
        p = get(name)
        if p.place != PARAMS:
            raise KeyError(f"{name!r} is a field of the drag request itself, not of its params")
        if p.is_automatic(value):
            continue
        sent[name] = clamp(name, value)
    return sent


def _check_table() -> None:
    """Catch a malformed entry when the module is imported rather than when a painter meets it."""
    for p in TABLE:
        if p.kind not in KINDS or p.place not in (PARAMS, REQUEST):
            raise AssertionError(f"{p.name}: kind {p.kind!r} / place {p.place!r}")
        if p.default is not None:
            if p.choices is not None and p.default not in p.choices:
                raise AssertionError(f"{p.name}: default {p.default!r} is not a choice")
            if p.minimum is not None and not (p.minimum <= p.default <= p.maximum):
                raise AssertionError(f"{p.name}: default {p.default!r} outside {p.minimum}..{p.maximum}")
    if len(BY_NAME) != len(TABLE):
        raise AssertionError("two entries share a name")
    for pr in PRESETS:
        if pr.scaling not in ("studio", "official"):
            raise AssertionError(f"preset {pr.name}: scaling {pr.scaling!r}")
        for name, value in pr.values.items():
            p = BY_NAME.get(name)
            if p is None or p.place != PARAMS or name == "preset":
                raise AssertionError(f"preset {pr.name}: {name!r} is not a drag params field")
            if clamp(name, value) != value or p.is_automatic(value):
                raise AssertionError(f"preset {pr.name}: {name} = {value!r} is not a value the table accepts")


_check_table()
