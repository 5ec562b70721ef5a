"""The models a daemon serves: the bundled one, files given by path, a models folder, or a built-in test model.

Files are loaded lazily (on the worker thread, the first time a session asks for them) except the default,
which `serve` loads at start so that the first session does not wait and a broken file is reported at once.
"""

from __future__ import annotations

import logging
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

    def _unique(self, name: str) -> str:
        base, i = name, 2
        while name in self.entries:
            name = f"{base}-{i}"
            i += 1
        return name

    def add_generator(self, name: str, G: Generator, origin: str = "builtin", make_default: bool = False) -> str:
        name = self._unique(name)
        self.entries[name] = ModelEntry(name, None, origin, G.to(self.device), source_format="builtin")
        if make_default or self.default is None:
            self.default = name
        return name

    def add_path(self, path: str | Path, origin: str = "path", make_default: bool = False) -> str:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"model file not found: {p}")
        name = self._unique(p.stem)
        self.entries[name] = ModelEntry(name, p, origin)
        if make_default or self.default is None:
            self.default = name
        return name

    def scan_dir(self, folder: str | Path) -> list[str]:
        d = Path(folder).expanduser()
        if not d.is_dir():
            raise FileNotFoundError(f"models folder not found: {d}")
        return [self.add_path(p, "models-dir") for p in sorted(d.iterdir()) if p.suffix.lower() in MODEL_SUFFIXES]

    def describe(self) -> list[dict[str, Any]]:
        return [e.describe(self.default) for e in self.entries.values()]

    def resolve_name(self, name: str | None) -> str:
        """The entry name a request means; KeyError when there is no such model."""
        if not name:
            if self.default is None:
                raise KeyError("this daemon has no model loaded")
            return self.default
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
