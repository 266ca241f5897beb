"""The usage copy's encoding, chosen by what is on the page (the master stays as scanned).

- colour on the page (a red stamp, a coloured form): RGB, stored as JPEG;
- grey pictures (a photo, shading): greyscale JPEG;
- otherwise a text page: bilevel, stored as CCITT G4 (lossless for 1-bit, a tenth of a JPEG's size).

Bilevel is made against the paper's own local brightness (uneven light and paper tone are divided
out first), so faint bleed-through stays white and thin strokes stay whole.
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


@dataclass(frozen=True)
class Encoding:
    kind: str  # "bilevel", "grey" or "colour"
    colour_share: float
    picture_share: float


def choose_encoding(image: Image.Image) -> Encoding:
    rgb = np.asarray(image.convert("RGB"))
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA).astype(np.int16)
    chroma = small.max(axis=2) - small.min(axis=2)
    colour = float((chroma > COLOUR_CHROMA).mean())
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    half = cv2.resize(grey, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    norm = half.astype(np.float32) / np.maximum(paper_level(half), 1)
    mid = ((norm > 0.3) & (norm < 0.85)).astype(np.uint8)
    solid = cv2.morphologyEx(mid, cv2.MORPH_OPEN, np.ones((9, 9), np.uint8))  # stroke edges are thinner
    picture = float(solid.mean())
    if colour > COLOUR_SHARE:
        return Encoding("colour", colour, picture)
    if picture > PICTURE_SHARE:
        return Encoding("grey", colour, picture)
    return Encoding("bilevel", colour, picture)


def binarise(image: Image.Image) -> Image.Image:
    """1-bit page: black where the print is clearly darker than the paper around it."""
    grey = np.asarray(image.convert("L"))
    ink = grey.astype(np.float32) < BILEVEL_DARKER_THAN * paper_level(grey)
    return Image.fromarray(np.where(ink, 0, 255).astype(np.uint8)).convert("1", dither=Image.Dither.NONE)


def usage_image(image: Image.Image) -> tuple[Image.Image, Encoding]:
    """The image to put in the usage PDF, and why it was encoded so."""
    if image.mode == "1":
        return image, Encoding("bilevel", 0.0, 0.0)
    encoding = choose_encoding(image)
    if encoding.kind == "bilevel":
        return binarise(image), encoding
    if encoding.kind == "grey":
        return image.convert("L"), encoding
    return image.convert("RGB"), encoding
