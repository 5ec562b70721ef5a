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


# The painter-facing parameters come first, in the order the plug-ins show them; the tuning knobs after.
TABLE: tuple[Parameter, ...] = (
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
        "Show the picture as it is every this many steps (0 = no previews by count). Previews cost time: with "
        "one every 5 steps a drag runs at about two thirds of its speed without, with one every step at a third",
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


_check_table()
