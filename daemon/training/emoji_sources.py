"""Gather permissively licensed face emoji from the package registries (apt and npm).

Why emoji: they are expressive faces (eyes, mouths, brows, ears worth dragging) whose licences allow the trained
model to ship with the project. Every source below is recorded, with its licence, in the project's NOTICE file.
Share-alike art (OpenMoji) is left out on purpose.

Sources:
- Noto Color Emoji (Debian `fonts-noto-color-emoji`, Apache-2.0 / OFL-1.1): PNG bitmaps in the font's CBDT table.
- Fluent Emoji 3D (npm `@lobehub/fluent-emoji-3d`, MIT, art by Microsoft): 256x256 WebP named by code point.
- Twemoji (npm `emoji-datasource-twitter`, CC-BY-4.0, art by Twitter/X and contributors): 64x64 PNG.
- Noto emoji PNGs (npm `emoji-datasource-google`, Apache-2.0): 64x64 PNG.

The npm `emoji.json` (shared by the emoji-datasource packages) names every emoji's category, which is what the
face filter reads.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

NOTO_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
NPM_PACKAGES = {
    "fluent3d": "@lobehub/fluent-emoji-3d",
    "twitter": "emoji-datasource-twitter",
    "google": "emoji-datasource-google",
}
# Google's npm PNGs are the same Noto art as the font, so they are off by default (they would double its weight).
DEFAULT_SOURCES = ("noto", "fluent3d", "twitter")
SOURCE_LICENCES = {
    "noto": "Noto Color Emoji (Debian fonts-noto-color-emoji), Apache-2.0 / SIL OFL-1.1, Google",
    "fluent3d": "Fluent Emoji 3D (npm @lobehub/fluent-emoji-3d), MIT, Microsoft",
    "twitter": "Twemoji (npm emoji-datasource-twitter), CC-BY-4.0, Twitter/X and contributors",
    "google": "Noto Emoji PNG (npm emoji-datasource-google), Apache-2.0, Google",
}

# Single code points of people's faces/heads (the ZWJ variants and skin tones are left out: one style a source).
PERSON_FACES = {
    "1F476",
    "1F9D2",
    "1F466",
    "1F467",
    "1F9D1",
    "1F468",
    "1F469",
    "1F9D3",
    "1F474",
    "1F475",
    "1F471",
    "1F9D4",
}
# Smileys that are not faces at all.
NOT_FACES = {"1F47E"}  # alien monster (a space-invader sprite)


@dataclass(frozen=True)
class EmojiEntry:
    """One face emoji as the catalogue names it."""

    unified: str  # "1F600" or "263A-FE0F"
    name: str
    subcategory: str


@dataclass
class EmojiImage:
    """One emoji picture from one source (RGBA)."""

    source: str
    unified: str
    image: Image.Image


def is_face(entry: dict) -> bool:
    """Faces, people's faces and animal faces: the parts a drag moves are eyes, mouths, brows and ears."""
    unified, sub, name = entry["unified"], entry.get("subcategory", ""), (entry.get("name") or "").upper()
    if unified in NOT_FACES:
        return False
    if sub.startswith("face-") or sub in ("cat-face", "monkey-face"):
        return True
    if sub.startswith("animal-") and name.endswith(" FACE"):
        return True
    return sub == "person" and unified in PERSON_FACES


def face_entries(catalogue: list[dict]) -> list[EmojiEntry]:
    """The face emoji of an emoji-datasource `emoji.json` catalogue, in catalogue order."""
    return [EmojiEntry(e["unified"], e.get("name") or "", e.get("subcategory", "")) for e in catalogue if is_face(e)]


def _codepoints(unified: str) -> list[int]:
    return [int(p, 16) for p in unified.split("-")]


# ----------------------------------------------------------------------------------------------------------
# Fetching from the registries (needs network; the result is cached under the cache folder).


def npm_pack(package: str, cache: Path) -> Path:
    """The package's tarball in `cache`, fetched with `npm pack` when absent."""
    cache.mkdir(parents=True, exist_ok=True)
    stem = package.lstrip("@").replace("/", "-")
    found = sorted(cache.glob(f"{stem}-[0-9]*.tgz"))
    if found:
        return found[-1]
    if shutil.which("npm") is None:
        raise RuntimeError("npm is needed to fetch the emoji packages (apt-get install npm)")
    out = subprocess.run(["npm", "pack", package], cwd=cache, check=True, capture_output=True, text=True)
    return cache / out.stdout.strip().splitlines()[-1]


def ensure_noto_font() -> Path:
    """The Noto Color Emoji font, installed with apt-get when absent (root needed)."""
    if not NOTO_FONT.exists():
        if shutil.which("apt-get") is None:
            raise RuntimeError(f"{NOTO_FONT} is missing; install the Debian package fonts-noto-color-emoji")
        install = ["apt-get", "install", "-y", "--no-install-recommends", "fonts-noto-color-emoji"]
        if subprocess.run(install, capture_output=True).returncode != 0:
            # A fresh machine may have empty package lists.
            subprocess.run(["apt-get", "update"], check=True, capture_output=True)
            subprocess.run(install, check=True, capture_output=True)
    return NOTO_FONT


# ----------------------------------------------------------------------------------------------------------
# Reading each source.


def read_catalogue(tgz: Path) -> list[dict]:
    with tarfile.open(tgz) as tf:
        member = tf.extractfile("package/emoji.json")
        assert member is not None
        return json.load(member)


def read_datasource(tgz: Path, vendor: str, wanted: list[EmojiEntry]) -> Iterator[EmojiImage]:
    """64x64 PNGs of an emoji-datasource-<vendor> tarball."""
    catalogue = {e["unified"]: e for e in read_catalogue(tgz)}
    with tarfile.open(tgz) as tf:
        names = set(tf.getnames())
        for entry in wanted:
            e = catalogue.get(entry.unified)
            if e is None or not e.get(f"has_img_{vendor}"):
                continue
            path = f"package/img/{vendor}/64/{e['image']}"
            if path not in names:
                continue
            data = tf.extractfile(path).read()  # type: ignore[union-attr]
            yield EmojiImage(vendor, entry.unified, Image.open(io.BytesIO(data)).convert("RGBA"))


def read_fluent3d(tgz: Path, wanted: list[EmojiEntry]) -> Iterator[EmojiImage]:
    """Fluent 3D WebPs, named by lower-case code points joined with '-' (with or without FE0F)."""
    with tarfile.open(tgz) as tf:
        names = set(tf.getnames())
        for entry in wanted:
            full = entry.unified.lower()
            bare = "-".join(p for p in full.split("-") if p != "fe0f")
            for stem in (full, bare, bare + "-fe0f"):
                path = f"package/assets/{stem}.webp"
                if path in names:
                    data = tf.extractfile(path).read()  # type: ignore[union-attr]
                    yield EmojiImage("fluent3d", entry.unified, Image.open(io.BytesIO(data)).convert("RGBA"))
                    break


def read_noto_font(font_path: Path, wanted: list[EmojiEntry]) -> Iterator[EmojiImage]:
    """Bitmaps of single-code-point emoji from the font's CBDT table (the largest strike)."""
    from fontTools.ttLib import TTFont

    font = TTFont(str(font_path))
    cmap = font.getBestCmap()
    strikes = font["CBDT"].strikeData
    strike = max(strikes, key=len)
    for entry in wanted:
        cps = [c for c in _codepoints(entry.unified) if c != 0xFE0F]
        if len(cps) != 1 or cps[0] not in cmap:
            continue
        glyph = strike.get(cmap[cps[0]])
        if glyph is None:
            continue
        glyph.decompile()
        yield EmojiImage("noto", entry.unified, Image.open(io.BytesIO(glyph.imageData)).convert("RGBA"))


def gather(cache: Path, sources: tuple[str, ...] = DEFAULT_SOURCES) -> list[EmojiImage]:
    """Every face emoji of the chosen sources, fetching what is missing into `cache` (apt + npm)."""
    twitter_tgz = npm_pack(NPM_PACKAGES["twitter"], cache)
    wanted = face_entries(read_catalogue(twitter_tgz))
    images: list[EmojiImage] = []
    for source in sources:
        if source == "noto":
            images += read_noto_font(ensure_noto_font(), wanted)
        elif source == "fluent3d":
            images += read_fluent3d(npm_pack(NPM_PACKAGES["fluent3d"], cache), wanted)
        elif source in ("twitter", "google"):
            images += read_datasource(npm_pack(NPM_PACKAGES[source], cache), source, wanted)
        else:
            raise ValueError(f"unknown emoji source {source!r}")
    return images
