"""The emoji data pipeline on synthetic pictures: no network, no real emoji needed."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from draggan_daemon.training import emoji_sources
from draggan_daemon.training.dataset import EmojiDataset, align_rgba, augment, build_dataset
from PIL import Image, ImageDraw


def face_picture(size: int = 100, box: tuple[int, int, int, int] = (10, 30, 50, 70)) -> Image.Image:
    """A transparent canvas with a yellow disc (the 'face') inside `box`."""
    im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(im).ellipse(box, fill=(250, 200, 40, 255))
    return im


def test_align_centres_scales_and_whitens():
    out = align_rgba(face_picture(), resolution=64, fill=0.875)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert (out[0, 0] == 255).all() and (out[-1, -1] == 255).all()  # transparent -> white
    yellow = (out[..., 2] < 150).nonzero()
    ys, xs = yellow
    # The disc was off-centre in a 100 px canvas; aligned, it is centred and ~56 px wide.
    assert abs((xs.min() + xs.max()) / 2 - 31.5) <= 1.0
    assert abs((ys.min() + ys.max()) / 2 - 31.5) <= 1.0
    assert 52 <= xs.max() - xs.min() + 1 <= 57


def test_align_rejects_empty_picture():
    with pytest.raises(ValueError):
        align_rgba(Image.new("RGBA", (20, 20), (0, 0, 0, 0)))


def test_dataset_roundtrip(tmp_path: Path):
    pics = [("src", f"1F60{i}", face_picture(box=(5 + i, 5, 60 + i, 70))) for i in range(5)]
    pics.append(("src", "EMPTY", Image.new("RGBA", (10, 10))))
    ds = build_dataset(pics, resolution=32)
    assert len(ds) == 5 and ds.resolution == 32
    ds.save(tmp_path / "d.npz")
    back = EmojiDataset.load(tmp_path / "d.npz")
    assert np.array_equal(back.images, ds.images)
    assert list(back.codepoints) == [f"1F60{i}" for i in range(5)]
    t = back.tensor()
    assert t.shape == (5, 3, 32, 32) and t.min() >= -1 and t.max() <= 1


def test_augment_keeps_shape_range_and_white_background():
    ds = build_dataset([("s", "x", face_picture())] * 8, resolution=32)
    x = ds.tensor()
    g = torch.Generator().manual_seed(0)
    y = augment(x, shift=2, jitter=0.1, generator=g)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert not torch.equal(x, y)
    # Jitter keeps white white: the corners stay (nearly) white whatever the colour draw.
    assert (y[:, :, 0, 0] > 0.99).all()
    # Flip alone (no shift, no jitter) is an exact mirror or the identity for each image.
    z = augment(x, shift=0, jitter=0.0, generator=torch.Generator().manual_seed(1))
    for a, b in zip(x, z, strict=True):
        assert torch.equal(a, b) or torch.equal(a.flip(2), b)


def test_face_filter():
    cat = [
        dict(unified="1F600", name="GRINNING FACE", subcategory="face-smiling"),
        dict(unified="1F436", name="DOG FACE", subcategory="animal-mammal"),
        dict(unified="1F415", name="DOG", subcategory="animal-mammal"),
        dict(unified="1F63A", name="SMILING CAT FACE WITH OPEN MOUTH", subcategory="cat-face"),
        dict(unified="2764-FE0F", name="HEAVY BLACK HEART", subcategory="heart"),
        dict(unified="1F476", name="BABY", subcategory="person"),
        dict(unified="1F47E", name="ALIEN MONSTER", subcategory="face-costume"),
    ]
    assert [e.unified for e in emoji_sources.face_entries(cat)] == ["1F600", "1F436", "1F63A", "1F476"]


def _png(size: int = 64) -> bytes:
    buf = io.BytesIO()
    face_picture(size, (8, 8, size - 8, size - 8)).save(buf, "PNG")
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_read_npm_style_tarballs(tmp_path: Path):
    catalogue = [
        dict(
            unified="1F600", name="GRINNING FACE", subcategory="face-smiling", image="1f600.png", has_img_twitter=True
        ),
        dict(
            unified="263A-FE0F",
            name="WHITE SMILING FACE",
            subcategory="face-affection",
            image="263a-fe0f.png",
            has_img_twitter=False,
        ),
        dict(unified="1F415", name="DOG", subcategory="animal-mammal", image="1f415.png", has_img_twitter=True),
    ]
    ds_tgz = tmp_path / "emoji-datasource-twitter-1.0.0.tgz"
    with tarfile.open(ds_tgz, "w:gz") as tf:
        _add(tf, "package/emoji.json", json.dumps(catalogue).encode())
        _add(tf, "package/img/twitter/64/1f600.png", _png())
        _add(tf, "package/img/twitter/64/1f415.png", _png())
    fl_tgz = tmp_path / "lobehub-fluent-emoji-3d-1.0.0.tgz"
    with tarfile.open(fl_tgz, "w:gz") as tf:
        buf = io.BytesIO()
        face_picture(256, (20, 20, 236, 236)).save(buf, "WEBP")
        _add(tf, "package/assets/263a-fe0f.webp", buf.getvalue())
        _add(tf, "package/assets/1f600.webp", buf.getvalue())

    wanted = emoji_sources.face_entries(emoji_sources.read_catalogue(ds_tgz))
    assert [e.unified for e in wanted] == ["1F600", "263A-FE0F"]
    tw = list(emoji_sources.read_datasource(ds_tgz, "twitter", wanted))
    assert [(i.source, i.unified, i.image.size) for i in tw] == [("twitter", "1F600", (64, 64))]
    fl = list(emoji_sources.read_fluent3d(fl_tgz, wanted))
    assert sorted(i.unified for i in fl) == ["1F600", "263A-FE0F"]
    # npm_pack finds the cached tarball instead of calling npm.
    assert emoji_sources.npm_pack("emoji-datasource-twitter", tmp_path) == ds_tgz
    assert emoji_sources.npm_pack("@lobehub/fluent-emoji-3d", tmp_path) == fl_tgz


@pytest.mark.skipif(not emoji_sources.NOTO_FONT.exists(), reason="fonts-noto-color-emoji not installed")
def test_read_noto_font_bitmaps():
    wanted = [
        emoji_sources.EmojiEntry("1F600", "GRINNING FACE", "face-smiling"),
        emoji_sources.EmojiEntry("1F9D1-200D-1F384", "MX CLAUS", "person-fantasy"),
    ]
    got = list(emoji_sources.read_noto_font(emoji_sources.NOTO_FONT, wanted))
    assert [g.unified for g in got] == ["1F600"]  # sequences are skipped
    arr = align_rgba(got[0].image)
    assert arr[32, 32, 0] > 200 and arr[32, 32, 2] < 120  # yellow in the middle
