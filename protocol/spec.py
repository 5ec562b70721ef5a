"""Constants of the wire protocol: version, framing delimiter, message types, error codes, default limits.

PROTOCOL.md is the normative text; this module is the same facts in code so that daemon and clients cannot drift.
"""

from __future__ import annotations

PROTOCOL_VERSION = "2.2"
PROTOCOL_MAJOR = 2

# Frames after the ZeroMQ routing envelope: [DELIMITER, signature, header, content, *buffers].
DELIMITER = b"<DRAGGAN|MSG>"
SIGNATURE_SCHEME = "hmac-sha256"

# Requests a client may send; each is answered by exactly one "<type>_reply".
REQUEST_TYPES = (
    "hello",
    "heartbeat",
    "list_models",
    "status",
    "open_session",
    "invert",
    "drag",
    "cancel",
    "undo",
    "reset",
    "get_result",
    "get_frames",
    "suggest_models",
    "close_session",
    "shutdown",
)
# Events the daemon sends without a request of the same name (parent = the request that started the job).
EVENT_TYPES = ("job_queued", "progress", "job_done", "session_closed", "error")

# Job states reported in job_queued / job_done.
JOB_DONE_STATES = ("done", "cancelled", "failed")


class ErrorCode:
    """Machine-readable error codes carried in error replies (`content.code`)."""

    BAD_MESSAGE = "bad_message"  # framing broken: delimiter, frame count, undecodable header
    BAD_HEADER = "bad_header"  # header decodes but misses or mistypes a field
    UNSUPPORTED_VERSION = "unsupported_version"  # a different major protocol version
    UNKNOWN_MESSAGE_TYPE = "unknown_message_type"
    INVALID_CONTENT = "invalid_content"  # content field missing, wrong type, out of range
    BAD_BUFFER = "bad_buffer"  # pixel frame missing, wrong size for width*height*channels
    TOO_LARGE = "too_large"  # a frame or a layer over the daemon's limits
    SESSION_NOT_FOUND = "session_not_found"
    FORBIDDEN = "forbidden"  # the session or job belongs to another client
    SESSION_LIMIT = "session_limit"  # too many open sessions
    PIXEL_LIMIT = "pixel_limit"  # the open sessions would hold too many pixels
    QUEUE_FULL = "queue_full"
    MODEL_NOT_FOUND = "model_not_found"
    MODEL_LOAD_FAILED = "model_load_failed"
    BUSY = "busy"  # this session already has a job queued or running
    JOB_NOT_FOUND = "job_not_found"
    NOTHING_TO_UNDO = "nothing_to_undo"
    INVALID_INPUT = "invalid_input"  # the engine refused the input (e.g. a fully transparent region)
    UNAVAILABLE = "unavailable"  # a feature this daemon build does not have
    SHUTTING_DOWN = "shutting_down"
    REPLAY_REJECTED = "replay_rejected"  # (1.1) a msg_id used before, or a header.date outside the clock window
    INTERNAL_ERROR = "internal_error"


ERROR_CODES = tuple(v for k, v in vars(ErrorCode).items() if k.isupper())

# Defaults the daemon announces in hello_reply.limits (a daemon may be configured differently; clients read them).
DEFAULT_LIMITS = {
    "max_header_bytes": 4096,
    "max_content_bytes": 256 * 1024,
    "max_buffers": 4,
    "max_frame_bytes": 4 * 1024 * 1024,  # (2.0) one ZeroMQ frame: the most a peer can make the daemon hold unread
    "max_buffer_bytes": 256 * 1024 * 1024,  # (2.0) one buffer, sent as several frames when larger than a frame
    "max_layer_side": 16384,
    "max_layer_pixels": 64 * 1024 * 1024,
    "max_total_pixels": 256 * 1024 * 1024,
    "max_sessions": 32,
    "max_sessions_per_client": 8,
    "max_queue": 64,
    "max_points": 64,
    "max_steps": 5000,
    "max_reply_backlog_bytes": 32 * 1024 * 1024,  # (1.1) result bytes a client may have queued or unsent
    "max_frames_bytes": 16 * 1024 * 1024,  # (1.1) per session: the compressed frames a drag may keep
    "max_connections_per_address": 16,  # (2.0) from one address other than loopback
    "max_connections": 64,  # (2.0) connections open at once; one more is refused in its handshake
}

# How a drag's picture is made (1.1): the layer's own pixels moved by the generator's motion, or its picture.
OUTPUT_MODES = ("transfer", "generator")

PIXEL_FORMATS = {"RGBA8": 4, "BGRA8": 4, "A8": 1}


def message_bounds(limits: dict[str, int] | None = None) -> tuple[int, int]:
    """(most frames, most bytes after the signature) of the largest message a request can need (PROTOCOL.md §2).

    The largest request is an RGBA layer of `max_layer_pixels` with its A8 selection, each buffer split into
    frames of at most `max_frame_bytes`; the frame count leaves room for `max_buffers` more so that a key holder
    sending a few buffers too many still hears `too_large` rather than nothing.
    """
    lim = {**DEFAULT_LIMITS, **(limits or {})}
    payload = min(5 * lim["max_layer_pixels"], lim["max_buffers"] * lim["max_buffer_bytes"])
    frames = 4 + 2 * lim["max_buffers"] + -(-payload // lim["max_frame_bytes"])
    return frames, lim["max_header_bytes"] + lim["max_content_bytes"] + payload
