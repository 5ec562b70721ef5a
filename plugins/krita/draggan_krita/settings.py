"""The parameters a person may change, with defaults, remembered between Krita sessions.

Stored through Krita's own settings (`Krita.writeSetting`, kept in kritarc) when running inside Krita, else in a
QSettings file; both are plain strings, so values are parsed back with their type and range checked.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Protocol

GROUP = "DragGAN"


class Store(Protocol):
    def read(self, key: str) -> str | None: ...

    def write(self, key: str, value: str) -> None: ...


@dataclass
class Params:
    steps: int = 200
    lr: float = 0.0  # 0: automatic, the daemon picks it by the model's resolution
    mask_weight: float = 20.0
    model: str = ""  # empty: the daemon's default model
    preview_every: int = 5
    invert_preset: str = "fast"
    output: str = "transfer"  # "transfer": the layer's own pixels, moved; "generator": the generator's picture
    show_advanced: bool = False

    OUTPUTS = ("transfer", "generator")

    LIMITS = {
        "steps": (1, 5000),
        "lr": (0.0, 0.5),
        "mask_weight": (0.0, 1000.0),
        "preview_every": (1, 100),
    }

    def drag_params(self) -> dict[str, Any]:
        """The `params` of a drag request; an automatic (0) learning rate is left to the daemon."""
        sent: dict[str, Any] = {"steps": self.steps, "mask_weight": self.mask_weight}
        if self.lr > 0:
            sent["lr"] = self.lr
        return sent

    def clamp(self) -> Params:
        for name, (lo, hi) in self.LIMITS.items():
            setattr(self, name, type(getattr(self, name))(min(max(getattr(self, name), lo), hi)))
        if self.invert_preset not in ("fast", "quality"):
            self.invert_preset = "fast"
        if self.output not in self.OUTPUTS:
            self.output = "transfer"
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
