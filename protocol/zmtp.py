"""A pure-Python ZeroMQ DEALER (ZMTP 3.0, PLAIN or NULL security) over a plain TCP socket.

Why it exists: Krita's bundled Python (AppImage, Windows, macOS builds) has only the standard library and PyQt5, so
pyzmq cannot be imported there. The daemon binds a libzmq ROUTER; this module speaks just enough of the wire
protocol (https://rfc.zeromq.org/spec/23/) to be a DEALER peer of it: the 64-byte greeting, the handshake with
``Socket-Type`` and ``Identity`` (NULL: READY; PLAIN, which the daemon requires: HELLO with the connection key's
password, WELCOME, INITIATE, READY), multipart messages with short and long frame sizes, and PING/PONG heartbeats.

It implements the `draggan_protocol.transport.Transport` interface plus ``fileno()`` so a GUI can watch the socket
with ``QSocketNotifier`` (after a notification, call ``recv_multipart(0)`` until it returns None: several messages
may arrive in one read). Unlike libzmq it does not reconnect by itself: a lost connection raises `TransportError`
and the caller opens a new transport.

Whatever the peer does, every call returns by its deadline (connect: `connect_timeout`, send: `send_timeout` or the
call's `timeout`, receive: its `timeout`) and memory stays bounded: a frame, command or message larger than the
protocol allows is refused as soon as its header declares it (`TransportError`, connection closed); at most
`max_queue_messages` / `max_queue_bytes` of received messages wait for the caller, after which reading pauses so
TCP pushes back on the sender (no message is ever dropped); PINGs are answered with one PONG at a time, never
waited for.
"""

from __future__ import annotations

import re
import select
import socket
import struct
import time
from collections import deque

from .transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_SEND_TIMEOUT,
    MAX_FRAME_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_FRAMES,
    MAX_QUEUE_BYTES,
    MAX_QUEUE_MESSAGES,
    HandshakeRefused,
    TransportError,
    message_limits,
    refusal_text,
)

# Greeting: signature (0xFF, 8 padding bytes, 0x7F), version 3.0, mechanism, as-server flag, filler.
_SIGNATURE_HEAD = b"\xff" + b"\x00" * 8 + b"\x7f"
_VERSION = bytes([3, 0])


def greeting(mechanism: bytes = b"NULL") -> bytes:
    """The 64-byte ZMTP 3.0 greeting of a client (as-server 0) offering `mechanism`."""
    return _SIGNATURE_HEAD + _VERSION + mechanism.ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


GREETING = greeting()
assert len(GREETING) == 64
# libzmq 4.3's ERROR command for a refused handshake arrives as b"^RROR\x03400" where RFC 23 has
# b"\x05ERROR\x03400" (in C, "\x05ERROR" reads \x05E as one hex escape, 0x5E): recognised by that shape.
_LIBZMQ_ERROR = re.compile(rb".RROR\x03[0-9]{3}", re.DOTALL)

# Frame flag bits.
FLAG_MORE = 0x01
FLAG_LONG = 0x02
FLAG_COMMAND = 0x04

_COMPATIBLE_PEERS = {b"ROUTER", b"DEALER"}
_READ_CHUNK = 1 << 18
# One read pass takes at most this many bytes and this long past its deadline before the caller looks at the
# clock (and at its own writes) again: a peer that streams without pause cannot keep a call inside.
_READ_BUDGET = 32 << 20
_READ_SLICE = 0.05
# ZMTP commands (READY properties, PING, ERROR) are small; libzmq's are well under 1 KiB.
MAX_COMMAND_BYTES = 64 * 1024
_SMALL_FRAME = 64 * 1024  # frames up to this size are copied into one send() with their neighbours


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
    as every wait is bounded by its deadline and reads never block).

    Limits (defaults: the largest message the protocol allows, `draggan_protocol.transport`): `max_frame_bytes` per
    frame, `max_message_frames` and `max_message_bytes` per message; `max_queue_messages` and `max_queue_bytes` of
    received messages waiting for `recv_multipart`."""

    def __init__(
        self,
        endpoint: str,
        identity: bytes | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        *,
        plain: tuple[bytes, bytes] | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        max_message_frames: int = MAX_MESSAGE_FRAMES,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_queue_messages: int = MAX_QUEUE_MESSAGES,
        max_queue_bytes: int = MAX_QUEUE_BYTES,
    ) -> None:
        if identity is not None and (not identity or len(identity) > 255 or identity[:1] == b"\x00"):
            raise ValueError("identity must be 1..255 bytes and must not start with a zero byte")
        deadline = time.monotonic() + connect_timeout
        self.endpoint = endpoint
        self.identity = identity
        if plain is not None and not all(0 < len(x) <= 255 for x in plain):
            raise ValueError("PLAIN username and password must be 1..255 bytes each")
        self.plain = plain
        self._welcomed = False  # PLAIN: the server's WELCOME came (then INITIATE goes, and READY must follow)
        self.send_timeout = send_timeout
        self.max_frame_bytes = max_frame_bytes
        self.max_message_frames = max_message_frames
        self.max_message_bytes = max_message_bytes
        self.max_queue_messages = max(1, max_queue_messages)
        self.max_queue_bytes = max_queue_bytes
        self.peer_properties: dict[bytes, bytes] = {}
        self._inbuf = bytearray()
        self._parts: list[bytes] = []  # frames of the message being received
        self._part_bytes = 0
        self._messages: deque[list[bytes]] = deque()
        self._queued_bytes = 0
        self._out: deque[memoryview] = deque()  # bytes not yet written, whole ZMTP frames in order
        self._pong: bytes | None = None  # the context of the last PING not answered yet
        self._eof = False
        self._error: str | None = None  # why the connection is unusable (closed after a peer's violation)
        self._write_error: str | None = None  # why nothing can be written any more
        self._closed = False
        self._ready = False
        self._greeted = False
        host, port = parse_endpoint(endpoint)
        try:
            self._sock = socket.create_connection((host, port), timeout=max(0.001, connect_timeout))
        except OSError as exc:
            raise TransportError(f"cannot connect to {endpoint}: {exc}") from exc
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock.setblocking(False)
            self._handshake(deadline)
        except BaseException:
            self._sock.close()
            self._closed = True
            raise

    # -- public interface -------------------------------------------------------------------------------------------

    def fileno(self) -> int:
        """The TCP socket's descriptor (-1 once closed), for select() or QSocketNotifier(Read)."""
        return -1 if self._closed else self._sock.fileno()

    def send_multipart(self, frames: list[bytes], timeout: float | None = None) -> None:
        """Send one message, waiting at most `timeout` s (None: `send_timeout`) for the peer to take it. A send
        that cannot finish in time raises `TransportError` and closes the connection (a half-sent message cannot
        be taken back)."""
        self._check_open()
        if self._eof or self._write_error is not None:
            raise TransportError(self._write_error or self._error or "connection to the daemon is closed")
        if not frames:
            raise ValueError("a message has at least one frame")
        deadline = time.monotonic() + max(0.0, self.send_timeout if timeout is None else timeout)
        last = len(frames) - 1
        small = bytearray()
        total = 0
        for i, frame in enumerate(frames):
            header, body = encode_frame(frame, FLAG_MORE if i < last else 0)
            total += len(header) + body.nbytes
            if body.nbytes <= _SMALL_FRAME:
                small += header
                small += body
                continue
            if small:
                self._out.append(memoryview(bytes(small)))
                small = bytearray()
            self._out.append(memoryview(header))
            self._out.append(body)
        if small:
            self._out.append(memoryview(bytes(small)))
        try:
            while True:
                self._write_some()
                if not self._out:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    left = sum(v.nbytes for v in self._out)
                    self._fail(
                        f"timed out sending to the daemon: it took {total - min(left, total)} of {total} bytes in "
                        f"{self.send_timeout if timeout is None else timeout:g} s"
                    )
                # Keep reading what the peer sends while we wait (bounded, like any read), so neither side can
                # stall the other; with the receive queue full only the write side is watched.
                rlist = [self._sock] if self._may_read() and not self._eof else []
                readable, _, _ = select.select(rlist, [self._sock], [], remaining)
                if readable:
                    self._read_some(deadline)
        except TransportError:
            self._out.clear()
            raise
        self._answer_ping()

    def recv_multipart(self, timeout: float | None) -> list[bytes] | None:
        if self._closed and not self._messages:
            self._check_open()
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            if self._messages:
                return self._pop()
            self._check_open()
            self._answer_ping()
            self._read_some(deadline)
            if self._messages:
                return self._pop()
            if self._eof:
                raise TransportError(self._error or "the daemon closed the connection")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            wants_write = (self._out or self._pong is not None) and self._write_error is None
            wlist = [self._sock] if wants_write else []
            select.select([self._sock], wlist, [], remaining)

    def set_limits(self, limits: dict) -> None:
        """Adopt a daemon's announced limits (its signed hello_reply.limits), e.g. a larger `max_frame_bytes`."""
        caps = message_limits(limits)
        self.max_frame_bytes = caps["max_frame_bytes"]
        self.max_message_frames = caps["max_message_frames"]
        self.max_message_bytes = caps["max_message_bytes"]

    def pending(self) -> bool:
        """True when a complete message is already buffered (no need to wait for the socket)."""
        return bool(self._messages)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._out.clear()
        self._inbuf = bytearray()
        self._parts = []
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

    def _properties(self) -> bytes:
        props = {b"Socket-Type": b"DEALER"}
        if self.identity:
            props[b"Identity"] = self.identity
        return encode_properties(props)

    def _handshake(self, deadline: float) -> None:
        """NULL: greeting and READY both ways. PLAIN (RFC 24): greeting, HELLO (username, password) → WELCOME,
        INITIATE (our properties) → READY (the server's)."""
        if self.plain is None:
            opening = greeting(b"NULL") + encode_command(b"READY", self._properties())
        else:
            user, password = self.plain
            hello = bytes([len(user)]) + user + bytes([len(password)]) + password
            opening = greeting(b"PLAIN") + encode_command(b"HELLO", hello)
        self._out.append(memoryview(opening))
        while not self._ready:
            self._write_some()
            self._read_some(deadline)
            if self._ready:
                break
            if self._eof:
                hint = " (DragGAN daemons since protocol 2 want the connection key)" if self.plain is None else ""
                raise TransportError(f"{self.endpoint} closed the connection during the ZMTP handshake{hint}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportError(f"no ZMTP handshake from {self.endpoint} in time (is it a ZeroMQ ROUTER?)")
            select.select([self._sock], [self._sock] if self._out else [], [], remaining)
        self._answer_ping()

    def _on_greeting(self, greeting: bytes) -> None:
        if greeting[0] != 0xFF or greeting[9] != 0x7F:
            raise TransportError(f"{self.endpoint} is not a ZeroMQ peer (bad greeting signature)")
        if greeting[10] < 3:
            raise TransportError(f"{self.endpoint} speaks ZMTP {greeting[10]}.x; version 3 is required")
        mechanism = greeting[12:32].rstrip(b"\x00")
        ours = b"NULL" if self.plain is None else b"PLAIN"
        if mechanism != ours:
            name = mechanism.decode("ascii", errors="replace")
            if mechanism == b"NULL":
                raise TransportError(f"{self.endpoint} asks for no key: it is not a DragGAN daemon of protocol 2")
            if mechanism == b"PLAIN":
                raise TransportError(f"{self.endpoint} asks for the connection key (PLAIN); none was given")
            if mechanism in (b"CURVE", b"GSSAPI"):
                raise TransportError(f"the daemon requires the {name} security mechanism, which needs pyzmq")
            raise TransportError(f"{self.endpoint} offers an unknown ZMTP security mechanism {name!r}")
        self._greeted = True

    def _on_command(self, body: bytes) -> None:
        if not body:
            raise TransportError("empty ZMTP command")
        nlen = body[0]
        name, data = bytes(body[1 : 1 + nlen]), body[1 + nlen :]
        if name == b"WELCOME" and self.plain is not None and not self._welcomed:
            self._welcomed = True
            self._out.append(memoryview(encode_command(b"INITIATE", self._properties())))
        elif name == b"READY":
            if self._ready:
                raise TransportError(f"{self.endpoint} sent a second READY command")
            if self.plain is not None and not self._welcomed:
                raise TransportError(f"{self.endpoint} sent READY before accepting the key (no WELCOME)")
            self.peer_properties = decode_properties(data)
            peer_type = self.peer_properties.get(b"socket-type", b"")
            if peer_type not in _COMPATIBLE_PEERS:
                raise TransportError(f"peer socket type {peer_type!r} cannot talk to a DEALER")
            self._ready = True
        elif name == b"ERROR":
            raise HandshakeRefused(refusal_text(bytes(data[1 : 1 + data[0]]).decode(errors="replace") if data else ""))
        elif not self._ready and _LIBZMQ_ERROR.fullmatch(bytes(body)):
            raise HandshakeRefused(refusal_text(bytes(body[-3:]).decode()))  # the status code, three digits
        elif name == b"PING":
            # PING body: 2-byte TTL, then up to 16 bytes of context that PONG must echo. Only the latest one is
            # answered, when nothing else is being written: a PING flood costs one pending PONG, never a wait.
            self._pong = bytes(data[2:18])
        # PONG and unknown commands are ignored, as the specification allows.

    # -- byte I/O ---------------------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(self._error or "connection to the daemon is closed")

    def _fail(self, reason: str) -> None:
        """The connection cannot be used any more: close it (so a hostile peer stops costing anything) and raise."""
        self._error = reason
        self._eof = True
        self.close()
        raise TransportError(reason)

    def _pop(self) -> list[bytes]:
        msg = self._messages.popleft()
        self._queued_bytes -= sum(len(f) for f in msg)
        return msg

    def _may_read(self) -> bool:
        """False while the receive queue is full: the bytes stay in the kernel and TCP pushes back on the peer."""
        if not self._messages:
            return True
        return len(self._messages) < self.max_queue_messages and self._queued_bytes < self.max_queue_bytes

    def _answer_ping(self) -> None:
        if self._write_error is not None or self._closed:
            return
        if self._pong is not None and not self._out:
            self._out.append(memoryview(encode_command(b"PONG", self._pong)))
            self._pong = None
        if self._out:
            try:
                self._write_some()
            except TransportError:
                pass  # the write side is gone; the read side says so once it has delivered what came

    def _write_some(self) -> None:
        """Write what the socket takes now, without waiting."""
        while self._out:
            view = self._out[0]
            try:
                sent = self._sock.send(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Not closed here: what the daemon sent before it went may still be read (recv reports the end).
                self._out.clear()
                self._write_error = f"lost the connection to the daemon: {exc}"
                raise TransportError(self._write_error) from exc
            if sent >= view.nbytes:
                self._out.popleft()
            else:
                self._out[0] = view[sent:]
                return

    def _read_some(self, deadline: float | None) -> None:
        """Read and parse what has arrived: until the socket is drained, the receive queue is full, or a budget of
        bytes / time is spent (at least one chunk, even past the deadline, so a poll makes progress)."""
        start = time.monotonic()
        stop = start + _READ_SLICE if deadline is None else max(deadline, start + _READ_SLICE)
        got = 0
        try:
            self._parse()  # bytes left over while the queue was full
            while self._may_read() and not self._eof and not self._closed:
                try:
                    chunk = self._sock.recv(_READ_CHUNK)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    self._eof = True
                    self._error = f"lost the connection to the daemon: {exc}"
                    break
                if not chunk:
                    self._eof = True
                    break
                self._inbuf += chunk
                got += len(chunk)
                self._parse()
                if len(chunk) < _READ_CHUNK or got >= _READ_BUDGET or time.monotonic() >= stop:
                    break
        except TransportError as exc:
            if not self._closed:
                self._error = str(exc)
                self._eof = True
                self.close()
            raise

    def _parse(self) -> None:
        buf = self._inbuf
        pos = 0
        try:
            if not self._greeted:
                if len(buf) < 64:
                    if len(buf) >= 10 and (buf[0] != 0xFF or buf[9] != 0x7F):
                        raise TransportError(f"{self.endpoint} is not a ZeroMQ peer (bad greeting signature)")
                    if len(buf) >= 11 and buf[10] < 3:
                        raise TransportError(f"{self.endpoint} speaks ZMTP {buf[10]}.x; version 3 is required")
                    return
                self._on_greeting(bytes(buf[:64]))
                pos = 64
            while True:
                if not self._parts and not self._may_read():
                    break  # the queue is full: the rest waits (in this buffer, then in the kernel)
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
                self._check_frame(flags, size)
                end = start + size
                if end > len(buf):
                    break
                with memoryview(buf) as view:
                    body = bytes(view[start:end])
                pos = end
                if flags & FLAG_COMMAND:
                    self._on_command(body)
                    continue
                self._parts.append(body)
                self._part_bytes += size
                if not flags & FLAG_MORE:
                    self._messages.append(self._parts)
                    self._queued_bytes += self._part_bytes
                    self._parts = []
                    self._part_bytes = 0
        finally:
            if pos:
                del buf[:pos]

    def _check_frame(self, flags: int, size: int) -> None:
        """Refuse a frame by its declared size, before any of its body is read."""
        if flags & FLAG_COMMAND:
            if flags & FLAG_MORE:
                raise TransportError(f"{self.endpoint} sent a malformed ZMTP command (MORE flag set)")
            if size > MAX_COMMAND_BYTES:
                raise TransportError(
                    f"{self.endpoint} declared a {size}-byte ZMTP command; at most {MAX_COMMAND_BYTES} are accepted"
                )
            return
        if not self._ready:
            raise TransportError("the daemon sent a message before its READY command")
        if size > self.max_frame_bytes:
            raise TransportError(
                f"the daemon declared a {size}-byte frame; the protocol allows at most {self.max_frame_bytes}"
            )
        if len(self._parts) >= self.max_message_frames:
            raise TransportError(
                f"the daemon sent a message of more than {self.max_message_frames} frames, the protocol's most"
            )
        if self._part_bytes + size > self.max_message_bytes:
            raise TransportError(
                f"the daemon sent a message of more than {self.max_message_bytes} bytes, the protocol's most"
            )
