"""Held-out face layers for `edit_quality.py`: emoji faces the bundled model never saw, as a painter's layers.

The bundled 64-px model was trained on Noto Color Emoji (today's Noto art), Fluent Emoji 3D and Twemoji
(daemon/training/emoji_sources.py). The faces here come from three other permissively licensed sets, all
vector art, fetched with `npm pack` (the Iconify JSON packages: every icon's SVG body in one icons.json):

- Fluent Emoji **Flat** (`@iconify-json/fluent-emoji-flat` 1.2.6, MIT, Microsoft): the same designs as the
  trained Fluent 3D, drawn flat — the "near" held-out set.
- Noto Emoji **v1** (`@iconify-json/noto-v1` 1.2.5, Apache-2.0, Google): the older "blob" faces, a different
  drawing from the trained Noto Color Emoji.
- Emoji One (`@iconify-json/emojione` 1.2.3, CC-BY-4.0, Emoji One / EmojiTwo contributors).

Share-alike sets (OpenMoji, Emoji One v1 in Iconify) and non-permissive ones (Apple, Facebook) are left out.
The SVGs are rasterised with resvg (PyPI `resvg-py`, a wheel with resvg built in: no system library needed).
Downloads are cached under `.cache/heldout/` (ignored by git).

A case is what an artist would have: the face drawn at 192–512 px with a soft shadow, on a coloured background
with texture and a few shapes around it, in a larger RGBA layer; a region (x, y, w, h) around the face with some
context; 1–3 handle→target pairs on eyes, brows and mouth corners, moved 8–16 px per 256 px of face. Eyes and
mouth corners are found in the picture (drag_check's finders, at the drawing's own resolution), brows as dark
strokes above the eyes; a face whose parts are not found is skipped with a warning.

    python benchmarks/heldout_faces.py --sheet /tmp/heldout.png    # draws the cases and their pairs
"""

from __future__ import annotations

import argparse
import io
import json
import math
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "heldout"


@dataclass(frozen=True)
class Source:
    package: str
    version: str
    licence: str
    author: str
    home: str


SOURCES = {
    "fluent-flat": Source(
        "@iconify-json/fluent-emoji-flat",
        "1.2.6",
        "MIT",
        "Microsoft Corporation (Fluent Emoji)",
        "https://github.com/microsoft/fluentui-emoji",
    ),
    "noto-v1": Source(
        "@iconify-json/noto-v1",
        "1.2.5",
        "Apache-2.0",
        "Google Inc. (Noto Emoji v1)",
        "https://github.com/googlefonts/noto-emoji",
    ),
    "emojione": Source(
        "@iconify-json/emojione",
        "1.2.3",
        "CC-BY-4.0",
        "Emoji One (EmojiTwo contributors)",
        "https://github.com/EmojiTwo/emojitwo",
    ),
}


@dataclass(frozen=True)
class Face:
    source: str
    icon: str  # the Iconify name in the package's icons.json
    codepoint: str
    parts: tuple[str, ...]  # which parts may be dragged: eye, brow, mouth


# Faces with visible eyes and a stroke of a mouth (or brows), in the order the benchmark takes them: the three
# sets interleaved, so any first N mixes them.
FACES = [
    Face("fluent-flat", "slightly-smiling-face", "1F642", ("eye", "mouth")),
    Face("noto-v1", "slightly-smiling-face", "1F642", ("eye", "mouth")),
    Face("emojione", "slightly-smiling-face", "1F642", ("eye", "mouth")),
    Face("fluent-flat", "worried-face", "1F61F", ("eye", "brow", "mouth")),
    Face("noto-v1", "neutral-face", "1F610", ("eye", "mouth")),
    Face("emojione", "worried-face", "1F61F", ("eye", "brow", "mouth")),
    Face("fluent-flat", "frowning-face", "2639", ("eye", "mouth")),
    Face("noto-v1", "smiling-face", "263A", ("eye", "mouth")),
    Face("emojione", "smiling-face", "263A", ("eye", "mouth")),
    Face("fluent-flat", "face-with-raised-eyebrow", "1F928", ("eye", "brow", "mouth")),
    Face("noto-v1", "frowning-face", "2639", ("eye", "mouth")),
    Face("emojione", "hushed-face", "1F62F", ("eye", "brow")),
    Face("fluent-flat", "neutral-face", "1F610", ("eye", "mouth")),
    Face("noto-v1", "worried-face", "1F61F", ("eye", "mouth")),
    Face("emojione", "frowning-face", "2639", ("eye", "mouth")),
    Face("fluent-flat", "astonished-face", "1F632", ("eye", "brow")),
    Face("noto-v1", "face-with-open-mouth", "1F62E", ("eye",)),
    Face("emojione", "confused-face", "1F615", ("eye", "mouth")),
]


@dataclass
class Case:
    """One held-out layer with its region and pairs (layer pixel coordinates)."""

    name: str
    source: str
    licence: str
    face_size: int
    layer: np.ndarray  # H x W x 4 uint8, straight alpha
    region: tuple[int, int, int, int]
    pairs: list[tuple[float, float, float, float]]
    parts: list[str]
    face_box: tuple[int, int, int, int]
    notes: list[str] = field(default_factory=list)

    @property
    def side(self) -> int:
        return max(self.region[2], self.region[3])


# ----------------------------------------------------------------------------------------------------------
# Fetching and drawing


def fetch(source: str, cache: Path = CACHE) -> Path:
    """The source's npm tarball (pinned version) in `cache`, fetched with `npm pack` when absent."""
    s = SOURCES[source]
    stem = s.package.lstrip("@").replace("/", "-")
    path = cache / f"{stem}-{s.version}.tgz"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["npm", "pack", f"{s.package}@{s.version}"], cwd=cache, check=True, capture_output=True)
        except FileNotFoundError:
            sys.exit("heldout_faces: npm is needed to fetch the emoji sets (apt-get install npm)")
    return path


_ICON_SETS: dict[Path, dict] = {}


def icon_svg(source: str, icon: str, cache: Path = CACHE) -> str:
    tgz = fetch(source, cache)
    if tgz not in _ICON_SETS:
        with tarfile.open(tgz) as tf:
            member = tf.extractfile("package/icons.json")
            assert member is not None
            _ICON_SETS[tgz] = json.load(member)
    data = _ICON_SETS[tgz]
    entry = data["icons"].get(icon)
    if entry is None:
        alias = data.get("aliases", {}).get(icon)
        entry = data["icons"].get(alias["parent"]) if alias else None
    if entry is None:
        raise KeyError(f"{icon} is not in {SOURCES[source].package}")
    w, h = entry.get("width", data.get("width", 16)), entry.get("height", data.get("height", 16))
    left, top = entry.get("left", 0), entry.get("top", 0)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'viewBox="{left} {top} {w} {h}" width="{w}" height="{h}">{entry["body"]}</svg>'
    )


def render(source: str, icon: str, size: int, cache: Path = CACHE) -> Image.Image:
    """The face drawn at size x size pixels, RGBA on transparent."""
    try:
        import resvg_py
    except ImportError:
        sys.exit("heldout_faces: the SVGs are drawn with resvg: .venv/bin/pip install -e '.[bench]'  (resvg-py)")
    png = resvg_py.svg_to_bytes(svg_string=icon_svg(source, icon, cache), width=size, height=size)
    return Image.open(io.BytesIO(bytes(png))).convert("RGBA")


# ----------------------------------------------------------------------------------------------------------
# Finding the parts (in the face's own picture)


def _gray_on_white(face: Image.Image) -> np.ndarray:
    white = Image.new("RGBA", face.size, (255, 255, 255, 255))
    white.alpha_composite(face)
    rgb = np.asarray(white.convert("RGB"), np.float32)
    return (rgb @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)


def find_brows(gray: np.ndarray, alpha: np.ndarray, eyes: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Per eye, the centroid of a stroke darker than the skin, above the eye and not touching it; or nothing."""
    import cv2

    h, w = gray.shape
    skin = float(np.median(gray[alpha > 200]))
    dark = ((gray < skin - 35) & (alpha > 200)).astype(np.uint8)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(dark, connectivity=8)
    eye_labels = {int(labels[int(round(y)), int(round(x))]) for x, y in eyes}
    brows = []
    for ex, ey in eyes:
        best = None
        for i in range(1, n):
            cx, cy = centroids[i]
            area = stats[i, cv2.CC_STAT_AREA]
            if i in eye_labels or area < (h * w) * 2e-4 or stats[i, cv2.CC_STAT_WIDTH] < 0.06 * w:
                continue
            if not (ey - 0.25 * h < cy < ey - 0.06 * h and abs(cx - ex) < 0.12 * w):
                continue
            if best is None or area > best[0]:
                best = (area, (float(cx), float(cy)))
        if best is not None:
            brows.append(best[1])
    return brows if len(brows) == len(eyes) else []


def find_parts(face: Image.Image) -> dict[str, list[tuple[float, float]]]:
    """{'eye': [left, right], 'brow': [left, right], 'mouth': [left corner, right corner]}, in face pixels; a
    part that is not found is missing."""
    from draggan_daemon.training.drag_check import find_eyes, find_mouth_corner

    gray = _gray_on_white(face)
    alpha = np.asarray(face)[..., 3]
    found: dict[str, list[tuple[float, float]]] = {}
    eyes = find_eyes(gray)
    if eyes:
        found["eye"] = eyes
        brows = find_brows(gray, alpha, eyes)
        if brows:
            found["brow"] = brows
    left = find_mouth_corner(gray)
    right = find_mouth_corner(np.ascontiguousarray(gray[:, ::-1]))
    if left is not None and right is not None:
        right = (gray.shape[1] - 1 - right[0], right[1])
        if right[0] - left[0] > 0.12 * gray.shape[1]:  # a mouth, not a dot
            found["mouth"] = [left, right]
    return found


# ----------------------------------------------------------------------------------------------------------
# The layer around the face


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A coloured picture with texture and a few shapes: a gradient, paper grain or woven stripes."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    c0, c1 = rng.uniform(30, 230, 3), rng.uniform(30, 230, 3)
    style = int(rng.integers(3))
    if style == 0:  # linear gradient at an angle
        a = rng.uniform(0, math.pi)
        t = (xx * math.cos(a) + yy * math.sin(a)) / (abs(width * math.cos(a)) + abs(height * math.sin(a)))
        t -= t.min()
    elif style == 1:  # radial gradient
        cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
        t = np.hypot(xx - cx, yy - cy) / math.hypot(width, height)
    else:  # woven stripes
        period = rng.uniform(14, 40)
        t = 0.5 + 0.25 * (np.sin(2 * math.pi * xx / period) * np.sin(2 * math.pi * yy / (period * 1.3)))
    t = np.clip(t / max(float(t.max()), 1e-6), 0, 1)[..., None]
    rgb = c0 * (1 - t) + c1 * t
    # Paper grain: fine noise plus a blurred, coarser one.
    coarse = Image.fromarray((rng.normal(128, 40, (height // 8 + 1, width // 8 + 1))).clip(0, 255).astype(np.uint8))
    coarse = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), np.float32) - 128
    rgb = rgb + 0.25 * coarse[..., None] + rng.normal(0, 3, (height, width, 1))
    img = Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB").convert("RGBA")
    draw = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(4, 8))):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.04, 0.15) * min(width, height)
        colour = tuple(int(v) for v in rng.uniform(20, 240, 3)) + (int(rng.uniform(120, 230)),)
        box = [x - r, y - r, x + r, y + r * rng.uniform(0.6, 1.4)]
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    return img


def build_case(index: int, seed: int = 0, cache: Path = CACHE) -> Case | None:
    """The index-th held-out case (None, with a warning, when its parts are not found)."""
    face_spec = FACES[index % len(FACES)]
    rng = np.random.default_rng([seed, index])
    # Face sizes spread over 192..512 (a golden-ratio walk, so any first N covers the range), on a multiple of 8.
    size = int(round((192 + 320 * ((0.5 + index * 0.618034 + 0.37 * seed) % 1.0)) / 8) * 8)
    face = render(face_spec.source, face_spec.icon, size, cache)
    parts = find_parts(face)
    usable = {p: parts[p] for p in face_spec.parts if p in parts}
    name = f"{face_spec.source}/{face_spec.icon}"
    missing = [p for p in face_spec.parts if p not in parts]
    if not usable:
        print(f"heldout_faces: warning: no {', '.join(face_spec.parts)} found on {name}; skipped", file=sys.stderr)
        return None
    notes = [f"no {p} found" for p in missing]
    if missing:
        print(f"heldout_faces: warning: {name}: {', '.join(notes)}; using {', '.join(usable)}", file=sys.stderr)

    width = int(size * rng.uniform(1.5, 2.3))
    height = int(size * rng.uniform(1.4, 2.0))
    layer = _background(rng, width, height)
    fx = int(rng.uniform(0.25 * size, width - 1.25 * size))
    fy = int(rng.uniform(0.2 * size, height - 1.2 * size))
    alpha = face.getchannel("A")
    shadow = Image.new("RGBA", face.size, (0, 0, 0, 0))
    shadow.putalpha(alpha.point(lambda a: a * 0.45).filter(ImageFilter.GaussianBlur(size * 0.025)))
    offset = int(round(size * 0.03))
    layer.alpha_composite(shadow, (fx + offset, fy + offset))
    layer.alpha_composite(face, (fx, fy))

    bx0, by0, bx1, by1 = alpha.point(lambda a: 255 if a > 16 else 0).getbbox()
    margin = rng.uniform(0.06, 0.18) * size
    x0, y0 = max(0, int(fx + bx0 - margin)), max(0, int(fy + by0 - margin))
    x1, y1 = min(width, int(math.ceil(fx + bx1 + margin))), min(height, int(math.ceil(fy + by1 + margin)))
    region = (x0, y0, x1 - x0, y1 - y0)

    # Pairs: 1-3 handles, each part's own direction, 8-16 px per 256 px of face.
    choices = [(p, i) for p in usable for i in range(len(usable[p]))]
    rng.shuffle(choices)
    count = min(len(choices), int(rng.integers(1, 4)))
    smile = rng.random() < 0.5
    pairs, used = [], []
    for part, i in choices[:count]:
        hx, hy = usable[part][i]
        if part == "mouth":
            out = -1.0 if i == 0 else 1.0  # the left corner goes left, the right one right
            angle = math.radians(rng.uniform(30, 60))
            dx, dy = out * math.cos(angle), (-1.0 if smile else 1.0) * math.sin(angle)
        else:  # eyes and brows are raised, a little askew
            angle = math.radians(rng.uniform(-20, 20))
            dx, dy = math.sin(angle), -math.cos(angle)
        dist = rng.uniform(8, 16) * size / 256
        hx, hy = hx + fx, hy + fy
        tx, ty = hx + dx * dist, hy + dy * dist
        if not (x0 <= tx < x1 and y0 <= ty < y1):
            continue
        pairs.append((round(hx, 2), round(hy, 2), round(tx, 2), round(ty, 2)))
        used.append(f"{part}-{'left' if i == 0 else 'right'}")
    src = SOURCES[face_spec.source]
    return Case(
        name=name,
        source=f"{src.package}@{src.version}",
        licence=src.licence,
        face_size=size,
        layer=np.asarray(layer).copy(),
        region=region,
        pairs=pairs,
        parts=used,
        face_box=(fx + bx0, fy + by0, bx1 - bx0, by1 - by0),
        notes=notes,
    )


def build_cases(count: int, seed: int = 0, cache: Path = CACHE) -> list[Case]:
    """The first `count` cases that could be built (faces whose parts are not found are skipped)."""
    if count > len(FACES):
        print(f"heldout_faces: only {len(FACES)} faces are listed; using them all", file=sys.stderr)
    cases = []
    for index in range(min(count, len(FACES))):
        case = build_case(index, seed, cache)
        if case is not None:
            cases.append(case)
    return cases


def draw_pairs(img: Image.Image, pairs, origin: tuple[int, int] = (0, 0), scale: float = 1.0) -> None:
    """Handles as white rings, targets as red dots, joined by a line (for contact sheets)."""
    draw = ImageDraw.Draw(img)
    for hx, hy, tx, ty in pairs:
        h = ((hx - origin[0]) * scale, (hy - origin[1]) * scale)
        t = ((tx - origin[0]) * scale, (ty - origin[1]) * scale)
        draw.line([h, t], fill=(255, 255, 255), width=2)
        draw.ellipse([h[0] - 4, h[1] - 4, h[0] + 4, h[1] + 4], outline=(255, 255, 255), width=2)
        draw.ellipse([t[0] - 3, t[1] - 3, t[0] + 3, t[1] + 3], fill=(255, 40, 40))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--faces", type=int, default=len(FACES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sheet", type=Path, help="write the layers, regions and pairs as one PNG here")
    args = p.parse_args(argv)
    cases = build_cases(args.faces, args.seed)
    tiles = []
    for c in cases:
        x, y, w, h = c.region
        print(
            f"{c.name:42s} face {c.face_size:3d} px  layer {c.layer.shape[1]}x{c.layer.shape[0]}  "
            f"region {x},{y},{w},{h}  {', '.join(c.parts)}  ({c.licence})"
        )
        img = Image.fromarray(c.layer)
        ImageDraw.Draw(img).rectangle([x, y, x + w - 1, y + h - 1], outline=(255, 255, 255), width=2)
        draw_pairs(img, c.pairs)
        img.thumbnail((320, 320))
        tiles.append(img)
    if args.sheet and tiles:
        cols = 6
        sheet = Image.new("RGBA", (cols * 320, -(-len(tiles) // cols) * 320), (40, 40, 40, 255))
        for i, t in enumerate(tiles):
            sheet.alpha_composite(t, ((i % cols) * 320, (i // cols) * 320))
        sheet.save(args.sheet)
        print(f"wrote {args.sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
