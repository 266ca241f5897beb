"""Blank-sheet detection: a sheet is blank when nothing on it looks like print or writing.

A pure function, image in, verdict out. It runs after orientation, deskew and border crop, but does
not rely on them: what is left of the scanner's dark backing at the edges, punch holes and staple
marks are recognised and set aside, and faint bleed-through from the back of the sheet is too light
to count. What remains (print, a stamp, a short handwritten note, a signature) makes the page not blank.

The method, on a copy at about 150 dpi:

1. Paper level: a large-scale background estimate (a morphological closing of a block-mean image),
   so paper tone and uneven light cancel out.
2. Dark pixels: at least INK_DARKNESS darker than the local paper, or backing-dark in absolute terms.
   Measured on make_corpus pages: bleed-through (with noise sigma 10 and blur) reaches ~0.12; print,
   brush notes and pen signatures stay detectable up to a threshold of 0.35-0.45.
3. Connected dark components, then set aside: backing (at the image border, and lying in the outer
   band or backing-dark), scanner streaks (a thin straight line the length of the sheet), punch holes
   (one to three thick solid blobs of punch size), staples (short straight bars near an edge) and
   specks (smaller than a full stop).
4. The rest are marks. The page is blank when there are fewer than ``max_marks`` of them *and* they
   cover less than ``threshold`` of the page.

The physical sizes (holes, specks, strokes) come from ``dpi``: pass the scan's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

WORK_DPI = 150.0  # enough for pen strokes of 0.3 mm; 4x fewer pixels than a 300 dpi scan
_MM = 25.4  # mm per inch

# Darkness = 1 - pixel / local paper. Bleed-through (with noise and blur) makes marks only below ~0.12; short notes
# and signatures, down to a 0.17 mm line of grey 120 or a brush note of grey 130 on paper 240, are still found at 0.30.
INK_DARKNESS = 0.20
BACKING_ABSOLUTE = 0.45  # darker than this share of the paper level: backing or a hole, whatever the local estimate

BACKGROUND_BLOCK_MM = 1.4  # block means that the paper estimate is made of
BACKGROUND_WINDOW_MM = 13.0  # dark features narrower than this (text, holes) do not pull the paper level down

SPECK_MM2 = 0.12  # smaller dark blobs are dust and noise, not marks (a printed full stop is ~0.3 mm²)
EDGE_MM = 1.5  # marks this close to the border are the sheet's edge or backing, not writing
OUTER_BAND = 0.17  # share of each side in which scanner backing may lie on an uncropped scan
STREAK_SPAN = 0.9  # a scanner streak runs (nearly) the whole length of the sheet...
STREAK_MM = 1.5  # ... and is a thin straight line
HOLE_DIAMETER_MM = (3.0, 12.0)  # filing punches make 4-8 mm holes; room for a wrong dpi
HOLE_CORE_MM = 2.4  # thicker than any pen or brush stroke, thinner than any punch hole
HOLE_CORE_SHARE = 0.85
STAPLE_STRAIGHT = 1.5  # a staple's bounding-box width is at most this times its mean thickness
STAPLE_LENGTH_MM = (4.0, 25.0)
STAPLE_WIDTH_MM = 3.0
STAPLE_EDGE_MM = 50.0  # staples sit along an edge, not in the middle of a page


@dataclass(frozen=True)
class BlankVerdict:
    blank: bool
    ink_ratio: float  # share of the page covered by text-like marks (backing, holes, staples, specks left out)
    marks: int = 0  # number of text-like dark components
    ignored: int = 0  # components set aside as backing, scanner streaks, punch holes or staples
    reason: str = ""


@dataclass(frozen=True)
class _Components:
    """Dark components at working resolution, classified."""

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
    """The paper's brightness around each pixel: a closing of block means, which drops dark things narrower
    than the window (print, writing, holes) and follows paper tone and uneven light."""
    h, w = work.shape
    bh, bw = max(1, h // block), max(1, w // block)
    small = cv2.resize(work, (bw, bh), interpolation=cv2.INTER_AREA)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (window, window))
    closed = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REPLICATE)
    closed = cv2.blur(closed, (3, 3))
    return cv2.resize(closed, (w, h), interpolation=cv2.INTER_LINEAR)


def _analyse(image: Image.Image, dpi: float) -> _Components:
    grey = _grey(image)
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
    return _classify(labels, stats[1:], count - 1, black, mm_per_px)


def _classify(labels: np.ndarray, stats: np.ndarray, n: int, black: np.ndarray, mm_per_px: float) -> _Components:
    h, w = labels.shape
    x, y, bw, bh, area = (stats[:, i].astype(np.int64) for i in range(5))
    px_mm2 = mm_per_px * mm_per_px
    keep = area * px_mm2 >= SPECK_MM2
    ignored = {"backing": 0, "streak": 0, "hole": 0, "staple": 0}

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

    # Streaks: a sheet-fed scanner with dirt on its glass draws a thin straight line along the whole sheet.
    for i in np.flatnonzero(keep & ((bh >= STREAK_SPAN * h) | (bw >= STREAK_SPAN * w))):
        sub = (labels[y[i] : y[i] + bh[i], x[i] : x[i] + bw[i]] == i + 1).view(np.uint8)
        (_, _), (rw, rh), _ = cv2.minAreaRect(cv2.findNonZero(sub))
        long_px, wide_px = max(rw, rh) + 1, min(rw, rh) + 1
        thickness = area[i] / long_px
        if thickness * mm_per_px <= STREAK_MM and wide_px <= STAPLE_STRAIGHT * thickness + 1:
            keep[i] = False
            ignored["streak"] += 1

    # Punch holes: one to three holes of filing-punch size, touching or overlapping. They are thick: an opening
    # with a disc of HOLE_CORE_MM keeps (almost) all of them, and wipes out pen and brush strokes entirely.
    # Staples: a short straight bar near an edge.
    mm = mm_per_px
    long_side, short_side = np.maximum(bw, bh) * mm, np.minimum(bw, bh) * mm
    fill = area / np.maximum(1, bw * bh)
    hole_like = (short_side >= HOLE_DIAMETER_MM[0] * 0.9) & (long_side <= 3.2 * HOLE_DIAMETER_MM[1]) & (fill >= 0.4)
    edge = STAPLE_EDGE_MM / mm
    near_edge = (x < edge) | (y < edge) | (x + bw > w - edge) | (y + bh > h - edge)
    staple_like = near_edge & (long_side >= STAPLE_LENGTH_MM[0] * 0.7) & (long_side <= STAPLE_LENGTH_MM[1] * 1.05)
    core = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (round(HOLE_CORE_MM / mm) | 1,) * 2)
    for i in np.flatnonzero(keep & (hole_like | staple_like)):
        sub = (labels[y[i] : y[i] + bh[i], x[i] : x[i] + bw[i]] == i + 1).view(np.uint8)
        pts = cv2.findNonZero(sub)
        (_, _), (rw, rh), _ = cv2.minAreaRect(pts)
        length, width = (max(rw, rh) + 1) * mm, (min(rw, rh) + 1) * mm
        if hole_like[i] and HOLE_DIAMETER_MM[0] <= width <= HOLE_DIAMETER_MM[1] and length <= 3.2 * width:
            pad = core.shape[0]
            opened = cv2.morphologyEx(
                cv2.copyMakeBorder(sub, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0), cv2.MORPH_OPEN, core
            )
            if np.count_nonzero(opened) >= HOLE_CORE_SHARE * area[i]:
                keep[i] = False
                ignored["hole"] += 1
                continue
        if staple_like[i] and STAPLE_LENGTH_MM[0] <= length <= STAPLE_LENGTH_MM[1] and width <= STAPLE_WIDTH_MM:
            # Straight: as wide as it is thick (area / length); a curved or branching stroke is much wider.
            long_px, wide_px = max(rw, rh) + 1, min(rw, rh) + 1
            if long_px >= 2.5 * wide_px and wide_px <= STAPLE_STRAIGHT * area[i] / long_px + 1:
                keep[i] = False
                ignored["staple"] += 1
    return _Components(mm_per_px, (h, w), area[keep], ignored)


def detect_blank(
    image: Image.Image,
    *,
    threshold: float = 2e-5,
    max_marks: int = 3,
    dpi: float | tuple[float, float] = 300.0,
) -> BlankVerdict:
    """Is this sheet blank? ``dpi`` is the image's resolution, a number or (x, y) as the load stage gives it.

    Blank when fewer than ``max_marks`` text-like marks remain and they cover less than ``threshold``
    of the page. For scale: a two-character note covers about 2e-4 of an A4 page, a signature 1.5e-4 or
    more; two specks of dust a few 1e-6.
    """
    if isinstance(dpi, tuple):
        dpi = (float(dpi[0]) + float(dpi[1])) / 2
    dpi = float(dpi) if dpi and dpi > 0 else 300.0
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
