"""Where the sheet is and where the ink is on it: the shared first look of the geometry stages.

Everything here works on a reduced copy (a quarter for the sheet, a half for the ink), which is enough
to place text lines to a fraction of a pixel of the full image by fitting many points.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

INK_DARKER_THAN = 0.6  # ink is at least 40 % darker than the paper around it; bleed-through is ~10 %
BLOB_FILL = 0.6
BLOB_MIN_IN = 0.1  # inches: a solid mark at least this wide and high is a blob, not print


@dataclass(frozen=True)
class InkMap:
    ink: np.ndarray  # bool, half scale: print on the sheet
    factor: float  # full-image pixels per ink-map pixel
    sheet: np.ndarray  # bool, quarter scale: the sheet (paper), holes filled
    backing: bool  # a dark scanner backing shows around the sheet

    def points(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ink pixel centres in full-image coordinates (x, y), evenly thinned to about ``limit``."""
        ys, xs = np.nonzero(self.ink)
        if limit and len(xs) > limit:
            step = len(xs) // limit
            xs, ys = xs[::step], ys[::step]
        return (xs + 0.5) * self.factor, (ys + 0.5) * self.factor


def grey_array(image: Image.Image) -> np.ndarray:
    if image.mode == "L":
        return np.asarray(image)
    return np.asarray(image.convert("L"))


def _odd(n: float) -> int:
    return max(3, int(n) // 2 * 2 + 1)


def quarter(grey: np.ndarray) -> np.ndarray:
    """A quarter-size copy (area-averaged): enough to find the sheet and the paper's brightness."""
    h, w = grey.shape
    return cv2.resize(grey, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)


def paper_level(
    grey: np.ndarray, *, dpi: float = 300, small: np.ndarray | None = None, size: tuple[int, int] | None = None
) -> np.ndarray:
    """The paper's own brightness at each pixel (of ``grey``, or at ``size`` = (w, h)), print removed:
    a grey closing wider than a character on a quarter-size copy (``small`` if already made)."""
    small = quarter(grey) if small is None else small
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (_odd(31 * dpi / 300),) * 2)
    closed = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel)
    target = size or (grey.shape[1], grey.shape[0])
    return cv2.resize(closed, target, interpolation=cv2.INTER_LINEAR).astype(np.float32)


def sheet_mask(small: np.ndarray) -> tuple[np.ndarray, bool]:
    """The sheet on a reduced grey image (its convex hull, so print does not punch holes in it) and
    whether a dark backing surrounds it."""
    blurred = cv2.GaussianBlur(small, (5, 5), 0)
    _, bright = cv2.threshold(blurred, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bright)
    full = np.ones_like(small, dtype=bool)
    if count < 2:
        return full, False
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    contours, _ = cv2.findContours((labels == largest).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = np.zeros_like(small, dtype=np.uint8)
    cv2.fillPoly(hull, [cv2.convexHull(max(contours, key=cv2.contourArea))], 1)
    ring = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]])
    paper = float(np.median(small[hull > 0]))
    backing = float(np.median(ring)) < 0.6 * paper and hull.mean() < 0.995
    if not backing:
        return full, False
    return hull > 0, True


def ink_map(grey: np.ndarray, dpi: float = 300) -> InkMap:
    h, w = grey.shape
    scale = dpi / 300
    small = quarter(grey)
    sheet, backing = sheet_mask(small)
    half_size = (max(1, w // 2), max(1, h // 2))
    half = cv2.resize(grey, half_size, interpolation=cv2.INTER_AREA).astype(np.float32)
    paper_half = paper_level(grey, dpi=dpi, small=small, size=half_size)
    inner = cv2.erode(sheet.astype(np.uint8), np.ones((_odd(8 * scale),) * 2, np.uint8))
    inner_half = cv2.resize(inner, half_size, interpolation=cv2.INTER_NEAREST) > 0
    ink = (half < INK_DARKER_THAN * paper_half) & inner_half
    factor = w / half_size[0]
    return InkMap(ink=_without_blobs(ink, dpi / factor), factor=factor, sheet=sheet, backing=backing)


def _without_blobs(ink: np.ndarray, dpi: float) -> np.ndarray:
    """Ink without solid blobs: punch holes, staples seen end on, filled blocks. A character or a stroke
    fills well under 60 % of its box, or is thinner than BLOB_MIN_IN; a hole fills about 78 %."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    if count < 2:
        return ink
    w, h = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]
    fill = stats[1:, cv2.CC_STAT_AREA] / np.maximum(w * h, 1)
    blob = (fill > BLOB_FILL) & (np.minimum(w, h) >= BLOB_MIN_IN * dpi)
    if not blob.any():
        return ink
    return ink & ~np.isin(labels, np.flatnonzero(blob) + 1)
