"""`draggan install gimp`: copy the GIMP 3 plug-in into the user's plug-ins folder.

GIMP 3 runs every plug-in as its own process under the Python it ships (Linux distributions: the system Python;
Windows and macOS installers: a bundled one that has only the standard library and PyGObject). So the installed
folder carries everything the plug-in imports besides GIMP itself: the plug-in's own modules, the
`draggan_protocol` client, and a pure-Python copy of msgpack (used only when the host's Python lacks msgpack).
pyzmq is optional: without it the client speaks ZeroMQ's wire protocol over a plain socket.

GIMP only runs `plug-ins/NAME/NAME.py`, so the folder and the script share the name `draggan`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import sys
from pathlib import Path

from draggan_protocol.launcher import HINT_FILE
from draggan_protocol.outcome import START_DAEMON

from . import daemon_hint

PLUGIN_NAME = "draggan"
GIMP_SERIES = "3.0"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*")


def plugin_source() -> Path:
    """The plug-in folder shipped with this checkout or installation."""
    candidates = [
        Path(__file__).resolve().parents[2] / "plugins" / "gimp" / PLUGIN_NAME,  # source tree / editable install
        Path(__file__).resolve().parents[1] / "plugin_data" / "gimp" / PLUGIN_NAME,  # wheel with package data
    ]
    for path in candidates:
        if (path / f"{PLUGIN_NAME}.py").is_file():
            return path
    raise FileNotFoundError(
        "the GIMP plug-in's files are not part of this installation: " + ", ".join(map(str, candidates))
    )


def gimp_config_dirs(
    platform: str | None = None, env: dict[str, str] | None = None, home: Path | None = None
) -> list[Path]:
    """GIMP 3's per-user configuration folders for this platform, most likely first.

    GIMP3_DIRECTORY overrides everything, as it does for GIMP itself. On Linux the Flatpak and Snap builds keep
    their own folders; those are listed after the native one and chosen only when they already exist.
    """
    platform = platform or sys.platform
    env = dict(os.environ if env is None else env)
    home = home or Path.home()
    if env.get("GIMP3_DIRECTORY"):
        return [Path(env["GIMP3_DIRECTORY"]).expanduser()]
    if platform == "win32":
        appdata = Path(env.get("APPDATA") or home / "AppData" / "Roaming")
        return [appdata / "GIMP" / GIMP_SERIES]
    if platform == "darwin":
        return [home / "Library" / "Application Support" / "GIMP" / GIMP_SERIES]
    config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return [
        config / "GIMP" / GIMP_SERIES,
        home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / GIMP_SERIES,
        home / "snap" / "gimp" / "current" / ".config" / "GIMP" / GIMP_SERIES,
    ]


def default_plugins_dir(
    platform: str | None = None, env: dict[str, str] | None = None, home: Path | None = None
) -> Path:
    """The plug-ins folder to install into: the first existing GIMP 3 configuration, else the native one."""
    dirs = gimp_config_dirs(platform, env, home)
    for d in dirs:
        if d.is_dir():
            return d / "plug-ins"
    return dirs[0] / "plug-ins"


def _copy_package(module_name: str, dest: Path, pure_python_only: bool = False) -> Path:
    module = __import__(module_name)
    src = Path(module.__file__).resolve().parent
    ignore = _IGNORE
    if pure_python_only:

        def ignore(folder: str, names: list[str]) -> set[str]:  # drop compiled extensions: they are ABI-specific
            skip = set(_IGNORE(folder, names))
            return skip | {n for n in names if n.endswith((".so", ".pyd", ".dylib", ".pyx", ".cpp", ".h", ".c"))}

    target = dest / module_name
    shutil.copytree(src, target, ignore=ignore)
    return target


def install(dest_dir: Path, vendor: bool = True) -> Path:
    """Install into `dest_dir` (a plug-ins folder); returns the plug-in's folder. Replaces an earlier install."""
    src = plugin_source()
    target = dest_dir / PLUGIN_NAME
    if target.exists():
        if not (target / f"{PLUGIN_NAME}.py").is_file():
            raise FileExistsError(f"{target} exists and is not a DragGAN plug-in; not touching it")
        shutil.rmtree(target)
    dest_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, target, ignore=_IGNORE)
    _copy_package("draggan_protocol", target)
    (target / HINT_FILE).write_text(json.dumps(daemon_hint(), indent=1), encoding="utf-8")  # for "Start the daemon"
    if vendor:
        try:
            _copy_package("msgpack", target / "vendor", pure_python_only=True)
        except ImportError:
            print(
                "note: msgpack is not installed here; the plug-in will need GIMP's Python to have it", file=sys.stderr
            )
    script = target / f"{PLUGIN_NAME}.py"
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="draggan install gimp",
        description="Install the DragGAN plug-in for GIMP 3 (Filters > DragGAN > Drag...). Restart GIMP afterwards.",
    )
    parser.add_argument("--dest", type=Path, help="plug-ins folder to install into (default: GIMP 3's, found here)")
    parser.add_argument("--no-vendor", action="store_true", help="do not bundle a pure-Python msgpack")
    parser.add_argument("--print-dir", action="store_true", help="print the plug-ins folder that would be used")
    args = parser.parse_args(argv)
    dest = args.dest or default_plugins_dir()
    if args.print_dir:
        print(dest)
        return 0
    try:
        target = install(dest, vendor=not args.no_vendor)
    except (OSError, FileExistsError) as exc:
        print(f"draggan install gimp: {exc}", file=sys.stderr)
        return 1
    print(f"installed the GIMP plug-in in {target}")
    print("restart GIMP, then use Filters > DragGAN > Drag... (start the daemon first: " + START_DAEMON + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
