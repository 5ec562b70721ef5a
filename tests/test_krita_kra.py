"""The Krita file Apply as animation writes (plugins/krita/draggan_krita/kra.py), checked on its own: every frame's
pixels come back from the tiles exactly (offsets, negative corners, sizes that are no multiple of 64), transparent
tiles are left out, and the zip holds what Krita's loader reads. That Krita 5.1 and 5.2 themselves open it, with a
keyframe per frame, is tests/test_krita_frames.py."""

from __future__ import annotations

import random
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "krita"))

from draggan_krita import kra  # noqa: E402

KF = "{http://www.calligra.org/DTD/krita-keyframes}"
DOC = "{http://www.calligra.org/DTD/krita}"


def noise(w: int, h: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(1, 256, (h, w, 4), dtype=np.uint8).tobytes()


def canvas(pixels: kra.Pixels, box: kra.Rect) -> np.ndarray:
    """`pixels` drawn on a transparent `box` (the reference the module's output is compared with)."""
    out = np.zeros((box[3], box[2], 4), np.uint8)
    pix, (x, y, w, h) = pixels
    if w and h:
        out[y - box[1] : y - box[1] + h, x - box[0] : x - box[0] + w] = np.frombuffer(pix, np.uint8).reshape(h, w, 4)
    return out


def from_tiles(tiles: dict[tuple[int, int], bytes], box: kra.Rect) -> np.ndarray:
    out = np.zeros((box[3] + 2 * kra.TILE, box[2] + 2 * kra.TILE, 4), np.uint8)
    ox, oy = box[0] - kra.TILE, box[1] - kra.TILE  # room for tiles that start left of / above the box
    for (tx, ty), data in tiles.items():
        assert tx % kra.TILE == 0 and ty % kra.TILE == 0, (tx, ty)  # on Krita's grid
        tile = np.frombuffer(data, np.uint8).reshape(kra.TILE, kra.TILE, 4)
        out[ty - oy : ty - oy + kra.TILE, tx - ox : tx - ox + kra.TILE] = tile
    inner = out[kra.TILE : kra.TILE + box[3], kra.TILE : kra.TILE + box[2]]
    assert inner.sum() == out.sum(), "a tile holds pixels outside the rectangle"
    return inner


@pytest.mark.parametrize("rect", [(0, 0, 64, 64), (-5, 3, 130, 90), (63, 65, 1, 1), (-200, -70, 70, 200)])
def test_tiles_give_back_every_pixel(rect):
    pix = noise(rect[2], rect[3], 1)
    tiles = kra.read_tile_file(kra.tile_file((pix, rect)))
    assert np.array_equal(from_tiles(tiles, rect), canvas((pix, rect), rect))
    cols = range(rect[0] // 64 * 64, rect[0] + rect[2], 64)
    rows = range(rect[1] // 64 * 64, rect[1] + rect[3], 64)
    assert len(tiles) == len(cols) * len(rows)  # no pixel of the noise is transparent: every tile is there


def test_transparent_tiles_are_left_out():
    w, h = 200, 130
    img = np.zeros((h, w, 4), np.uint8)
    img[70:72, 130:140] = 9  # one tile's worth of content: tile (128, 64)
    tiles = kra.read_tile_file(kra.tile_file((img.tobytes(), (0, 0, w, h))))
    assert list(tiles) == [(128, 64)]
    empty = kra.tile_file((bytes(w * h * 4), (0, 0, w, h)))
    assert empty.endswith(b"DATA 0\n") and kra.read_tile_file(empty) == {}
    assert kra.read_tile_file(kra.tile_file((b"", (5, 5, 0, 0)))) == {}


def test_paste_is_set_pixel_data_twice():
    base = (noise(50, 40, 2), (-10, 5, 50, 40))
    patch = (noise(30, 20, 3), (25, 30, 30, 20))  # overhangs the base to the right and below
    pix, rect = kra.paste(base, patch)
    assert rect == (-10, 5, 65, 45)
    want = canvas(base, rect)
    want[30 - 5 : 50 - 5, 25 + 10 : 55 + 10] = canvas(patch, patch[1])
    assert np.array_equal(np.frombuffer(pix, np.uint8).reshape(45, 65, 4), want)
    assert kra.paste((b"", (0, 0, 0, 0)), patch) == patch  # an empty source layer: the frame alone
    with pytest.raises(ValueError, match="bytes for a 30×20"):
        kra.paste(base, (patch[0][:-4], patch[1]))


def test_the_file_holds_what_krita_reads(tmp_path):
    rng = random.Random(4)
    base = (noise(90, 70, 5), (0, 0, 90, 70))
    patches = [(noise(20, 10, 10 + i), (rng.randrange(60), rng.randrange(50), 20, 10)) for i in range(5)]
    path = tmp_path / "frames.kra"
    name = 'Face "left" <&> (DragGAN animation)'
    n = kra.write_animation(
        str(path), 90, 70, name, kra.frames_of(base, patches), opacity=128, composite_op="multiply", fps=12, dpi=300
    )
    assert n == 5
    with zipfile.ZipFile(path) as z:
        first = z.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert z.read("mimetype") == b"application/x-krita"
        image = ET.fromstring(z.read("maindoc.xml")).find(f"{DOC}IMAGE")
        assert (image.get("width"), image.get("height"), image.get("x-res")) == ("90", "70", "300")
        (layer,) = image.find(f"{DOC}layers")
        assert layer.get("name") == name and layer.get("nodetype") == "paintlayer"
        assert (layer.get("opacity"), layer.get("compositeop")) == ("128", "multiply")
        anim = image.find(f"{DOC}animation")
        assert anim.find(f"{DOC}range").get("to") == "4" and anim.find(f"{DOC}currentTime").get("value") == "4"
        assert anim.find(f"{DOC}framerate").get("value") == "12"
        folder = f"{image.get('name')}/layers/"
        keys = ET.fromstring(z.read(folder + layer.get("keyframes"))).find(f"{KF}channel")
        assert keys.get("name") == "content"
        times = [(int(k.get("time")), k.get("frame")) for k in keys]
        assert [t for t, _ in times] == list(range(5))
        assert times[0][1] == layer.get("filename")  # the first keyframe is the layer's own pixel file
        for (_, file), patch in zip(times, patches, strict=True):
            frame = kra.paste(base, patch)
            assert np.array_equal(
                from_tiles(kra.read_tile_file(z.read(folder + file)), frame[1]), canvas(frame, frame[1])
            )
            assert z.read(folder + file + ".defaultpixel") == bytes(4)


def test_no_frames_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="at least one frame"):
        kra.write_animation(str(tmp_path / "x.kra"), 8, 8, "x", [])
