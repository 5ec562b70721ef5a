"""A job's progress events in plain words and as one fraction of the whole job (PROTOCOL.md §6, progress).

A drag on a layer that is not fitted yet first fits it (the `invert` phase) and then drags, inside one job: the
painter sees one bar, the fit filling its first FIT_SHARE and the drag the rest. A drag ends early when the handles
arrive, so its share is the larger of its steps (out of the most it may take) and how far the slowest handle has
really come; and its words say "at most N steps", since N is a limit, not a plan. Stage names of the fit (w, w+,
pti) are the paper's; a painter reads what they do instead.

Every client (Krita, GIMP, `draggan edit`) shows these words, so they come without a program-name prefix and
without a final full stop (each client puts them in its own sentence).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .outcome import arrival_text, has_arrival

FIT_SHARE = 0.5
"""The share of the bar the fit fills in a job that fits the layer before it drags."""

STAGE_WORDS = {
    "w": "overall look",
    "w+": "details",
    "pti": "adjusting the model to your picture",
}
"""The fit's stages (PROTOCOL.md, invert) in the words of someone who never read the paper."""


DRAFT_WORDS = "the preview is a draft: the result has the full detail"
"""Said while the preview shown is a draft (`preview_draft`, PROTOCOL.md §6): a painter who sees a softer picture
during the drag should not take it for the result."""


def plural(n: int, noun: str) -> str:
    """E.g. "1 step", "3 steps"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def toward_targets(arrival: Mapping[str, Any] | None) -> float:
    """How far the slowest handle has come, as a share of its asked move (0 without measured fields)."""
    if not arrival or not has_arrival(arrival):
        return 0.0
    try:
        pairs = zip(arrival["moved"], arrival["asked"], strict=True)
        shares = [float(m) / float(a) for m, a in pairs if float(a) > 0]
    except (KeyError, TypeError, ValueError):
        return 0.0
    return min(max(min(shares), 0.0), 1.0) if shares else 0.0


def fit_share(content: Mapping[str, Any]) -> float:
    """How much of the fit is done (0–1), over all its stages when the daemon says how many steps they add up to."""
    fit_steps = _int(content.get("fit_steps"))
    if fit_steps:
        return min(_int(content.get("fit_step")) / fit_steps, 1.0)
    total = _int(content.get("steps"))
    return min(_int(content.get("step")) / total, 1.0) if total else 0.0


def progress_words(
    content: Mapping[str, Any],
    *,
    max_steps: int = 0,
    arrival: Mapping[str, Any] | None = None,
    fit_first: bool = False,
    draft: bool = False,
) -> tuple[float, str]:
    """(fraction of the whole job, words) for one progress event.

    `max_steps`: the drag's step limit when the event does not carry it; `arrival`: the latest drag event with
    measured arrival fields (the words then say how far the content really moved, not where the point tracker
    thinks it is); `fit_first`: the job fits the layer before it drags (one bar over both).
    """
    if content.get("phase") == "suggest":  # fitting the layer into each model in turn (suggest_models)
        i, n = _int(content.get("step")), _int(content.get("steps"))
        name = str(content.get("model") or "")
        return (min(i / n, 1.0) if n else 0.0), f"Trying model {name} ({i + 1} of {n})" if n else "Trying models"
    if content.get("phase") == "invert":
        share = fit_share(content)
        stage = STAGE_WORDS.get(str(content.get("stage") or ""), "")
        words = f"Fitting your layer into the model{f' ({stage})' if stage else ''}, {int(100 * share)}%"
        return (FIT_SHARE if fit_first else 1.0) * share, words
    step = _int(content.get("step"))
    total = _int(content.get("max_steps")) or max_steps
    share = max(min(step / total, 1.0) if total else 0.0, toward_targets(arrival))
    words = f"Dragging, step {step}" + (f" (at most {total})" if total else "")
    if arrival:
        words += " – " + arrival_text(arrival)
    if draft:
        words += " – " + DRAFT_WORDS
    base = FIT_SHARE if fit_first else 0.0
    return base + (1.0 - base) * share, words


def queued_words(position: int) -> str:
    """Words for a job (or an upload) waiting behind others on the daemon."""
    if position <= 0:
        return "Starting"
    return f"Waiting for the daemon: number {position} in its queue"
