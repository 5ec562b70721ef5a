"""DragGAN Studio's wire protocol: spec constants, framing, signing, validation and the client library.

Pure Python (stdlib + msgpack, pyzmq when available) so that Krita's and GIMP's Pythons can carry it.
The normative description is PROTOCOL.md next to this file.
"""

from .client import Client, Image, drag_request, image_from_message, layer_session_request
from .connection import ConnectionInfo, default_connection_file, read_connection_file, write_connection_file
from .errors import DaemonError, DaemonUnreachable, ProtocolError
from .framing import Message
from .outcome import arrival_text, fallback_text, large_region_text
from .spec import PROTOCOL_VERSION, ErrorCode
from .transport import TransportError

__all__ = [
    "PROTOCOL_VERSION",
    "Client",
    "ConnectionInfo",
    "DaemonError",
    "DaemonUnreachable",
    "ErrorCode",
    "Image",
    "Message",
    "ProtocolError",
    "TransportError",
    "arrival_text",
    "default_connection_file",
    "drag_request",
    "fallback_text",
    "image_from_message",
    "large_region_text",
    "layer_session_request",
    "read_connection_file",
    "write_connection_file",
]
