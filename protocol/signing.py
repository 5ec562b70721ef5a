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


def new_key() -> bytes:
    """A fresh random secret (32 bytes), written hex-encoded into the connection file."""
    return os.urandom(32)


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
