"""CURVE keys for a daemon that listens beyond loopback: generated once, kept in a private folder.

Folder layout (default ~/.config/draggan/curve, or --curve-dir):
  server.key          public key (Z85) — give it to clients
  server.key_secret   secret key (Z85), mode 0600
  client.key / client.key_secret   a client keypair the daemon issues for the remote connection file
  authorized/*.key    optional: more client public keys that may connect; no other key finishes the handshake
"""

from __future__ import annotations

import os
from pathlib import Path

from draggan_protocol.connection import make_private_dirs


def default_curve_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "draggan" / "curve"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def load_or_create_pair(folder: Path, name: str) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys named `name` in `folder`, generated on first use."""
    import zmq

    make_private_dirs(folder)
    pub_p, sec_p = folder / f"{name}.key", folder / f"{name}.key_secret"
    if pub_p.is_file() and sec_p.is_file():
        return pub_p.read_bytes().strip(), sec_p.read_bytes().strip()
    public, secret = zmq.curve_keypair()
    pub_p.write_bytes(public + b"\n")
    _write_private(sec_p, secret + b"\n")
    return public, secret


def authorized_keys(folder: Path) -> list[bytes] | None:
    d = folder / "authorized"
    if not d.is_dir():
        return None
    keys = [p.read_bytes().strip() for p in sorted(d.glob("*.key"))]
    return keys or None
