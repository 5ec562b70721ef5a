"""Shared set-up for the GIMP plug-in tests: import paths, a real daemon on loopback, the GIMP 3 chroot.

The daemon is the project's own server (real ROUTER socket, real engine) on a background thread of the test
process, serving the built-in 64-pixel test model, so the tests need no model file and no `draggan serve`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = ROOT / "plugins" / "gimp" / "draggan"
HELPERS_DIR = ROOT / "tests" / "gimp_app"
CHROOT_SCRIPT = ROOT / "tools" / "gimp_chroot.sh"
CHROOT_DIR = Path(os.environ.get("DRAGGAN_GIMP_CHROOT", ROOT / ".cache" / "gimp-chroot"))

for p in (str(PLUGIN_DIR), str(HELPERS_DIR)):
    if p not in sys.path:
        sys.path.insert(0, p)


@dataclass
class RunningDaemon:
    server: object
    connection_file: Path
    endpoint: str
    key: str

    def stop(self) -> None:
        self.server.stop()


def start_daemon(connection_file: Path, model: Path | None = None, resolution: int = 64) -> RunningDaemon:
    """The daemon server (built-in test model, or the model file given), its connection file at `connection_file`."""
    import daemons
    from draggan_daemon.server.models import BUILTIN_NAME, builtin_test_generator

    key = secrets.token_hex(16)
    served = (model.stem, model) if model is not None else (BUILTIN_NAME, builtin_test_generator(resolution))
    server = daemons.start_in_process([served], connection_file, key=key.encode("ascii"))
    return RunningDaemon(server, connection_file, server.endpoint, key)


def spawn_daemon_process(connection_file: Path, model: Path | None = None, timeout: float = 120.0) -> subprocess.Popen:
    """`draggan serve` in a child process (built-in test model unless `model` is given), ready to accept clients.

    Tests stop it with SIGKILL when they need a daemon that dies the way a crash would.
    """
    import daemons

    return daemons.spawn(connection_file, model, timeout=timeout)


def chroot_unavailable_reason() -> str | None:
    """Why the GIMP chroot cannot be built here, or None when it can (or already exists)."""
    if (CHROOT_DIR / ".draggan-gimp-chroot").is_file() and os.geteuid() == 0:
        return None
    if os.geteuid() != 0:
        return "the GIMP 3 chroot needs root (chroot, debootstrap)"
    if shutil.which("debootstrap") is None and not (CHROOT_DIR / ".draggan-gimp-chroot").is_file():
        return "debootstrap is not installed on this host (apt-get install -y debootstrap)"
    return None


def ensure_chroot(timeout: float = 900.0) -> Path:
    """Build the chroot (about a minute or two) or reuse it; returns its path."""
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(CHROOT_SCRIPT), str(CHROOT_DIR)], capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"tools/gimp_chroot.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    print(f"GIMP chroot ready in {time.monotonic() - t0:.1f} s at {CHROOT_DIR}")
    return CHROOT_DIR


def run_gimp_batch(
    root: Path, home_inside: str, driver_inside: str, env: dict[str, str], timeout: float
) -> tuple[int, str]:
    """Run gimp-console in batch mode inside the chroot (always with --quit); returns (rc, combined output)."""
    cmd = [
        "chroot",
        str(root),
        "/usr/bin/env",
        "-i",
        "PATH=/usr/bin:/bin",
        f"HOME={home_inside}",
        "LANG=C.UTF-8",
        *[f"{k}={v}" for k, v in env.items()],
        "gimp-console-3.0",
        "-i",
        "--quit",
        "--batch-interpreter",
        "python-fu-eval",
        "-b",
        f'exec(open("{driver_inside}").read())',
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr
