"""The project's own generator file: a safetensors file with the architecture in its metadata, no pickle anywhere.

Tensors are in NVIDIA's names; the string-valued `__metadata__` holds `format` (FORMAT_NAME), `format_version`,
`config` (the GeneratorConfig as JSON) and whatever the writer added (name, licence, source). Reading and writing
go through the `safetensors` library, whose parser checks the header, the offsets and the sizes and can only
ever produce numbers; this module adds what a generator file needs on top (format, version, architecture,
floating-point tensors).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..generator import Generator, GeneratorConfig
from .base import CheckpointError, LoadedModel, build_generator, read_checkpoint_bytes

FORMAT_NAME = "draggan-studio-generator"
FORMAT_VERSION = 1
FLOAT_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def save_native(
    G: Generator, path: str | Path, metadata: dict[str, Any] | None = None, dtype: torch.dtype = torch.float32
) -> None:
    """Write `G` (weights, buffers, architecture) to `path`, atomically."""
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"unsupported dtype {dtype}")
    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    meta.update(format=FORMAT_NAME, format_version=str(FORMAT_VERSION), config=json.dumps(G.cfg.to_dict()))
    tensors = {name: t.detach().to("cpu", dtype).contiguous() for name, t in sorted(G.state_dict().items())}
    data = save_safetensors(tensors, metadata=meta)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # normal permissions (umask applies)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_native(path: str | Path) -> LoadedModel:
    """Read a file written by `save_native`."""
    return load_native_bytes(path, read_checkpoint_bytes(path))


def load_native_bytes(path: str | Path, data: bytes) -> LoadedModel:
    tensors, meta = read_safetensors(path, data)
    if meta.get("format") != FORMAT_NAME or "config" not in meta:
        raise CheckpointError(path, "a safetensors file, but not a generator saved by this program (no architecture)")
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        version = -1
    if version < 1 or version > FORMAT_VERSION:
        raise CheckpointError(path, f"format version {meta.get('format_version')!r} is not supported (this reads 1)")
    try:
        config = GeneratorConfig.from_dict(json.loads(meta["config"]))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(path, f"the stored architecture cannot be read ({exc})") from exc
    G = build_generator(path, config, tensors)
    extra = {k: v for k, v in meta.items() if k not in ("format", "format_version", "config")}
    name = extra.get("name") or Path(path).stem
    return LoadedModel(G, config, name, "native", {"source_file": str(path), **extra})


def read_safetensors(path: str | Path, data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a safetensors byte string; every inconsistency is a CheckpointError."""
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(path, f"not a readable safetensors file ({exc})") from exc
    n = int.from_bytes(data[:8], "little")  # the library has checked the header; only its metadata is read here
    meta = json.loads(data[8 : 8 + n].decode("utf-8")).get("__metadata__") or {}
    for name, t in tensors.items():
        if t.dtype not in FLOAT_DTYPES:
            raise CheckpointError(path, f"{name} holds {t.dtype}, not floating-point numbers")
    return tensors, meta
