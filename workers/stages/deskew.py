"""Skew: measured from the text lines themselves, corrected by one rotation.

A projection profile of the ink finds the angle roughly (a quarter of a degree) and which pixels form
each line; the angle is then the common slope of all lines, fitted by least squares through every ink
pixel of each line with the line's own offset (a pooled within-line regression). That fit works on
point coordinates, so it has none of the pull towards 0° that a profile-scoring estimator has on a
raster, and it uses every line of the page, so punch holes, a stamp or a photo cannot dominate it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from workers.stages.ink import InkMap, grey_array, ink_map

MAX_SKEW = 15.0  # degrees either way
POINTS = 40_000  # ink pixels used for the coarse search
MIN_LINES = 3  # fewer agreeing lines than this is not text to measure (a note, two punch holes)
LINE_SLOPE_AGREEMENT = 0.01  # a line whose own slope is further than this from the median is left out


@dataclass(frozen=True)
class Skew:
    angle: float  # degrees the page's lines are turned counter-clockwise; 0 when unknown
    lines: int  # text lines that agreed on it
    found: bool  # False on a page without enough text to measure


def profile_score(x: np.ndarray, y: np.ndarray, angle: float, bin_px: float) -> float:
    """How sharply the ink falls into rows when the page is turned back by ``angle`` degrees."""
    t = math.radians(angle)
    along = y * math.cos(t) + x * math.sin(t)
    hist = np.bincount(((along - along.min()) / bin_px).astype(np.int64)).astype(np.float64)
    return float(np.dot(hist, hist))


def best_profile_angle(x: np.ndarray, y: np.ndarray, angles: np.ndarray, bin_px: float) -> tuple[float, float]:
    scores = [profile_score(x, y, float(a), bin_px) for a in angles]
    i = int(np.argmax(scores))
    return float(angles[i]), scores[i]


def _line_labels(along: np.ndarray, bin_px: float) -> np.ndarray:
    """Label each point by the text line it lies on (0 = between lines), from the row profile."""
    idx = ((along - along.min()) / bin_px).astype(np.int64)
    hist = np.bincount(idx)
    filled = hist[hist > 0]
    on = hist > 0.15 * np.percentile(filled, 90)
    # Widen each line by two bins each side so a slightly wrong grouping angle cuts no line's ends.
    on = np.convolve(on.astype(np.int8), np.ones(5, np.int8), mode="same") > 0
    starts = np.diff(np.concatenate(([0], on.astype(np.int8)))) == 1
    labels = np.cumsum(starts) * on
    return labels[idx]


def fit_lines(x: np.ndarray, y: np.ndarray, angle: float, bin_px: float) -> tuple[float, int] | None:
    """The common slope of the text lines near ``angle``: (angle in degrees, lines used)."""
    t = math.radians(angle)
    labels = _line_labels(y * math.cos(t) + x * math.sin(t), bin_px)
    keep = labels > 0
    x, y, labels = x[keep], y[keep], labels[keep]
    if len(x) < 50:
        return None
    count = np.bincount(labels)
    mean_x = np.bincount(labels, x) / np.maximum(count, 1)
    mean_y = np.bincount(labels, y) / np.maximum(count, 1)
    dx, dy = x - mean_x[labels], y - mean_y[labels]
    sxy, sxx = np.bincount(labels, dx * dy), np.bincount(labels, dx * dx)
    spread = np.sqrt(sxx / np.maximum(count, 1))
    usable = (sxx > 0) & (count >= 20) & (spread > 4 * bin_px)  # long enough to have a direction
    if not usable.any():
        return None
    slopes = np.where(usable, sxy / np.maximum(sxx, 1e-9), 0.0)
    agree = usable & (np.abs(slopes - np.median(slopes[usable])) < LINE_SLOPE_AGREEMENT)
    if not agree.any() or sxx[agree].sum() <= 0:
        return None
    slope = sxy[agree].sum() / sxx[agree].sum()
    return -math.degrees(math.atan(slope)), int(agree.sum())


def estimate_skew_from_ink(ink: InkMap, dpi: float = 300) -> Skew:
    x, y = ink.points()
    if len(x) < 200:
        return Skew(0.0, 0, False)
    scale = dpi / 300
    step = max(1, len(x) // POINTS)
    xs, ys = x[::step], y[::step]
    coarse, _ = best_profile_angle(xs, ys, np.arange(-MAX_SKEW, MAX_SKEW + 1e-9, 0.25), 8 * scale)
    angle, _ = best_profile_angle(xs, ys, np.arange(coarse - 0.3, coarse + 0.3 + 1e-9, 0.05), 4 * scale)
    lines = 0
    for _ in range(2):  # a second pass regroups the lines at the better angle
        fitted = fit_lines(x, y, angle, 4 * scale)
        if fitted is None:
            break
        angle, lines = fitted
    if lines < MIN_LINES:
        return Skew(0.0, lines, False)
    return Skew(angle, lines, True)


def estimate_skew(image: Image.Image, dpi: float = 300) -> Skew:
    """How far the page's text lines are turned (within ±15°), from an upright or upside-down page."""
    return estimate_skew_from_ink(ink_map(grey_array(image), dpi), dpi)


def border_fill(image: Image.Image) -> int | tuple[int, ...]:
    """The colour around the page's edge (scanner backing or paper), to fill what a rotation uncovers."""
    a = np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB") else image)
    ring = np.concatenate(
        [
            a[:2].reshape(-1, *a.shape[2:]),
            a[-2:].reshape(-1, *a.shape[2:]),
            a[:, :2].reshape(-1, *a.shape[2:]),
            a[:, -2:].reshape(-1, *a.shape[2:]),
        ]
    )
    med = np.median(ring, axis=0)
    return int(med) if np.ndim(med) == 0 else tuple(int(v) for v in med)


def rotate(image: Image.Image, angle: float, fill: int | tuple[int, ...]) -> Image.Image:
    """Turn counter-clockwise by ``angle`` degrees about the centre, bicubic, the canvas grown to fit."""
    a = np.asarray(image)
    h, w = a.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(math.ceil(w * cos + h * sin)), int(math.ceil(w * sin + h * cos))
    matrix[0, 2] += new_w / 2 - w / 2
    matrix[1, 2] += new_h / 2 - h / 2
    border = fill if isinstance(fill, tuple) else (fill,)
    out = cv2.warpAffine(
        a, matrix, (new_w, new_h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=border
    )
    return Image.fromarray(out, mode=image.mode)


def deskew(image: Image.Image, angle: float) -> Image.Image:
    """Turn the page back by ``angle`` degrees, filling the uncovered corners like the page's edge."""
    if abs(angle) < 0.005:
        return image
    if image.mode not in ("L", "RGB"):
        image = image.convert("L" if image.mode in ("1", "I;16", "I", "F") else "RGB")
    return rotate(image, -angle, border_fill(image))
