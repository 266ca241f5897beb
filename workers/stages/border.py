"""Remove the scanner backing around the sheet, and nothing of the sheet.

DA/T 31-2017 allows removing only what the scan added. So: find the sheet (the bright region the
backing surrounds), cut to its bounding box on a page already turned straight, and paint paper over
what is left of the backing: dark regions that reach outside the sheet's outline or the image's edge
(the corners of a sheet that could not be straightened exactly, a ragged edge). Holes, stamps and
stains inside the sheet do not reach either and are never touched. A page with no dark backing is
returned as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from workers.stages.ink import grey_array, quarter, sheet_mask


@dataclass(frozen=True)
class Border:
    box: tuple[int, int, int, int] | None  # x0, y0, x1, y1 of the sheet kept; None: nothing cut
    painted: int  # leftover backing pixels painted with the paper's colour


def _sheet_edges(bright_rows: np.ndarray) -> tuple[int, int]:
    """First and last index where at least half of the row (or column) is sheet."""
    inside = np.nonzero(bright_rows >= 0.5)[0]
    return (int(inside[0]), int(inside[-1]) + 1) if len(inside) else (0, len(bright_rows))


def _quarter_sheet(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """A quarter-size copy, the sheet on it, and whether a backing surrounds the sheet."""
    small = quarter(grey)
    sheet, backing = sheet_mask(small)
    return small, sheet, backing


def find_sheet(
    grey: np.ndarray, quarter: tuple[np.ndarray, np.ndarray, bool] | None = None
) -> tuple[int, int, int, int] | None:
    """The sheet's bounding box in full-image pixels, or None when no dark backing surrounds it."""
    h, w = grey.shape
    small, sheet, backing = quarter or _quarter_sheet(grey)
    if not backing:
        return None
    ys, xs = np.nonzero(sheet)
    # Refine each edge at full resolution: threshold half-way between backing and paper.
    paper = float(np.median(small[sheet]))
    dark = float(np.median(small[~sheet])) if (~sheet).any() else 0.0
    bright = grey > (paper + dark) / 2
    y0, y1 = max(0, ys.min() * 4 - 8), min(h, (ys.max() + 1) * 4 + 8)
    x0, x1 = max(0, xs.min() * 4 - 8), min(w, (xs.max() + 1) * 4 + 8)
    top, bottom = _sheet_edges(bright[y0:y1, x0:x1].mean(axis=1))
    left, right = _sheet_edges(bright[y0:y1, x0:x1].mean(axis=0))
    return int(x0 + left), int(y0 + top), int(x0 + right), int(y0 + bottom)


def _leftover_backing(grey: np.ndarray, outside: np.ndarray, threshold: float) -> np.ndarray:
    """Dark pixels of the backing left after the cut: dark regions that reach outside the sheet's
    outline or the image's edge. Marks inside the sheet (holes, stamps) do not reach either."""
    h, w = grey.shape
    dark = (grey < threshold).astype(np.uint8)
    seeds = outside.copy()
    seeds[:2], seeds[-2:], seeds[:, :2], seeds[:, -2:] = True, True, True, True
    count, labels = cv2.connectedComponents(dark)
    touching = np.unique(labels[seeds & (dark > 0)])
    touching = touching[touching > 0]
    return np.isin(labels, touching) if len(touching) else np.zeros((h, w), dtype=bool)


def sheet_angle(image: Image.Image) -> float | None:
    """The sheet's own skew from its outline against the backing (degrees counter-clockwise), or None
    without a backing. Used for pages with too little text to measure (a blank back)."""
    _, sheet, backing = _quarter_sheet(grey_array(image))
    if not backing:
        return None
    contours, _ = cv2.findContours(sheet.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    (_, _), (rw, rh), angle = cv2.minAreaRect(max(contours, key=cv2.contourArea))
    # OpenCV gives the angle of one side in (0, 90]; fold it to the nearest of the sheet's axes.
    angle = ((angle + 45) % 90) - 45
    return float(-angle)


def crop_border(image: Image.Image) -> tuple[Image.Image, Border]:
    """The sheet without the scanner backing around it (call after deskew)."""
    grey = grey_array(image)
    quarter = _quarter_sheet(grey)
    box = find_sheet(grey, quarter)
    if box is None:
        return image, Border(None, 0)
    cropped = image.crop(box)
    g = grey[box[1] : box[3], box[0] : box[2]]
    h, w = grey.shape
    sheet = quarter[1]
    outside = cv2.resize((~sheet).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    paper = float(np.median(g))
    mask = _leftover_backing(g, outside[box[1] : box[3], box[0] : box[2]], 0.6 * paper)
    painted = int(mask.sum())
    if painted:
        a = np.array(cropped)
        sample = a[::8, ::8][~mask[::8, ::8]]
        a[mask] = np.median(sample, axis=0).astype(a.dtype) if len(sample) else 255
        cropped = Image.fromarray(a, mode=cropped.mode)
    return cropped, Border(box, painted)
