"""A small stand-in for Krita's `krita` scripting module, for fast tests of the plugin's logic.

It models what the plugin relies on and what was seen in the real Krita 5.1.5: RGBA/U8 pixels as BGRA bytes over
document coordinates, 1-byte selections, vector layers whose shapes report SVG in points with the placement in
`transform=`, `addShapesFromSvg` reading the SVG's user units as *pixels* (a 300-dpi document gets
`matrix(0.24 0 0 0.24 …)`), the line tool's lines in points (`draw_line`), node additions/removals and shape
additions/removals each one step on an undo stack, hidden layers, settings, dockers, and one more thing Krita does:
its node and shape calls run Qt's event loop before they return (timers and socket notifiers fire inside them).
It is not Krita: the real-application tests (kritarunner, the GUI under Xvfb) check the same code against Krita.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from PyQt5.QtCore import QByteArray, QCoreApplication, QObject, QPointF, QRect, QRectF, QUuid, pyqtSignal
from PyQt5.QtGui import QTransform
from PyQt5.QtWidgets import QDockWidget

_COLOR_BYTES = {("RGBA", "U8"): 4, ("RGBA", "U16"): 8, ("CMYKA", "U8"): 5, ("GRAYA", "U8"): 2}


def pump(doc: Document) -> None:
    """What Krita's node and shape calls do before returning: run the event loop (for `doc.pump_ms`, at least once),
    so timers and socket notifiers fire inside them."""
    app = QCoreApplication.instance()
    if app is None:
        return
    deadline = time.monotonic() + doc.pump_ms / 1000.0
    while True:
        app.processEvents()
        if time.monotonic() >= deadline:
            return
        time.sleep(0.002)


class Node(QObject):
    def __init__(self, doc: Document, name: str, kind: str, model: str = "RGBA", depth: str = "U8") -> None:
        super().__init__()
        self._doc = doc
        self._name = name
        self._kind = kind
        self._model = model
        self._depth = depth
        self._uid = QUuid(str(uuid.uuid4()))
        self._children: list[Node] = []
        self._parent: Node | None = None
        self._pixels: dict[tuple[int, int], bytes] = {}
        self._visible = True

    # identity and tree
    def name(self) -> str:
        return self._name

    def setName(self, name: str) -> None:
        self._name = name

    def type(self) -> str:
        return self._kind

    def uniqueId(self) -> QUuid:
        return self._uid

    def colorModel(self) -> str:
        return self._model

    def colorDepth(self) -> str:
        return self._depth

    def visible(self) -> bool:
        return self._visible

    def setVisible(self, visible: bool) -> None:
        self._visible = bool(visible)

    def childNodes(self) -> list[Node]:
        return list(self._children)

    def parentNode(self) -> Node | None:
        return self._parent

    def addChildNode(self, child: Node, above: Node | None) -> bool:
        index = self._children.index(above) + 1 if above is not None and above in self._children else 0
        if above is None:
            index = len(self._children)
        self._insert(child, index)
        self._doc._push(("add", child, self, index))
        pump(self._doc)
        return True

    def setChildNodes(self, nodes: list[Node]) -> None:
        """As Krita's: the children replaced, bottom first, without an undo step (Krita uses it to fill a group
        that is not in the document yet)."""
        for child in self._children:
            child._parent = None
        self._children = []
        for child in nodes:
            self._insert(child, len(self._children))

    def _insert(self, child: Node, index: int) -> None:
        child._parent = self
        self._children.insert(index, child)

    def remove(self) -> bool:
        parent = self._parent
        if parent is None:
            return False
        index = parent._children.index(self)
        parent._children.remove(self)
        self._parent = None
        self._doc._push(("remove", self, parent, index))
        pump(self._doc)
        return True

    def duplicate(self) -> Node:
        clone = type(self)(self._doc, self._name, self._kind, self._model, self._depth)
        clone._pixels = dict(self._pixels)
        return clone

    # pixels
    def _bpp(self) -> int:
        return _COLOR_BYTES.get((self._model, self._depth), 4)

    def pixelData(self, x: int, y: int, w: int, h: int) -> QByteArray:
        bpp = self._bpp()
        blank = bytes(bpp)
        out = bytearray()
        for yy in range(y, y + h):
            for xx in range(x, x + w):
                out += self._pixels.get((xx, yy), blank)
        return QByteArray(bytes(out))

    def setPixelData(self, data: Any, x: int, y: int, w: int, h: int) -> None:
        data = bytes(data)
        bpp = self._bpp()
        if len(data) != w * h * bpp:
            raise ValueError("size mismatch")
        i = 0
        for yy in range(y, y + h):
            for xx in range(x, x + w):
                self._pixels[(xx, yy)] = data[i : i + bpp]
                i += bpp

    def bounds(self) -> QRect:
        if not self._pixels:
            return QRect()
        xs = [p[0] for p in self._pixels]
        ys = [p[1] for p in self._pixels]
        return QRect(min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1)


class Shape(QObject):
    def __init__(self, layer: VectorLayer, d_local: str, dx: float, dy: float, attrs: str, scale: float = 1.0) -> None:
        super().__init__()
        self._layer = layer
        self._d = d_local
        self._dx, self._dy = dx, dy  # the placement, in points
        self._scale = scale  # local units -> points (72/dpi for what addShapesFromSvg made, 1 for the line tool's)
        self._attrs = attrs

    def type(self) -> str:
        return "KoPathShape"

    def name(self) -> str:
        return ""

    def toSvg(self, prependStyles: bool = False, stripTextMode: bool = True) -> str:
        if self._scale == 1.0:
            placement = f"translate({self._dx:g}, {self._dy:g})"
        else:
            k = f"{self._scale:g}"
            placement = f"matrix({k} 0 0 {k} {self._dx:g} {self._dy:g})"
        return f'<path id="shape0" transform="{placement}"{self._attrs} d="{self._d}"/>'

    def transformation(self) -> QTransform:
        k = self._scale
        return QTransform(k, 0.0, 0.0, k, self._dx, self._dy)

    def position(self) -> QPointF:
        return QPointF(self._dx, self._dy)

    def boundingBox(self) -> QRectF:
        return QRectF()

    def remove(self) -> bool:
        layer = self._layer
        if self in layer._shapes:
            index = layer._shapes.index(self)
            layer._shapes.remove(self)
            layer._doc._push(("unshape", layer, [self], index))  # Krita: "Delete shape"
            pump(layer._doc)
            return True
        return False


class VectorLayer(Node):
    def __init__(self, doc: Document, name: str, kind: str = "vectorlayer", model: str = "RGBA", depth: str = "U8"):
        super().__init__(doc, name, "vectorlayer", model, depth)
        self._shapes: list[Shape] = []

    def shapes(self) -> list[Shape]:
        return list(self._shapes)

    def addShapesFromSvg(self, svg: str) -> list[Shape]:
        """Like Krita 5.1: the SVG's user units are the document's pixels (whatever its width or viewBox say); each
        path comes back as a shape placed at its first point (in points) with its path in those pixel units, scaled
        by 72/dpi; all of them one undo step ("Create shape")."""
        scale = 72.0 / float(self._doc.resolution() or 72)
        added = []
        for m in re.finditer(r"<path\b([^>]*?)/?>", svg):
            attrs = m.group(1)
            if re.search(r"<marker\b[^>]*>[^<]*<path\b" + re.escape(attrs), svg):
                continue  # a marker's own path
            d = re.search(r'\sd="([^"]*)"', attrs)
            if d is None:
                continue
            nums = [float(v) for v in re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", d.group(1))]
            if len(nums) < 4:
                continue
            pts = list(zip(nums[0::2], nums[1::2], strict=False))
            x0, y0 = pts[0]
            local = "M0 0" + "".join(f"L{x - x0:g} {y - y0:g}" for x, y in pts[1:])
            style = ""
            for name in ("fill", "stroke", "stroke-width"):
                v = re.search(rf'\s{name}="([^"]*)"', attrs)
                if v:
                    style += f' {name}="{v.group(1)}"'
            if re.search(r'marker-end="url\(#[^)]*\)"', attrs):
                style += ' marker-end="url(#lineMarker0)"'
            shape = Shape(self, local, x0 * scale, y0 * scale, style, scale)
            self._shapes.append(shape)
            added.append(shape)
        if added:
            self._doc._push(("shapes", self, added, len(self._shapes) - len(added)))
            pump(self._doc)
        return added

    def draw_line(self, x1: float, y1: float, x2: float, y2: float, color: str = "#000000") -> Shape:
        """A line as Krita's line tool leaves it (pixels in, points stored: translate + local path in points)."""
        k = 72.0 / float(self._doc.resolution() or 72)
        local = f"M0 0L{(x2 - x1) * k:g} {(y2 - y1) * k:g}"
        shape = Shape(self, local, x1 * k, y1 * k, f' fill="none" stroke="{color}" stroke-width="9.6"')
        self._shapes.append(shape)
        self._doc._push(("shapes", self, [shape], len(self._shapes) - 1))
        return shape

    def toSvg(self) -> str:
        return "<svg>" + "".join(s.toSvg() for s in self._shapes) + "</svg>"


class Selection:
    def __init__(self) -> None:
        self._mask: dict[tuple[int, int], int] = {}

    def select(self, x: int, y: int, w: int, h: int, value: int) -> None:
        for yy in range(y, y + h):
            for xx in range(x, x + w):
                self._mask[(xx, yy)] = value

    def _box(self) -> tuple[int, int, int, int]:
        pts = [p for p, v in self._mask.items() if v]
        if not pts:
            return (0, 0, 0, 0)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return (min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1)

    def x(self) -> int:
        return self._box()[0]

    def y(self) -> int:
        return self._box()[1]

    def width(self) -> int:
        return self._box()[2]

    def height(self) -> int:
        return self._box()[3]

    def pixelData(self, x: int, y: int, w: int, h: int) -> QByteArray:
        return QByteArray(bytes(self._mask.get((xx, yy), 0) for yy in range(y, y + h) for xx in range(x, x + w)))


class Document(QObject):
    pump_ms = 0.0  # how long node and shape calls run the event loop (Krita: as long as the image takes)

    def __init__(self, w: int, h: int, name: str, model: str, depth: str, res: float) -> None:
        super().__init__()
        self._w, self._h, self._name, self._model, self._depth, self._res = w, h, name, model, depth, res
        self._undo: list[tuple[Any, ...]] = []
        self._redo: list[tuple[Any, ...]] = []
        self._root = Node(self, "root", "grouplayer", model, depth)
        bg = Node(self, "Background", "paintlayer", model, depth)
        self._root._insert(bg, 0)
        self._active: Node | None = bg
        self._selection: Selection | None = None
        self.projection_refreshes = 0

    def name(self) -> str:
        return self._name

    def fileName(self) -> str:
        return ""

    def width(self) -> int:
        return self._w

    def height(self) -> int:
        return self._h

    def resolution(self) -> int:
        return int(self._res)

    def colorModel(self) -> str:
        return self._model

    def colorDepth(self) -> str:
        return self._depth

    def rootNode(self) -> Node:
        return self._root

    def createNode(self, name: str, kind: str) -> Node:
        if kind == "vectorlayer":
            return VectorLayer(self, name)
        return Node(self, name, kind, self._model, self._depth)

    def createVectorLayer(self, name: str) -> VectorLayer:
        return VectorLayer(self, name)

    def createGroupLayer(self, name: str) -> Node:
        return Node(self, name, "grouplayer", self._model, self._depth)

    def activeNode(self) -> Node | None:
        return self._active

    def setActiveNode(self, node: Node) -> None:
        self._active = node

    def selection(self) -> Selection | None:
        return self._selection

    def setSelection(self, sel: Selection | None) -> None:
        self._selection = sel

    def refreshProjection(self) -> None:
        self.projection_refreshes += 1

    def waitForDone(self) -> None:
        pass

    # the undo stack: node additions/removals and shape additions/removals, one step each (what Krita records)
    def _push(self, step: tuple[Any, ...]) -> None:
        self._undo.append(step)
        self._redo.clear()

    def undo_steps(self) -> int:
        return len(self._undo)

    def _apply(self, step: tuple[Any, ...], forward: bool) -> None:
        op, a, b, index = step
        if op in ("add", "remove"):
            node, parent = a, b
            if (op == "add") == forward:
                parent._insert(node, index)
            else:
                parent._children.remove(node)
                node._parent = None
        else:  # "shapes" (added) / "unshape" (removed)
            layer, shapes = a, b
            if (op == "shapes") == forward:
                layer._shapes[index:index] = shapes
            else:
                for shape in shapes:
                    layer._shapes.remove(shape)

    def _undo_once(self) -> None:
        if not self._undo:
            return
        step = self._undo.pop()
        self._apply(step, forward=False)
        self._redo.append(step)

    def _redo_once(self) -> None:
        if not self._redo:
            return
        step = self._redo.pop()
        self._apply(step, forward=True)
        self._undo.append(step)


class _Action:
    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def trigger(self) -> None:
        self._fn()


class Notifier(QObject):
    windowCreated = pyqtSignal()

    def setActive(self, on: bool) -> None:
        pass


class Krita(QObject):
    _instance: Krita | None = None

    def __init__(self) -> None:
        super().__init__()
        self._docs: list[Document] = []
        self._active: Document | None = None
        self._settings: dict[tuple[str, str], str] = {}
        self.extensions: list[Any] = []
        self.docker_factories: list[Any] = []
        self._notifier = Notifier()

    @classmethod
    def instance(cls) -> Krita:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    @classmethod
    def reset(cls) -> Krita:
        cls._instance = cls()
        return cls._instance

    def version(self) -> str:
        return "fake"

    def createDocument(self, w: int, h: int, name: str, model: str, depth: str, profile: str, res: float) -> Document:
        doc = Document(w, h, name, model, depth, res)
        self._docs.append(doc)
        return doc

    def documents(self) -> list[Document]:
        return list(self._docs)

    def activeDocument(self) -> Document | None:
        return self._active

    def setActiveDocument(self, doc: Document | None) -> None:
        self._active = doc

    def readSetting(self, group: str, key: str, default: str) -> str:
        return self._settings.get((group, key), default)

    def writeSetting(self, group: str, key: str, value: str) -> None:
        self._settings[(group, key)] = value

    def addExtension(self, ext: Any) -> None:
        self.extensions.append(ext)

    def addDockWidgetFactory(self, factory: Any) -> None:
        self.docker_factories.append(factory)

    def dockers(self) -> list[Any]:
        return []

    def notifier(self) -> Notifier:
        return self._notifier

    def activeWindow(self) -> None:
        return None

    def action(self, name: str) -> _Action | None:
        doc = self._active
        if name == "edit_undo" and doc is not None:
            return _Action(doc._undo_once)
        if name == "edit_redo" and doc is not None:
            return _Action(doc._redo_once)
        return None


class Extension(QObject):
    def __init__(self, parent: Any = None) -> None:
        super().__init__()

    def setup(self) -> None:
        pass

    def createActions(self, window: Any) -> None:
        pass


class DockWidget(QDockWidget):
    def canvasChanged(self, canvas: Any) -> None:
        pass


class DockWidgetFactoryBase:
    DockRight = 1
    DockLeft = 0


class DockWidgetFactory(DockWidgetFactoryBase):
    def __init__(self, id_: str, area: int, cls: type) -> None:
        self.id = id_
        self.area = area
        self.cls = cls


class InfoObject(QObject):
    pass
