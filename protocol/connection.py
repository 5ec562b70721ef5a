"""Where the running daemon says how to reach it, and reading/writing that connection file.

Location (first match wins):
  1. $DRAGGAN_CONNECTION_FILE
  2. Linux/BSD: $XDG_RUNTIME_DIR/draggan/daemon.json when XDG_RUNTIME_DIR is set and exists,
     else ${XDG_STATE_HOME:-~/.local/state}/draggan/daemon.json
  3. macOS: ~/Library/Application Support/DragGAN/daemon.json
  4. Windows: %APPDATA%\\DragGAN\\daemon.json
The file holds the endpoint and the HMAC secret, so it is created with mode 0600 in a 0700 folder; the
daemon removes it on exit.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .spec import PROTOCOL_VERSION, SIGNATURE_SCHEME


def default_connection_file() -> Path:
    env = os.environ.get("DRAGGAN_CONNECTION_FILE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "DragGAN" / "daemon.json"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "DragGAN" / "daemon.json"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "draggan" / "daemon.json"
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "draggan" / "daemon.json"


@dataclass
class ConnectionInfo:
    """What a client needs to talk to a daemon. `key` is the hex HMAC secret."""

    endpoint: str
    key: str
    signature_scheme: str = SIGNATURE_SCHEME
    protocol_version: str = PROTOCOL_VERSION
    pid: int | None = None
    curve_server_key: str | None = None  # Z85 public key when the daemon requires CURVE
    curve_client_public: str | None = None  # a client keypair issued by the daemon (remote use)
    curve_client_secret: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key_bytes(self) -> bytes:
        return self.key.encode("ascii")

    def curve_tuple(self) -> tuple[bytes, bytes, bytes] | None:
        if not self.curve_server_key:
            return None
        if not (self.curve_client_public and self.curve_client_secret):
            raise ValueError("connection file names a CURVE server key but carries no client keypair")
        return (
            self.curve_server_key.encode("ascii"),
            self.curve_client_public.encode("ascii"),
            self.curve_client_secret.encode("ascii"),
        )

    def to_json(self) -> str:
        d = asdict(self)
        extra = d.pop("extra")
        d = {k: v for k, v in d.items() if v is not None}
        d.update(extra)
        return json.dumps(d, indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConnectionInfo:
        if not isinstance(d, dict) or not isinstance(d.get("endpoint"), str) or not isinstance(d.get("key"), str):
            raise ValueError("connection file lacks 'endpoint' or 'key'")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "extra"}
        extra = {k: v for k, v in d.items() if k not in cls.__dataclass_fields__}
        return cls(**known, extra=extra)


def read_connection_file(path: str | Path | None = None) -> ConnectionInfo:
    """Raises FileNotFoundError when no daemon has written one (i.e. none is running), ValueError when garbled."""
    p = Path(path) if path else default_connection_file()
    with open(p, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p} is not valid JSON: {exc}") from None
    return ConnectionInfo.from_dict(data)


def make_private_dirs(folder: Path) -> None:
    """Create the missing folders of `folder` readable by the owner only (0700).

    Folders that already exist are left exactly as they are: a connection file may be put in a shared folder
    such as /tmp, whose mode must never change; the file's own 0600 mode protects the secret there.
    """
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue
        if sys.platform != "win32":
            os.chmod(d, 0o700)  # mkdir's mode is masked by the umask


def write_connection_file(info: ConnectionInfo, path: str | Path | None = None) -> Path:
    """Atomically write `info` readable by the owner only (0600; folder 0700)."""
    p = Path(path) if path else default_connection_file()
    make_private_dirs(p.parent)
    fd, tmp = tempfile.mkstemp(prefix=".daemon-", suffix=".json", dir=p.parent)
    try:
        if sys.platform != "win32":
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(info.to_json())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


def remove_connection_file(path: str | Path, pid: int | None = None) -> None:
    """Remove the file if it is still ours (another daemon may have replaced it meanwhile)."""
    p = Path(path)
    try:
        if pid is not None and read_connection_file(p).pid not in (None, pid):
            return
        p.unlink()
    except (FileNotFoundError, ValueError):
        pass
