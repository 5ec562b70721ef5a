"""The Krita installations the real-Krita tests run against, and how to start each one.

- "krita51": the host's Krita (Debian bookworm: 5.1.5, the system Python 3.11), run directly;
- "krita52": Debian trixie's Krita 5.2 (Python 3.13, PyQt5 5.15.11), installed by tools/krita_chroot.sh into the
  trixie chroot the GIMP tests use, run with `chroot`. It shares this host's network namespace, so it reaches a
  daemon on this host's loopback; it sees only files inside the chroot, so each test works in a folder under the
  chroot's /draggan-test/ (see `KritaInstall.workdir`) and every path handed to Krita is that folder's.

A test takes the `krita` fixture (tests/conftest.py parametrises it over both) and builds its command and
environment as for the host; `KritaInstall.command` turns them into the chroot's when needed.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from gimp_env import CHROOT_DIR

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "krita"
CHROOT_SCRIPT = ROOT / "tools" / "krita_chroot.sh"
CHROOT_STAMP = ".draggan-krita-chroot"
HOST_SKIP = "needs Krita: apt-get install -y krita xvfb xauth"
# What of the test's environment a Krita in the chroot gets (it starts from an empty one: the host's PATH,
# PYTHONPATH or virtual environment mean nothing there).
PASSED_PREFIXES = ("XDG_", "DRAGGAN_", "QT_QPA_", "PROBE_")
PASSED_NAMES = ("TMPDIR", "PYTHONPATH")
SCREEN = "-screen 0 1600x1000x24"


def chroot_unavailable_reason(root: Path = CHROOT_DIR) -> str | None:
    """Why Krita 5.2 in the trixie chroot cannot run here, or None when it can (built, or buildable now)."""
    if os.geteuid() != 0:
        return "Krita 5.2 runs in the Debian trixie chroot, which needs root (chroot, debootstrap)"
    if (root / CHROOT_STAMP).is_file():
        return None
    if not (root / ".draggan-gimp-chroot").is_file() and shutil.which("debootstrap") is None:
        return "Krita 5.2 needs the trixie chroot, and debootstrap is not installed (apt-get install -y debootstrap)"
    return None


_prepared: dict[Path, float] = {}


def ensure_chroot(root: Path = CHROOT_DIR, timeout: float = 900.0) -> Path:
    """Add Krita 5.2 to the trixie chroot (building the chroot first when missing), once per test session."""
    if root not in _prepared:
        t0 = time.monotonic()
        proc = subprocess.run(["bash", str(CHROOT_SCRIPT), str(root)], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"tools/krita_chroot.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        _prepared[root] = time.monotonic() - t0
        print(f"Krita 5.2 chroot ready in {_prepared[root]:.1f} s at {root}")
    return root


def free_display(root: Path) -> int:
    """An X display number nobody uses, for an Xvfb started inside the chroot. xvfb-run's own `-a` looks only at
    the chroot's /tmp, but X's abstract sockets live in the network namespace the chroot shares with the host: a
    number the host's Xvfb holds would make Krita talk to the host's display. Binding the abstract name proves it
    free (for the moment it takes to start Xvfb)."""
    rng = random.Random()
    for _ in range(200):
        n = rng.randrange(300, 5000)
        if (root / "tmp" / f".X{n}-lock").exists() or Path(f"/tmp/.X{n}-lock").exists():
            continue
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(f"\0/tmp/.X11-unix/X{n}")
        except OSError:
            continue
        finally:
            s.close()
        return n
    raise RuntimeError("no free X display number")


@dataclass(frozen=True)
class KritaInstall:
    """One Krita the tests run: the host's (root None) or the one in the chroot at `root`."""

    name: str
    root: Path | None = None

    @property
    def label(self) -> str:
        return "Krita 5.2 (Debian trixie chroot)" if self.root is not None else "the host's Krita"

    @property
    def artifacts(self) -> Path:
        """Where this installation's logs, screenshots and PNGs are kept (the host's: artifacts/krita itself)."""
        return ARTIFACTS if self.root is None else ARTIFACTS / self.name

    def skip_reason(self, gui: bool) -> str | None:
        if self.root is None:
            needed = ("krita", "xvfb-run") if gui else ("kritarunner",)
            return HOST_SKIP if any(shutil.which(t) is None for t in needed) else None
        return chroot_unavailable_reason(self.root)

    def prepare(self) -> None:
        if self.root is not None:
            ensure_chroot(self.root)

    def workdir(self, tmp_path: Path) -> Path:
        """A fresh folder this Krita can read and write (remove it with `cleanup`)."""
        if self.root is None:
            d = tmp_path / "krita-work"
        else:
            d = self.root / "draggan-test" / f"krita-{uuid.uuid4().hex[:10]}"
        d.mkdir(parents=True)
        return d

    def cleanup(self, workdir: Path) -> None:
        if self.root is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def inside(self, path: Path | str) -> str:
        """A path of this process as Krita sees it (it must lie in the chroot for the chroot's Krita)."""
        path = str(path)
        if self.root is None:
            return path
        root = str(self.root)
        if path != root and not path.startswith(root + os.sep):
            raise ValueError(f"{path} is not inside the chroot {root}: Krita there cannot see it")
        return path[len(root) :] or "/"

    def outside(self, path: str) -> Path:
        """A path Krita reported, as this process sees it."""
        return Path(path) if self.root is None else self.root / path.lstrip("/")

    def place(self, path: Path, workdir: Path) -> str:
        """A file of this process made visible to Krita (copied into `workdir` for the chroot); its path there."""
        if self.root is None:
            return str(path)
        copy = workdir / path.name
        shutil.copy(path, copy)
        return self.inside(copy)

    def command(self, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The command line and environment that run `argv` (with `env`, paths as this process sees them) in this
        Krita's system. In the chroot: an empty environment but for Krita's folders, the test's own variables and
        PYTHONPATH, every path translated; HOME is the profile's (XDG_CONFIG_HOME's parent)."""
        if self.root is None:
            return argv, env
        passed = {k: v for k, v in env.items() if k.startswith(PASSED_PREFIXES) or k in PASSED_NAMES}
        translated = {k: self._translate(v) for k, v in passed.items()}
        home = str(Path(translated.get("XDG_CONFIG_HOME", "/root/config")).parent)
        base = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": home}
        settings = [f"{k}={v}" for k, v in {**base, **translated}.items()]
        host_env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG")}
        return ["chroot", str(self.root), "/usr/bin/env", "-i", *settings, *argv], host_env

    def gui_command(self) -> list[str]:
        """Krita's full application under a fresh Xvfb."""
        if self.root is None:
            return ["xvfb-run", "-a", "-s", SCREEN, "krita", "--nosplash"]
        return ["xvfb-run", "-n", str(free_display(self.root)), "-s", SCREEN, "krita", "--nosplash"]

    def _translate(self, value: str) -> str:
        root = str(self.root)
        parts = value.split(os.pathsep)
        return os.pathsep.join(self.inside(p) if p == root or p.startswith(root + os.sep) else p for p in parts)


INSTALLS = {"krita51": KritaInstall("krita51"), "krita52": KritaInstall("krita52", CHROOT_DIR)}


def use(install: KritaInstall, gui: bool) -> KritaInstall:
    """Skip the test when this Krita cannot run here (saying why); else make it ready (the chroot's: built once)."""
    import pytest

    reason = install.skip_reason(gui)
    if reason:
        pytest.skip(f"{install.label}: {reason}")
    install.prepare()
    return install
