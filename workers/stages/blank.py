"""Blank-sheet detection: a sheet is blank when nothing on it looks like print or writing.

A pure function, image in, verdict out. It runs after orientation, deskew and border crop, but does
not rely on them: what is left of the scanner's dark backing at the edges, punch holes and staple
marks are recognised and set aside, and faint bleed-through from the back of the sheet is too light
to count. What remains (print, a stamp, a short handwritten note, a signature) makes the page not blank.

The method, on a copy at about 150 dpi:

1. Paper level: a large-scale background estimate (a morphological closing of a block-mean image),
   so paper tone, uneven light and bleed-through cancel out.
2. Dark pixels: clearly darker than the local paper. Print and handwriting are at least ~45 % darker
   than their paper even after blur; bleed-through is at most ~10 %, scanner noise a few per cent.
3. Connected dark components, then set aside: backing (touches the image border and lies in the outer
   band), punch holes (solid round blobs of hole size), staples (solid short bars near an edge) and
   specks (smaller than a full stop).
4. The rest are marks. The page is blank when there are fewer than ``max_marks`` of them *and* they
   cover less than ``threshold`` of the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

WORK_DPI = 150.0  # enough for pen strokes of 0.3 mm; 4x fewer pixels than a 300 dpi scan
_MM = 25.4  # mm per inch

# Darkness = 1 - pixel / local paper. Bleed-through stays under ~0.12 (with noise); ink is well above 0.35.
INK_DARKNESS = 0.20
BACKING_ABSOLUTE = 0.45  # darker than this share of the paper level: backing or a hole, whatever the local estimate

BACKGROUND_BLOCK_MM = 1.4  # block means that the paper estimate is made of
BACKGROUND_WINDOW_MM = 13.0  # dark features narrower than this (text, holes) do not pull the paper level down

SPECK_MM2 = 0.12  # smaller dark blobs are dust and noise, not marks (a printed full stop is ~0.3 mm²)
EDGE_MM = 1.5  # marks this close to the border are the sheet's edge or backing, not writing
OUTER_BAND = 0.17  # share of each side in which scanner backing may lie on an uncropped scan
HOLE_DIAMETER_MM = (3.0, 12.0)  # filing punches make 4-8 mm holes; room for a wrong dpi
STAPLE_LENGTH_MM = (4.0, 25.0)
STAPLE_WIDTH_MM = 3.0
STAPLE_EDGE_MM = 50.0  # staples sit along an edge, not in the middle of a page


@dataclass(frozen=True)
class BlankVerdict:
    blank: bool
    ink_ratio: float  # share of the page covered by text-like marks (backing, holes, staples, specks left out)
    marks: int = 0  # number of text-like dark components
    ignored: int = 0  # components set aside as backing, punch holes or staples
    reason: str = ""


@dataclass(frozen=True)
class _Components:
    """Dark components at working resolution, classified."""

    scale: float  # working pixels per source pixel
    mm_per_px: float  # at working resolution
    shape: tuple[int, int]
    areas: np.ndarray  # of the text-like marks, in working pixels
    ignored: dict[str, int]


def _grey(image: Image.Image) -> np.ndarray:
    """8-bit grey; 16-bit and float images are scaled so that their brightest pixel is white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(image, dtype=np.float32)
        top = float(a.max()) or 1.0
        return np.clip(a * (255.0 / top), 0, 255).astype(np.uint8)
    if image.mode != "L":
        image = image.convert("L")
    return np.asarray(image)


def _paper_level(work: np.ndarray, block: int, window: int) -> np.ndarray:
    """The paper's brightness around each pixel: closing of block means, so dark things smaller than the window vanish."""
    h, w = work.shape
    bh, bw = max(1, h // block), max(1, w // block)
    small = cv2.resize(work, (bw, bh), interpolation=cv2.INTER_AREA)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (window, window))
    closed = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REPLICATE)
    closed = cv2.blur(closed, (3, 3))
    return cv2.resize(closed, (w, h), interpolation=cv2.INTER_LINEAR)


def _analyse(image: Image.Image, dpi: float) -> _Components:
    grey = _grey(image)
    dpi = float(dpi) if dpi and dpi > 0 else 300.0
    scale = min(1.0, WORK_DPI / dpi)
    if scale < 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        work = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    else:
        work = grey
    work_dpi = dpi * scale
    mm_per_px = _MM / work_dpi
    h, w = work.shape

    block = max(2, round(BACKGROUND_BLOCK_MM / mm_per_px))
    window = max(3, round(BACKGROUND_WINDOW_MM / (block * mm_per_px)) | 1)
    paper = _paper_level(work, block, window).astype(np.float32)
    level = float(np.percentile(work[:: max(1, h // 256), :: max(1, w // 256)], 95))
    black = work < level * BACKING_ABSOLUTE
    dark = (work.astype(np.float32) < paper * (1.0 - INK_DARKNESS)) | black
    count, labels, stats, _ = cv2.connectedComponentsWithStats(dark.view(np.uint8), connectivity=8)
    return _classify(labels, stats[1:], count - 1, black, scale, mm_per_px)


def _classify(
    labels: np.ndarray, stats: np.ndarray, n: int, black: np.ndarray, scale: float, mm_per_px: float
) -> _Components:
    h, w = labels.shape
    x, y, bw, bh, area = (stats[:, i].astype(np.int64) for i in range(5))
    px_mm2 = mm_per_px * mm_per_px
    keep = area * px_mm2 >= SPECK_MM2
    ignored = {"backing": 0, "hole": 0, "staple": 0}

    # Backing: at the border, and either (almost) all in the outer band or (mostly) backing-dark.
    e = max(1, round(EDGE_MM / mm_per_px))
    border = keep & ((x < e) | (y < e) | (x + bw > w - e) | (y + bh > h - e))
    if border.any():
        oy, ox = round(h * OUTER_BAND), round(w * OUTER_BAND)
        inside = np.bincount(labels[oy : h - oy, ox : w - ox].ravel(), minlength=n + 1)[1:]
        blackish = np.bincount(labels[black], minlength=n + 1)[1:]
        backing = border & ((inside <= 0.05 * area) | (blackish >= 0.8 * area))
        ignored["backing"] = int(backing.sum())
        keep &= ~backing

    # Punch holes: solid, round, of hole size.
    diameter = np.sqrt(4 * area / math.pi) * mm_per_px
    aspect = np.maximum(bw, bh) / np.maximum(1, np.minimum(bw, bh))
    fill = area / np.maximum(1, bw * bh)
    hole = (
        keep & (diameter >= HOLE_DIAMETER_MM[0]) & (diameter <= HOLE_DIAMETER_MM[1]) & (aspect <= 1.6) & (fill >= 0.6)
    )
    ignored["hole"] = int(hole.sum())
    keep &= ~hole

    # Staples: a solid short bar near an edge.
    edge = STAPLE_EDGE_MM / mm_per_px
    near_edge = (x < edge) | (y < edge) | (x + bw > w - edge) | (y + bh > h - edge)
    long_side = np.maximum(bw, bh) * mm_per_px
    candidates = np.flatnonzero(
        keep & near_edge & (long_side >= STAPLE_LENGTH_MM[0] * 0.7) & (long_side <= STAPLE_LENGTH_MM[1] * 1.05)
    )
    for i in candidates:
        sub = (labels[y[i] : y[i] + bh[i], x[i] : x[i] + bw[i]] == i + 1).view(np.uint8)
        pts = cv2.findNonZero(sub)
        (_, _), (rw, rh), _ = cv2.minAreaRect(pts)
        length, width = max(rw, rh) * mm_per_px, max(1.0, min(rw, rh)) * mm_per_px
        solid = area[i] * px_mm2 / max(1e-6, length * width)
        if (
            STAPLE_LENGTH_MM[0] <= length <= STAPLE_LENGTH_MM[1]
            and width <= STAPLE_WIDTH_MM
            and length / width >= 2.5
            and solid >= 0.55
        ):
            keep[i] = False
            ignored["staple"] += 1
    return _Components(scale, mm_per_px, (h, w), area[keep], ignored)


def detect_blank(
    image: Image.Image, *, threshold: float = 2e-5, max_marks: int = 3, dpi: float = 300.0
) -> BlankVerdict:
    """Is this sheet blank? ``dpi`` is the image's resolution (physical sizes decide what is a hole or a speck).

    Blank when fewer than ``max_marks`` text-like marks remain and they cover less than ``threshold``
    of the page; a 16 pt character covers about 1e-4 of an A4 page, a signature a few times that.
    """
    if image.width < 8 or image.height < 8:
        return BlankVerdict(True, 0.0, 0, 0, "too small to hold anything")
    comps = _analyse(image, dpi)
    h, w = comps.shape
    ink = float(comps.areas.sum()) / float(h * w)
    marks = int(comps.areas.size)
    ignored = sum(comps.ignored.values())
    blank = marks < max_marks and ink < threshold
    if blank:
        what = [f"{v} {k}" for k, v in comps.ignored.items() if v]
        reason = "no marks" + (f" (set aside: {', '.join(what)})" if what else "")
    else:
        reason = f"{marks} marks covering {ink:.2e} of the page"
    return BlankVerdict(blank, ink, marks, ignored, reason)
