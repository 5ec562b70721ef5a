"""Plain words for how far a drag got, from the daemon's arrival fields (PROTOCOL.md §6, drag, 1.1).

One wording for every client (Krita, GIMP, `draggan edit`), so a painter reads the same sentence everywhere. The
daemon measures where the content under each start handle went (its motion field, not the point tracker), and
this module only turns those numbers into words; it never re-decides arrival.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

LARGE_REGION_FACTOR = 8.0
"""A region this many times the model's side or more gets a warning: the motion comes from a much smaller picture."""

START_DAEMON = "make run in the DragGAN Studio folder (or .venv/bin/draggan serve there)"
"""How to start the daemon, for "Start it with: …": what works after the README's set-up (`make run` makes the
project's `.venv` and serves the bundled model). A bare `draggan serve` is on no PATH after that."""


ARRIVAL_FIELDS = ("asked", "moved", "remaining")
"""The per-handle arrival fields a 1.1 daemon sends on preview steps and job_done (PROTOCOL.md §6, drag)."""


def has_arrival(content: Mapping[str, Any]) -> bool:
    """Whether a drag event carries the daemon's measured arrival (a 1.0 daemon, or a plain step, does not)."""
    return all(isinstance(content.get(k), (list, tuple)) and content.get(k) for k in ARRIVAL_FIELDS)


def _floats(values: Any) -> list[float]:
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
        return []
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            return []
    return out


def _px(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 9.5 else f"{v:.1f}".rstrip("0").rstrip(".")


def arrival_text(content: Mapping[str, Any]) -> str:
    """One sentence on where the handles are, e.g. "Handles moved 7 of 12 px and 11 of 14 px; not reached (5 px
    still to go)" or "Targets reached: handle moved 12 of 12 px (within 0.6 px)".

    Falls back to the tracker's claim, said as such, when a 1.0 daemon sent no measured fields.
    """
    asked = _floats(content.get("asked"))
    moved = _floats(content.get("moved"))
    remaining = _floats(content.get("remaining"))
    if not asked or len(asked) != len(moved) or len(asked) != len(remaining):
        if content.get("reached"):
            return "The point tracker says the handles arrived (this daemon does not measure arrival)"
        return "The handles did not reach their targets"
    parts = [f"{_px(max(m, 0.0) + 0.0)} of {_px(a)} px" for m, a in zip(moved, asked, strict=True)]
    worst = max(remaining)
    noun = "Handle" if len(asked) == 1 else "Handles"
    joined = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    if content.get("reached"):
        return f"Targets reached: {noun.lower()} moved {joined} (within {_px(worst)} px)"
    return f"{noun} moved {joined}; not reached ({_px(worst)} px still to go)"


def fallback_text(content: Mapping[str, Any]) -> str:
    """A sentence when the daemon showed the generator's picture instead of the layer's own pixels, else ""."""
    reason = content.get("fallback")
    if not reason:
        return ""
    return f"The generator's picture was used instead of your pixels here: {reason}"


def model_label(model: Mapping[str, Any] | str) -> str:
    """A model as the plug-ins' model lists show it: "afhq-cat (512 px, cat faces)", or for a tall StyleGAN-Human
    picture drawn in a white square "humans (256×512 px, padded, full-body humans)"."""
    if not isinstance(model, Mapping):
        return str(model)
    name = str(model.get("name") or "?")
    res, picture = model.get("resolution"), model.get("picture")
    parts = []
    if isinstance(picture, (list, tuple)) and len(picture) == 2 and list(picture) != [res, res]:
        parts.append(f"{picture[1]}×{picture[0]} px, padded")  # picture is [height, width]
    elif res:
        parts.append(f"{res} px")
    if model.get("domain"):
        parts.append(str(model["domain"]))
    return f"{name} ({', '.join(parts)})" if parts else name


def ranking_text(ranking: Sequence[Mapping[str, Any]], shown: int = 3) -> str:
    """A suggest_models ranking in words: "Best fit: afhq-cat (31.2 dB), then ffhq-512 (24.0 dB); not tried:
    humans (its pictures are 0.5:1 …)". Higher dB: the model reproduces the layer more closely."""
    tried = [r for r in ranking if r.get("psnr_db") is not None]
    skipped = [r for r in ranking if r.get("psnr_db") is None]
    if not tried:
        text = "No model could be fitted to this layer"
    else:
        parts = [f"{r.get('model')} ({float(r['psnr_db']):.1f} dB)" for r in tried[:shown]]
        text = "Best fit: " + parts[0] + (", then " + ", ".join(parts[1:]) if len(parts) > 1 else "")
        if len(tried) > shown:
            text += f" and {len(tried) - shown} more"
    if skipped:
        text += "; not tried: " + ", ".join(f"{r.get('model')} ({r.get('skipped') or 'skipped'})" for r in skipped)
    return text


def region_warning(session: Mapping[str, Any]) -> str:
    """The large-region warning for an open_session reply (its `region` and the model's `resolution`), else ""."""
    region = session.get("region")
    try:
        side = max(float(region[2]), float(region[3]))
        resolution = int(session.get("resolution") or 0)
    except (TypeError, ValueError, IndexError):
        return ""
    return large_region_text(side, resolution)


def large_region_text(region_side: float, model_resolution: int) -> str:
    """A warning when the region is many times the model's size, else ""."""
    if model_resolution <= 0 or region_side < LARGE_REGION_FACTOR * model_resolution:
        return ""
    factor = region_side / model_resolution
    return (
        f"The region is {factor:.0f}× the model's {model_resolution}-px picture: your pixels are kept and moved, "
        "but motion and any new content come from that small picture, so expect soft detail where it changes."
    )


ERROR_HINTS = {
    "too_large": "The layer is too large for the daemon: select a smaller area, or crop or scale the layer.",
    "pixel_limit": "The daemon holds too many pixels already: finish or close other edits, or restart the daemon.",
    "session_limit": "The daemon has too many open edits: finish or close other documents' edits, or restart it.",
    "queue_full": "The daemon's queue is full: try again in a moment.",
    "busy": "This edit is still working: wait for it to finish or press Stop.",
    "model_not_found": "The daemon does not have that model: pick another one (or the daemon's default).",
    "model_load_failed": "The daemon could not load that model: pick another one; its log says why.",
    "session_not_found": "The daemon forgot this edit (it was restarted, or the edit sat idle): press the button "
    "again to start a new one.",
    "invalid_input": "The daemon could not use this input.",
    "invalid_content": "The plug-in and the daemon disagree about a request: update both to the same version.",
    "unsupported_version": "The plug-in and the daemon speak different protocol versions: update both.",
    "unavailable": "This daemon cannot do that.",
    "shutting_down": f"The daemon is shutting down. Start it again with: {START_DAEMON}.",
    "replay_rejected": "The daemon refused a request as a replay: check that this computer's clock is right.",
    "forbidden": "That edit belongs to another program connected to the daemon.",
    "internal_error": "The daemon hit an internal error; its log says more.",
}
"""Plain words per error code (PROTOCOL.md §7), each naming what to do about it."""


def error_text(code: str | None, message: str = "") -> str:
    """An error reply or a failed job in plain words: the hint for its code, then the daemon's own message."""
    hint = ERROR_HINTS.get(code or "", "")
    message = (message or "").strip()
    if hint and message:
        return f"{hint} ({message})"
    return hint or message or "The daemon reported an error."


def lost_text(silent_for: float, doing: str = "") -> str:
    """A daemon that stopped answering (killed, crashed, its machine asleep), noticed by missed heartbeats;
    `doing` says when (e.g. "dragging")."""
    when = f" while {doing}" if doing else ""
    return (
        f"The DragGAN daemon stopped answering{when} (nothing for {silent_for:.0f} s; a working daemon answers every "
        f"second). It may have crashed or been stopped. Start it again with: {START_DAEMON}."
    )
