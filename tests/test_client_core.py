"""Both plugins stand on one client core (issue 11): the job events, their words, the error wording and the pair
type live in draggan_protocol, and neither plugin reads a job's events or words an error code by itself."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SOURCES = sorted(
    [
        *(ROOT / "plugins" / "krita" / "draggan_krita").glob("*.py"),
        *(ROOT / "plugins" / "gimp" / "draggan").rglob("*.py"),
    ]
)
# What only a job follower or a progress reader touches: the event names and the progress fields of PROTOCOL.md §6.
# (The Krita self-test's report keys, `res["job_done"]`, are names in a file of its own, not events read.)
JOB_WORDS = re.compile(r"""(?<!res\[)["'](job_done|job_queued|fit_steps|fit_step|max_steps|stage|queue_position)["']""")
ERROR_CODES = re.compile(r"""["'](too_large|pixel_limit|session_limit|queue_full|model_not_found)["']\s*:""")


def test_no_plugin_reads_job_events_or_words_error_codes_itself():
    assert len(PLUGIN_SOURCES) > 10
    offenders = {}
    for path in PLUGIN_SOURCES:
        text = path.read_text(encoding="utf-8")
        found = JOB_WORDS.findall(text) + ERROR_CODES.findall(text)
        if found:
            offenders[str(path.relative_to(ROOT))] = sorted(set(found))
    assert not offenders, offenders


def test_one_pair_type():
    sys.path.insert(0, str(ROOT / "plugins" / "krita"))
    sys.path.insert(0, str(ROOT / "plugins" / "gimp" / "draggan"))
    from draggan_gimp import pairs as gimp_pairs
    from draggan_krita import geometry
    from draggan_protocol.pairs import Pair

    assert geometry.Pair is Pair and gimp_pairs.Pair is Pair
    p = Pair(380, 270, 392, 258, index=3)
    assert p == Pair(380, 270, 392, 258) and p.shifted(-10, -20).as_list() == [370.0, 250.0, 382.0, 238.0]
    assert p.text() == "(380, 270) → (392, 258)" and p.shifted(1, 1).index == 3
