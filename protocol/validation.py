"""Content schemas for every request, checked before anything reaches the engine.

A schema is a dict of field name -> `F` (type, range, default). `validate_request` returns a normalised copy
with defaults filled in and unknown fields dropped (newer minor versions may add fields; older peers ignore them).
Every failure is a ProtocolError naming the field, so a client learns exactly what was wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import parameters
from .errors import ProtocolError
from .spec import DEFAULT_LIMITS, OUTPUT_MODES, PIXEL_FORMATS, REQUEST_TYPES, ErrorCode

_MISSING = object()


@dataclass(frozen=True)
class F:
    """One field: kind is 'int' | 'float' | 'str' | 'bool' | 'dict' | 'list' | 'point4' | 'ivec2' | 'rect'."""

    kind: str
    required: bool = False
    default: Any = _MISSING
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] | None = None
    max_len: int | None = None
    schema: dict[str, F] | None = None  # for 'dict'
    nullable: bool = False


def _fail(path: str, msg: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_CONTENT, f"{path}: {msg}", field=path)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _check_range(path: str, v: float, f: F) -> None:
    if f.lo is not None and v < f.lo:
        raise _fail(path, f"must be >= {f.lo}, got {v}")
    if f.hi is not None and v > f.hi:
        raise _fail(path, f"must be <= {f.hi}, got {v}")


def _check(path: str, v: Any, f: F) -> Any:
    if v is None and f.nullable:
        return None
    k = f.kind
    if k == "int":
        if not _is_int(v):
            raise _fail(path, f"must be an integer, got {type(v).__name__}")
        _check_range(path, v, f)
    elif k == "float":
        if not _is_num(v):
            raise _fail(path, f"must be a finite number, got {type(v).__name__}")
        v = float(v)
        _check_range(path, v, f)
    elif k == "str":
        if not isinstance(v, str):
            raise _fail(path, f"must be a string, got {type(v).__name__}")
        if len(v) > (f.max_len or 256):
            raise _fail(path, f"longer than {f.max_len or 256} characters")
    elif k == "bool":
        if not isinstance(v, bool):
            raise _fail(path, f"must be true or false, got {type(v).__name__}")
    elif k == "dict":
        if not isinstance(v, dict):
            raise _fail(path, f"must be a map, got {type(v).__name__}")
        v = validate_fields(v, f.schema or {}, path + ".")
    elif k in ("ivec2", "rect", "point4"):
        n = {"ivec2": 2, "rect": 4, "point4": 4}[k]
        if not isinstance(v, list) or len(v) != n:
            raise _fail(path, f"must be a list of {n} numbers")
        ok = _is_int if k != "point4" else _is_num
        if not all(ok(x) for x in v):
            raise _fail(path, f"must hold {n} {'integers' if k != 'point4' else 'finite numbers'}")
        for x in v:
            _check_range(path, x, f)
        v = [float(x) for x in v] if k == "point4" else list(v)
        if k == "rect" and (v[2] <= 0 or v[3] <= 0):
            raise _fail(path, "width and height must be positive")
    elif k == "list":  # list of point4 (the only list-of-structs in the protocol)
        if not isinstance(v, list):
            raise _fail(path, f"must be a list, got {type(v).__name__}")
        if f.max_len is not None and len(v) > f.max_len:
            raise _fail(path, f"at most {f.max_len} entries, got {len(v)}")
        if f.lo is not None and len(v) < f.lo:
            raise _fail(path, f"at least {int(f.lo)} entries required")
        v = [_check(f"{path}[{i}]", x, F("point4", lo=-1e7, hi=1e7)) for i, x in enumerate(v)]
    else:  # pragma: no cover - schema bug
        raise AssertionError(k)
    if f.choices is not None and v not in f.choices:
        raise _fail(path, f"must be one of {list(f.choices)}, got {v!r}")
    return v


def validate_fields(content: dict[str, Any], schema: dict[str, F], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, f in schema.items():
        v = content.get(name, _MISSING)
        if v is _MISSING:
            if f.required:
                raise _fail(prefix + name, "required field is missing")
            if f.default is not _MISSING:
                # A map's own defaults apply even when the map is omitted; other defaults are immutable.
                out[name] = _check(prefix + name, dict(f.default), f) if f.kind == "dict" else f.default
            continue
        out[name] = _check(prefix + name, v, f)
    return out


L = DEFAULT_LIMITS
_SIDE = F("int", required=True, lo=1, hi=L["max_layer_side"])
_BUFFER = F("int", default=0, lo=0, hi=L["max_buffers"] - 1)
_SESSION = F("str", required=True, max_len=64)
_IMAGE = {
    "width": _SIDE,
    "height": _SIDE,
    "format": F("str", default="RGBA8", choices=("RGBA8", "BGRA8")),
    "offset": F("ivec2", default=[0, 0], lo=-(2**31), hi=2**31 - 1),
    "buffer": _BUFFER,
}
_MASK = {"format": F("str", default="A8", choices=("A8",)), "buffer": F("int", required=True, lo=0, hi=3)}


def _from_table(name: str, fill_default: bool = True) -> F:
    """The schema field of drag parameter `name`, its range, choices and default read from `parameters.TABLE`.

    A default of None (the daemon works the value out) is never filled in; `fill_default=False` leaves a concrete
    default out too, so that an omitted field stays omitted and the engine applies its own default (which
    DragConfig reads from the same table).
    """
    p = parameters.get(name)
    default = p.default if fill_default and p.default is not None else _MISSING
    return F(p.kind, default=default, lo=p.minimum, hi=p.maximum, choices=p.choices, nullable=p.nullable)


# Inside `params` only `steps` is filled in (progress events report it as max_steps); the others stay omitted
# when omitted: "the engine's defaults" (PROTOCOL.md §6), which are the table's.
_DRAG_PARAMS = {name: _from_table(name, fill_default=name == "steps") for name in parameters.names(parameters.PARAMS)}
_TABLE_REQUEST = {name: _from_table(name) for name in parameters.names(parameters.REQUEST)}
# The table holds what a drag may ask for; the announced limits and the output modes must say the same.
assert parameters.get("steps").maximum == L["max_steps"], "parameters.TABLE steps maximum != max_steps"
assert parameters.get("output").choices == OUTPUT_MODES, "parameters.TABLE output choices != OUTPUT_MODES"
_INVERT_PARAMS = {
    "w_steps": F("int", lo=0, hi=L["max_steps"]),
    "wplus_steps": F("int", lo=0, hi=L["max_steps"]),
    "pti_steps": F("int", lo=0, hi=L["max_steps"]),
    "seed": F("int", lo=0, hi=2**32 - 1),
}

# (1.1) a drag that keeps frames: one every `every` steps (the final picture always), within `max_bytes` compressed
# (at most the daemon's max_frames_bytes)
_FRAMES = {
    "every": F("int", default=1, lo=1, hi=L["max_steps"]),
    "max_bytes": F("int", nullable=True, lo=1, hi=2**62),
}

SCHEMAS: dict[str, dict[str, F]] = {
    "hello": {"client": F("str", default="", max_len=128)},
    "heartbeat": {},
    "list_models": {},
    "status": {},
    "open_session": {
        "model": F("str", max_len=256, nullable=True),
        "source": F("str", default="layer", choices=("layer", "seed")),
        "layer": F("dict", schema=_IMAGE),
        "selection": F("dict", schema=_MASK),
        "region": F("rect", lo=-(2**31), hi=2**31 - 1),
        "seed": F("int", default=0, lo=0, hi=2**32 - 1),
        "psi": F("float", default=0.7, lo=0.0, hi=2.0),
        "offset": F("ivec2", default=[0, 0], lo=-(2**31), hi=2**31 - 1),
        "name": F("str", default="", max_len=256),
    },
    "invert": {
        "session_id": _SESSION,
        "preset": _from_table("invert_preset"),  # the same presets as a drag's automatic inversion
        "pti": F("bool", nullable=True),
        "params": F("dict", default={}, schema=_INVERT_PARAMS),
    },
    "drag": {
        "session_id": _SESSION,
        "points": F("list", required=True, lo=1, max_len=L["max_points"]),
        "mask": F("dict", schema=_MASK),
        "params": F("dict", default={}, schema=_DRAG_PARAMS),
        "invert_params": F("dict", default={}, schema=_INVERT_PARAMS),
        **_TABLE_REQUEST,  # preview_every, preview_seconds, invert_preset, output, new_content
        "frames": F("dict", nullable=True, schema=_FRAMES),
    },
    "cancel": {"job_id": F("str", required=True, max_len=64)},
    "undo": {"session_id": _SESSION},
    "reset": {"session_id": _SESSION},
    "get_result": {
        "session_id": _SESSION,
        "area": F("str", default="layer", choices=("layer", "changed")),
        "format": F("str", default="RGBA8", choices=("RGBA8", "BGRA8")),
        "output": F("str", nullable=True, choices=OUTPUT_MODES),
    },
    "get_frames": {
        "session_id": _SESSION,
        "start": F("int", default=0, lo=0, hi=2**31 - 1),
        "count": F("int", nullable=True, lo=1, hi=2**31 - 1),
        "format": F("str", default="RGBA8", choices=("RGBA8", "BGRA8")),
    },
    "suggest_models": {
        "session_id": _SESSION,
        "steps": F("int", default=30, lo=1, hi=1000),
    },
    "close_session": {"session_id": _SESSION},
    "shutdown": {},
}
assert set(SCHEMAS) == set(REQUEST_TYPES)


def validate_request(msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    """Normalised content for a known request type; raises ProtocolError otherwise."""
    schema = SCHEMAS.get(msg_type)
    if schema is None:
        raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE_TYPE, f"unknown message type {msg_type!r}", field="msg_type")
    return validate_fields(content, schema)


def check_image_buffer(desc: dict[str, Any], buffers: list[Any], width: int, height: int, what: str) -> Any:
    """The buffer a pixel descriptor points at, after checking it exists and has exactly width*height*channels bytes."""
    idx = desc["buffer"]
    if idx >= len(buffers):
        raise ProtocolError(
            ErrorCode.BAD_BUFFER,
            f"{what} refers to buffer {idx} but the message has {len(buffers)}",
            field=f"{what}.buffer",
        )
    channels = PIXEL_FORMATS[desc["format"]]
    expected = width * height * channels
    got = len(buffers[idx])
    if got != expected:
        raise ProtocolError(
            ErrorCode.BAD_BUFFER,
            f"{what} buffer has {got} bytes; {width}x{height} {desc['format']} needs {expected}",
            field=f"{what}.buffer",
        )
    return buffers[idx]
