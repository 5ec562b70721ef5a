"""The Krita plugin's own code stays within Python 3.10: its syntax, its standard library, its few other imports.

Official Krita 5.2 builds (Windows, the AppImage, macOS) embed their own Python, 3.10 in painters' logs, with only
the standard library and PyQt5; the real-Krita tests run 3.11 (Debian bookworm's Krita 5.1) and 3.13 (trixie's 5.2).
So every file the plugin zip carries as its own code (plugins/krita/draggan_krita/*.py and the protocol package
protocol/*.py, vendored as draggan_protocol) is parsed as Python 3.10 and its imports are checked against the
standard library of 3.10 and the modules Krita provides or the zip carries. The checker is shown to fail on what
3.10 lacks, with small snippets.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_FILES = sorted((ROOT / "plugins" / "krita" / "draggan_krita").glob("*.py"))
PROTOCOL_FILES = sorted((ROOT / "protocol").glob("*.py"))
TARGET = (3, 10)

# Top-level standard modules that appeared after 3.10 (public and private), taken out of this Python's list.
ADDED_AFTER_310 = {
    "tomllib",  # 3.11
    "_tomllib",
    "_colorize",  # 3.13
    "_pyrepl",  # 3.13
    "_interpreters",  # 3.13
    "_interpqueues",
    "_interpchannels",
    "_suggestions",  # 3.13
    "_opcode_metadata",  # 3.13
    "_android_support",  # 3.13
    "_apple_support",  # 3.13
    "_ios_support",  # 3.13
    "annotationlib",  # 3.14
    "compression",  # 3.14
    "_zstd",  # 3.14
}
# Modules removed before or in 3.12/3.13 are still in 3.10: this Python may not list them.
REMOVED_AFTER_310 = {
    "asynchat", "asyncore", "distutils", "imp", "smtpd",  # removed in 3.12
    "aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "mailcap", "msilib", "nis", "nntplib",
    "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau", "telnetlib", "uu", "xdrlib", "lib2to3",  # removed in 3.13
}  # fmt: skip
STDLIB_310 = (set(sys.stdlib_module_names) - ADDED_AFTER_310) | REMOVED_AFTER_310
# What the plugin may import besides the standard library: Krita's own module and PyQt5 (in every Krita build),
# msgpack (carried in the zip, pure Python), zmq (used only when present: the carried transport replaces it),
# and its own two packages.
THIRD_PARTY = {"PyQt5", "krita", "msgpack", "zmq"}
OWN = {"draggan_krita", "draggan_protocol"}
# Names that standard modules gained after 3.10 (a 3.10 import of them fails, or the attribute is missing).
NAMES_AFTER_310 = {
    "typing": {
        "Self", "LiteralString", "Never", "assert_never", "assert_type", "reveal_type", "dataclass_transform",
        "Required", "NotRequired", "Unpack", "TypeVarTuple", "get_overloads", "clear_overloads", "override",
        "TypeAliasType", "get_protocol_members", "is_protocol", "ReadOnly", "TypeIs", "NoDefault",
        "evaluate_forward_ref",
    },
    "enum": {
        "StrEnum", "ReprEnum", "EnumCheck", "FlagBoundary", "verify", "member", "nonmember", "global_enum",
        "show_flag_values", "EnumType", "CONTINUOUS", "NAMED_FLAGS", "UNIQUE", "STRICT", "CONFORM", "EJECT", "KEEP",
    },
    "datetime": {"UTC"},
    "itertools": {"batched"},
    "asyncio": {"TaskGroup", "timeout", "timeout_at", "Timeout", "Runner", "Barrier", "BrokenBarrierError"},
    "contextlib": {"chdir"},
    "hashlib": {"file_digest"},
    "operator": {"call"},
    "math": {"cbrt", "exp2", "sumprod", "fma"},
    "inspect": {"getmembers_static", "markcoroutinefunction", "BufferFlags"},
    "logging": {"getLevelNamesMapping", "getHandlerByName", "getHandlerNames"},
    "re": {"NOFLAG", "PatternError"},
    "string": {"templatelib"},
    "sys": {"exception", "activate_stack_trampoline", "monitoring", "_is_gil_enabled"},
    "os": {"process_cpu_count", "setns", "unshare"},
    "copy": {"replace"},
}  # fmt: skip
BUILTINS_AFTER_310 = {"ExceptionGroup", "BaseExceptionGroup", "PythonFinalizationError", "_IncompleteInputError"}


def problems(src: str, name: str = "<snippet>") -> list[str]:
    """What in `src` Python 3.10 (as embedded in Krita, with PyQt5) cannot run; [] when nothing."""
    try:
        tree = ast.parse(src, name, feature_version=TARGET)
    except SyntaxError as exc:
        return [f"{name}:{exc.lineno}: not Python 3.10 syntax: {exc.msg}"]
    found = []

    def say(node: ast.AST, what: str) -> None:
        found.append(f"{name}:{getattr(node, 'lineno', '?')}: {what}")

    modules: dict[str, str] = {}  # a local name bound to a whole standard module -> that module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top not in STDLIB_310 | THIRD_PARTY | OWN:
                    say(node, f"imports {alias.name}, neither in Python 3.10's standard library nor allowed")
                if top in STDLIB_310:
                    modules[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: the plugin's own modules
                continue
            mod = node.module or ""
            top = mod.split(".")[0]
            if top not in STDLIB_310 | THIRD_PARTY | OWN | {"__future__"}:
                say(node, f"imports from {mod}, neither in Python 3.10's standard library nor allowed")
            for alias in node.names:
                if alias.name in NAMES_AFTER_310.get(mod, ()):
                    say(node, f"imports {mod}.{alias.name}, added after Python 3.10")
        elif isinstance(node, ast.Name) and node.id in BUILTINS_AFTER_310:
            say(node, f"uses the built-in {node.id}, added after Python 3.10")
        elif isinstance(node, ast.Subscript):
            # PEP 646 (3.11): a[*b]; 3.11's own parser accepts it whatever feature_version says.
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            if any(isinstance(i, ast.Starred) for i in items):
                say(node, "unpacks in a subscript (a[*b]), Python 3.11 syntax")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            va = node.args.vararg
            if va is not None and isinstance(va.annotation, ast.Starred):
                say(node, "annotates *args with a starred type (*args: *Ts), Python 3.11 syntax")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            mod = modules[node.value.id]
            if node.attr in NAMES_AFTER_310.get(mod, ()):
                say(node, f"uses {mod}.{node.attr}, added after Python 3.10")
    return found


def test_the_files_checked_are_the_plugins_code():
    names = {p.name for p in PLUGIN_FILES}
    assert {"__init__.py", "controller.py", "docker.py", "document.py", "geometry.py", "link.py"} <= names
    assert {"__init__.py", "client.py", "zmtp.py", "connection.py"} <= {p.name for p in PROTOCOL_FILES}


@pytest.mark.parametrize("path", PLUGIN_FILES + PROTOCOL_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_plugin_code_is_python_310(path):
    assert problems(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))) == []


@pytest.mark.parametrize(
    ("src", "said"),
    [
        ("type X = int\n", "syntax"),
        ("try:\n    pass\nexcept* ValueError:\n    pass\n", "syntax"),
        ("def f[T](x: T) -> T:\n    return x\n", "syntax"),
        ("def f(*args: *Ts):\n    pass\n", "*args: *Ts"),
        ("x = a[*b]\n", "a[*b]"),
        ("import tomllib\n", "tomllib"),
        ("from tomllib import loads\n", "tomllib"),
        ("import numpy as np\n", "numpy"),
        ("from PIL import Image\n", "PIL"),
        ("from typing import Self\n", "typing.Self"),
        ("from enum import StrEnum\n", "enum.StrEnum"),
        ("import datetime\nnow = datetime.datetime.now(datetime.UTC)\n", "datetime.UTC"),
        ("import itertools as it\nb = it.batched([1, 2], 1)\n", "itertools.batched"),
        ("raise ExceptionGroup('two', [ValueError(), KeyError()])\n", "ExceptionGroup"),
    ],
)
def test_the_check_fails_on_what_310_lacks(src, said):
    found = problems(src)
    assert found and said in found[0], found


@pytest.mark.parametrize(
    "src",
    [
        "match x:\n    case [a, b]:\n        pass\n",  # 3.10
        "with (open('a') as f, open('b') as g):\n    pass\n",  # 3.10
        "from __future__ import annotations\ndef f(x: int | None) -> list[str]:\n    return []\n",
        "import json, os.path, zipfile\nfrom collections.abc import Iterator\nfrom typing import Any, TypeAlias\n",
        "from PyQt5.QtCore import QTimer\nfrom krita import Krita\nimport msgpack\nimport zmq\n",
        "from . import geometry\nfrom .geometry import Pair\nimport draggan_protocol\n",
        "import datetime\nz = datetime.timezone.utc\nfor a, b in zip([1], [2], strict=True):\n    pass\n",
        "import asyncore\n",  # removed in 3.12, present in 3.10
    ],
)
def test_the_check_accepts_python_310(src):
    assert problems(src) == []


def test_everything_the_zip_carries_parses_as_python_310(tmp_path):
    """What painters install: the zip's every Python file (the vendored msgpack too) is Python 3.10 syntax."""
    import subprocess
    import zipfile

    out = tmp_path / "draggan-krita.zip"
    cmd = [sys.executable, "-m", "draggan_daemon.cli", "package", "krita", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    with zipfile.ZipFile(out) as zf:
        sources = {n: zf.read(n).decode("utf-8") for n in zf.namelist() if n.endswith(".py")}
    assert "draggan_krita/vendor/msgpack/fallback.py" in sources and "draggan_krita/controller.py" in sources
    bad = []
    for name, src in sorted(sources.items()):
        try:
            ast.parse(src, name, feature_version=TARGET)
        except SyntaxError as exc:
            bad.append(f"{name}:{exc.lineno}: {exc.msg}")
    assert bad == []
