"""Who may finish the ZeroMQ handshake: the daemon's ZAP handler (ZeroMQ RFC 27), run inside the socket loop.

Why in the transport: libzmq assembles a whole multipart message before the daemon sees any of it, so checking
the signature of messages comes too late to bound what a peer without the key costs (4 × 255 MiB per
connection, PROTOCOL.md §5). With a ZAP handler a peer proves the key in the handshake, before libzmq takes a
single message frame from it: on loopback with ZeroMQ's PLAIN mechanism (a password derived from the key,
`signing.plain_credentials`), beyond loopback with CURVE and an allow-listed client key. Until then it can only
make libzmq hold one handshake command of at most `max_frame_bytes` for at most the handshake interval.

The handler also caps open connections (`max_connections`, and `max_per_address` from one address other than
loopback, where every local client comes from): a handshake that would take the count past it is
refused with status 500 (libzmq passes that on in an ERROR command; for RFC 27's 300 it sends none), so not even
a key holder can open connections without end. The count is of TCP connections the socket monitor reports
(ACCEPTED / DISCONNECTED, by fd), those still in their handshake included: libzmq's monitor does not say which
connection a handshake event belongs to. A stranger can therefore hold places only while its handshakes last
(at most 5 s each, ZMQ_HANDSHAKE_IVL).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import socket

import zmq
from zmq.utils import z85

from .logs import event, worth_logging

log = logging.getLogger("draggan.server")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by RFC 27: one handler per ZeroMQ context
ZAP_DOMAIN = b"draggan"
_STATUS_TEXT = {b"400": b"no valid key", b"500": b"too many connections"}  # (libzmq passes on only the code)


class Admission:
    """A ZAP handler bound in `ctx` that the socket loop polls (`socket`) and feeds (`handle`, `accepted`,
    `disconnected`).

    `password` = PLAIN (username, password) to accept; `curve_keys` = the Z85 client public keys CURVE accepts
    (None: any key; the HMAC signature still applies). A request for any other mechanism is refused.
    """

    def __init__(
        self,
        ctx: zmq.Context,
        *,
        password: tuple[bytes, bytes] | None = None,
        curve_keys: list[bytes] | None = None,
        max_connections: int = 64,
        max_per_address: int = 16,
        exempt_loopback: bool = True,
    ) -> None:
        self.password = password
        self.curve_keys = None if curve_keys is None else {bytes(k) for k in curve_keys}
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.exempt_loopback = exempt_loopback  # local clients all come from 127.0.0.1: the total cap is theirs
        self.live: dict[int, str] = {}  # fd -> peer address of open TCP connections (ACCEPTED, not yet ended)
        self.stats = {"admitted": 0, "refused_key": 0, "refused_busy": 0, "refused_malformed": 0}
        self.socket = ctx.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(ZAP_ENDPOINT)

    def close(self) -> None:
        self.socket.close(0)

    # -- connections (from the socket monitor) ---------------------------------------------------------------------
    def accepted(self, fd: int) -> None:
        self.live[fd] = peer_address(fd)

    def disconnected(self, fd: int) -> None:
        self.live.pop(fd, None)

    # -- ZAP requests ------------------------------------------------------------------------------------------------
    def handle(self) -> None:
        """Answer every ZAP request waiting (never blocks)."""
        while True:
            try:
                request = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.socket.send_multipart(self._answer(request))

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6:
            self.stats["refused_malformed"] += 1
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, _domain, address, _identity, mechanism, *credentials = request
        if version != b"1.0":
            self.stats["refused_malformed"] += 1
            return [b"1.0", request_id, b"500", b"unknown ZAP version", b"", b""]
        user = self._check(mechanism, credentials)
        peer = _plain_ip(address.decode("ascii", "replace"))
        if user is None:
            mech = mechanism.decode("ascii", "replace")
            return self._refuse(request_id, b"400", "refused_key", peer, "no valid key", mechanism=mech)
        same = sum(1 for a in self.live.values() if a == peer)
        crowded = same > self.max_per_address and not (self.exempt_loopback and _is_loopback(peer))
        if len(self.live) > self.max_connections or crowded:  # the connection asking is one of them
            # 500, not RFC 27's 300: libzmq sends no ERROR for a 300 and leaves the client waiting for its timeout
            why = f"{same} connections from this address" if crowded else "too many connections"
            return self._refuse(request_id, b"500", "refused_busy", peer, why)
        self.stats["admitted"] += 1
        return [b"1.0", request_id, b"200", b"OK", user, b""]

    def _refuse(
        self, request_id: bytes, status: bytes, stat: str, peer: str, reason: str, **fields: str
    ) -> list[bytes]:
        """A ZAP refusal, counted under `stat` and logged (throttled)."""
        self.stats[stat] += 1
        if worth_logging(self.stats[stat]):
            event(log, "handshake_refused", logging.WARNING, peer=peer, **fields, count=self.stats[stat], reason=reason)
        return [b"1.0", request_id, status, _STATUS_TEXT[status], b"", b""]

    def _check(self, mechanism: bytes, credentials: list[bytes]) -> bytes | None:
        """The user id to admit, or None."""
        if mechanism == b"PLAIN" and self.password is not None and len(credentials) == 2:
            user, password = credentials
            ok_user = hmac.compare_digest(user, self.password[0])
            ok_password = hmac.compare_digest(password, self.password[1])
            return user if ok_user and ok_password else None
        if mechanism == b"CURVE" and len(credentials) == 1:
            if self.curve_keys is None:
                return b"curve"
            key = z85.encode(credentials[0]) if len(credentials[0]) == 32 else b""
            return key if key in self.curve_keys else None
        return None


def peer_address(fd: int) -> str:
    """The IP address at the other end of a connected socket fd ("" when it is gone already)."""
    try:
        dup = os.dup(fd)  # a socket object of our own, so closing it leaves libzmq's fd open
    except OSError:
        return ""
    try:
        with socket.socket(fileno=dup) as sock:
            return _plain_ip(str(sock.getpeername()[0]))
    except (OSError, IndexError, TypeError):
        return ""


def _plain_ip(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(_plain_ip(address)).is_loopback
    except ValueError:
        return False
