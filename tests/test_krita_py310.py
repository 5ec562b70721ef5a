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


# ---------------------------------------------------------------------------------------------- a real 3.10
def python310() -> str | None:
    """A Python 3.10 interpreter on this machine (DRAGGAN_PYTHON310, python3.10 on PATH, pyenv's), or None."""
    import glob
    import os
    import shutil
    import subprocess

    candidates = [os.environ.get("DRAGGAN_PYTHON310"), shutil.which("python3.10"), "/usr/bin/python3.10"]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")))
    for exe in filter(None, candidates):
        try:
            r = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
        except OSError:
            continue
        if r.returncode == 0 and r.stdout.strip() == "(3, 10)":
            return exe
    return None


# Stand-ins for PyQt5 and krita, which a bare 3.10 lacks: any name imported from them is a class, any attribute
# of one (Qt.AlignLeft, pyqtSignal(str)) another stand-in, so the plugin's modules run their module-level code.
STUB = """
class _Meta(type):
    def __getattr__(cls, name):
        return _Meta(name, (_Stub,), {})
    def __or__(cls, other):
        return cls


class _Stub(metaclass=_Meta):
    def __init__(self, *args, **kwargs):
        pass
    def __call__(self, *args, **kwargs):
        return _Stub()
    def __getattr__(self, name):
        return _Stub()


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Meta(name, (_Stub,), {})
"""

RUN_310 = """
import compileall, importlib, os, sys
root, stubs, endpoint, key = sys.argv[1:5]
assert sys.version_info[:2] == (3, 10), sys.version
assert compileall.compile_dir(root, quiet=2, legacy=True, force=True), "a file does not compile on 3.10"
sys.path[:0] = [root, stubs]
os.environ["DRAGGAN_KRITA_NO_REGISTER"] = "1"
import draggan_krita  # puts the vendored packages first on sys.path
names = sorted(f[:-3] for f in os.listdir(os.path.join(root, "draggan_krita")) if f.endswith(".py"))
for name in names:
    importlib.import_module("draggan_krita" if name == "__init__" else "draggan_krita." + name)
vendored = os.path.join(root, "draggan_krita", "vendor", "draggan_protocol")
for f in sorted(os.listdir(vendored)):
    if f.endswith(".py") and f != "__init__.py":
        importlib.import_module("draggan_protocol." + f[:-3])
import msgpack
from draggan_protocol import Client
assert msgpack.Packer.__module__ == "msgpack.fallback", msgpack.Packer.__module__
assert draggan_krita.geometry.Pair(1, 2, 4, 6).length == 5.0
c = Client(endpoint, key.encode())
print("OK", len(names), type(c.transport).__name__, c.hello()["default_model"], "zmq" in sys.modules)
"""


def test_the_zip_runs_on_a_real_python_310(tmp_path):
    """Where a Python 3.10 is installed (as on this project's machines, through pyenv): every file of the zip
    compiles there, every module of the plugin and of its vendored client imports (PyQt5 and krita stood in for),
    and the carried client talks to a daemon with the carried msgpack and transport, without zmq."""
    import subprocess
    import zipfile

    exe = python310()
    if exe is None:
        pytest.skip("no Python 3.10 interpreter here (set DRAGGAN_PYTHON310 to one)")
    out = tmp_path / "draggan-krita.zip"
    cmd = [sys.executable, "-m", "draggan_daemon.cli", "package", "krita", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    root = tmp_path / "pykrita"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(root)
    stubs = tmp_path / "stubs"
    for mod in ("PyQt5/__init__.py", "PyQt5/QtCore.py", "PyQt5/QtGui.py", "PyQt5/QtWidgets.py", "krita.py"):
        (stubs / mod).parent.mkdir(parents=True, exist_ok=True)
        (stubs / mod).write_text(STUB)
    sys.path.insert(0, str(ROOT / "tests"))
    from test_daemon_support import running_daemon

    with running_daemon() as server:
        args = [str(root), str(stubs), server.endpoint, server.config.key.decode()]
        r = subprocess.run([exe, "-I", "-S", "-c", RUN_310, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    ok, count, transport, model, zmq_loaded = r.stdout.split()
    assert (ok, transport, model, zmq_loaded) == ("OK", "ZmtpDealer", "tiny", "False"), r.stdout
    assert int(count) >= 8
