"""A face-like test picture in plain Python (no numpy), so GIMP's Python and the test process draw the same bytes.

A yellow disc with an outline, two dark eyes and a smiling mouth on a light background: enough structure for
dense optical flow to lock onto, and the kind of picture the emoji model was trained on.
"""

from __future__ import annotations

import math

BACKGROUND = (250, 250, 245)
SKIN = (250, 200, 60)
OUTLINE = (150, 90, 20)
FEATURE = (70, 40, 20)


def face_rgba(width: int, height: int) -> bytes:
    """Straight-alpha RGBA8 rows of a face centred in a width x height picture."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    radius = 0.42 * min(width, height)
    eye_dx, eye_dy = 0.36 * radius, -0.22 * radius
    eye_rx, eye_ry = 0.11 * radius, 0.19 * radius
    mouth_r, mouth_cy = 0.55 * radius, cy + 0.02 * radius
    out = bytearray()
    for y in range(height):
        for x in range(width):
            d = math.hypot(x - cx, y - cy)
            colour = BACKGROUND
            if d <= radius:
                colour = SKIN if d <= radius - 0.07 * radius else OUTLINE
                for side in (-1, 1):
                    ex, ey = cx + side * eye_dx, cy + eye_dy
                    if ((x - ex) / eye_rx) ** 2 + ((y - ey) / eye_ry) ** 2 <= 1.0:
                        colour = FEATURE
                dm = math.hypot(x - cx, y - mouth_cy)
                if abs(dm - mouth_r) <= 0.07 * radius and y > mouth_cy + 0.25 * mouth_r:
                    colour = FEATURE
            out += bytes((*colour, 255))
    return bytes(out)


def mouth_corners(width: int, height: int) -> list[tuple[float, float]]:
    """Left and right ends of the mouth arc, in picture coordinates (handy handles for a smile drag)."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    radius = 0.42 * min(width, height)
    mouth_r, mouth_cy = 0.55 * radius, cy + 0.02 * radius
    dy = 0.25 * mouth_r + 0.5
    dx = math.sqrt(mouth_r**2 - dy**2)
    return [(cx - dx, mouth_cy + dy), (cx + dx, mouth_cy + dy)]
