"""Blank-sheet detection (first version: ink coverage after removing the scanner's edge)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class BlankVerdict:
    blank: bool
    ink_ratio: float  # share of the inner sheet covered by dark, text-sized marks


def detect_blank(image: Image.Image, *, threshold: float = 0.002) -> BlankVerdict:
    """A sheet with (almost) no dark marks of text size in its inner area is blank.

    The outer 8 % is ignored: scanner backing, punch holes and staples sit there.
    """
    grey = np.asarray(image.convert("L"))
    h, w = grey.shape
    my, mx = int(h * 0.08), int(w * 0.08)
    inner = grey[my : h - my, mx : w - mx]
    if inner.size == 0:
        return BlankVerdict(True, 0.0)
    # Local contrast, not absolute darkness: bleed-through is faint and wide, print is dark and thin.
    background = cv2.medianBlur(inner, 31)
    dark = (background.astype(np.int16) - inner.astype(np.int16)) > 60
    dark = cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    ratio = float(dark.mean())
    return BlankVerdict(ratio < threshold, ratio)
