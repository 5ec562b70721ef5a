"""`draggan package <target>` and `draggan install <target>`: build or install the editor plugins.

Each target has its own module (`krita`, `gimp`); a module offers `package_main(argv)` and/or `install_main(argv)`
(a module with only `main(argv)` handles install).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

TARGETS = {"krita": ("package", "install"), "gimp": ("install",)}


def daemon_hint() -> dict[str, object]:
    """What a plugin's "Start the daemon" runs (draggan_protocol.launcher): this Python's daemon, this checkout."""
    from draggan_protocol.launcher import installer_hint

    project = Path(__file__).resolve().parents[2]
    return installer_hint(project if (project / "pyproject.toml").is_file() else None)


def usage() -> str:
    lines = ["usage: draggan package krita [options]", "       draggan install {krita|gimp} [options]"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] not in ("package", "install") or argv[1] in ("-h", "--help"):
        print(usage(), file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv[:1] in (["-h"], ["--help"]) or argv[1:2] in (["-h"], ["--help"]) else 2
    verb, target, rest = argv[0], argv[1], argv[2:]
    if target not in TARGETS or verb not in TARGETS[target]:
        print(f"draggan {verb}: unknown target {target!r}\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"{__name__}.{target}")
    entry = getattr(module, f"{verb}_main", None) or module.main
    return int(entry(rest) or 0)
