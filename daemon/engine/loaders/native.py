"""The project's own generator file: safetensors layout, architecture in the header, no pickle anywhere.

Layout (readable by any safetensors reader): 8-byte little-endian header length N, N bytes of JSON, then the raw
tensor bytes. The JSON maps each tensor name to {dtype, shape, data_offsets} (offsets relative to the end of the
header) and holds string-valued `__metadata__`: `format` (FORMAT_NAME), `format_version`, `config` (the
GeneratorConfig as JSON) and whatever the writer added (name, licence, source). Tensors are in NVIDIA's names.
The code is ours and small so that reading a file can only ever produce numbers.
"""

from __future__ import annotations

import json
import math
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import torch

from ..generator import Generator, GeneratorConfig
from .base import CheckpointError, LoadedModel, build_generator, read_checkpoint_bytes

FORMAT_NAME = "draggan-studio-generator"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024 * 1024
_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def save_native(
    G: Generator, path: str | Path, metadata: dict[str, Any] | None = None, dtype: torch.dtype = torch.float32
) -> None:
    """Write `G` (weights, buffers, architecture) to `path`, atomically."""
    if dtype not in _NAMES:
        raise ValueError(f"unsupported dtype {dtype}")
    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    meta.update(format=FORMAT_NAME, format_version=str(FORMAT_VERSION), config=json.dumps(G.cfg.to_dict()))
    header: dict[str, Any] = {"__metadata__": meta}
    blobs: list[bytes] = []
    offset = 0
    for name, tensor in sorted(G.state_dict().items()):
        t = tensor.detach().to("cpu", dtype).contiguous()
        blob = _tensor_bytes(t)
        header[name] = {"dtype": _NAMES[dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # safetensors aligns the data section to 8 bytes
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # normal permissions (umask applies)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(len(head).to_bytes(8, "little"))
            f.write(head)
            for blob in blobs:
                f.write(blob)
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
    """Parse and validate a safetensors byte string; every inconsistency is a CheckpointError."""
    if len(data) < 8:
        raise CheckpointError(path, "the file is truncated (shorter than a safetensors header)")
    n = int.from_bytes(data[:8], "little")
    if n < 2 or n > MAX_HEADER_BYTES:
        raise CheckpointError(path, f"implausible safetensors header length {n}")
    if 8 + n > len(data):
        raise CheckpointError(path, "the file is truncated (header runs past the end)")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f"the safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(path, "the safetensors header is not a JSON object")
    meta = header.pop("__metadata__", {}) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise CheckpointError(path, "the safetensors metadata must map strings to strings")
    body = memoryview(data)[8 + n :]
    spans: list[tuple[int, int, str]] = []
    tensors: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        dtype, shape, begin, end = _entry(path, name, info)
        if end > len(body):
            raise CheckpointError(path, f"the file is truncated ({name} lies past the end of the data)")
        if end - begin != math.prod(shape) * dtype.itemsize:
            raise CheckpointError(path, f"{name}: {end - begin} bytes do not hold shape {shape} of {_NAMES[dtype]}")
        spans.append((begin, end, name))
        raw = bytearray(body[begin:end])
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        if sys.byteorder != "little":
            t = t.view(torch.uint8).view(-1, dtype.itemsize).flip(1).contiguous().view(dtype)
        tensors[name] = t.reshape(shape)
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise CheckpointError(path, f"tensor data overlaps or leaves gaps (at {name})")
        pos = end
    if pos != len(body):
        raise CheckpointError(path, f"{len(body) - pos} stray bytes after the tensor data")
    return tensors, meta


def _entry(path: str | Path, name: str, info: Any) -> tuple[torch.dtype, list[int], int, int]:
    try:
        dtype = _DTYPES[info["dtype"]]
        shape = [int(d) for d in info["shape"]]
        begin, end = (int(v) for v in info["data_offsets"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"malformed or unsupported tensor entry {name!r} ({exc})") from exc
    if any(d < 0 for d in shape) or begin < 0 or end < begin:
        raise CheckpointError(path, f"malformed tensor entry {name!r}")
    return dtype, shape, begin, end


def _tensor_bytes(t: torch.Tensor) -> bytes:
    data = t.reshape(-1).view(torch.uint8)
    if sys.byteorder != "little":
        data = data.view(-1, t.element_size()).flip(1).reshape(-1)
    return data.numpy().tobytes()
