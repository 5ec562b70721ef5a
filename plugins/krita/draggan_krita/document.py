"""Everything the plugin does to a Krita document, through Krita's scripting API only.

- the source layer: which one, whether it can be edited (8-bit RGBA paint layers), its pixels (BGRA bytes, the
  order Krita stores RGBA/U8 in), the selection as mask and region;
- the "Drag points" vector layer: each open line (first point = handle, last point = target) is one pair. The
  plugin only reads the person's lines, never rewrites them: every shape Krita adds or removes is a step of its own
  on the undo stack (a line swapped for an arrow left two, which undo later walked through), and the scripting API
  has no way to restyle a shape in place;
- the "DragGAN preview" layer (a copy of the source, made when the first preview arrives) which Apply renames into
  the result layer; "Apply as animation" puts the drag's frames above the source instead: one animated paint layer
  (a frame per kept step on the timeline), read from a Krita file the plugin writes (`kra`) and copied in as one
  layer. Layers are added and removed with Krita's node calls, which put them on the undo stack (one step each: a
  drag and its Apply leave one; Apply as animation leaves three, one of them above the layers before the drag, see
  `prepare_timeline`); the source layer itself is only ever read.

Krita runs its event loop inside node and shape calls (timers and socket notifiers fire before they return), so
callers must not rely on nothing else having happened in between.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from . import geometry, kra
from .geometry import Pair, Rect

POINTS_LAYER = "Drag points"
PREVIEW_LAYER = "DragGAN preview"
RESULT_SUFFIX = " (DragGAN)"
ANIMATION_SUFFIX = " (DragGAN animation)"
_OWN_NAMES = (POINTS_LAYER, PREVIEW_LAYER)


class DocumentError(Exception):
    """Something about the document the person must change; the message says what, in plain words."""


@dataclass
class Capture:
    """What a session is opened from: the source layer's pixels over `rect` (document pixels), BGRA8."""

    doc_key: str
    layer_id: str
    layer_name: str
    rect: Rect
    pixels: bytes
    selection: bytes | None  # A8 over `rect`, 255 = selected; None without a selection
    region: Rect | None  # the selection's bounds relative to `rect`
    digest: str

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.doc_key, self.layer_id, self.rect, self.region, self.digest)


def node_id(node: Any) -> str:
    return node.uniqueId().toString() if hasattr(node.uniqueId(), "toString") else str(node.uniqueId())


def doc_key(doc: Any) -> str:
    """A stable identity for an open document (libkis hands out new wrapper objects on every call): its root node's
    id. Krita 5.1.5 keeps it when the document is saved under a name (the file name changes then: an edit must not
    be lost to a Ctrl+S) and gives each opening of the same file its own."""
    root = doc.rootNode()
    return node_id(root) if root is not None else f"doc-{id(doc)}"


def walk(node: Any) -> list[Any]:
    out: list[Any] = []
    if node is None:  # a document closed meanwhile has no root
        return out
    for child in node.childNodes():
        out.append(child)
        out.extend(walk(child))
    return out


def find_by_id(doc: Any, uid: str) -> Any | None:
    for n in walk(doc.rootNode()):
        if node_id(n) == uid:
            return n
    return None


def find_by_name(doc: Any, name: str, kind: str | None = None) -> Any | None:
    for n in walk(doc.rootNode()):
        if n.name() == name and (kind is None or n.type() == kind):
            return n
    return None


def is_shown(node: Any) -> bool:
    """Whether the layer is visible on the canvas: it and every group it sits in are visible."""
    while node is not None:
        parent = node.parentNode()
        if parent is None:  # the root: not a layer of its own
            return True
        if not node.visible():
            return False
        node = parent
    return True


def px_per_pt(doc: Any) -> float:
    res = float(doc.resolution() or 72.0)
    return res / 72.0


class KritaDocument:
    """One document, seen through the plugin's needs. Create a new one whenever the active document changes."""

    def __init__(self, doc: Any) -> None:
        self.doc = doc
        self.key = doc_key(doc)

    # ------------------------------------------------------------------ source layer
    def is_own_layer(self, node: Any) -> bool:
        return node.name() in _OWN_NAMES or node.name().endswith(RESULT_SUFFIX)

    def editable(self, node: Any) -> bool:
        """A layer the plugin may take as the source: a shown paint layer that is not one of its own."""
        return node is not None and node.type() == "paintlayer" and not self.is_own_layer(node) and is_shown(node)

    def choose_source(self, remembered_id: str | None) -> tuple[Any | None, str]:
        """The layer to edit and, when it is not simply the active layer, a few words why it is this one.

        The active paint layer, even a hidden one (`check_source` then says why it cannot be edited: the person
        chose it). Else, for an active group, its top shown paint layer. Else (the points layer is active while
        points are drawn) the paint layer the person last had active, if still shown; else the top shown one.
        A hidden layer is never picked for the person.
        """
        active = self.doc.activeNode()
        if active is not None and active.type() == "paintlayer" and not self.is_own_layer(active):
            return active, ""
        if active is not None and active.type() == "grouplayer":
            inside = [n for n in walk(active) if self.editable(n)]
            if inside:
                return inside[-1], f"the top visible paint layer of the selected group “{active.name()}”"
            return None, f"The selected group “{active.name()}” has no visible paint layer: select a paint layer."
        if remembered_id:
            node = find_by_id(self.doc, remembered_id)
            if self.editable(node):
                return node, ""
        shown = [n for n in walk(self.doc.rootNode()) if self.editable(n)]
        if shown:
            return shown[-1], "the top visible paint layer"
        return None, ""

    def pick_source(self, remembered_id: str | None) -> Any | None:
        """The layer to edit (see `choose_source`)."""
        return self.choose_source(remembered_id)[0]

    def check_source(self, node: Any | None, why_none: str = "") -> None:
        if node is None:
            raise DocumentError(why_none or "There is no visible paint layer to edit: add or select one.")
        if node.type() != "paintlayer":
            raise DocumentError(f"“{node.name()}” is a {node.type()}; DragGAN edits paint layers.")
        if not is_shown(node):
            raise DocumentError(
                f"“{node.name()}” is hidden; DragGAN edits what you see. Show it (the eye in the Layers docker) or "
                "select a visible paint layer."
            )
        model, depth = node.colorModel(), node.colorDepth()
        if model != "RGBA" or depth != "U8":
            raise DocumentError(
                f"“{node.name()}” is {model} {depth}; DragGAN works on 8-bit RGB layers. Convert the image or a copy "
                "of the layer (Image ▸ Convert Image Color Space… to RGB/Alpha, 8-bit integer) and try again."
            )

    def canvas_rect(self) -> Rect:
        return (0, 0, int(self.doc.width()), int(self.doc.height()))

    def selection_bounds(self) -> Rect | None:
        sel = self.doc.selection()
        if sel is None or sel.width() <= 0 or sel.height() <= 0:
            return None
        return geometry.intersect((sel.x(), sel.y(), sel.width(), sel.height()), self.canvas_rect())

    def describe_region(self) -> str:
        sel = self.selection_bounds()
        if sel is None:
            return "Region: the whole layer (no selection). Select an area to limit what may change."
        x, y, w, h = sel
        return f"Region: the selection, {w}×{h} at ({x}, {y}); pixels outside it stay as they are."

    def capture(self, node: Any, max_pixels: int | None = None) -> Capture:
        """Read the source layer (and selection) for a session. Raises DocumentError with what to change."""
        self.check_source(node)
        sel = self.selection_bounds()
        rect = geometry.session_rect(self.canvas_rect(), sel)
        x, y, w, h = rect
        if max_pixels is not None and w * h > max_pixels:
            raise DocumentError(
                f"The layer area is {w}×{h} ({w * h / 1e6:.1f} megapixels), more than the daemon accepts "
                f"({max_pixels / 1e6:.1f} megapixels). Select the part to edit first."
            )
        pixels = bytes(node.pixelData(x, y, w, h))
        if len(pixels) != w * h * 4:
            raise DocumentError(f"Krita returned {len(pixels)} bytes for a {w}×{h} RGBA layer; cannot continue.")
        selection = region = None
        if sel is not None:
            selection = bytes(self.doc.selection().pixelData(x, y, w, h))
            if len(selection) != w * h:
                raise DocumentError("Krita returned a selection of the wrong size; cannot continue.")
            region = (sel[0] - x, sel[1] - y, sel[2], sel[3])
        digest = hashlib.blake2b(pixels, digest_size=16)
        if selection is not None:
            digest.update(selection)
        return Capture(self.key, node_id(node), node.name(), rect, pixels, selection, region, digest.hexdigest())

    # ------------------------------------------------------------------ points
    def points_layer(self) -> Any | None:
        return find_by_name(self.doc, POINTS_LAYER, "vectorlayer")

    def ensure_points_layer(self) -> Any:
        layer = self.points_layer()
        if layer is None:
            layer = self.doc.createVectorLayer(POINTS_LAYER)
            self.doc.rootNode().addChildNode(layer, None)  # on top, so the lines stay visible
        return layer

    def pairs(self) -> list[Pair]:
        """Handle -> target pairs from the points layer's open lines, in document pixels, in drawing order."""
        layer = self.points_layer()
        if layer is None:
            return []
        scale = px_per_pt(self.doc)
        out = []
        for shape in layer.shapes():
            pair = geometry.line_from_shape_svg(shape.toSvg(), _affine(shape), scale)
            if pair is not None:
                out.append(pair)
        return out

    def add_arrows(self, pairs: list[Pair], color: str = "#ff2a6d") -> None:
        """Draw pairs as arrows on the points layer (for scripts and the tests; people draw with tools).

        addShapesFromSvg reads the document's pixels, so the arrows are written in pixels at any resolution."""
        layer = self.ensure_points_layer()
        layer.addShapesFromSvg(geometry.arrow_svg(pairs, 1.0, color))

    def clear_points(self) -> int:
        """Remove every pair: the points layer goes, in one undo step (removing its shapes one by one would be one
        step per line); the next "Points layer" or Drag makes a new one. Returns how many shapes went."""
        layer = self.points_layer()
        if layer is None:
            return 0
        n = len(layer.shapes())
        layer.remove()
        return n

    # ------------------------------------------------------------------ preview and result
    def preview_layer(self) -> Any | None:
        return find_by_name(self.doc, PREVIEW_LAYER, "paintlayer")

    def ensure_preview(self, source: Any) -> Any:
        """The preview layer: a copy of the source placed right above it (created once per drag)."""
        layer = self.preview_layer()
        if layer is not None:
            return layer
        layer = source.duplicate()
        layer.setName(PREVIEW_LAYER)
        parent = source.parentNode() or self.doc.rootNode()
        parent.addChildNode(layer, source)
        return self.preview_layer() or layer

    def write_pixels(self, layer: Any, bgra: bytes, x: int, y: int, w: int, h: int) -> None:
        from PyQt5.QtCore import QByteArray

        layer.setPixelData(QByteArray(bgra), x, y, w, h)
        self.doc.refreshProjection()

    def remove_preview(self) -> bool:
        layer = self.preview_layer()
        if layer is None:
            return False
        layer.remove()
        self.doc.refreshProjection()
        return True

    def finish_preview(self, source_name: str) -> Any | None:
        """Turn the preview into the result layer (named after the source); the preview's pixels are the result."""
        layer = self.preview_layer()
        if layer is None:
            return None
        name = self.unique_name(source_name + RESULT_SUFFIX)
        layer.setName(name)
        self.doc.refreshProjection()
        return layer

    # ------------------------------------------------------------------ animation
    def add_frames_group(self, source: Any, source_name: str, frames: list[tuple[int, bytes, Rect]]) -> Any:
        """Where this Krita cannot take an animated layer (`add_animation`): the drag's frames as a group of paint
        layers right above the source, "Frame 1 (step 0)" at the bottom: each a copy of the source with that
        frame's pixels (BGRA8 over its rectangle) written in. The group is filled before it joins the document, so
        adding it is one undo step (and filling it none); the preview layer goes first, in a step of its own (it
        showed the result, which is the last frame)."""
        from PyQt5.QtCore import QByteArray

        self.remove_preview()
        group = self.doc.createGroupLayer(self.unique_name(source_name + ANIMATION_SUFFIX))
        layers = []
        for i, (step, bgra, (x, y, w, h)) in enumerate(frames):
            layer = source.duplicate()
            layer.setName(f"Frame {i + 1} (step {step})")
            layer.setPixelData(QByteArray(bgra), x, y, w, h)
            layers.append(layer)
        # Not group.addChildNode: that is an undo step per frame even on a group outside the document (an "Add
        # layer" each, which undo would later walk through with nothing to see, and which push the person's own
        # history off Krita's undo limit). setChildNodes fills the group in order, bottom first, with none.
        group.setChildNodes(layers)
        parent = source.parentNode() or self.doc.rootNode()
        parent.addChildNode(group, source)
        self.doc.refreshProjection()
        return find_by_name(self.doc, group.name(), "grouplayer") or group

    def prepare_timeline(self, app: Any, frames: int) -> bool:
        """Before the animated layer joins the document: the document's clip range set to the frames (0 …
        frames−1) and the current time to the last, where this Krita can take an animated layer. The time switch
        is an undo step of its own (the clip range is not); made first, it lies below the layer on the undo stack,
        so that one undo takes the animation away; the layer, once there, shows the frame at the current time: the
        last (the result)."""
        if not hasattr(app, "openDocument"):
            return False
        try:
            self.doc.setFullClipRangeStartTime(0)
            self.doc.setFullClipRangeEndTime(max(0, frames - 1))
            self.doc.setCurrentTime(max(0, frames - 1))
        except AttributeError:  # a Krita without animation in its scripting API
            return False
        return True

    def add_animation(self, app: Any, source: Any, source_name: str, frames: list[tuple[int, bytes, Rect]]) -> Any:
        """The drag's frames as one animated paint layer right above the source, a keyframe per frame from time 0,
        each the source's pixels with that frame's (BGRA8 over its rectangle) written in, with the source's
        opacity and blending mode: in one undo step (the preview layer goes first, in a step of its own).

        Krita's scripting API makes no keyframes, so the layer is written as a Krita file (`kra`), opened without a
        view (a document of its own, never shown, closed unsaved at once) and a copy of its layer, keyframes and
        all, added here. The ways inside Krita each left more undo steps (a group of frames, then Convert Group to
        Animated Layer: two) or crashed Krita 5.2.9 now and then (`Document.importAnimation`; the conversion run
        in a second document with a view of its own). Returns the layer; raises DocumentError where this Krita
        cannot open the file or made no animated layer of it (nothing was added then)."""
        if not hasattr(app, "openDocument"):
            raise DocumentError("This Krita cannot open documents from a script.")
        b = source.bounds()
        base_rect = (b.x(), b.y(), max(0, b.width()), max(0, b.height()))
        base = (bytes(source.pixelData(*base_rect)) if base_rect[2] and base_rect[3] else b""), base_rect
        name = self.unique_name(source_name + ANIMATION_SUFFIX)
        folder = tempfile.mkdtemp(prefix="draggan-frames-")
        try:
            path = os.path.join(folder, "frames.kra")
            kra.write_animation(
                path,
                int(self.doc.width()),
                int(self.doc.height()),
                name,
                kra.frames_of(base, [(bgra, rect) for _, bgra, rect in frames]),
                opacity=int(source.opacity()),
                composite_op=str(source.blendingMode()),
                fps=int(self.doc.framesPerSecond() or 24),
                dpi=float(self.doc.resolution() or 72.0),
            )
            copy = _animated_copy(app, path, name, source.colorProfile())
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.remove_preview()
        parent = source.parentNode() or self.doc.rootNode()
        parent.addChildNode(copy, source)
        self.doc.waitForDone()
        self.doc.refreshProjection()
        layer = find_by_name(self.doc, name, "paintlayer")
        if layer is None:
            raise DocumentError("Krita did not add the animated layer.")
        return layer

    def unique_name(self, name: str) -> str:
        taken = {n.name() for n in walk(self.doc.rootNode())}
        if name not in taken:
            return name
        i = 2
        while f"{name} {i}" in taken:
            i += 1
        return f"{name} {i}"


def _animated_copy(app: Any, path: str, name: str, profile: str) -> Any:
    """A copy of the animated layer `name` of the Krita file at `path`, opened without a view and closed unsaved
    (batch mode for the moment, so that a file Krita cannot read gives an error here, not a dialog that waits)."""
    was = app.batchmode() if hasattr(app, "batchmode") else False
    app.setBatchmode(True)
    try:
        doc = app.openDocument(path)
    finally:
        app.setBatchmode(was)
    if doc is None:
        raise DocumentError("Krita could not open the frames it was given.")
    try:
        layer = find_by_name(doc, name, "paintlayer")
        if layer is None or not layer.animated():
            raise DocumentError("Krita made no animated layer of the frames.")
        if profile and layer.colorProfile() != profile:
            layer.setColorProfile(profile)  # the source's profile, assigned: the pixel values stay as they are
        return layer.duplicate()
    finally:
        doc.waitForDone()
        doc.setModified(False)
        doc.close()


def _affine(shape: Any) -> geometry.Affine | None:
    try:
        t = shape.transformation()
    except AttributeError:
        return None
    return (t.m11(), t.m12(), t.m21(), t.m22(), t.dx(), t.dy())
