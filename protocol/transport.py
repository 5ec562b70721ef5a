"""The byte pipe under the client: a DEALER-side multipart transport with one small interface.

Two implementations share it, so the client code above never cares which one it got:

- `PyZmqTransport` (here): a pyzmq DEALER socket. Used whenever pyzmq imports; the only one that speaks CURVE.
- `draggan_protocol.zmtp.ZmtpDealer`: a pure-Python ZMTP 3.x DEALER over a plain TCP socket (PLAIN or NULL
  mechanism), for hosts such as Krita's bundled Python where pyzmq cannot be installed. Its constructor is
  `ZmtpDealer(endpoint: str, identity: bytes | None = None, plain=(username, password) | None, ...)`; `endpoint`
  is ``tcp://HOST:PORT``; `identity`, when given, is announced as the ZMTP ``Identity`` property so the daemon's
  ROUTER routes by it.

Interface (`Transport`):
    send_multipart(frames: list[bytes], timeout: float | None = None) -> None
                                                        send one multipart message (frames are bytes-like); never
                                                        blocks longer than `timeout` s (None = the transport's
                                                        `send_timeout`), else raises TransportError
    recv_multipart(timeout: float | None) -> list[bytes] | None
                                                        wait up to `timeout` seconds (None = forever, 0 = poll);
                                                        None when nothing arrived in time
    close() -> None                                     release the socket; safe to call twice
    set_limits(limits: dict) -> None                    (both built-in transports) adopt the caps for a daemon's
                                                        announced hello_reply.limits
Failures that mean "the peer cannot be reached" raise `TransportError` (an OSError).

Limits, the same for both transports (PROTOCOL.md §1): a frame over `MAX_FRAME_BYTES` (4 MiB), a message of more than
`MAX_MESSAGE_FRAMES` frames or over `MAX_MESSAGE_BYTES` is the largest the protocol allows (§10 defaults), so a peer
sending more is not a DragGAN daemon: the transport closes the connection and raises `TransportError`. At most
`MAX_QUEUE_MESSAGES` received messages wait for the caller; beyond that the transport stops reading (TCP pushes
back on the sender) and never drops a message. A daemon configured with larger limits announces them in its
signed hello_reply; `set_limits(limits)` raises the caps to match.
"""

from __future__ import annotations

import os
import uuid
from typing import Protocol, runtime_checkable

from .errors import DaemonUnreachable
from .spec import DEFAULT_LIMITS, DELIMITER, message_bounds


def message_limits(limits: dict | None = None) -> dict[str, int]:
    """The transport's caps for a daemon's `limits` (hello_reply.limits; None = the defaults, PROTOCOL.md §10): the
    largest message the protocol allows, [delimiter, signature, header, content, *buffer frames] (§2)."""
    lim = {**DEFAULT_LIMITS, **(limits or {})}
    frames, payload = message_bounds(lim)
    return {
        "max_frame_bytes": max(lim["max_frame_bytes"], lim["max_content_bytes"], lim["max_header_bytes"]),
        "max_message_frames": frames,
        "max_message_bytes": len(DELIMITER) + 64 + payload,  # 64: the hex HMAC-SHA256
    }


_DEFAULT_CAPS = message_limits()
MAX_FRAME_BYTES = _DEFAULT_CAPS["max_frame_bytes"]
MAX_MESSAGE_FRAMES = _DEFAULT_CAPS["max_message_frames"]
MAX_MESSAGE_BYTES = _DEFAULT_CAPS["max_message_bytes"]
# Received messages waiting for the caller: reading pauses at either bound (libzmq's RCVHWM is 1000 too).
MAX_QUEUE_MESSAGES = 1000
MAX_QUEUE_BYTES = 64 * 1024 * 1024
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_SEND_TIMEOUT = 30.0


class TransportError(OSError):
    """The transport cannot reach the daemon or was closed."""


class HandshakeRefused(TransportError, DaemonUnreachable):
    """The daemon answered the ZeroMQ handshake and refused this client (a key that is not the running daemon's,
    or too many connections): it is running, so "start it" would be the wrong advice. Also a DaemonUnreachable:
    code that only knows "no daemon to talk to" still handles it."""


# What the daemon's ZAP status codes mean for the person at the client (PROTOCOL.md §1).
REFUSAL_WORDS = {
    "400": "the daemon refused this connection's key: is the connection file that of the daemon now running?",
    "500": "the daemon has too many connections open (or could not check the key); close some, then try again",
}


def refusal_text(status: str) -> str:
    return REFUSAL_WORDS.get(status) or f"the daemon refused the connection: {status or 'ZMTP error'}"


@runtime_checkable
class Transport(Protocol):
    def send_multipart(self, frames: list[bytes]) -> None: ...

    def recv_multipart(self, timeout: float | None) -> list[bytes] | None: ...

    def close(self) -> None: ...


def have_pyzmq() -> bool:
    try:
        import zmq  # noqa: F401
    except ImportError:
        return False
    return True


def check_message(frames: list, max_frames: int = MAX_MESSAGE_FRAMES, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
    """TransportError when a received message is larger than any the protocol allows."""
    if len(frames) > max_frames:
        raise TransportError(f"the peer sent a message of {len(frames)} frames; the protocol allows {max_frames}")
    total = sum(len(f) for f in frames)
    if total > max_bytes:
        raise TransportError(f"the peer sent a message of {total} bytes; the protocol allows {max_bytes}")


class PyZmqTransport:
    """A pyzmq DEALER socket connected to the daemon's ROUTER.

    `identity` becomes the socket's routing id so that a reconnect (same socket) keeps the same identity at the
    daemon, which keys session ownership on it. `curve` = (server_public, client_public, client_secret) as Z85
    bytes turns on CURVE encryption (needed when the daemon listens beyond loopback); else `plain` =
    (username, password) answers the loopback daemon's PLAIN handshake (`signing.plain_credentials`).

    A refused handshake (libzmq's monitor reports HANDSHAKE_FAILED_AUTH; libzmq itself would only retry quietly)
    makes the next `recv_multipart` raise `HandshakeRefused`.

    Limits as `ZmtpDealer`'s, with what libzmq offers: ZMQ_MAXMSGSIZE (per frame: libzmq drops a connection that
    declares a larger one), ZMQ_RCVHWM (the receive queue), ZMQ_HANDSHAKE_IVL (the connect deadline: a peer that
    does not complete the ZMTP handshake in time is dropped), and a send that waits for room at most its deadline.
    """

    def __init__(
        self,
        endpoint: str,
        identity: bytes | None = None,
        curve: tuple[bytes, bytes, bytes] | None = None,
        context: object | None = None,
        *,
        plain: tuple[bytes, bytes] | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        max_message_frames: int = MAX_MESSAGE_FRAMES,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_queue_messages: int = MAX_QUEUE_MESSAGES,
    ) -> None:
        import zmq

        self._zmq = zmq
        self.send_timeout = send_timeout
        self.max_message_frames = max_message_frames
        self.max_message_bytes = max_message_bytes
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes)
        self._sock.setsockopt(zmq.RCVHWM, max_queue_messages)
        self._sock.setsockopt(zmq.HANDSHAKE_IVL, max(1, int(connect_timeout * 1000)))
        self._sock.setsockopt(zmq.SNDTIMEO, _ms(send_timeout))
        self._sndtimeo = _ms(send_timeout)
        if identity:
            self._sock.setsockopt(zmq.ROUTING_ID, identity)
        if curve is not None:
            server_public, client_public, client_secret = curve
            self._sock.curve_serverkey = server_public
            self._sock.curve_publickey = client_public
            self._sock.curve_secretkey = client_secret
        elif plain is not None:
            self._sock.plain_username, self._sock.plain_password = plain
        # (a monitor address of its own: pyzmq's default is named after the socket's fd, which can be reused)
        self._monitor = self._sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_AUTH, addr=f"inproc://draggan-client-monitor-{uuid.uuid4().hex}"
        )
        try:
            self._sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self._close_sockets()
            raise TransportError(f"cannot connect to {endpoint}: {exc}") from exc
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._closed = False

    def send_multipart(self, frames: list[bytes], timeout: float | None = None) -> None:
        if self._closed:
            raise TransportError("transport is closed")
        ms = _ms(self.send_timeout if timeout is None else timeout)
        zmq = self._zmq
        try:
            if ms != self._sndtimeo:
                self._sock.setsockopt(zmq.SNDTIMEO, ms)
                self._sndtimeo = ms
            # libzmq queues the message and sends it from its own thread; only a full queue (SNDHWM) makes this
            # wait, for at most SNDTIMEO, and once the first frame is taken the others of the message are too.
            self._sock.send_multipart(frames, copy=len(frames) < 4 or max(len(f) for f in frames) < 65536)
        except zmq.Again as exc:
            raise TransportError(f"timed out sending to the daemon (no room after {ms / 1000:g} s)") from exc
        except zmq.ZMQError as exc:
            raise TransportError(f"cannot send to the daemon: {exc}") from exc

    def recv_multipart(self, timeout: float | None) -> list[bytes] | None:
        if self._closed:
            raise TransportError("transport is closed")
        ms = None if timeout is None else max(0, int(timeout * 1000))
        zmq = self._zmq
        try:
            ready = dict(self._poller.poll(ms))
            if self._monitor in ready:
                self._check_refused()
            if self._sock not in ready:
                return None
            frames = self._sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        except zmq.ZMQError as exc:
            raise TransportError(f"cannot receive from the daemon: {exc}") from exc
        try:
            check_message(frames, self.max_message_frames, self.max_message_bytes)
        except TransportError:
            self.close()
            raise
        return frames

    def _check_refused(self) -> None:
        from zmq.utils.monitor import parse_monitor_message

        while True:
            try:
                evt = parse_monitor_message(self._monitor.recv_multipart(self._zmq.NOBLOCK))
            except self._zmq.Again:
                return
            if evt["event"] == self._zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.close()
                raise HandshakeRefused(refusal_text(str(evt["value"])))

    def set_limits(self, limits: dict) -> None:
        """Adopt a daemon's announced limits (its signed hello_reply.limits), e.g. a larger `max_frame_bytes`;
        ZMQ_MAXMSGSIZE takes effect from the next (re)connection."""
        caps = message_limits(limits)
        self.max_message_frames = caps["max_message_frames"]
        self.max_message_bytes = caps["max_message_bytes"]
        if not self._closed:
            self._sock.setsockopt(self._zmq.MAXMSGSIZE, caps["max_frame_bytes"])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close_sockets()

    def _close_sockets(self) -> None:
        try:
            self._sock.disable_monitor()
        except self._zmq.ZMQError:
            pass
        self._monitor.close(0)
        self._sock.close(0)


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000))


def open_transport(
    endpoint: str,
    identity: bytes | None = None,
    curve: tuple[bytes, bytes, bytes] | None = None,
    prefer: str | None = None,
    *,
    plain: tuple[bytes, bytes] | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    send_timeout: float = DEFAULT_SEND_TIMEOUT,
) -> Transport:
    """pyzmq when importable, else the pure-Python ZMTP DEALER; `prefer` ('pyzmq'|'zmtp') or the environment
    variable DRAGGAN_TRANSPORT forces one (tests use it to exercise both)."""
    choice = prefer or os.environ.get("DRAGGAN_TRANSPORT") or ("pyzmq" if have_pyzmq() else "zmtp")
    if choice == "pyzmq":
        return PyZmqTransport(
            endpoint,
            identity=identity,
            curve=curve,
            plain=plain,
            connect_timeout=connect_timeout,
            send_timeout=send_timeout,
        )
    if choice != "zmtp":
        raise ValueError(f"unknown transport {choice!r} (expected 'pyzmq' or 'zmtp')")
    if curve is not None:
        raise TransportError("this daemon requires CURVE encryption, which needs pyzmq; use an SSH tunnel instead")
    from .zmtp import ZmtpDealer

    return ZmtpDealer(
        endpoint, identity=identity, plain=plain, connect_timeout=connect_timeout, send_timeout=send_timeout
    )
