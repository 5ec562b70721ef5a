"""Byte-level helpers for the pixel buffers the plug-in moves between GIMP and the daemon.

GIMP hands out pixels as packed rows (GEGL buffers read as "R'G'B'A u8" for colour, "Y u8" for the selection);
the daemon speaks straight-alpha RGBA8. Plug-ins run under GIMP's system Python without numpy, so everything here
is plain bytes work, organised around per-row C-level operations (bytes.count, slicing) so that a 4096x4096 layer
costs milliseconds, not seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

RGBA = "R'G'B'A u8"  # GEGL/babl format name: 8-bit, gamma-encoded (sRGB), straight alpha
GRAY = "Y u8"

Rect = tuple[int, int, int, int]  # x, y, width, height


def check_size(data: bytes | bytearray | memoryview, width: int, height: int, channels: int) -> None:
    """Raise ValueError unless `data` holds exactly width*height*channels bytes."""
    if width <= 0 or height <= 0:
        raise ValueError(f"empty image {width}x{height}")
    expected = width * height * channels
    if len(data) != expected:
        raise ValueError(f"{width}x{height}x{channels} needs {expected} bytes, got {len(data)}")


def mask_bounds(mask: bytes | bytearray, width: int, height: int) -> Rect | None:
    """Smallest rectangle holding every non-zero byte of a one-channel mask, or None when it is all zero."""
    check_size(mask, width, height, 1)
    view = bytes(mask)
    top = bottom = None
    left, right = width, -1
    for y in range(height):
        row = view[y * width : (y + 1) * width]
        if row.count(0) == width:
            continue
        if top is None:
            top = y
        bottom = y
        stripped_left = row.lstrip(b"\0")
        left = min(left, width - len(stripped_left))
        right = max(right, len(row.rstrip(b"\0")) - 1)
    if top is None:
        return None
    return (left, top, right - left + 1, bottom - top + 1)


@dataclass(frozen=True)
class Selection:
    """The part of the image selection that lies on the layer, in layer coordinates."""

    mask: bytes  # width*height bytes, 255 = selected (GIMP's meaning: the part to edit)
    bounds: Rect  # bounding box of the non-zero part
    width: int
    height: int

    @property
    def covers_everything(self) -> bool:
        return self.mask.count(255) == len(self.mask)


def selection_on_layer(mask: bytes | bytearray, width: int, height: int) -> Selection | None:
    """A Selection for the layer-sized crop of GIMP's selection mask, None when nothing of it lies on the layer."""
    bounds = mask_bounds(mask, width, height)
    if bounds is None:
        return None
    return Selection(bytes(mask), bounds, width, height)


def paste(
    dst: bytearray,
    dst_width: int,
    dst_height: int,
    src: bytes | bytearray | memoryview,
    rect: Rect,
    channels: int = 4,
) -> Rect | None:
    """Copy the `rect`-sized block `src` into `dst` at rect's x, y, clipped to dst. Returns the part written.

    Preview frames cover only the edited region of a layer; this puts them in place in a layer-sized buffer.
    """
    x, y, w, h = rect
    check_size(src, w, h, channels)
    check_size(dst, dst_width, dst_height, channels)
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, dst_width), min(y + h, dst_height)
    if x0 >= x1 or y0 >= y1:
        return None
    src = memoryview(src).cast("B")
    span = (x1 - x0) * channels
    for yy in range(y0, y1):
        s = ((yy - y) * w + (x0 - x)) * channels
        d = (yy * dst_width + x0) * channels
        dst[d : d + span] = src[s : s + span]
    return (x0, y0, x1 - x0, y1 - y0)


def crop(src: bytes | bytearray | memoryview, width: int, height: int, rect: Rect, channels: int = 4) -> bytes:
    """The `rect` block of a packed image (rect must lie inside it)."""
    check_size(src, width, height, channels)
    x, y, w, h = rect
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise ValueError(f"rectangle {rect} is not inside {width}x{height}")
    view = memoryview(src).cast("B")
    rows = [view[((y + r) * width + x) * channels : ((y + r) * width + x + w) * channels] for r in range(h)]
    return b"".join(rows)
