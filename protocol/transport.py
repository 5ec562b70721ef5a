"""The byte pipe under the client: a DEALER-side multipart transport with one small interface.

Two implementations share it, so the client code above never cares which one it got:

- `PyZmqTransport` (here): a pyzmq DEALER socket. Used whenever pyzmq imports; the only one that speaks CURVE.
- `draggan_protocol.zmtp.ZmtpDealer`: a pure-Python ZMTP 3.x DEALER over a plain TCP socket (NULL mechanism), for
  hosts such as Krita's bundled Python where pyzmq cannot be installed. Its constructor is
  `ZmtpDealer(endpoint: str, identity: bytes | None = None)`; `endpoint` is ``tcp://HOST:PORT``; `identity`, when
  given, is announced as the ZMTP ``Identity`` property in READY so the daemon's ROUTER routes by it.

Interface (`Transport`):
    send_multipart(frames: list[bytes]) -> None         queue/send one multipart message (frames are bytes-like)
    recv_multipart(timeout: float | None) -> list[bytes] | None
                                                        wait up to `timeout` seconds (None = forever, 0 = poll);
                                                        None when nothing arrived in time
    close() -> None                                     release the socket; safe to call twice
Failures that mean "the peer cannot be reached" raise `TransportError` (an OSError).
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable


class TransportError(OSError):
    """The transport cannot reach the daemon or was closed."""


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


class PyZmqTransport:
    """A pyzmq DEALER socket connected to the daemon's ROUTER.

    `identity` becomes the socket's routing id so that a reconnect (same socket) keeps the same identity at the
    daemon, which keys session ownership on it. `curve` = (server_public, client_public, client_secret) as Z85
    bytes turns on CURVE encryption (needed when the daemon listens beyond loopback).
    """

    def __init__(
        self,
        endpoint: str,
        identity: bytes | None = None,
        curve: tuple[bytes, bytes, bytes] | None = None,
        context: object | None = None,
    ) -> None:
        import zmq

        self._zmq = zmq
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        if identity:
            self._sock.setsockopt(zmq.ROUTING_ID, identity)
        if curve is not None:
            server_public, client_public, client_secret = curve
            self._sock.curve_serverkey = server_public
            self._sock.curve_publickey = client_public
            self._sock.curve_secretkey = client_secret
        try:
            self._sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self._sock.close(0)
            raise TransportError(f"cannot connect to {endpoint}: {exc}") from exc
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._closed = False

    def send_multipart(self, frames: list[bytes]) -> None:
        if self._closed:
            raise TransportError("transport is closed")
        self._sock.send_multipart(frames, copy=len(frames) < 4 or max(len(f) for f in frames) < 65536)

    def recv_multipart(self, timeout: float | None) -> list[bytes] | None:
        if self._closed:
            raise TransportError("transport is closed")
        ms = None if timeout is None else max(0, int(timeout * 1000))
        if not self._poller.poll(ms):
            return None
        return self._sock.recv_multipart()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close(0)


def open_transport(
    endpoint: str,
    identity: bytes | None = None,
    curve: tuple[bytes, bytes, bytes] | None = None,
    prefer: str | None = None,
) -> Transport:
    """pyzmq when importable, else the pure-Python ZMTP DEALER; `prefer` ('pyzmq'|'zmtp') or the environment
    variable DRAGGAN_TRANSPORT forces one (tests use it to exercise both)."""
    choice = prefer or os.environ.get("DRAGGAN_TRANSPORT") or ("pyzmq" if have_pyzmq() else "zmtp")
    if choice == "pyzmq":
        return PyZmqTransport(endpoint, identity=identity, curve=curve)
    if choice != "zmtp":
        raise ValueError(f"unknown transport {choice!r} (expected 'pyzmq' or 'zmtp')")
    if curve is not None:
        raise TransportError("this daemon requires CURVE encryption, which needs pyzmq; use an SSH tunnel instead")
    from .zmtp import ZmtpDealer

    return ZmtpDealer(endpoint, identity=identity)
