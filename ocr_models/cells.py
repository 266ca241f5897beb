"""The lines of one ruled cell of a form, kept together in the page's text.

A page's text is read row by row across the page. On a ruled form that splits what belongs together: a
label printed on two lines in its cell (申报号码 over "BOP Reporting No.", a long Chinese label wrapped
in a narrow column) came out as two rows, each joined to the values beside it. Here boxes stacked in
one column, with no rule between them, a rule above the first and a rule below the last, make one cell;
its lines are then read one after the other. Where no rules bound them (a letter's paragraphs, a table
without rules), nothing changes: the rows are read as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the page

RULE_SCALE = 2  # rules are found on a copy at half the page's size
RULE_MIN_SHARE = 1 / 40  # a horizontal rule is at least this share of the page's width long
RULE_ACROSS = 0.6  # ... and runs across at least this share of the columns it is checked over
BELOW_GAP = 0.8  # the next line of a cell starts within this many line heights under the one above
ALIGNED = 0.8  # ... and its left edge within this many line heights of that line's
RULE_REACH = 3.0  # a cell's bounding rules lie within this many line heights of its first and last line


def box_of(quad: np.ndarray) -> Box:
    """The upright box around a detected quadrilateral."""
    (x0, y0), (x1, y1) = quad.min(axis=0), quad.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def horizontal_rules(image: Image.Image) -> np.ndarray:
    """Where horizontal rules run (1) on a copy of the page at 1/RULE_SCALE of its size: dark runs
    longer than RULE_MIN_SHARE of the width, found against the local background (faint and uneven
    scans alike); print, even a long line of it, is broken by the gaps between characters."""
    grey = np.asarray(image if image.mode == "L" else image.convert("L"))
    h, w = grey.shape
    half = cv2.resize(grey, (max(1, w // RULE_SCALE), max(1, h // RULE_SCALE)), interpolation=cv2.INTER_AREA)
    ink = cv2.adaptiveThreshold(half, 1, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 31, 15)
    length = max(20, half.shape[1] // round(1 / RULE_MIN_SHARE))
    return cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((1, length), np.uint8))


def _ruled(rules: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> bool:
    """A rule runs across most of columns x0..x1 somewhere in rows y0..y1 (pixels of the page)."""
    a = int(x0 / RULE_SCALE)
    b = max(a + 1, int(x1 / RULE_SCALE))
    top, bottom = max(0, int(y0 / RULE_SCALE)), int(y1 / RULE_SCALE) + 1
    band = rules[top:bottom, a:b]
    return bool(band.size) and float(band.mean(axis=1).max()) >= RULE_ACROSS


def _next_line(i: int, boxes: Sequence[Box], rules: np.ndarray) -> int | None:
    """The box that continues box i's cell on the line under it: starting just under it, left-aligned
    with it, no rule between them; the nearest if several."""
    x0, y0, x1, y1 = boxes[i]
    height = y1 - y0
    best: int | None = None
    for j, (a0, b0, a1, b1) in enumerate(boxes):
        if j == i or not (y1 - 0.3 * height < b0 <= y1 + BELOW_GAP * height) or abs(a0 - x0) > ALIGNED * height:
            continue
        if _ruled(rules, max(x0, a0), min(x1, a1), y1 - 0.2 * height, b0 + 0.2 * (b1 - b0)):
            continue
        if best is None or b0 < boxes[best][1]:
            best = j
    return best


def ruled_cells(boxes: Sequence[Box], rules: np.ndarray) -> list[list[int]]:
    """Indices of ``boxes`` in cells of two lines or more, each cell's top to bottom."""
    above: dict[int, int] = {}
    for i in range(len(boxes)):
        j = _next_line(i, boxes, rules)
        if j is None:
            continue
        # Two boxes continued by the same one (two columns close together): the better aligned keeps it.
        if j in above and abs(boxes[above[j]][0] - boxes[j][0]) <= abs(boxes[i][0] - boxes[j][0]):
            continue
        above[j] = i
    below = {i: j for j, i in above.items()}
    cells = []
    for i in sorted(range(len(boxes)), key=lambda i: boxes[i][1]):
        if i in above:
            continue
        chain = [i]
        while chain[-1] in below and len(chain) <= len(boxes):
            chain.append(below[chain[-1]])
        if len(chain) < 2:
            continue
        first, last = boxes[chain[0]], boxes[chain[-1]]
        h0, h1 = first[3] - first[1], last[3] - last[1]
        bounded = _ruled(rules, first[0], first[2], first[1] - RULE_REACH * h0, first[1] + 0.2 * h0) and _ruled(
            rules, last[0], last[2], last[3] - 0.2 * h1, last[3] + RULE_REACH * h1
        )
        if bounded:
            cells.append(chain)
    return cells
