"""Which way up the page is: 0, 90, 180 or 270 degrees, with a confidence.

Two questions, answered by what works on Chinese and on Latin print alike:
1. Do the lines run across or down the scan? Text falls into sharp rows across its lines (the gaps
   between lines are much wider than the gaps between characters), so the ink's row profile is far
   sharper along the true line direction than across it. The page is turned a quarter if the best
   profile over ±15° is sharper for columns than for rows.
2. Upright or upside down? A few of the longest lines are read both ways by the recogniser; the way
   it reads with more confidence is up. Tesseract's OSD does not do this reliably on Chinese, and
   PP-OCR's small direction classifier is unsure on the Kai typeface; reading is much surer
   (measured on 70 pages: 0 wrong, confidences 0.99 against ≤ 0.25).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from workers.stages.deskew import MAX_SKEW, Skew, best_profile_angle, deskew, estimate_skew_from_ink
from workers.stages.ink import InkMap, grey_array, ink_map

# Reads single text lines: crops in, (text, confidence 0..1) out. ocr_models.rapidocr.read_lines is one.
LineReader = Callable[[Sequence[np.ndarray]], list[tuple[str, float]]]

LINES_READ = 4
MIN_LINE_HEIGHT_IN = 0.04  # a text line is at least this high (about 3 pt type)
MAX_CROP_RATIO = 12
MAX_READ_RATIO = 16  # detected lines read both ways up: at most this long (longer ones rank as this long)
AXIS_SURE = 1.08  # rows this much sharper than columns (or the reverse) decide the axis with confidence
READ_SURE = 0.3  # mean reading confidence one way ahead of the other by this much decides up/down
READABLE = 0.5  # below this mean reading confidence both ways, the lines are not text the reader knows
MIN_LETTERS = 4  # ... nor when fewer letters or characters than this were read
# Lines that read this well as they are are upright; they are then not read upside down as well. By
# PP-OCRv4's recogniser, measured on the 25 real forms and 40 synthetic pages each fed both ways up
# (130 readings): lines the right way up read 0.977-0.999, the wrong way up at most 0.25.
UPRIGHT_READ = 0.9


@dataclass(frozen=True)
class Orientation:
    turn: int  # degrees the scan is turned counter-clockwise from upright: 0, 90, 180 or 270
    confidence: float  # 0..1
    axis_ratio: float  # sharpness of rows over columns in the scan (> 1: lines run across)
    # Mean reading confidence as turned back, and the other way up (None: not read, see UPRIGHT_READ).
    reading: tuple[float, float | None]
    # The skew measured on the way (the same whether the page is then turned 180° or not), so the
    # deskew stage need not measure it again; None when no text was legible.
    skew: Skew | None = None

    @property
    def sure(self) -> bool:
        return self.confidence >= 0.5


def axis_ratio(ink: InkMap, dpi: float = 300) -> float:
    """Row-profile sharpness over column-profile sharpness (best over ±15°); > 1 when lines run across."""
    x, y = ink.points(limit=40_000)
    if len(x) < 200:
        return 1.0
    angles = np.arange(-MAX_SKEW, MAX_SKEW + 1e-9, 0.5)
    bin_px = 8 * dpi / 300
    _, rows = best_profile_angle(x, y, angles, bin_px)
    _, cols = best_profile_angle(y, -x, angles, bin_px)
    return rows / cols if cols else 1.0


def line_crops(grey: np.ndarray, dpi: float = 300, count: int = LINES_READ) -> list[np.ndarray]:
    """The ``count`` longest text lines of a page whose lines run across (skew already removed).

    Each crop is at most MAX_CROP_RATIO times as wide as high: enough characters to read, and a thin
    rule or a noisy row cannot make the recogniser's input enormous.
    """
    ink = ink_map(grey, dpi)
    rows = ink.ink.sum(axis=1)
    if not rows.any():
        return []
    f = ink.factor
    min_height = MIN_LINE_HEIGHT_IN * dpi / f
    on = np.concatenate([rows > 0.15 * np.percentile(rows[rows > 0], 90), [False]])
    found: list[tuple[int, np.ndarray]] = []
    start = None
    for i, is_on in enumerate(on):
        if is_on and start is None:
            start = i
        elif not is_on and start is not None:
            cols = np.nonzero(ink.ink[start:i].any(axis=0))[0]
            height = i - start
            if height >= min_height and len(cols) and cols[-1] - cols[0] >= 3 * height:
                pad = height // 3 + 1
                y0, y1 = int((start - pad) * f), int((i + pad) * f)
                x0 = int((cols[0] - pad) * f)
                x1 = min(int((cols[-1] + pad) * f), x0 + int(MAX_CROP_RATIO * (y1 - y0)))
                found.append((cols[-1] - cols[0], grey[max(0, y0) : y1, max(0, x0) : x1]))
            start = None
    found.sort(key=lambda item: -item[0])
    return [crop for _, crop in found[:count]]


def _letters(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


@dataclass(frozen=True)
class WayUp:
    as_is: float  # mean reading confidence of the lines as they are
    flipped: float | None  # ... and upside down; None when not read (they read as upright: UPRIGHT_READ)
    legible: bool  # the lines read as text one way or the other
    readings: list[tuple[str, float]]  # the lines read as they are, in the order given

    @property
    def upside_down(self) -> bool:
        return self.flipped is not None and self.flipped > self.as_is

    @property
    def confidence(self) -> float:
        if not self.legible:
            return 0.0
        if self.flipped is None:
            return 1.0
        return min(1.0, abs(self.as_is - self.flipped) / READ_SURE)

    @property
    def reading(self) -> tuple[float, float | None]:
        """As Orientation.reading keeps it."""
        return round(self.as_is, 3), None if self.flipped is None else round(self.flipped, 3)


def way_up(crops: list[np.ndarray], reader: LineReader, *, upright_at: float | None = None) -> WayUp:
    """Upright or upside down, from lines cut out of a page whose lines run across (skew removed): the
    mean confidence of reading them as they are and upside down. Only lines read as text one way or the
    other count: a crop that holds a table's rule, or a stamp, reads as nothing both ways and says
    nothing about the way up (on real forms such crops made upright pages look illegible).

    ``upright_at``: lines that read as text as they are with at least this mean confidence are taken
    as upright, and not read upside down (UPRIGHT_READ, for a reader it was measured with)."""
    if not crops:
        return WayUp(0.0, 0.0, False, [])
    as_is = reader(crops)
    if upright_at is not None:
        text = [a for a in as_is if _letters(a[0]) >= 2]
        mean = float(np.mean([a[1] for a in text])) if text else 0.0
        if mean >= upright_at and sum(_letters(a[0]) for a in text) >= MIN_LETTERS:
            return WayUp(mean, None, True, as_is)
    flipped = reader([np.ascontiguousarray(c[::-1, ::-1]) for c in crops])
    pairs = [(a, f) for a, f in zip(as_is, flipped, strict=True) if max(_letters(a[0]), _letters(f[0])) >= 2]
    if not pairs:
        return WayUp(0.0, 0.0, False, as_is)
    letters = max(sum(_letters(a[0]) for a, _ in pairs), sum(_letters(f[0]) for _, f in pairs))
    mean_as_is, mean_flipped = float(np.mean([a[1] for a, _ in pairs])), float(np.mean([f[1] for _, f in pairs]))
    legible = max(mean_as_is, mean_flipped) >= READABLE and letters >= MIN_LETTERS
    return WayUp(mean_as_is, mean_flipped, legible, as_is)


def _axis(image: Image.Image, dpi: float) -> tuple[np.ndarray, InkMap, float, int]:
    """The scan in grey, its ink, rows' sharpness over columns', and the quarter turn that makes its
    lines run across by that profile (0 or 90)."""
    grey = grey_array(image)
    ink = ink_map(grey, dpi)
    ratio = axis_ratio(ink, dpi)
    return grey, ink, ratio, 90 if ratio < 1.0 else 0


def _axis_confidence(ratio: float) -> float:
    return min(1.0, abs(float(np.log(max(ratio, 1e-9)))) / float(np.log(AXIS_SURE)))


def _turned_back(grey: np.ndarray, base: int, ink: InkMap, dpi: float) -> tuple[Image.Image, Skew]:
    """The scan turned back by ``base`` and its skew so turned (``ink``, the scan's, serves when ``base`` is 0)."""
    across = turn_upright(Image.fromarray(grey), base)
    return across, estimate_skew_from_ink(ink if base == 0 else ink_map(np.asarray(across), dpi), dpi)


def _read_both_ways(grey: np.ndarray, base: int, reader: LineReader, dpi: float, ink: InkMap) -> tuple[WayUp, Skew]:
    """Turn the scan back by ``base``, level it, and read its longest lines as they are and upside down."""
    across, skew = _turned_back(grey, base, ink, dpi)
    return way_up(line_crops(np.asarray(deskew(across, skew.angle)), dpi), reader), skew


def line_axis(image: Image.Image, dpi: float = 300) -> Orientation:
    """Only which way the lines run, from the ink: turn 0 or 90, the axis's confidence, and the skew
    of the page so turned. Whether that is upright or upside down is left to :func:`way_up`, read on
    the lines the OCR engine finds (so that those readings serve the OCR too)."""
    grey, ink, ratio, base = _axis(image, dpi)
    _, skew = _turned_back(grey, base, ink, dpi)
    return Orientation(base, round(_axis_confidence(ratio), 3), round(float(ratio), 3), (0.0, 0.0), skew)


def longest_lines(quads: Sequence[np.ndarray], count: int = LINES_READ) -> list[int]:
    """Indices of the ``count`` widest of the detected lines (quadrilaterals) that are at least three
    and at most MAX_READ_RATIO times as wide as high: enough characters to tell up from down, and not
    so long that reading them upside down costs much."""
    sizes = []
    for i, quad in enumerate(quads):
        width = float(np.linalg.norm(quad[0] - quad[1]))
        height = float(np.linalg.norm(quad[0] - quad[3])) or 1.0
        ratio = width / height
        # Up to MAX_READ_RATIO, the longer the better; beyond it, the shorter the better.
        rank = ratio if ratio <= MAX_READ_RATIO else MAX_READ_RATIO - ratio / 1000
        sizes.append((rank, ratio, i))
    usable = [item for item in sizes if item[1] >= 3] or sizes
    return [i for _, _, i in sorted(usable, reverse=True)[:count]]


def detect_orientation(image: Image.Image, reader: LineReader, dpi: float = 300) -> Orientation:
    """How the scan is turned; turn it back with ``turn_upright(image, turn)``."""
    grey, ink, ratio, base = _axis(image, dpi)
    up, skew = _read_both_ways(grey, base, reader, dpi, ink)
    axis_conf = _axis_confidence(ratio)
    if not up.legible:  # the profile may have chosen wrong (little text, a table): try the other axis
        base = 90 - base
        up, skew = _read_both_ways(grey, base, reader, dpi, ink)
        axis_conf = 0.0
    if not up.legible:
        # Nothing legible either way (a blank sheet's holes, a photo): leave the page as it is.
        return Orientation(0, 0.0, round(float(ratio), 3), up.reading)
    turn = (base + (180 if up.upside_down else 0)) % 360
    return Orientation(turn, round(float(min(axis_conf, up.confidence)), 3), round(float(ratio), 3), up.reading, skew)


def turn_upright(image: Image.Image, turn: int) -> Image.Image:
    """Undo a quarter-turn multiple without resampling."""
    ops = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}
    return image.transpose(ops[turn]) if turn in ops else image
