"""A pickle reader for NVIDIA network pickles that can build data but never run code from the file.

NVIDIA's `torch_utils.persistence` pickles every network as a call to `_reconstruct_persistent_obj(meta)`, where
`meta` carries the module's source code, its class name and its `__dict__` (parameters, buffers, submodules,
constructor arguments). The official unpickler executes that source. This one answers each global the stream asks
for from a short allow-list of inert constructors instead: the persistence call becomes a `PersistentRecord`
(class name + state, the source kept only as text), tensors are rebuilt from their bytes through
`torch.load(weights_only=True)`, and every other global is refused before anything is called.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import CheckpointError, describe_torch_load_error


class PersistentRecord:
    """Stand-in for one persistent NVIDIA module: what it was, and its pickled `__dict__`."""

    __slots__ = ("class_name", "state", "module_src")

    def __init__(self, class_name: str, state: dict, module_src: str):
        self.class_name = class_name
        self.state = state
        self.module_src = module_src

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name})"


class AttrDict(dict):
    """Takes the place of `dnnlib.util.EasyDict`: a plain dict (subclassed only so pickle's BUILD step works)."""


class _Refused(Exception):
    pass


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict):
        raise _Refused("persistent object metadata is not a dict")
    if meta.get("type") != "class":
        raise _Refused(f"persistent object of type {meta.get('type')!r}")
    class_name, state, src = meta.get("class_name"), meta.get("state"), meta.get("module_src", "")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise _Refused("persistent object without a class name or state")
    return PersistentRecord(class_name, state, src if isinstance(src, str) else "")


def _load_from_bytes(data: Any) -> Any:
    """A storage saved with torch.save inside the pickle: read with torch's weights-only loader."""
    if not isinstance(data, (bytes, bytearray)):
        raise _Refused("storage payload is not bytes")
    try:
        obj = torch.load(io.BytesIO(bytes(data)), weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for bad payloads
        raise _Refused(f"a tensor storage could not be read safely ({describe_torch_load_error(exc)[1]})") from exc
    if not isinstance(obj, (torch.TypedStorage, torch.UntypedStorage)):
        raise _Refused(f"a tensor storage payload holds {type(obj).__name__}, not a storage")
    return obj


def _ints(seq: Any, what: str) -> tuple[int, ...]:
    if not isinstance(seq, (tuple, list, torch.Size)) or not all(isinstance(v, int) for v in seq):
        raise _Refused(f"tensor {what} is not a tuple of integers")
    return tuple(seq)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> torch.Tensor:
    if isinstance(storage, torch.UntypedStorage):
        raise _Refused("tensor built on an untyped storage")
    if not isinstance(storage, torch.TypedStorage) or not isinstance(offset, int):
        raise _Refused("tensor without a storage")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride) or offset < 0 or any(v < 0 for v in size + stride):
        raise _Refused("tensor size, stride or offset is malformed")
    numel = storage._untyped_storage.nbytes() // storage.dtype.itemsize
    if all(size) and offset + sum((n - 1) * st for n, st in zip(size, stride, strict=True)) >= numel:
        raise _Refused("tensor reaches past the end of its storage")  # set_ would silently grow the storage
    t = torch.empty((0,), dtype=storage.dtype)
    try:
        return t.set_(storage._untyped_storage, offset, size, stride)
    except RuntimeError as exc:
        raise _Refused(f"tensor does not fit its storage ({exc})") from exc


def _rebuild_tensor_v3(storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> torch.Tensor:
    return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *_ignored: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise _Refused("parameter without tensor data")
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> torch.Tensor:
    if func not in (_rebuild_tensor, _rebuild_tensor_v3, _rebuild_parameter) or not isinstance(args, tuple):
        raise _Refused("tensor subclass rebuilt through an unknown function")
    if new_type not in (torch.Tensor, torch.nn.Parameter):
        raise _Refused("tensor of an unknown subclass")
    return func(*args)


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, bytearray)):
        raise _Refused("numpy scalar of an unsupported kind")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _numpy_dtype(spec: Any, *args: Any) -> np.dtype:
    if not isinstance(spec, str):
        raise _Refused("numpy dtype spec is not a string")
    return np.dtype(spec, *[bool(a) for a in args[:2]])


def _numpy_reconstruct(cls: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if cls is not np.ndarray:
        raise _Refused("numpy array of an unknown subclass")
    return np.ndarray.__new__(np.ndarray, _ints(shape, "shape"), dtype=np.uint8)


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("bytes encoded in an unexpected way")
    return codecs.encode(text, "latin1")


def _torch_size(dims: Any = ()) -> torch.Size:
    return torch.Size(_ints(tuple(dims) if isinstance(dims, list) else dims, "size"))


_TORCH_DTYPES = {
    name: getattr(torch, name)
    for name in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
}

ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): AttrDict,
    ("dnnlib", "EasyDict"): AttrDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs_encode,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch", "Tensor"): torch.Tensor,
    ("torch", "Size"): _torch_size,
    **{("torch", name): dtype for name, dtype in _TORCH_DTYPES.items()},
    **{(mod, "scalar"): _numpy_scalar for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "_reconstruct"): _numpy_reconstruct for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): np.ndarray,
}

# Globals with a known meaning that we still refuse, so the message can say why.
_EXPLAINED = {
    ("dnnlib.tflib.network", "Network"): (
        "this is a TensorFlow-era StyleGAN2 pickle; convert it with NVIDIA's stylegan2-ada-pytorch legacy.py first"
    ),
}


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose globals come only from `ALLOWED`."""

    def __init__(self, file: io.BufferedIOBase, path: str | Path):
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles name builtins the Python 2 way ('__builtin__.set'); map them as pickle itself does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        key = (module, name)
        if key in ALLOWED:
            return ALLOWED[key]
        if key in _EXPLAINED:
            raise CheckpointError(self._path, _EXPLAINED[key])
        raise CheckpointError(
            self._path,
            f"refusing to load: the pickle asks for '{module}.{name}', which is not part of a StyleGAN2 network "
            "pickle (a pickle can run code, so only an allow-list of tensor and container types is accepted)",
        )

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError(self._path, "the pickle uses persistent ids (a torch.save archive, not a network pickle)")


def safe_unpickle(data: bytes, path: str | Path) -> Any:
    """Unpickle `data` with the allow-list; any problem becomes one CheckpointError naming `path`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), path).load()
    except CheckpointError:
        raise
    except _Refused as exc:
        raise CheckpointError(path, f"refusing to load: {exc}") from exc
    except (EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(path, f"the pickle is truncated or corrupt ({exc or exc.__class__.__name__})") from exc
    except (
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        OverflowError,
        RecursionError,
        RuntimeError,
        TypeError,
        ValueError,
    ) as exc:
        raise CheckpointError(path, f"the pickle is corrupt ({exc.__class__.__name__}: {exc})") from exc
