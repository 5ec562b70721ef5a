"""The models a daemon serves: the bundled one, files given by path, a models folder, or a built-in test model.

Files are loaded lazily (on the worker thread, the first time a session asks for them) except the default,
which `serve` loads at start so that the first session does not wait and a broken file is reported at once.

A models folder is watched, not read once: each model list (hello, list_models) and each request for a name the
registry does not know lists the folder again (one directory read), so a checkpoint that `draggan models pull`
or `add` puts there is offered at once, and one that `remove` deleted is dropped (unless a session loaded it).
A card `NAME.json` next to `NAME.pkl` (written by `draggan models`) gives the model's domain, licence and
resolution before it is loaded.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from draggan_daemon.engine.generator import Generator, GeneratorConfig
from draggan_daemon.engine.standin import random_generator

from .logs import event

log = logging.getLogger("draggan.models")

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "models"
BUNDLED_FILE = BUNDLED_DIR / "bundled.safetensors"
MODEL_SUFFIXES = (".safetensors", ".pkl", ".pt", ".pth")
BUILTIN_NAME = "builtin-test"
BUNDLED_DOMAIN = "emoji faces (cartoon)"
CARD_FIELDS = ("domain", "licence", "title", "url")


def default_models_dir() -> Path:
    """Where `draggan models` puts checkpoints and `draggan serve` looks for them: $DRAGGAN_MODELS_DIR, else the
    user's data folder (Linux ${XDG_DATA_HOME:-~/.local/share}/draggan/models, macOS ~/Library/Application
    Support/DragGAN/models, Windows %LOCALAPPDATA%\\DragGAN\\models)."""
    env = os.environ.get("DRAGGAN_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "DragGAN" / "models"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "DragGAN" / "models"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "draggan" / "models"


def read_card(model_path: Path) -> dict[str, Any]:
    """The model's card (`NAME.json` beside `NAME.pkl`), or {} when there is none or it is not a JSON object."""
    try:
        card = json.loads(model_path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


def builtin_test_generator(resolution: int = 64, seed: int = 0) -> Generator:
    """A small StyleGAN2 with deterministic random weights: no file needed, draws textures rather than faces.

    It exists so the daemon, the plugins and the tests can run end to end before (or without) a trained model.
    """
    cfg = GeneratorConfig(
        z_dim=64,
        w_dim=64,
        img_resolution=resolution,
        mapping_layers=2,
        channel_base=max(64 * resolution // 2, 256),
        channel_max=64,
    )
    return random_generator(cfg, seed=seed, w_avg_samples=256)


@dataclass
class ModelEntry:
    name: str
    path: Path | None
    origin: str  # "bundled" | "path" | "models-dir" | "builtin"
    generator: Generator | None = None
    source_format: str = ""
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)

    def describe(self, default: str | None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "origin": self.origin,
            "loaded": self.generator is not None,
            "default": self.name == default,
        }
        if self.generator is not None:
            d["resolution"] = int(self.generator.img_resolution)
            cfg = self.generator.synthesis.cfg
            d["picture"] = [cfg.img_resolution, cfg.width(cfg.img_resolution)]  # H, W drawn (padded to H x H)
            d["num_ws"] = int(self.generator.num_ws)
            d["source_format"] = self.source_format
        else:  # not loaded yet: what the card says, if it says it
            res, picture = self.card.get("resolution"), self.card.get("picture")
            if isinstance(res, int) and res > 0:
                d["resolution"] = res
                if isinstance(picture, list) and len(picture) == 2 and all(isinstance(v, int) for v in picture):
                    d["picture"] = picture
        for key in CARD_FIELDS[:2]:
            value = self.card.get(key)
            if isinstance(value, str) and value:
                d[key] = value
        if self.error:
            d["error"] = self.error
        return d


class ModelRegistry:
    """Name -> model; loads on demand and keeps loaded generators on the daemon's device."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.entries: dict[str, ModelEntry] = {}
        self.default: str | None = None
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self.watched: list[Path] = []
        self._seen: set[Path] = set()

    def _unique(self, name: str) -> str:
        base, i = name, 2
        while name in self.entries:
            name = f"{base}-{i}"
            i += 1
        return name

    def add_generator(self, name: str, G: Generator, origin: str = "builtin", make_default: bool = False) -> str:
        name = self._unique(name)
        card = {"domain": "random textures (test model)", "licence": "MIT (this project)"}
        self.entries[name] = ModelEntry(name, None, origin, G.to(self.device), source_format="builtin", card=card)
        if make_default or self.default is None:
            self.default = name
        return name

    def add_path(self, path: str | Path, origin: str = "path", make_default: bool = False) -> str:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"model file not found: {p}")
        name = self._unique(p.stem)
        card = read_card(p)
        if origin == "bundled":
            card.setdefault("domain", BUNDLED_DOMAIN)
        self.entries[name] = ModelEntry(name, p, origin, card=card)
        if make_default or self.default is None:
            self.default = name
        return name

    def scan_dir(self, folder: str | Path) -> list[str]:
        """Serve every checkpoint in `folder` (which must exist) and keep watching it."""
        d = Path(folder).expanduser()
        if not d.is_dir():
            raise FileNotFoundError(f"models folder not found: {d}")
        return self.watch_dir(d)

    def watch_dir(self, folder: str | Path) -> list[str]:
        """Serve the checkpoints in `folder` now and whatever appears there later; it need not exist yet."""
        d = Path(folder).expanduser()
        with self._scan_lock:
            if d not in self.watched:
                self.watched.append(d)
            return self._rescan(d)

    def refresh(self) -> list[str]:
        """List the watched folders again: add new checkpoints, drop vanished ones nobody loaded. New names."""
        if not self.watched:
            return []
        with self._scan_lock:
            return [name for d in self.watched for name in self._rescan(d)]

    def _rescan(self, d: Path) -> list[str]:
        try:
            present = {d / n for n in os.listdir(d) if Path(n).suffix.lower() in MODEL_SUFFIXES and n[:1] != "."}
        except OSError:  # not there (yet), or unreadable: nothing from it
            present = set()
        present = {p for p in present if p.is_file()}
        known = {e.path: e for e in list(self.entries.values()) if e.origin == "models-dir" and e.path is not None}
        for path, entry in known.items():
            if path.parent == d and path not in present and entry.generator is None:
                del self.entries[entry.name]
                if self.default == entry.name:
                    self.default = next(iter(self.entries), None)
                event(log, "model_gone", name=entry.name, path=path)
            elif path in present and not entry.card:  # a card written after the checkpoint (`models add` in place)
                entry.card = read_card(path)
        added, first = [], d not in self._seen
        for path in sorted(present - set(known)):
            added.append(self.add_path(path, "models-dir"))
            if not first:
                event(log, "model_found", name=added[-1], path=path)
        self._seen.add(d)
        return added

    def describe(self) -> list[dict[str, Any]]:
        self.refresh()
        return [e.describe(self.default) for e in list(self.entries.values())]

    def resolve_name(self, name: str | None) -> str:
        """The entry name a request means; KeyError when there is no such model."""
        if not name:
            if self.default is None:
                raise KeyError("this daemon has no model loaded")
            return self.default
        if name not in self.entries:
            self.refresh()  # perhaps it has just been put in a watched folder
        if name not in self.entries:
            raise KeyError(f"no model named {name!r}; available: {', '.join(self.entries) or 'none'}")
        return name

    def get(self, name: str | None) -> Generator:
        """The loaded generator (loading it first if needed). Raises KeyError, or the loader's CheckpointError."""
        entry = self.entries[self.resolve_name(name)]
        with self._lock:
            if entry.generator is None:
                self._load(entry)
            assert entry.generator is not None
            return entry.generator

    def _load(self, entry: ModelEntry) -> None:
        from draggan_daemon.engine.loaders import load_generator

        try:
            loaded = load_generator(entry.path)
        except Exception as exc:
            entry.error = str(exc)
            event(log, "model_load_failed", logging.ERROR, name=entry.name, path=entry.path, error=exc)
            raise
        entry.generator = loaded.generator.to(self.device).eval().requires_grad_(False)
        entry.source_format = loaded.source_format
        entry.metadata = dict(loaded.metadata or {})
        entry.error = None
        event(
            log,
            "model_loaded",
            name=entry.name,
            path=entry.path,
            format=loaded.source_format,
            resolution=entry.generator.img_resolution,
            device=self.device,
        )
