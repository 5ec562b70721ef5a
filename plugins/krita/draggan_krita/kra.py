"""A Krita document file (.kra) holding one animated paint layer, written from the frames' pixels.

Why a file: Krita's scripting API has no way to make keyframes, and every way it has to get an animated layer into a
document leaves more than one undo step there (a group of frames, then Convert Group to Animated Layer) or crashes
Krita 5.2.9 now and then (`Document.importAnimation`; the conversion run in a second document with a view of its
own). Krita opens a .kra without a view (`Krita.openDocument`), and a copy of its layer joins the person's document
in one step, keyframes and all (see `KritaDocument.add_animation`).

What is written is the least Krita 5.1 and 5.2 load (the layout of Krita's own file-format documentation and of the
files Krita saves):
- ``mimetype`` first and stored; ``maindoc.xml``: the image (size, resolution, RGBA 8-bit, sRGB) with one paint layer
  whose ``keyframes`` attribute names ``<layer>.keyframes.xml``, and the animation's frame rate, range and time;
- ``<image>/layers/<layer>.keyframes.xml``: channel ``content``, one keyframe per frame from time 0, each naming its
  pixel file (the first keyframe the layer's own file, then ``<layer>.f<N>``);
- each pixel file in Krita's tile format: a text header (``VERSION 2``, tile size 64, ``PIXELSIZE 4``, ``DATA n``),
  then per tile a line ``x,y,LZF,size`` (the tile's top-left corner in pixels; size counts the flag byte) and the
  tile: a flag byte 0 (not compressed, which Krita's reader accepts as is) and 64×64 pixels, BGRA, row by row.
  Fully transparent tiles are left out (the layer's default pixel), with a ``.defaultpixel`` file each.
The zip's own deflate (level 1) keeps the file small and fast to write; the tiles themselves stay uncompressed.

Pure Python and the standard library only: it runs in Krita's own Python and is tested on its own.
"""

from __future__ import annotations

import uuid
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from xml.sax.saxutils import quoteattr

Rect = tuple[int, int, int, int]  # x, y, width, height (pixels)
Pixels = tuple[bytes, Rect]  # BGRA8 bytes over a rectangle, row by row

TILE = 64
PIXEL = 4
IMAGE_NAME = "frames"  # the folder inside the file that the layers live in
LAYER_FILE = "layer2"
SRGB = "sRGB-elle-V2-srgbtrc.icc"  # Krita's built-in sRGB, known to every Krita by this name
_EMPTY_ROW = bytes(TILE * PIXEL)
_EMPTY_TILE = bytes(TILE * TILE * PIXEL)


def union(a: Rect, b: Rect) -> Rect:
    """The smallest rectangle holding both (an empty one holds nothing)."""
    if a[2] <= 0 or a[3] <= 0:
        return b
    if b[2] <= 0 or b[3] <= 0:
        return a
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1 - x0, y1 - y0)


def paste(base: Pixels, patch: Pixels) -> Pixels:
    """`base` with `patch` written over it (pixels replaced, not blended), over the union of their rectangles:
    what a layer holds after ``setPixelData(base)`` then ``setPixelData(patch)``."""
    (bpix, brect), (ppix, prect) = base, patch
    _check(bpix, brect)
    _check(ppix, prect)
    ux, uy, uw, uh = rect = union(brect, prect)
    if uw <= 0 or uh <= 0:
        return b"", rect
    out = bytearray(uw * uh * PIXEL)
    for pix, (x, y, w, h) in ((bpix, brect), (ppix, prect)):
        row = w * PIXEL
        for j in range(h):
            at = ((y + j - uy) * uw + (x - ux)) * PIXEL
            out[at : at + row] = pix[j * row : (j + 1) * row]
    return bytes(out), rect


def tiles(pixels: Pixels) -> Iterator[tuple[int, int, bytes]]:
    """The 64×64 tiles (x, y of the corner on Krita's grid, BGRA bytes) that hold anything but transparency."""
    pix, (x, y, w, h) = pixels
    _check(pix, (x, y, w, h))
    if w <= 0 or h <= 0:
        return
    row = w * PIXEL
    for ty in range(_floor(y), y + h, TILE):
        for tx in range(_floor(x), x + w, TILE):
            x0, x1 = max(tx, x), min(tx + TILE, x + w)  # the tile's columns the rectangle covers
            left, right = (x0 - tx) * PIXEL, (tx + TILE - x1) * PIXEL
            rows = []
            for yy in range(ty, ty + TILE):
                if y <= yy < y + h:
                    at = (yy - y) * row + (x0 - x) * PIXEL
                    rows.append(_EMPTY_ROW[:left] + pix[at : at + (x1 - x0) * PIXEL] + _EMPTY_ROW[:right])
                else:
                    rows.append(_EMPTY_ROW)
            data = b"".join(rows)
            if data != _EMPTY_TILE:
                yield tx, ty, data


def tile_file(pixels: Pixels) -> bytes:
    """One frame's pixels in Krita's tile format (see the module's docstring)."""
    body = [b"%d,%d,LZF,%d\n\x00%s" % (tx, ty, len(data) + 1, data) for tx, ty, data in tiles(pixels)]
    head = b"VERSION 2\nTILEWIDTH %d\nTILEHEIGHT %d\nPIXELSIZE %d\nDATA %d\n" % (TILE, TILE, PIXEL, len(body))
    return head + b"".join(body)


def frame_files(count: int) -> list[str]:
    """The pixel files of `count` keyframes: the layer's own file, then ``.f1``, ``.f2`` …"""
    return [LAYER_FILE] + [f"{LAYER_FILE}.f{i}" for i in range(1, count)]


def keyframes_xml(count: int) -> str:
    offset = '<offset type="point" x="0" y="0"/>'
    keys = "".join(
        f'  <keyframe time="{t}" color-label="0" frame="{name}">\n   {offset}\n  </keyframe>\n'
        for t, name in enumerate(frame_files(count))
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<!DOCTYPE keyframes PUBLIC '-//KDE//DTD krita-keyframes 1.0//EN' "
        "'http://www.calligra.org/DTD/krita-keyframes-1.0.dtd'>\n"
        '<keyframes xmlns="http://www.calligra.org/DTD/krita-keyframes">\n'
        f' <channel name="content">\n{keys} </channel>\n</keyframes>\n'
    )


def maindoc_xml(
    width: int, height: int, layer_name: str, count: int, *, opacity: int, composite_op: str, fps: int, dpi: float
) -> str:
    layer = (
        f'<layer nodetype="paintlayer" name={quoteattr(layer_name)} filename="{LAYER_FILE}" '
        f'keyframes="{LAYER_FILE}.keyframes.xml" uuid="{{{uuid.uuid4()}}}" x="0" y="0" opacity="{int(opacity)}" '
        f"compositeop={quoteattr(composite_op)} "
        'visible="1" locked="0" collapsed="0" colorlabel="0" onionskin="0" intimeline="1" channelflags="" '
        'channellockflags="" colorspacename="RGBA"/>'
    )
    last = max(0, count - 1)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<!DOCTYPE DOC PUBLIC '-//KDE//DTD krita 2.0//EN' 'http://www.calligra.org/DTD/krita-2.0.dtd'>\n"
        '<DOC xmlns="http://www.calligra.org/DTD/krita" kritaVersion="5.1.5" editor="Krita" syntaxVersion="2.0">\n'
        f' <IMAGE name="{IMAGE_NAME}" mime="application/x-kra" width="{int(width)}" height="{int(height)}" '
        f'x-res="{dpi:g}" y-res="{dpi:g}" colorspacename="RGBA" profile="{SRGB}" description="">\n'
        f"  <layers>\n   {layer}\n  </layers>\n"
        "  <animation>\n"
        f'   <framerate type="value" value="{int(fps)}"/>\n'
        f'   <range type="timerange" from="0" to="{last}"/>\n'
        f'   <currentTime type="value" value="{last}"/>\n'
        "  </animation>\n"
        " </IMAGE>\n</DOC>\n"
    )


def write_animation(
    path: str,
    width: int,
    height: int,
    layer_name: str,
    frames: Iterable[Pixels],
    *,
    opacity: int = 255,
    composite_op: str = "normal",
    fps: int = 24,
    dpi: float = 72.0,
) -> int:
    """Write a .kra of `width`×`height` with one animated paint layer `layer_name`, a keyframe per frame (BGRA8
    over its rectangle, in document pixels) from time 0, the last frame the current time. Frames are consumed one
    at a time, so only one is held in memory. Returns the number of frames written."""
    layers = f"{IMAGE_NAME}/layers/"
    count = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), b"application/x-krita", compress_type=zipfile.ZIP_STORED)
        for count, pixels in enumerate(frames, 1):
            name = frame_files(count)[-1]
            z.writestr(layers + name, tile_file(pixels))
            z.writestr(layers + name + ".defaultpixel", bytes(PIXEL))
        if count == 0:
            raise ValueError("an animation needs at least one frame")
        z.writestr(layers + LAYER_FILE + ".keyframes.xml", keyframes_xml(count))
        doc = maindoc_xml(
            width, height, layer_name, count, opacity=opacity, composite_op=composite_op, fps=fps, dpi=dpi
        )
        z.writestr("maindoc.xml", doc)
    return count


def read_tile_file(data: bytes) -> dict[tuple[int, int], bytes]:
    """The tiles of a pixel file this module wrote (uncompressed ones only), by corner: the inverse of
    `tile_file`, which the tests check it against."""
    lines = data.split(b"\n", 5)
    head = dict(line.decode().split(" ", 1) for line in lines[:5])
    if head.get("VERSION") != "2" or int(head["PIXELSIZE"]) != PIXEL or int(head["TILEWIDTH"]) != TILE:
        raise ValueError(f"not a tile file of 64-px BGRA8 tiles: {head}")
    rest, out = lines[5], {}
    for _ in range(int(head["DATA"])):
        line, rest = rest.split(b"\n", 1)
        x, y, _codec, size = line.decode().split(",")
        chunk, rest = rest[: int(size)], rest[int(size) :]
        if chunk[:1] != b"\x00" or len(chunk) != 1 + TILE * TILE * PIXEL:
            raise ValueError(f"tile {x},{y} is compressed or cut short")
        out[(int(x), int(y))] = chunk[1:]
    return out


def frames_of(base: Pixels, patches: Sequence[Pixels]) -> Iterator[Pixels]:
    """Each frame as the layer shows it: `base` (the source layer's pixels) with that frame's patch over it."""
    for patch in patches:
        yield paste(base, patch)


def _floor(v: int) -> int:
    return (v // TILE) * TILE


def _check(pix: bytes, rect: Rect) -> None:
    if rect[2] < 0 or rect[3] < 0 or len(pix) != max(0, rect[2]) * max(0, rect[3]) * PIXEL:
        raise ValueError(f"{len(pix)} bytes for a {rect[2]}×{rect[3]} BGRA8 rectangle")
