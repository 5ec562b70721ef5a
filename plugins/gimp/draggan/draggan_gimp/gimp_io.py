"""Everything that touches GIMP's objects: reading the layer, selection and path; writing the result and preview.

Imported only inside GIMP (it needs gi's Gimp and Gegl). Pixel data leaves and enters GIMP as "R'G'B'A u8":
GEGL converts from and to whatever precision the image has, so 16-bit and float RGB images work too (the drag
itself sees 8-bit data, as the daemon's protocol carries RGBA8).
"""

from __future__ import annotations

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from draggan_protocol import Image  # noqa: E402
from gi.repository import Gegl, Gimp  # noqa: E402

from .apply import PREVIEW_SUFFIX  # noqa: E402
from .errors import PluginError  # noqa: E402
from .pairs import anchors_from_bezier  # noqa: E402
from .pixels import GRAY, RGBA, Selection, check_size, selection_on_layer  # noqa: E402
from .runner import Feedback, LayerInput  # noqa: E402
from .wording import SourceInfo  # noqa: E402


def source_layer(image: Gimp.Image, drawables: list) -> Gimp.Layer:
    """The one RGB layer to drag, or a PluginError saying what to change."""
    if len(drawables) != 1:
        raise PluginError(f"Select exactly one layer to drag ({len(drawables)} are selected).")
    drawable = drawables[0]
    if not drawable.is_layer():
        raise PluginError("DragGAN works on a layer, not on a channel or a layer mask: select the layer itself.")
    if image.get_base_type() != Gimp.ImageBaseType.RGB:
        mode = "grayscale" if image.get_base_type() == Gimp.ImageBaseType.GRAY else "indexed"
        raise PluginError(
            f"DragGAN needs an RGB image, and this one is {mode}.\n"
            "Convert it with Image > Mode > RGB, then run Filters > DragGAN > Drag again."
        )
    return drawable


def source_info(image: Gimp.Image, layer: Gimp.Layer) -> SourceInfo:
    """The source as the dialog and the messages describe it (a layer group's picture is its merged layers)."""
    _, ox, oy = layer.get_offsets()
    return SourceInfo(
        layer.get_name(),
        layer.get_width(),
        layer.get_height(),
        (int(ox), int(oy)),
        is_group=bool(layer.is_group()),
        selection=selection_bounds(image),
    )


def read_layer(layer: Gimp.Layer) -> LayerInput:
    w, h = layer.get_width(), layer.get_height()
    _, ox, oy = layer.get_offsets()
    data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, RGBA, Gegl.AbyssPolicy.CLAMP)
    data = bytes(data)
    check_size(data, w, h, 4)
    return LayerInput(data, w, h, (ox, oy), layer.get_name())


def read_selection(image: Gimp.Image, layer: Gimp.Layer) -> Selection | None:
    """The selection over the layer (None when nothing is selected); an error when it misses the layer."""
    bounds = Gimp.Selection.bounds(image)
    if not bounds[1]:  # (success, non_empty, x1, y1, x2, y2)
        return None
    w, h = layer.get_width(), layer.get_height()
    _, ox, oy = layer.get_offsets()
    mask = image.get_selection().get_buffer().get(Gegl.Rectangle.new(ox, oy, w, h), 1.0, GRAY, Gegl.AbyssPolicy.NONE)
    selection = selection_on_layer(bytes(mask), w, h)
    if selection is None:
        raise PluginError("The selection does not overlap the layer. Select part of the layer, or Select > None.")
    return selection


def pick_path(image: Gimp.Image, path: Gimp.Path | None = None) -> Gimp.Path:
    """The path whose strokes are the drags: the one given, else the selected one, else the top one."""
    if path is not None:
        return path
    selected = image.get_selected_paths() or []
    if selected:
        return selected[0]
    paths = image.get_paths() or []
    if paths:
        return paths[0]
    raise PluginError(
        "The image has no path. Draw one with the Paths tool: one stroke per point to move, "
        "clicking first on the point (handle) and last where it should go (target)."
    )


def read_strokes(path: Gimp.Path) -> list[list[tuple[float, float]]]:
    """Anchors of every stroke, in image coordinates."""
    strokes = []
    for stroke_id in path.get_strokes() or []:
        stroke_type, control_points, _closed = path.stroke_get_points(stroke_id)
        if stroke_type != Gimp.PathStrokeType.BEZIER:
            strokes.append([])
            continue
        strokes.append(anchors_from_bezier(list(control_points)))
    return strokes


def selection_bounds(image: Gimp.Image) -> tuple[int, int, int, int] | None:
    """The selection's bounding box in image coordinates (x1, y1, x2, y2, x2/y2 exclusive), None without one."""
    bounds = Gimp.Selection.bounds(image)  # (success, non_empty, x1, y1, x2, y2)
    if not bounds[1]:
        return None
    return tuple(int(v) for v in bounds[2:6])


def without_undo(gimp_image: Gimp.Image, action):
    """Run `action()` with the image's undo frozen: for the preview layer, which must leave no undo step.

    GIMP does not thaw an image for a plug-in that dies, so each frozen stretch is one call long, never a wait.
    """
    gimp_image.undo_freeze()
    try:
        return action()
    finally:
        gimp_image.undo_thaw()


def write_layer_pixels(layer: Gimp.Layer, image: Image) -> None:
    check_size(image.pixels, image.width, image.height, 4)
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, image.width, image.height), RGBA, image.pixels)
    buffer.flush()
    layer.update(0, 0, image.width, image.height)


def add_layer_above(gimp_image: Gimp.Image, source: Gimp.Layer, name: str, image: Image) -> Gimp.Layer:
    """A new RGBA layer holding `image`, placed right above `source` (same parent), at `image.offset`.

    The offset is set before the layer joins the image, so the insertion is the only undo step it makes.
    """
    if image.format != "RGBA8":
        raise PluginError(f"The daemon sent {image.format} pixels; this plug-in asked for RGBA8.")
    layer = Gimp.Layer.new(
        gimp_image, name, image.width, image.height, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL
    )
    layer.set_offsets(int(image.offset[0]), int(image.offset[1]))
    gimp_image.insert_layer(layer, source.get_parent(), gimp_image.get_item_position(source))
    write_layer_pixels(layer, image)
    return layer


def all_layers(gimp_image: Gimp.Image) -> list[Gimp.Layer]:
    """Every layer of the image, inside groups too."""
    out: list[Gimp.Layer] = []
    todo = list(gimp_image.get_layers() or [])
    while todo:
        layer = todo.pop(0)
        out.append(layer)
        if layer.is_group():
            todo[:0] = list(layer.get_children() or [])
    return out


class PreviewLayer:
    """A temporary layer above the source that shows the daemon's preview frames while the drag runs.

    It is added and removed with undo frozen and updated by writing its pixels (which GIMP does not record), so it
    leaves no undo step. A run that GIMP kills (Cancel) cannot remove it; the next run does (`remove_stale`).
    """

    def __init__(self, gimp_image: Gimp.Image, source: Gimp.Layer) -> None:
        self.gimp_image = gimp_image
        self.source = source
        self.layer: Gimp.Layer | None = None
        self.frames = 0

    def show(self, image: Image) -> None:
        if self.layer is not None:
            _, x, y = self.layer.get_offsets()
            placed = (self.layer.get_width(), self.layer.get_height(), x, y)
            if placed != (image.width, image.height, int(image.offset[0]), int(image.offset[1])):
                self.remove()  # moving it would be an undo step; a new one is not
        if self.layer is None:
            name = self.source.get_name() + PREVIEW_SUFFIX
            self.layer = without_undo(
                self.gimp_image, lambda: add_layer_above(self.gimp_image, self.source, name, image)
            )
        else:
            write_layer_pixels(self.layer, image)
        self.frames += 1
        Gimp.displays_flush()

    def remove(self) -> None:
        if self.layer is not None:
            layer, self.layer = self.layer, None
            without_undo(self.gimp_image, lambda: self.gimp_image.remove_layer(layer))

    @staticmethod
    def remove_stale(gimp_image: Gimp.Image, keep: Gimp.Layer) -> int:
        """Remove preview layers that cancelled runs left behind (never `keep`, the source); returns how many."""
        stale = [
            layer
            for layer in all_layers(gimp_image)
            if layer.get_name().endswith(PREVIEW_SUFFIX) and layer.get_id() != keep.get_id()
        ]
        for layer in stale:
            without_undo(gimp_image, lambda layer=layer: gimp_image.remove_layer(layer))
        return len(stale)


class GimpFeedback:
    """Progress in GIMP's progress bar (status bar of the image window, or the terminal in batch mode).

    Messages (warnings such as a region many times the model's size) go to GIMP's message dialog or error
    console (the terminal in batch mode).
    """

    def __init__(self, preview: PreviewLayer | None = None) -> None:
        self.preview_layer = preview
        self._text = ""
        Gimp.progress_init("DragGAN")

    def status(self, text: str) -> None:
        if text != self._text:
            self._text = text
            Gimp.progress_set_text(text)

    def progress(self, fraction: float, text: str) -> None:
        self.status(text)
        Gimp.progress_update(max(0.0, min(1.0, fraction)))

    def preview(self, image: Image) -> None:
        if self.preview_layer is not None:
            self.preview_layer.show(image)

    def message(self, text: str) -> None:
        if text:
            Gimp.message(text)

    def stop_requested(self) -> bool:
        # GIMP's Cancel kills the plug-in instead of asking it; the watchdog turns that into a daemon cancel.
        return False

    def end(self) -> None:
        Gimp.progress_end()


class GimpDocument:
    """The image and source layer of one run, as apply.drag_into needs them (see apply.Document)."""

    def __init__(self, gimp_image: Gimp.Image, layer: Gimp.Layer) -> None:
        self.gimp_image = gimp_image
        self.layer = layer
        self.feedback: GimpFeedback | None = None
        self._was_clean = False

    def read_layer(self) -> LayerInput:
        return read_layer(self.layer)

    def read_selection(self) -> Selection | None:
        return read_selection(self.gimp_image, self.layer)

    def begin_run(self, preview: bool) -> Feedback:
        was_clean = not self.gimp_image.is_dirty()
        removed = PreviewLayer.remove_stale(self.gimp_image, self.layer)  # on every run, edited image or not
        self._was_clean = was_clean and not removed
        self.feedback = GimpFeedback(PreviewLayer(self.gimp_image, self.layer) if preview else None)
        return self.feedback

    def end_run(self) -> None:
        if self.feedback is None:
            return
        feedback, self.feedback = self.feedback, None
        if feedback.preview_layer is not None:
            feedback.preview_layer.remove()
            if self._was_clean and feedback.preview_layer.frames:
                # Adding and removing the preview marked the image changed although it is as it was (a stale
                # preview removed at the start did change it: then it stays marked).
                self.gimp_image.clean_all()
        feedback.end()

    def undo_group_start(self) -> None:
        self.gimp_image.undo_group_start()

    def undo_group_end(self) -> None:
        self.gimp_image.undo_group_end()

    def add_result(self, name: str, image: Image) -> Gimp.Layer:
        return add_layer_above(self.gimp_image, self.layer, name, image)

    def select(self, layer: Gimp.Layer) -> None:
        self.gimp_image.set_selected_layers([layer])

    def open_frames(self, title: str, width: int, height: int, frames: list[bytes], names: list[str]) -> Gimp.Image:
        return new_frames_image(title, width, height, frames, names)


def new_frames_image(title: str, width: int, height: int, frames: list[bytes], names: list[str]) -> Gimp.Image:
    """A new RGB image holding one layer per frame, the first frame at the bottom (GIMP's animation playback and
    GIF export take an image's top-level layers, bottom first, as frames), with no undo history and not dirty.
    (Untitled: GIMP names a new image itself; `title` is for the words that announce it.)"""
    image = Gimp.Image.new(width, height, Gimp.ImageBaseType.RGB)
    image.undo_disable()
    try:
        for pixels, name in zip(frames, names, strict=True):
            check_size(pixels, width, height, 4)
            layer = Gimp.Layer.new(image, name, width, height, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
            image.insert_layer(layer, None, 0)  # on top of the frames before it
            buffer = layer.get_buffer()
            buffer.set(Gegl.Rectangle.new(0, 0, width, height), RGBA, pixels)
            buffer.flush()
    finally:
        image.undo_enable()
    image.clean_all()
    return image
