"""HMAC-SHA256 signatures over a message's header, content and buffers (the Jupyter scheme, buffers included).

Buffers are signed too: pixels decide what the daemon computes, so an unsigned pixel frame would be a way in.
The digest is computed over memoryviews, without joining frames, so a 4 MiB layer costs one pass of SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable

SIGNATURE_LENGTH = 64  # lowercase hex of a SHA-256 digest
PLAIN_USERNAME = b"draggan"


def new_key() -> bytes:
    """A fresh random secret (32 bytes), written hex-encoded into the connection file."""
    return os.urandom(32)


def plain_credentials(key: bytes | str) -> tuple[bytes, bytes]:
    """(username, password) for ZeroMQ's PLAIN handshake with a loopback daemon (PROTOCOL.md §5).

    The password is derived from the key (HMAC of a fixed label), never the key itself: PLAIN sends it in clear,
    and a capture of the handshake must not yield the key that signs messages.
    """
    if isinstance(key, str):
        key = key.encode("ascii")
    digest = hmac.new(bytes(key), b"draggan-transport-password", hashlib.sha256).hexdigest()
    return PLAIN_USERNAME, digest.encode("ascii")


class Signer:
    """Signs and verifies frame sequences with one shared secret; an empty key disables signing (tests only)."""

    def __init__(self, key: bytes | str) -> None:
        if isinstance(key, str):
            key = key.encode("ascii")
        self.key = bytes(key)
        self._proto = hmac.new(self.key, digestmod=hashlib.sha256) if self.key else None

    def sign(self, frames: Iterable[bytes | memoryview]) -> bytes:
        if self._proto is None:
            return b""
        h = self._proto.copy()
        for f in frames:
            h.update(f)
        return h.hexdigest().encode("ascii")

    def verify(self, signature: bytes | memoryview, frames: Iterable[bytes | memoryview]) -> bool:
        if self._proto is None:
            return True
        if len(signature) != SIGNATURE_LENGTH:  # checked first: no hashing, no copy of a huge bogus frame
            return False
        return hmac.compare_digest(bytes(signature), self.sign(frames))
