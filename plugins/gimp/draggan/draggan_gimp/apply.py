"""One run against a document, with GIMP's undo kept honest. Nothing here imports GIMP.

The host is a `Document`: gimp_io.GimpDocument inside GIMP, a recording stand-in in the tests. The rules:

- Nothing goes onto the image's undo stack until the daemon's result has arrived. The preview layer comes and goes
  without undo (gimp_io freezes undo around adding and removing it), so a run that fails, is refused or is
  cancelled leaves no undo step at all, not even an empty one.
- No undo group is open while the plug-in waits for the daemon. GIMP's Cancel kills the plug-in, and a group
  left open then makes GIMP close it and complain ("left image undo in inconsistent state").
- A successful run is exactly one undo step, named after the procedure ("Drag"): the new layer, selected, so
  that Filters > Repeat (Ctrl+F) drags the result, not the source again.
"""

from __future__ import annotations

from typing import Any, Protocol

from . import runner
from .pairs import Pair
from .params import RunSettings
from .pixels import Selection
from .runner import DragOutcome, Feedback, JobWatcher, LayerInput

RESULT_SUFFIX = " (DragGAN)"
PREVIEW_SUFFIX = " (DragGAN preview)"
FRAMES_SUFFIX = " (DragGAN frames)"


class Document(Protocol):
    """What a run needs from the image it works on."""

    def read_layer(self) -> LayerInput: ...

    def read_selection(self) -> Selection | None: ...

    def begin_run(self, preview: bool) -> Feedback:
        """Progress (and the preview layer when asked) for one run; `end_run` takes them away again."""

    def end_run(self) -> None: ...

    def undo_group_start(self) -> None: ...

    def undo_group_end(self) -> None: ...

    def add_result(self, name: str, image: Any) -> Any:
        """A new layer holding `image`, right above the source; returns it."""

    def select(self, layer: Any) -> None: ...

    def open_frames(self, title: str, width: int, height: int, frames: list[bytes], names: list[str]) -> Any:
        """A new image of its own whose layers are `frames` (the first at the bottom, as GIMP animations go),
        named `names`, with no undo history; returns it."""


def result_name(source_name: str, settings: RunSettings) -> str:
    """The new layer's name: after the source, or after the model's picture a seed run dragged instead."""
    if settings.invert_first:
        return source_name + RESULT_SUFFIX
    name = f"{settings.model} seed {settings.seed}" if settings.model else f"Seed {settings.seed}"
    return name + RESULT_SUFFIX


def drag_into(
    doc: Document,
    client: Any,
    pairs: list[Pair],
    settings: RunSettings,
    watcher: JobWatcher | None = None,
) -> tuple[Any, DragOutcome]:
    """Drag on the daemon, then put the result into the document as one undo step. Returns (new layer, outcome).

    With `settings.frames`, the kept frames also open as an image of their own (`outcome.frames_image`): the
    document gets the result layer only, its one undo step."""
    selection = doc.read_selection() if settings.invert_first else None
    source = doc.read_layer()
    feedback = doc.begin_run(settings.preview_layer)
    try:
        outcome = runner.run_drag(client, source, selection, pairs, settings, feedback, watcher)
    finally:
        doc.end_run()  # the preview layer goes, the progress bar ends; the image is as it was
    doc.undo_group_start()  # only now is there something to put in it
    try:
        layer = doc.add_result(result_name(source.name, settings), outcome.image)
        doc.select(layer)
    finally:
        doc.undo_group_end()
    if outcome.frames:  # an image of their own: its layers are the frames and nothing else, so GIMP plays them
        names = [runner.frame_layer_name(i + 1, settings.frame_ms) for i in range(len(outcome.frames))]
        title = result_name(source.name, settings).replace(RESULT_SUFFIX, FRAMES_SUFFIX)
        outcome.frames_image = doc.open_frames(title, outcome.image.width, outcome.image.height, outcome.frames, names)
    return layer, outcome
