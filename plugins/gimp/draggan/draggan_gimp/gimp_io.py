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

from .errors import PluginError  # noqa: E402
from .pairs import anchors_from_bezier  # noqa: E402
from .pixels import GRAY, RGBA, Selection, check_size, selection_on_layer  # noqa: E402
from .runner import LayerInput  # noqa: E402

RESULT_SUFFIX = " (DragGAN)"
PREVIEW_SUFFIX = " (DragGAN preview)"


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


def write_layer_pixels(layer: Gimp.Layer, image: Image) -> None:
    check_size(image.pixels, image.width, image.height, 4)
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, image.width, image.height), RGBA, image.pixels)
    buffer.flush()
    layer.update(0, 0, image.width, image.height)


def add_layer_above(gimp_image: Gimp.Image, source: Gimp.Layer, name: str, image: Image) -> Gimp.Layer:
    """A new RGBA layer holding `image`, placed right above `source` (same parent), at `image.offset`."""
    if image.format != "RGBA8":
        raise PluginError(f"The daemon sent {image.format} pixels; this plug-in asked for RGBA8.")
    layer = Gimp.Layer.new(
        gimp_image, name, image.width, image.height, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL
    )
    gimp_image.insert_layer(layer, source.get_parent(), gimp_image.get_item_position(source))
    layer.set_offsets(int(image.offset[0]), int(image.offset[1]))
    write_layer_pixels(layer, image)
    return layer


class PreviewLayer:
    """A temporary layer above the source that shows the daemon's preview frames while the drag runs."""

    def __init__(self, gimp_image: Gimp.Image, source: Gimp.Layer) -> None:
        self.gimp_image = gimp_image
        self.source = source
        self.layer: Gimp.Layer | None = None
        self.frames = 0

    def show(self, image: Image) -> None:
        if self.layer is not None and (self.layer.get_width(), self.layer.get_height()) != (image.width, image.height):
            self.remove()
        if self.layer is None:
            self.layer = add_layer_above(self.gimp_image, self.source, self.source.get_name() + PREVIEW_SUFFIX, image)
        else:
            self.layer.set_offsets(int(image.offset[0]), int(image.offset[1]))
            write_layer_pixels(self.layer, image)
        self.frames += 1
        Gimp.displays_flush()

    def remove(self) -> None:
        if self.layer is not None:
            self.gimp_image.remove_layer(self.layer)
            self.layer = None


class GimpFeedback:
    """Progress in GIMP's progress bar (status bar of the image window, or the terminal in batch mode).

    Messages (warnings such as a region many times the model's size) go to GIMP's message dialog or error
    console (the terminal in batch mode).
    """

    def __init__(self, preview: PreviewLayer | None = None) -> None:
        self.preview_layer = preview
        self.messages: list[str] = []
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
        if not text:
            return
        self.messages.append(text)
        Gimp.message(text)

    def stop_requested(self) -> bool:
        # GIMP's Cancel kills the plug-in instead of asking it; the watchdog turns that into a daemon cancel.
        return False

    def end(self) -> None:
        Gimp.progress_end()
