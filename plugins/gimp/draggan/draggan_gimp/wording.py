"""What the dialog and the final message say about the run, in plain words and image coordinates (no GIMP here)."""

from __future__ import annotations

from dataclasses import dataclass

from draggan_protocol.outcome import model_label

from .pairs import PairsResult

MAX_LISTED_PAIRS = 8
AUTO_LR_LABEL = "_Learning rate: automatic (the daemon picks it for the model's size)"


@dataclass(frozen=True)
class SourceInfo:
    """The drawable a run drags, as the person sees it in the Layers dock and on the rulers."""

    name: str
    width: int
    height: int
    offset: tuple[int, int]
    is_group: bool = False
    selection: tuple[int, int, int, int] | None = None  # x1, y1, x2, y2 (exclusive) in image coordinates


def source_text(src: SourceInfo) -> str:
    where = f"{src.width} × {src.height} px at ({src.offset[0]}, {src.offset[1]})"
    if src.is_group:
        return (
            f"Source: the layer group '{src.name}' as one picture (its visible layers merged), {where}. "
            "The result is a new layer above the group."
        )
    return f"Source: the layer '{src.name}', {where}. The result is a new layer above it."


def selection_text(src: SourceInfo) -> str:
    """What may change: the selection (when there is one) is both the region sent to the model and the mask."""
    if src.selection is None:
        return "May change: the whole layer (nothing is selected; select an area to limit the edit)."
    x1, y1, x2, y2 = src.selection
    return (
        f"May change: only the selected area, ({x1}, {y1}) to ({x2 - 1}, {y2 - 1}); the rest is held fixed "
        "as firmly as 'Mask strength' says. (Not used when the layer is not fitted first.)"
    )


def group_note(src: SourceInfo) -> str:
    """Said after a run whose source was a layer group ("" otherwise)."""
    if not src.is_group:
        return ""
    return (
        f"The layer group '{src.name}' was dragged as one picture (its visible layers merged); "
        "the result is a new layer above the group."
    )


def seed_note(seed: int) -> str:
    """Said after a run that did not fit the layer: the new layer is not the person's picture."""
    return (
        f"The new layer is the model's own picture number {seed}, dragged; your layer was not used "
        "('Fit my layer into the model first' was off)."
    )


def info_text(pairs: PairsResult, daemon_line: str, src: SourceInfo | None = None) -> str:
    """The dialog's header: the source, what may change, the pairs found (first few listed), the daemon's state."""
    lines = [source_text(src), selection_text(src), ""] if src is not None else []
    lines.append(pairs.summary() + " (image coordinates, as on the rulers):")
    listed = pairs.describe()
    lines += ["  " + line for line in listed[:MAX_LISTED_PAIRS]]
    if len(listed) > MAX_LISTED_PAIRS:
        lines.append(f"  ... and {len(listed) - MAX_LISTED_PAIRS} more")
    lines += ["", "Daemon: " + daemon_line]
    return "\n".join(lines)


def default_model_label(default_model: str | None) -> str:
    """The model box's entry for 'no model named': the daemon's default, by name when the daemon said it."""
    return f"The daemon's default ({default_model})" if default_model else "The daemon's default model"


def model_choices(models: list, default_model: str | None, current: str) -> list[tuple[str, str]]:
    """(id, label) rows of the model box: the default first (id ""), then every model the daemon serves (its
    descriptions from hello: name, size and what it draws; or bare names); a model remembered from an earlier run
    that this daemon lacks stays choosable, marked as such."""
    rows = [("", default_model_label(default_model))]
    named = [(m.get("name", ""), model_label(m)) if isinstance(m, dict) else (str(m), str(m)) for m in models]
    rows += [(name, label) for name, label in named if name]
    if current and current not in [name for name, _ in named]:
        rows.append((current, f"{current} (not on the running daemon)"))
    return rows
