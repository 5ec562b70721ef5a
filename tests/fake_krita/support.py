"""Test helpers for the Krita plugin: put the fake `krita` module and the plugin package on sys.path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAKE_DIR = Path(__file__).resolve().parent
PLUGIN_DIR = ROOT / "plugins" / "krita"


def use_fake_krita() -> None:
    """Import paths for `krita` (the fake) and `draggan_krita` (the plugin, without registering itself)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["DRAGGAN_KRITA_NO_REGISTER"] = "1"
    for p in (str(FAKE_DIR), str(PLUGIN_DIR)):
        if p not in sys.path:
            sys.path.insert(0, p)


def gradient_bgra(w: int, h: int) -> bytes:
    out = bytearray()
    for y in range(h):
        for x in range(w):
            out += bytes((x * 3 % 256, y * 5 % 256, (x + y) % 256, 255))
    return bytes(out)
