"""Turning messages into signed ZeroMQ multipart frames and back, defensively.

Wire layout after the routing envelope: [DELIMITER, signature, header, content, *buffer frames]
(header and content are msgpack maps; buffers are raw bytes such as RGBA8 pixels, never msgpack-encoded,
so a 64 MiB layer is neither copied into nor parsed out of msgpack). A buffer larger than `max_frame_bytes`
travels as several frames (2.0): the per-frame cap is what bounds the memory a peer can make libzmq hold
before anyone has checked who it is.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import msgpack

from .errors import ProtocolError
from .signing import Signer
from .spec import DEFAULT_LIMITS, DELIMITER, PROTOCOL_MAJOR, PROTOCOL_VERSION, ErrorCode, message_bounds

_VERSION_RE = re.compile(r"^(\d{1,4})\.(\d{1,4})$")
_HEADER_STR_FIELDS = ("msg_id", "msg_type", "version", "session", "date")
_MAX_HEADER_STR = 128


class SignatureError(ProtocolError):
    """Missing or wrong HMAC: such messages are dropped without a reply (the sender may not hold the secret)."""


@dataclass
class Message:
    """One decoded message. `buffers` holds bytes-like objects (bytes, memoryview or zmq frames' buffers)."""

    msg_type: str
    content: dict[str, Any]
    header: dict[str, Any]
    buffers: list[Any] = field(default_factory=list)

    @property
    def msg_id(self) -> str:
        return self.header["msg_id"]

    @property
    def parent(self) -> str | None:
        return self.header.get("parent")

    @property
    def is_error(self) -> bool:
        return self.content.get("status") == "error"


def new_msg_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_header(msg_type: str, session: str, parent: str | None = None, msg_id: str | None = None) -> dict[str, Any]:
    header = {
        "msg_id": msg_id or new_msg_id(),
        "msg_type": msg_type,
        "version": PROTOCOL_VERSION,
        "session": session,
        "date": utc_now(),
    }
    if parent is not None:
        header["parent"] = parent
    return header


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def split_buffer(buffer: Any, max_frame_bytes: int) -> list[Any]:
    """A buffer as zero-copy frames of at most `max_frame_bytes` (one frame when it fits)."""
    view = memoryview(buffer)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    if view.nbytes <= max_frame_bytes:
        return [buffer]
    return [view[i : i + max_frame_bytes] for i in range(0, view.nbytes, max_frame_bytes)]


def encode(
    header: dict[str, Any],
    content: dict[str, Any],
    buffers: list[Any],
    signer: Signer,
    max_frame_bytes: int = DEFAULT_LIMITS["max_frame_bytes"],
) -> list[Any]:
    """Frames for one message (without routing envelope). Buffers pass through untouched (zero-copy); one larger
    than `max_frame_bytes` travels as several frames, counted in `header.buffer_frames` (2.0, §2)."""
    frames: list[Any] = []
    counts: list[int] = []
    for b in buffers:
        parts = split_buffer(b, max_frame_bytes)
        frames.extend(parts)
        counts.append(len(parts))
    if any(n > 1 for n in counts):
        header = {**header, "buffer_frames": counts}
    parts = [pack(header), pack(content), *frames]
    return [DELIMITER, signer.sign(parts), *parts]


def _join_buffers(frames: list[Any], counts: Any, lim: dict[str, int]) -> list[Any]:
    """The buffers of a message from its buffer frames and `header.buffer_frames` (absent: one frame each)."""
    if counts is None:
        counts = [1] * len(frames)
    elif (
        not isinstance(counts, list)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in counts)
        or sum(counts) != len(frames)
    ):
        raise ProtocolError(
            ErrorCode.BAD_HEADER,
            f"header.buffer_frames must list how many of the {len(frames)} buffer frames each buffer takes",
            field="buffer_frames",
        )
    if len(counts) > lim["max_buffers"]:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"{len(counts)} buffers, at most {lim['max_buffers']} allowed")
    for i, f in enumerate(frames):
        if len(f) > lim["max_frame_bytes"]:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"buffer frame {i} of {len(f)} bytes exceeds {lim['max_frame_bytes']}"
            )
    buffers: list[Any] = []
    at = 0
    for i, n in enumerate(counts):
        group = frames[at : at + n]
        at += n
        size = sum(len(f) for f in group)
        if size > lim["max_buffer_bytes"]:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"buffer {i} of {size} bytes exceeds {lim['max_buffer_bytes']}")
        buffers.append(group[0] if n == 1 else b"".join(group))
    return buffers


def _unpack_map(data: Any, what: str, code: str) -> dict[str, Any]:
    try:
        obj = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several types for garbage; all mean the same here
        raise ProtocolError(code, f"{what} is not valid msgpack ({type(exc).__name__})", field=what) from None
    if not isinstance(obj, dict):
        raise ProtocolError(code, f"{what} must be a msgpack map, got {type(obj).__name__}", field=what)
    return obj


def parse_version(version: Any) -> tuple[int, int]:
    m = _VERSION_RE.match(version) if isinstance(version, str) else None
    if not m:
        raise ProtocolError(ErrorCode.BAD_HEADER, f"header.version must look like '1.0', got {version!r}", "version")
    return int(m.group(1)), int(m.group(2))


def decode(frames: list[Any], signer: Signer, limits: dict[str, int] | None = None) -> Message:
    """Verify the signature, then check framing, header and version; raise ProtocolError with a specific code.

    SignatureError (no reply: the sender has not proven it holds the key) is raised for a missing or wrong
    signature and for anything that cannot be verified: fewer than 4 frames, or more frames or bytes than
    `spec.message_bounds` allows (so hashing a large unsigned message stays bounded). Only then are the delimiter,
    the buffer count and the frame and buffer sizes checked, so `bad_message` and `too_large` go to key holders only.
    The header's msg_id is attached to errors raised after it was read (`exc.parent_id`) so replies can point
    at the offending request.
    """
    lim = {**DEFAULT_LIMITS, **(limits or {})}
    if len(frames) < 4:
        raise SignatureError(ErrorCode.BAD_MESSAGE, f"expected at least 4 frames, got {len(frames)}")
    max_frames, max_signed = message_bounds(lim)
    if len(frames) > max_frames:
        raise SignatureError(ErrorCode.TOO_LARGE, f"{len(frames)} frames, more than {max_frames}: not verified")
    signed = frames[2:]
    total = sum(len(f) for f in signed)
    if total > max_signed:
        raise SignatureError(ErrorCode.TOO_LARGE, f"{total} signed bytes, more than {max_signed}: not verified")
    if not signer.verify(frames[1], signed):
        raise SignatureError(ErrorCode.BAD_MESSAGE, "missing or invalid signature")
    delimiter = frames[0]
    if len(delimiter) != len(DELIMITER) or bytes(delimiter) != DELIMITER:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "first frame is not the message delimiter")
    h_raw, c_raw, *buffer_frames = signed
    if len(h_raw) > lim["max_header_bytes"]:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"header of {len(h_raw)} bytes exceeds {lim['max_header_bytes']}")
    if len(c_raw) > lim["max_content_bytes"]:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"content of {len(c_raw)} bytes exceeds {lim['max_content_bytes']}")
    header = _unpack_map(h_raw, "header", ErrorCode.BAD_HEADER)
    msg_id = header.get("msg_id")
    try:
        for name in _HEADER_STR_FIELDS:
            value = header.get(name)
            if not isinstance(value, str) or not value or len(value) > _MAX_HEADER_STR:
                raise ProtocolError(ErrorCode.BAD_HEADER, f"header.{name} must be a non-empty string", field=name)
        parent = header.get("parent")
        if parent is not None and (not isinstance(parent, str) or len(parent) > _MAX_HEADER_STR):
            raise ProtocolError(ErrorCode.BAD_HEADER, "header.parent must be a string or absent", field="parent")
        major, _minor = parse_version(header["version"])
        if major != PROTOCOL_MAJOR:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"protocol version {header['version']} is not supported; this peer speaks {PROTOCOL_VERSION}",
                field="version",
                supported=PROTOCOL_VERSION,
            )
        buffers = _join_buffers(buffer_frames, header.get("buffer_frames"), lim)
        content = _unpack_map(c_raw, "content", ErrorCode.INVALID_CONTENT)
    except ProtocolError as exc:
        # Point the error reply at the request whenever its id is readable.
        if isinstance(msg_id, str) and 0 < len(msg_id) <= _MAX_HEADER_STR:
            exc.parent_id = msg_id  # type: ignore[attr-defined]
        msg_type = header.get("msg_type")
        if isinstance(msg_type, str) and len(msg_type) <= _MAX_HEADER_STR:
            exc.request_type = msg_type  # type: ignore[attr-defined]
        raise
    return Message(msg_type=header["msg_type"], content=content, header=header, buffers=list(buffers))
