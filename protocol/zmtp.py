"""A pure-Python ZeroMQ DEALER (ZMTP 3.0, NULL security) over a plain TCP socket.

Why it exists: Krita's bundled Python (AppImage, Windows, macOS builds) has only the standard library and PyQt5, so
pyzmq cannot be imported there. The daemon binds a libzmq ROUTER; this module speaks just enough of the wire
protocol (https://rfc.zeromq.org/spec/23/) to be a DEALER peer of it: the 64-byte greeting, the READY handshake with
``Socket-Type`` and ``Identity``, multipart messages with short and long frame sizes, and PING/PONG heartbeats.

It implements the `draggan_protocol.transport.Transport` interface plus ``fileno()`` so a GUI can watch the socket
with ``QSocketNotifier`` (after a notification, call ``recv_multipart(0)`` until it returns None: several messages
may arrive in one read). Unlike libzmq it does not reconnect by itself: a lost connection raises `TransportError`
and the caller opens a new transport.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections import deque

from .transport import TransportError

# Greeting: signature (0xFF, 8 padding bytes, 0x7F), version 3.0, mechanism, as-server flag, filler.
_SIGNATURE_HEAD = b"\xff" + b"\x00" * 8 + b"\x7f"
_VERSION = bytes([3, 0])
_MECHANISM = b"NULL".ljust(20, b"\x00")
GREETING = _SIGNATURE_HEAD + _VERSION + _MECHANISM + b"\x00" + b"\x00" * 31
assert len(GREETING) == 64

# Frame flag bits.
FLAG_MORE = 0x01
FLAG_LONG = 0x02
FLAG_COMMAND = 0x04

_COMPATIBLE_PEERS = {b"ROUTER", b"DEALER"}
_READ_CHUNK = 1 << 18


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` -> (host, port); IPv6 hosts may be bracketed (``tcp://[::1]:5555``)."""
    if not endpoint.startswith("tcp://"):
        raise TransportError(f"only tcp:// endpoints are supported, not {endpoint!r}")
    rest = endpoint[len("tcp://") :]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise TransportError(f"endpoint {endpoint!r} has no port")
    host = host.strip("[]")
    if host in ("", "*"):
        host = "127.0.0.1"
    return host, int(port)


def encode_frame(body: bytes | bytearray | memoryview, flags: int = 0) -> tuple[bytes, memoryview]:
    """The header bytes for one frame (flags + 1- or 8-byte size) and the body as a byte view."""
    view = memoryview(body).cast("B")
    size = view.nbytes
    if size > 255:
        return struct.pack(">BQ", flags | FLAG_LONG, size), view
    return bytes((flags, size)), view


def encode_command(name: bytes, data: bytes = b"") -> bytes:
    body = bytes((len(name),)) + name + data
    header, _ = encode_frame(body, FLAG_COMMAND)
    return header + body


def encode_properties(props: dict[bytes, bytes]) -> bytes:
    out = bytearray()
    for key, value in props.items():
        out += bytes((len(key),)) + key + struct.pack(">I", len(value)) + value
    return bytes(out)


def decode_properties(data: bytes) -> dict[bytes, bytes]:
    props: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        klen = data[pos]
        key = bytes(data[pos + 1 : pos + 1 + klen])
        pos += 1 + klen
        if pos + 4 > len(data):
            raise TransportError("malformed READY properties")
        (vlen,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if pos + vlen > len(data):
            raise TransportError("malformed READY properties")
        props[key.lower()] = bytes(data[pos : pos + vlen])
        pos += vlen
    return props


class ZmtpDealer:
    """A DEALER connection to one ROUTER endpoint. Not thread-safe: use it from one thread (the GUI thread is fine,
    as every wait is bounded and reads never block)."""

    def __init__(
        self,
        endpoint: str,
        identity: bytes | None = None,
        connect_timeout: float = 5.0,
        send_timeout: float = 60.0,
    ) -> None:
        if identity is not None and (not identity or len(identity) > 255 or identity[:1] == b"\x00"):
            raise ValueError("identity must be 1..255 bytes and must not start with a zero byte")
        self.endpoint = endpoint
        self.identity = identity
        self.send_timeout = send_timeout
        self.peer_properties: dict[bytes, bytes] = {}
        self._inbuf = bytearray()
        self._parts: list[bytes] = []  # frames of the message being received
        self._messages: deque[list[bytes]] = deque()
        self._eof = False
        self._closed = False
        self._ready = False
        self._greeted = False
        host, port = parse_endpoint(endpoint)
        try:
            self._sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as exc:
            raise TransportError(f"cannot connect to {endpoint}: {exc}") from exc
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock.setblocking(False)
            self._handshake(time.monotonic() + connect_timeout)
        except BaseException:
            self._sock.close()
            self._closed = True
            raise

    # -- public interface -------------------------------------------------------------------------------------------

    def fileno(self) -> int:
        """The TCP socket's descriptor (-1 once closed), for select() or QSocketNotifier(Read)."""
        return -1 if self._closed else self._sock.fileno()

    def send_multipart(self, frames: list[bytes]) -> None:
        if self._closed or self._eof:
            raise TransportError("connection to the daemon is closed")
        if not frames:
            raise ValueError("a message has at least one frame")
        deadline = time.monotonic() + self.send_timeout
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            header, body = encode_frame(frame, FLAG_MORE if i < last else 0)
            if body.nbytes <= 4096:
                self._send_all(memoryview(header + body.tobytes()), deadline)
            else:
                self._send_all(memoryview(header), deadline)
                self._send_all(body, deadline)

    def recv_multipart(self, timeout: float | None) -> list[bytes] | None:
        if self._closed:
            raise TransportError("connection to the daemon is closed")
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            if self._messages:
                return self._messages.popleft()
            self._read_available()
            if self._messages:
                return self._messages.popleft()
            if self._eof:
                raise TransportError("the daemon closed the connection")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            select.select([self._sock], [], [], remaining)

    def pending(self) -> bool:
        """True when a complete message is already buffered (no need to wait for the socket)."""
        return bool(self._messages)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def __enter__(self) -> ZmtpDealer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- handshake --------------------------------------------------------------------------------------------------

    def _handshake(self, deadline: float) -> None:
        props = {b"Socket-Type": b"DEALER"}
        if self.identity:
            props[b"Identity"] = self.identity
        self._send_all(memoryview(GREETING + encode_command(b"READY", encode_properties(props))), deadline)
        while not self._ready:
            self._read_available()
            if self._ready:
                break
            if self._eof:
                raise TransportError(f"{self.endpoint} closed the connection during the ZMTP handshake")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportError(f"no ZMTP handshake from {self.endpoint} (is it a ZeroMQ ROUTER?)")
            select.select([self._sock], [], [], remaining)

    def _on_greeting(self, greeting: bytes) -> None:
        if greeting[0] != 0xFF or greeting[9] != 0x7F:
            raise TransportError(f"{self.endpoint} is not a ZeroMQ peer (bad greeting signature)")
        if greeting[10] < 3:
            raise TransportError(f"{self.endpoint} speaks ZMTP {greeting[10]}.x; version 3 is required")
        mechanism = greeting[12:32].rstrip(b"\x00")
        if mechanism != b"NULL":
            raise TransportError(
                f"the daemon requires the {mechanism.decode(errors='replace')} security mechanism, which needs pyzmq"
            )
        self._greeted = True

    def _on_command(self, body: bytes) -> None:
        if not body:
            raise TransportError("empty ZMTP command")
        nlen = body[0]
        name, data = bytes(body[1 : 1 + nlen]), body[1 + nlen :]
        if name == b"READY":
            self.peer_properties = decode_properties(data)
            peer_type = self.peer_properties.get(b"socket-type", b"")
            if peer_type not in _COMPATIBLE_PEERS:
                raise TransportError(f"peer socket type {peer_type!r} cannot talk to a DEALER")
            self._ready = True
        elif name == b"ERROR":
            reason = bytes(data[1 : 1 + data[0]]).decode(errors="replace") if data else ""
            self._eof = True
            raise TransportError(f"the daemon refused the connection: {reason or 'ZMTP error'}")
        elif name == b"PING":
            # PING body: 2-byte TTL, then up to 16 bytes of context that PONG must echo.
            self._send_all(memoryview(encode_command(b"PONG", bytes(data[2:18]))), time.monotonic() + 5.0)
        # PONG and unknown commands are ignored, as the specification allows.

    # -- byte I/O ---------------------------------------------------------------------------------------------------

    def _send_all(self, view: memoryview, deadline: float) -> None:
        while view.nbytes:
            try:
                sent = self._sock.send(view)
                view = view[sent:]
                continue
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                self._eof = True
                raise TransportError(f"lost the connection to the daemon: {exc}") from exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportError("timed out sending to the daemon")
            # Keep draining what the peer sends while we wait, so neither side can stall the other.
            readable, _, _ = select.select([self._sock], [self._sock], [], remaining)
            if readable:
                self._read_available(parse=False)

    def _read_available(self, parse: bool = True) -> None:
        while True:
            try:
                chunk = self._sock.recv(_READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._eof = True
                break
            if not chunk:
                self._eof = True
                break
            self._inbuf += chunk
            if len(chunk) < _READ_CHUNK:
                break
        if parse:
            self._parse()

    def _parse(self) -> None:
        buf = self._inbuf
        pos = 0
        try:
            if not self._greeted:
                if len(buf) < 64:
                    if len(buf) >= 10 and (buf[0] != 0xFF or buf[9] != 0x7F):
                        raise TransportError(f"{self.endpoint} is not a ZeroMQ peer (bad greeting signature)")
                    return
                self._on_greeting(bytes(buf[:64]))
                pos = 64
            while True:
                if len(buf) - pos < 2:
                    break
                flags = buf[pos]
                if flags & FLAG_LONG:
                    if len(buf) - pos < 9:
                        break
                    (size,) = struct.unpack_from(">Q", buf, pos + 1)
                    start = pos + 9
                else:
                    size = buf[pos + 1]
                    start = pos + 2
                end = start + size
                if end > len(buf):
                    break
                body = bytes(buf[start:end])
                pos = end
                if flags & FLAG_COMMAND:
                    self._on_command(body)
                    continue
                if not self._ready:
                    raise TransportError("the daemon sent a message before its READY command")
                self._parts.append(body)
                if not flags & FLAG_MORE:
                    self._messages.append(self._parts)
                    self._parts = []
        finally:
            if pos:
                del buf[:pos]
