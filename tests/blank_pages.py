"""Sheets for the blank-detector tests, made the way ../shared/tools/make_corpus.py makes scanner pages.

Blank sheets with bleed-through, punch holes and staples; text pages; and the marks a clerk leaves on an
otherwise empty sheet (a short handwritten note, a signature), all through make_corpus's scanner model.
"""

from __future__ import annotations

import importlib.util
import math
import random
import sys
from types import ModuleType

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from tests.conftest import SHARED


def _make_corpus() -> ModuleType:
    path = SHARED / "tools" / "make_corpus.py"
    spec = importlib.util.spec_from_file_location("make_corpus", path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_corpus", module)
    spec.loader.exec_module(module)
    return module


mc = _make_corpus()
FONT_NAMES = list(mc.FONTS)


def blank_sheet(seed: int, *, bleed: bool = True) -> tuple[Image.Image, int]:
    """make_corpus's blank sheet: paper tone, bleed-through of a random record (if asked), 0-2 holes."""
    rng = random.Random(seed)
    text = mc.texts_for(1, rng)[0]
    return mc.blank_sheet(rng, mirror_of=text if bleed else None, font_name=rng.choice(FONT_NAMES))


def strong_bleed_sheet(seed: int, *, paper: int = 250, ink: int = 10, strength: float = 0.09) -> Image.Image:
    """The worst bleed-through make_corpus draws: the darkest print on the lightest paper, at 9 % of its contrast."""
    rng = random.Random(seed)
    font, g = mc.layout("serif", 300)
    lines = mc.wrap(mc.land_contract(rng), font, g["size"][0] - 2 * g["left"])[:22]
    ghost = mc.draw_lines(lines, "serif", 300, paper, ink).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    faint = paper - (paper - np.asarray(ghost, dtype=np.float32)) * strength
    return Image.fromarray(np.clip(faint, 0, 255).astype(np.uint8))


def text_page(seed: int, *, dpi: int = 300, font: str | None = None) -> tuple[Image.Image, int]:
    rng = random.Random(seed)
    text = mc.texts_for(1, rng)[0]
    page, _, paper = mc.render(text, font or rng.choice(FONT_NAMES), rng, dpi=dpi)
    return page, paper


def scan(page: Image.Image, paper: int, seed: int, *, angle: float = 0.0, turn: int = 0) -> Image.Image:
    """make_corpus's scanner: skew, dark backing around the sheet, uneven light, noise, blur."""
    return mc.degrade(page, paper, random.Random(seed), angle, turn)


def crop(scanned: Image.Image, *, band: int = 0, side: str = "left", edge: int = 2) -> Image.Image:
    """A conservative border crop: the sheet plus ``edge`` px of backing all round and ``band`` px more on one side."""
    a = np.asarray(scanned.convert("L"))
    rows = np.flatnonzero((a > 140).mean(axis=1) > 0.5)
    cols = np.flatnonzero((a > 140).mean(axis=0) > 0.5)
    left, top, right, bottom = cols[0] - edge, rows[0] - edge, cols[-1] + 1 + edge, rows[-1] + 1 + edge
    if side == "left":
        left -= band
    elif side == "right":
        right += band
    elif side == "top":
        top -= band
    else:
        bottom += band
    return scanned.crop((max(0, left), max(0, top), min(a.shape[1], right), min(a.shape[0], bottom)))


def handwrite(
    page: Image.Image,
    text: str,
    xy: tuple[int, int],
    *,
    pt: float = 18,
    ink: int | tuple[int, ...] = 60,
    dpi: int = 300,
    seed: int = 0,
) -> Image.Image:
    """Write ``text`` in a brush hand (AR PL UKai): characters of uneven size, tilt and baseline."""
    rng = random.Random(seed)
    path, index = mc.FONTS["kai"]
    page = page.copy()
    x, y = xy
    for ch in text:
        size = round(pt / 72 * dpi * rng.uniform(0.9, 1.1))
        font = ImageFont.truetype(path, size, index=index)
        tile = Image.new("L", (size * 2, size * 2), 0)
        ImageDraw.Draw(tile).text((size // 2, size // 2), ch, font=font, fill=255)
        tile = tile.rotate(rng.uniform(-7, 7), resample=Image.Resampling.BICUBIC)
        page.paste(ink, (x - size // 2, y - size // 2 + rng.randint(-size // 10, size // 10)), tile)
        x += round(size * rng.uniform(0.95, 1.15))
    return page


def signature(
    page: Image.Image,
    xy: tuple[int, int],
    *,
    length: int = 360,
    width: int = 3,
    ink: int | tuple[int, ...] = 50,
    seed: int = 0,
) -> Image.Image:
    """A scribbled signature: one quick zig-zag pen stroke ``length`` px long, with a flourish under it."""
    rng = random.Random(seed)
    x0, y0 = xy
    points = []
    for i in range(24):
        t = i / 23
        points.append((x0 + t * length, y0 + 40 * math.sin(t * 9 * math.pi) * rng.uniform(0.5, 1.0) - 25 * t))
    points += [(x0 + length * 1.05, y0 + 30), (x0 + length * 0.2, y0 + 45)]
    page = page.copy()
    ImageDraw.Draw(page).line(points, fill=ink, width=width, joint="curve")
    return page


def staple(
    page: Image.Image, xy: tuple[int, int], *, length: int = 140, width: int = 12, angle: float = 45, ink: int = 60
) -> Image.Image:
    """A staple seen from the back: a short dark bar, here at ``angle`` degrees near a corner."""
    page = page.copy()
    dx, dy = math.cos(math.radians(angle)) * length / 2, -math.sin(math.radians(angle)) * length / 2
    x, y = xy
    ImageDraw.Draw(page).line([(x - dx, y - dy), (x + dx, y + dy)], fill=ink, width=width)
    return page


def hole(page: Image.Image, xy: tuple[int, int], *, diameter: int = 70, ink: int = 35) -> Image.Image:
    """A punch hole that shows the dark scanner backing through it."""
    page = page.copy()
    x, y = xy
    ImageDraw.Draw(page).ellipse((x, y, x + diameter, y + diameter), fill=ink)
    return page


def streak(scanned: Image.Image, x: int, *, width: int = 3, ink: int = 110, slant: float = 3.0) -> Image.Image:
    """A sheet-fed scanner's streak (dirt on the glass): a thin line the whole length of the scan, slanted
    by ``slant`` degrees because deskew turned the page after the scanner drew it."""
    img = scanned.copy()
    drift = math.tan(math.radians(slant)) * img.height
    ImageDraw.Draw(img).line([(x, 0), (x + drift, img.height)], fill=ink, width=width)
    return img


def harsh(
    page: Image.Image, *, light: float = 0.12, noise: float = 10.0, blur: float = 1.1, seed: int = 0
) -> Image.Image:
    """The worst of make_corpus's scanner without the backing: 12 % light fall-off, noise sigma 10, blur."""
    a = np.asarray(page.convert("L"), dtype=np.float32)
    xx = np.linspace(0.0, 1.0, a.shape[1], dtype=np.float32)[None, :]
    a = a * (1 - light * xx) + np.random.default_rng(seed).normal(0, noise, a.shape).astype(np.float32)
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    return img.filter(ImageFilter.GaussianBlur(blur))


def at_dpi(page: Image.Image, dpi: int) -> Image.Image:
    """A 300 dpi sheet as a scanner set to ``dpi`` would have taken it."""
    w, h = page.size
    return page.resize((round(w * dpi / 300), round(h * dpi / 300)), Image.Resampling.LANCZOS)


def bilevel(image: Image.Image) -> Image.Image:
    """A 1-bit scan, as a scanner's bitonal mode makes it: a plain threshold, no dithering."""
    return image.convert("L").convert("1", dither=Image.Dither.NONE)
