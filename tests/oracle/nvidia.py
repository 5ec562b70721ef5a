"""NVIDIA's StyleGAN2 networks (and a copy of rosinality's model) from the PyPI package draggan==1.1.6.

The package is downloaded with `pip download --no-deps` into `.cache/oracle` and unzipped there on first use;
its code is imported from that folder only inside tests. If pip cannot reach PyPI the calling test is skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

PACKAGE = "draggan==1.1.6"
WHEEL = "draggan-1.1.6-py3-none-any.whl"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "oracle"
ROOT = CACHE / "unzipped" / "draggan"


def ensure_oracle() -> Path:
    """Path of the unzipped `draggan` package, downloading it first if needed (skips the test on failure)."""
    marker = ROOT / "stylegan2" / "training" / "networks.py"
    if marker.exists():
        return ROOT
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return ROOT
        wheel = CACHE / WHEEL
        if not wheel.exists():
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                PACKAGE,
                "-d",
                str(CACHE),
                "-q",
                "--retries",
                "1",
                "--timeout",
                "20",
            ]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            except (OSError, subprocess.TimeoutExpired) as exc:
                pytest.skip(f"NVIDIA oracle unavailable: pip download {PACKAGE} failed ({exc})")
            if proc.returncode != 0 or not wheel.exists():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                pytest.skip(f"NVIDIA oracle unavailable: pip could not download {PACKAGE} ({tail[0]})")
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(CACHE / "unzipped")
    return ROOT


def nvidia_networks() -> ModuleType:
    """NVIDIA's `training.networks` (stylegan2-ada-pytorch, as shipped by DragGAN)."""
    root = ensure_oracle() / "stylegan2"
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    with _quiet():
        return importlib.import_module("training.networks")


def easydict() -> type:
    nvidia_networks()
    return importlib.import_module("dnnlib").EasyDict


def rosinality_model() -> ModuleType:
    """rosinality's stylegan2-pytorch `model.py` (DragGAN's copy), with its CUDA extensions disabled."""
    name = "_rosinality_oracle"
    if name + ".model" in sys.modules:
        return sys.modules[name + ".model"]
    pkg_dir = ensure_oracle() / "deprecated" / "stylegan2"
    spec = importlib.util.spec_from_file_location(
        name, pkg_dir / "__init__.py", submodule_search_locations=[str(pkg_dir)]
    )
    pkg = importlib.util.module_from_spec(spec)
    sys.modules[name] = pkg
    spec.loader.exec_module(pkg)
    import torch.utils.cpp_extension as cpp

    def no_build(*args, **kwargs):
        raise RuntimeError("CUDA extensions are not built in tests")

    saved = cpp.load
    cpp.load = no_build
    try:
        with _quiet():
            return importlib.import_module(name + ".model")
    finally:
        cpp.load = saved


@contextlib.contextmanager
def _quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
