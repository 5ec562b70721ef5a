"""The one measurements file: every benchmark and drag-check script records its figures here.

Figures belong to a run (a command, a commit, a model, a machine), not to a docstring: docstrings keep the rule and
one line of why, and point to `benchmarks/RESULTS.md`; the README quotes that file. Each run replaces the entry of
the same command (a rerun updates its figures), others are kept. `benchmarks/results/measurements.json` holds the
entries; RESULTS.md is written from it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(os.environ.get("DRAGGAN_RESULTS_DIR", ROOT / "benchmarks"))
JSON_FILE = "results/measurements.json"
MARKDOWN_FILE = "RESULTS.md"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def commit() -> str:
    """The checkout's short commit, marked "+changes" when the working tree differs from it."""
    head = _git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if _git("status", "--porcelain", "--untracked-files=no") else "")


def file_hash(path: str | Path | None) -> str:
    """The first 12 hex digits of a file's sha256 ("" without a file)."""
    if not path or not Path(path).is_file():
        return ""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def machine(device: str = "cpu") -> str:
    """CPU model and count (and the GPU for CUDA), Python and torch versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [f"{cpu} × {os.cpu_count()}", f"Python {platform.python_version()}"]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
        if device == "cuda" and torch.cuda.is_available():
            parts.append(torch.cuda.get_device_name(0))
    except ImportError:
        pass
    return ", ".join(parts)


def record(
    benchmark: str,
    figures: Mapping[str, Any],
    *,
    argv: Sequence[str] | None = None,
    model: str | Path | None = None,
    device: str = "cpu",
    notes: str = "",
    results_dir: Path | None = None,
) -> dict[str, Any]:
    """Store one run's figures (replacing an earlier run of the same command) and rewrite RESULTS.md."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = " ".join([benchmark, *args])
    entry = {
        "command": command,
        "benchmark": benchmark,
        "commit": commit(),
        "model": f"{Path(model).name} sha256:{file_hash(model)}" if model else "",
        "machine": machine(device),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "figures": dict(figures),
        "notes": notes,
    }
    folder = results_dir or RESULTS_DIR
    path = folder / JSON_FILE
    entries = load(folder)
    entries = [e for e in entries if e.get("command") != command] + [entry]
    entries.sort(key=lambda e: (e.get("benchmark", ""), e.get("command", "")))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / MARKDOWN_FILE).write_text(render(entries), encoding="utf-8")
    return entry


def load(results_dir: Path | None = None) -> list[dict[str, Any]]:
    path = (results_dir or RESULTS_DIR) / JSON_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v)
    return str(v)


def render(entries: Sequence[Mapping[str, Any]]) -> str:
    """RESULTS.md: one section per command, its provenance and a table of its figures."""
    lines = [
        "# Measurements",
        "",
        "Written by the benchmark and drag-check scripts (`daemon/measurements.py`); do not edit by hand. Rerun a",
        "command to update its entry. Compare figures within one entry (one run, one machine): this machine is",
        "shared and noisy, ratios measured in one run are what carries over.",
        "",
    ]
    for e in entries:
        lines += [f"## `{e.get('command', '')}`", ""]
        meta = [("commit", e.get("commit")), ("model", e.get("model")), ("machine", e.get("machine"))]
        meta.append(("date", e.get("date")))
        lines += [f"- {k}: {v}" for k, v in meta if v]
        if e.get("notes"):
            lines.append(f"- notes: {e['notes']}")
        lines += ["", "| figure | value |", "|---|---|"]
        lines += [f"| {k} | {_value(v)} |" for k, v in (e.get("figures") or {}).items()]
        lines.append("")
    return "\n".join(lines)
