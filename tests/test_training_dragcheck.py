"""The independent drag measurement: it must find a mouth corner and measure known motion correctly."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from draggan_daemon.training.drag_check import find_mouth_corner, flow_at  # noqa: E402


def smiley(mouth_shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    import cv2

    img = np.full((64, 64), 255, np.uint8)
    cv2.circle(img, (32, 32), 27, 200, -1)  # light face
    cv2.circle(img, (23, 24), 3, 30, -1)  # eyes
    cv2.circle(img, (41, 24), 3, 30, -1)
    dx, dy = mouth_shift
    cv2.ellipse(img, (32 + dx, 42 + dy), (11, 5), 0, 0, 180, 20, 2)  # mouth
    return img


def test_find_mouth_corner_is_the_left_end_of_the_mouth():
    x, y = find_mouth_corner(smiley())
    assert 18 <= x <= 23 and 40 <= y <= 46


@pytest.mark.parametrize("shift", [(3, 0), (0, 4), (-2, 3)])
def test_flow_measures_a_known_shift(shift):
    before, after = smiley(), smiley(shift)
    corner = find_mouth_corner(before)
    dx, dy = flow_at(before, after, corner)
    assert abs(dx - shift[0]) < 1.0 and abs(dy - shift[1]) < 1.0
