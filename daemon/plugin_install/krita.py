"""`draggan package krita` (an installable zip) and `draggan install krita` (into the current user's Krita).

The zip is what Krita's Tools ▸ Scripts ▸ Import Python Plugin from File… expects: `draggan_krita.desktop` and the
package folder `draggan_krita/` (with explicit folder entries, which Krita's importer looks for). Krita's own Python
(official builds) has only the standard library and PyQt5, so the package carries in `draggan_krita/vendor/`:
the `draggan_protocol` client (with its pure-Python ZeroMQ transport) and msgpack's pure-Python code (its C
extension is left out: msgpack falls back to `msgpack/fallback.py`). No pip step, no pyzmq.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from draggan_protocol.launcher import HINT_FILE
from draggan_protocol.outcome import START_DAEMON

from . import daemon_hint

PLUGIN_NAME = "draggan_krita"
ZIP_NAME = "draggan-krita.zip"
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo", ".so", ".pyd", ".dylib", ".c", ".cpp", ".h", ".pyx", ".pxd")


def plugin_source() -> Path:
    """plugins/krita of this checkout (or of the installed package's data)."""
    candidates = [
        Path(__file__).resolve().parents[2] / "plugins" / "krita",
        Path(__file__).resolve().parents[1] / "plugin_data" / "krita",
    ]
    for path in candidates:
        if (path / PLUGIN_NAME / "__init__.py").is_file() and (path / "draggan.desktop").is_file():
            return path
    raise FileNotFoundError(
        "the Krita plugin's files are not part of this installation: " + ", ".join(map(str, candidates))
    )


def _package_dir(module_name: str) -> Path:
    module = __import__(module_name)
    return Path(module.__file__).resolve().parent


def _files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith(_SKIP_SUFFIXES):
                continue
            out.append(Path(dirpath) / name)
    return out


def _add_tree(zf: zipfile.ZipFile, src: Path, arc_root: str) -> None:
    dirs_done = set()
    for path in _files(src):
        rel = path.relative_to(src).as_posix()
        parts = (arc_root.rstrip("/") + "/" + rel).split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i]) + "/"
            if folder not in dirs_done and folder not in zf.namelist():
                zf.writestr(zipfile.ZipInfo(folder, date_time=(2024, 1, 1, 0, 0, 0)), b"")
                dirs_done.add(folder)
        info = zipfile.ZipInfo("/".join(parts), date_time=(2024, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        zf.writestr(info, path.read_bytes())


def build_zip(out: Path) -> Path:
    """Write the installable zip to `out` (a file path); returns it. Reproducible: fixed dates, sorted entries."""
    src = plugin_source()
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo(f"{PLUGIN_NAME}.desktop", date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        zf.writestr(info, (src / "draggan.desktop").read_bytes())
        _add_tree(zf, src / PLUGIN_NAME, PLUGIN_NAME)
        _add_tree(zf, _package_dir("draggan_protocol"), f"{PLUGIN_NAME}/vendor/draggan_protocol")
        _add_tree(zf, _package_dir("msgpack"), f"{PLUGIN_NAME}/vendor/msgpack")
        info = zipfile.ZipInfo(f"{PLUGIN_NAME}/{HINT_FILE}", date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        zf.writestr(info, json.dumps(daemon_hint(), indent=1))  # for "Start the daemon" (draggan_protocol.launcher)
        info = zipfile.ZipInfo(f"{PLUGIN_NAME}/vendor/README.txt", date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        zf.writestr(info, _vendor_notice())
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, out)
    return out


def _vendor_notice() -> str:
    """Which third-party code the zip carries, under which licence (msgpack's own licence text included)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("msgpack")
        version = dist.version
        license_text = next(
            (f.read_text() for f in dist.files or [] if f.name.upper().startswith(("LICENSE", "COPYING"))), ""
        )
    except metadata.PackageNotFoundError:
        version, license_text = "unknown", ""
    head = (
        "Libraries carried by the DragGAN Krita plugin so that Krita's own Python needs nothing else:\n"
        "- draggan_protocol: DragGAN Studio's client (this project's licence).\n"
        f"- msgpack {version} (pure-Python part only), Apache License 2.0, https://github.com/msgpack/msgpack-python\n"
    )
    return head + ("\n--- msgpack licence ---\n" + license_text if license_text else "")


# ---------------------------------------------------------------------------------------------- user folders
def resources_dir(platform: str | None = None, env: dict[str, str] | None = None, home: Path | None = None) -> Path:
    """Krita's per-user resource folder (the one holding pykrita/)."""
    platform = platform or sys.platform
    env = dict(os.environ if env is None else env)
    home = home or Path.home()
    if platform == "win32":
        return Path(env.get("APPDATA") or home / "AppData" / "Roaming") / "krita"
    if platform == "darwin":
        return home / "Library" / "Application Support" / "krita"
    return Path(env.get("XDG_DATA_HOME") or home / ".local" / "share") / "krita"


def kritarc_path(platform: str | None = None, env: dict[str, str] | None = None, home: Path | None = None) -> Path:
    platform = platform or sys.platform
    env = dict(os.environ if env is None else env)
    home = home or Path.home()
    if platform == "win32":
        return Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local") / "kritarc"
    if platform == "darwin":
        return home / "Library" / "Preferences" / "kritarc"
    return Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kritarc"


def enable_in_kritarc(path: Path, name: str = PLUGIN_NAME) -> None:
    """Set `enable_<name>=true` in the [python] group, touching no other line of the file."""
    key = f"enable_{name}"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    out: list[str] = []
    in_python = found_group = done = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if in_python and not done:
                out.append(f"{key}=true")
                done = True
            in_python = stripped == "[python]"
            found_group = found_group or in_python
        elif in_python and stripped.split("=", 1)[0].strip() == key:
            if not done:
                out.append(f"{key}=true")
                done = True
            continue
        out.append(line)
    if in_python and not done:
        out.append(f"{key}=true")
        done = True
    if not found_group:
        if out and out[-1].strip():
            out.append("")
        out += ["[python]", f"{key}=true"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def install_from_zip(zip_path: Path, resources: Path) -> Path:
    """Unpack the plugin into `resources`/pykrita (replacing an earlier copy); returns the package folder."""
    pykrita = resources / "pykrita"
    pykrita.mkdir(parents=True, exist_ok=True)
    target = pykrita / PLUGIN_NAME
    with zipfile.ZipFile(zip_path) as zf, tempfile.TemporaryDirectory(dir=pykrita) as tmp:
        for name in zf.namelist():
            if name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"unsafe path in {zip_path}: {name}")
        zf.extractall(tmp)
        if target.exists():
            if not (target / "__init__.py").is_file():
                raise FileExistsError(f"{target} exists and is not a DragGAN plugin; not touching it")
            shutil.rmtree(target)
        shutil.move(str(Path(tmp) / PLUGIN_NAME), str(target))
        shutil.copyfile(Path(tmp) / f"{PLUGIN_NAME}.desktop", pykrita / f"{PLUGIN_NAME}.desktop")
    return target


# ---------------------------------------------------------------------------------------------- commands
def default_zip_path() -> Path:
    return Path.cwd() / "dist" / ZIP_NAME


def package_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="draggan package krita",
        description="Build the zip for Krita's Tools > Scripts > Import Python Plugin from File...",
    )
    p.add_argument("-o", "--output", type=Path, default=None, help=f"zip to write (default dist/{ZIP_NAME})")
    args = p.parse_args(argv)
    try:
        out = build_zip(args.output or default_zip_path())
    except (OSError, ImportError) as exc:
        print(f"draggan package krita: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
    print("In Krita: Tools > Scripts > Import Python Plugin from File..., pick this zip, restart Krita,")
    print("then Settings > Dockers > DragGAN (start the daemon with: " + START_DAEMON + ")")
    return 0


def install_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="draggan install krita", description="Install and enable the DragGAN plugin for the current user."
    )
    p.add_argument("--zip", type=Path, help="install this zip (default: build one from this installation)")
    p.add_argument("--resources", type=Path, help="Krita's resource folder (default: the user's, found here)")
    p.add_argument("--kritarc", type=Path, help="Krita's settings file (default: the user's kritarc)")
    p.add_argument("--print-dir", action="store_true", help="print the folders that would be used and stop")
    args = p.parse_args(argv)
    resources = args.resources or resources_dir()
    rc = args.kritarc or kritarc_path()
    if args.print_dir:
        print(f"pykrita: {resources / 'pykrita'}\nkritarc: {rc}")
        return 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            zip_path = args.zip or build_zip(Path(tmp) / ZIP_NAME)
            target = install_from_zip(zip_path, resources)
        enable_in_kritarc(rc)
    except (OSError, ValueError, ImportError, zipfile.BadZipFile) as exc:
        print(f"draggan install krita: {exc}", file=sys.stderr)
        return 1
    print(f"installed the Krita plugin in {target} and enabled it in {rc}")
    print("Restart Krita, then Settings > Dockers > DragGAN (start the daemon first: " + START_DAEMON + ")")
    return 0
