"""The one measurements file: a rerun of a command replaces its entry, other commands are kept, RESULTS.md shows
each run's provenance and figures."""

from __future__ import annotations

import json

from draggan_daemon import measurements as M


def test_record_replaces_a_rerun_and_keeps_the_rest(tmp_path):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"weights")
    M.record("benchmarks/x.py", {"speedup": 3.14159}, argv=["--res", "256"], model=model, results_dir=tmp_path)
    M.record("benchmarks/x.py", {"speedup": 2.0}, argv=["--res", "512"], results_dir=tmp_path)
    M.record("benchmarks/x.py", {"speedup": 4.5, "rss MB": 700}, argv=["--res", "256"], results_dir=tmp_path)
    entries = json.loads((tmp_path / M.JSON_FILE).read_text())
    assert [e["command"] for e in entries] == ["benchmarks/x.py --res 256", "benchmarks/x.py --res 512"]
    assert entries[0]["figures"] == {"speedup": 4.5, "rss MB": 700} and entries[0]["commit"]
    md = (tmp_path / M.MARKDOWN_FILE).read_text()
    assert "## `benchmarks/x.py --res 512`" in md and "| speedup | 4.5 |" in md and "3.14" not in md
    assert "machine: " in md and "torch" in md
    import hashlib

    assert M.file_hash(model) == hashlib.sha256(b"weights").hexdigest()[:12] and M.file_hash(None) == ""
