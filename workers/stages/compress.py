"""The usage copy's encoding, chosen by what is on the page (the master stays as scanned).

- colour on the page (a red stamp, a coloured form): RGB, stored as JPEG;
- grey pictures (a photo, shading): greyscale JPEG;
- faint ink that bilevel would lose (a pencil note, a light signature, a faded copy): greyscale JPEG;
- otherwise a text page: bilevel, stored as CCITT G4 (lossless for 1-bit, a tenth of a JPEG's size).

Bilevel is made against the paper's own local brightness (uneven light and paper tone are divided
out first), so faint bleed-through stays white and thin strokes stay whole. Strokes lighter than that
threshold but still clearly darker than the paper (a pencil line is ~20 % darker, bleed-through ~10 %)
would vanish from a bilevel copy, so a page with enough of them is kept in grey (DA/T 31: the copy
shows the original's content).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from workers.stages.ink import paper_level

COLOUR_CHROMA = 60  # max-min of R, G, B (0..255) on a smoothed page: a stamp's red is > 100, paper tint < 25
COLOUR_SHARE = 0.0005  # share of the page that must be that colourful
PICTURE_SHARE = 0.01  # share of the page covered by solid mid-tones (not stroke edges) that makes it a picture
BILEVEL_DARKER_THAN = 0.62  # ink is this much of the local paper brightness or darker
FAINT_DARKER_THAN = 0.86  # faint ink (pencil ~0.8): darker than this, lighter than the bilevel threshold;
# bleed-through from the back (~0.9 and lighter) and paper grain stay above it
FAINT_STROKE_PX = 8  # half-scale pixels a faint mark must join up to (noise speckles are smaller)
FAINT_SHARE = 0.0001  # share of the page's inside such marks must cover: a pencilled character or two
FAINT_SHEET = 0.8  # of the page's median paper level: brighter is the sheet, darker is scanner backing
FAINT_MARGIN = 0.01  # of the short side: the sheet's very edge (shadow, backing left by the crop) is no ink


@dataclass(frozen=True)
class Encoding:
    kind: str  # "bilevel", "grey" or "colour"
    colour_share: float
    picture_share: float
    faint_share: float = 0.0  # share of the page in faint strokes that bilevel would drop
    reason: str = "text"  # why: "colour", "picture", "faint_ink", "text", or "bilevel_scan" (already 1-bit)


def choose_encoding(image: Image.Image) -> Encoding:
    rgb = np.asarray(image.convert("RGB"))
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA).astype(np.int16)
    chroma = small.max(axis=2) - small.min(axis=2)
    colour = float((chroma > COLOUR_CHROMA).mean())
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    half = cv2.resize(grey, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    paper = paper_level(half)
    norm = half.astype(np.float32) / np.maximum(paper, 1)
    mid = ((norm > 0.3) & (norm < 0.85)).astype(np.uint8)
    solid = cv2.morphologyEx(mid, cv2.MORPH_OPEN, np.ones((9, 9), np.uint8))  # stroke edges are thinner
    picture = float(solid.mean())
    if colour > COLOUR_SHARE:
        return Encoding("colour", colour, picture, reason="colour")
    if picture > PICTURE_SHARE:
        return Encoding("grey", colour, picture, reason="picture")
    faint = faint_share(norm, paper)
    if faint > FAINT_SHARE:
        return Encoding("grey", colour, picture, faint, reason="faint_ink")
    return Encoding("bilevel", colour, picture, faint)


def faint_share(norm: np.ndarray, paper: np.ndarray) -> float:
    """Share of the sheet in faint strokes: pixels clearly darker than the paper (``norm``: half-scale
    brightness over the local ``paper`` level) but lighter than the bilevel threshold, away from the dark
    print (whose soft edges are as light), from the sheet's edge and from scanner backing left around it
    (its noise is dark), joined into marks larger than noise speckles. Under FAINT_SHARE it is the share
    of such pixels, speckles and all (an upper bound, found cheaply)."""
    dark = (norm < BILEVEL_DARKER_THAN).astype(np.uint8)
    sheet = paper > FAINT_SHEET * float(np.median(paper[::8, ::8]))
    faint = (norm < FAINT_DARKER_THAN) & sheet & (cv2.dilate(dark, np.ones((5, 5), np.uint8)) == 0)
    h, w = norm.shape
    m = max(2, round(FAINT_MARGIN * min(h, w)))
    inside = faint[m : h - m, m : w - m]
    candidates = float(np.count_nonzero(inside)) / max(inside.size, 1)
    if candidates <= FAINT_SHARE:  # too few even with the speckles: spare the component count (~25 ms)
        return candidates
    count, _, stats, _ = cv2.connectedComponentsWithStats(inside.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    return float(areas[areas >= FAINT_STROKE_PX].sum() / inside.size)


def binarise(image: Image.Image) -> Image.Image:
    """1-bit page: black where the print is clearly darker than the paper around it."""
    grey = np.asarray(image.convert("L"))
    ink = grey.astype(np.float32) < BILEVEL_DARKER_THAN * paper_level(grey)
    return Image.fromarray(np.where(ink, 0, 255).astype(np.uint8)).convert("1", dither=Image.Dither.NONE)


def usage_image(image: Image.Image) -> tuple[Image.Image, Encoding]:
    """The image to put in the usage PDF, and why it was encoded so."""
    if image.mode == "1":
        return image, Encoding("bilevel", 0.0, 0.0, reason="bilevel_scan")
    encoding = choose_encoding(image)
    if encoding.kind == "bilevel":
        return binarise(image), encoding
    if encoding.kind == "grey":
        return image.convert("L"), encoding
    return image.convert("RGB"), encoding
