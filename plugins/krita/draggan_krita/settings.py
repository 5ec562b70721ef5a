"""The parameters a person may change, with defaults, remembered between Krita sessions.

Defaults, ranges and choices of the drag's parameters come from the protocol's one table
(`draggan_protocol.parameters`), which the daemon and the GIMP plug-in read too; only what is Krita's own (the
model name, whether the Parameters section is open) is decided here.

Stored through Krita's own settings (`Krita.writeSetting`, kept in kritarc) when running inside Krita, else in a
QSettings file; both are plain strings, so values are parsed back with their type and range checked.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Protocol

from draggan_protocol import parameters as table

GROUP = "DragGAN"


class Store(Protocol):
    def read(self, key: str) -> str | None: ...

    def write(self, key: str, value: str) -> None: ...


# The table's fields this plug-in offers: the numbers have a spin box each, the choices a combo box.
NUMBERS = ("steps", "lr", "mask_weight", "preview_every")
CHOICES = ("preset", "invert_preset", "output", "preview_detail")


@dataclass
class Params:
    steps: int = table.default("steps")
    lr: float = table.default("lr")  # 0: automatic, the daemon picks it by the model's resolution
    mask_weight: float = table.default("mask_weight")
    model: str = ""  # empty: the daemon's default model
    preview_every: int = table.default("preview_every")  # 0: no previews by count
    preview_detail: str = table.default("preview_detail")  # "draft": previews at the drag's pace; "full": in full
    invert_preset: str = table.default("invert_preset")
    output: str = table.default("output")  # "transfer": the layer's own pixels, moved; "generator": its picture
    show_advanced: bool = False
    preset: str = table.default("preset")  # the drag's settings: "studio" (this project's) or "official" (DragGAN's)

    OUTPUTS = table.get("output").choices
    PRESETS = tuple((pr.name, pr.label) for pr in table.PRESETS)  # (wire name, what the combo box shows)

    LIMITS = {name: table.limits(name) for name in NUMBERS}

    def drag_params(self) -> dict[str, Any]:
        """The `params` of a drag request; an automatic (0) learning rate is left to the daemon (and the preset)."""
        values = {"preset": self.preset, "steps": self.steps, "lr": self.lr, "mask_weight": self.mask_weight}
        return table.drag_params(values)

    def clamp(self) -> Params:
        """Every number pulled into the table's range, every choice the table does not know set to its default."""
        for name in (*NUMBERS, *CHOICES):
            setattr(self, name, table.clamp(name, getattr(self, name)))
        return self


def load(store: Store) -> Params:
    p = Params()
    for f in fields(Params):
        raw = store.read(f.name)
        if raw is None or raw == "":
            continue
        default = getattr(p, f.name)
        try:
            if isinstance(default, bool):
                value: Any = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                value = type(default)(raw)
        except (TypeError, ValueError):
            continue  # a hand-edited or older value: keep the default
        setattr(p, f.name, value)
    return p.clamp()


def save(store: Store, params: Params) -> None:
    for f in fields(Params):
        value = getattr(params, f.name)
        store.write(f.name, ("true" if value else "false") if isinstance(value, bool) else str(value))


class KritaStore:
    """Krita's settings (kritarc, group [DragGAN])."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def read(self, key: str) -> str | None:
        value = self.app.readSetting(GROUP, key, "")
        return value or None

    def write(self, key: str, value: str) -> None:
        self.app.writeSetting(GROUP, key, value)


class QtStore:
    """A QSettings file, for use outside Krita (tests, other hosts)."""

    def __init__(self, settings: Any = None) -> None:
        from PyQt5.QtCore import QSettings

        self.settings = settings or QSettings("DragGAN Studio", "krita-plugin")

    def read(self, key: str) -> str | None:
        value = self.settings.value(f"{GROUP}/{key}")
        return None if value is None else str(value)

    def write(self, key: str, value: str) -> None:
        self.settings.setValue(f"{GROUP}/{key}", value)
        self.settings.sync()


def default_store(app: Any | None) -> Store:
    if app is not None and hasattr(app, "readSetting") and hasattr(app, "writeSetting"):
        return KritaStore(app)
    return QtStore()
