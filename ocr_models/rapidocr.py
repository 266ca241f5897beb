"""PP-OCR (PaddleOCR's v4 Chinese models) through RapidOCR and onnxruntime.

The ``rapidocr-onnxruntime`` wheel carries the three ONNX models (text detection, 0/180 direction
classifier, text recognition), so nothing is downloaded. Sessions are created once per process and use
one thread each: a station runs one worker per core.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ocr_models import runtime
from ocr_models.base import PageText, TextLine, is_cjk, join_pieces
from ocr_models.cells import box_of, horizontal_rules, ruled_cells
from ocr_models.runtime import check_runtime as runtime_check
from workers.errors import ConfigError, TransientError

# Longest side of the page image given to the detector: an A4 page at 300 dpi is reduced to 36 %,
# its 16-pt lines are then about 24 px high and 10-pt print 15 px, enough to find them (the lines are
# read from the full page). Time and memory grow with the area: measured here, 310 MB at 1280 px,
# 400 MB at 1600, 620 MB at 2000; CER on 40 corpus pages was no worse at 1280 than at 1600.
DET_MAX_SIDE = 1280
# A found region is kept as a line when the detector's mean score inside its box is at least this
# (RapidOCR's default is 0.5). A line between a checkbox and a long rule to fill in scores 0.3-0.5 and
# was lost whole: on the 25 real forms, 0.3 finds 98.93 % of the labelled characters (0.5: 98.25 %)
# with the same precision (99.55 %); 0.2 finds the same as 0.3.
DET_BOX_THRESH = 0.3
MIN_LINE_SCORE = 0.5  # lines the recogniser reads with less confidence are dropped as noise


def package_dir() -> Path:
    try:
        import rapidocr_onnxruntime
    except ImportError as err:  # pragma: no cover - a broken install
        raise ConfigError("The rapidocr-onnxruntime package is not installed; run `make run` or `make test`.") from err
    return Path(rapidocr_onnxruntime.__file__).resolve().parent


# RapidOCR builds its onnxruntime sessions with the CPU memory arena off, so every run mallocs its
# tensors afresh; the largest (detection at 1280 px, a batch of long lines) exceed 32 MiB, the most
# glibc's adaptive threshold allows in the heap, and are mmapped and unmapped on each run. In a work
# horse freshly forked for a page that is a page fault for every 4 kB of them. Measured (bench/pages.py
# --fork, 2026-12-01) on a dense form: 8.1 s user + 4.4 s system; with heap blocks up to 64 MiB, and up
# to 256 MiB free at the heap's top kept, the runs reuse them: 8.1 + 0.65 s, the horse's peak 90 MB
# more. On 10 pages (6 text pages, 4 forms) 58 → 50 CPU seconds with onnxruntime 1.32, 57 → 51.5 with 1.20.
# The onnxruntime arena would do the same but keeps the warm-up's memory in the worker before the fork
# (430 MB instead of 160).
MMAP_THRESHOLD = 64 * 2**20
TRIM_THRESHOLD = 256 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


@functools.cache
def keep_tensor_memory() -> None:
    """Let the sessions' large allocations reuse heap memory between runs (glibc; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def model_path(role: str) -> Path:
    """The wheel's ONNX file for ``det`` (line detection) or ``rec`` (recognition)."""
    return package_dir() / "models" / {"det": "ch_PP-OCRv4_det_infer.onnx", "rec": "ch_PP-OCRv4_rec_infer.onnx"}[role]


@functools.cache
def detector(name: str = runtime.DEFAULT_RUNTIME) -> Any:
    """RapidOCR's detector (its pre- and post-processing), its model run by ``runtime``."""
    from rapidocr_onnxruntime.ch_ppocr_det import TextDetector
    from rapidocr_onnxruntime.utils import read_yaml

    keep_tensor_memory()
    config: dict[str, Any] = read_yaml(str(package_dir() / "config.yaml"))["Det"]
    config["model_path"] = str(model_path("det"))
    config["intra_op_num_threads"] = config["inter_op_num_threads"] = 1
    config["limit_type"], config["limit_side_len"] = "max", DET_MAX_SIDE
    # RapidOCR's pre- and post-processing with the model run by our session: its __init__ is not
    # called, as it would make an onnxruntime session of its own whatever the runtime.
    found = TextDetector.__new__(TextDetector)
    found.limit_side_len, found.limit_type = config["limit_side_len"], config["limit_type"]
    found.mean, found.std, found.preprocess_op = config["mean"], config["std"], None
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess

    found.postprocess_op = DBPostProcess(
        thresh=config["thresh"],
        box_thresh=DET_BOX_THRESH,
        max_candidates=config["max_candidates"],
        unclip_ratio=config["unclip_ratio"],
        use_dilation=config["use_dilation"],
        score_mode=config["score_mode"],
    )
    run = runtime.session(model_path("det"), name)
    found.infer = lambda tensor: [run(tensor)]
    return found


# The recogniser reads lines 48 px high; its output has one step for every 8 px of width.
REC_HEIGHT = 48
REC_STEP = 8
# Lines are read in batches of similar width, each padded to the widest of its batch: the widest at most
# MAX_PADDING times the narrowest, and at most BATCH_PIXELS of input in one run. Measured on 7 real
# forms, one process, OpenVINO (CPU s/page, the work horse's peak RSS): 48×320×8 px 2.38 s, 796 MB;
# 48×320×16 px 2.20 s, 841 MB; 48×320×32 px 2.24 s, 964 MB. Each run has its own fixed cost.
MAX_PADDING = 1.25
BATCH_PIXELS = 48 * 320 * 16
MAX_WIDTH = 100 * REC_HEIGHT  # a longer crop (a rule taken for a line) is squeezed to this
# A batch is at least this wide: OpenVINO returns an empty output for inputs under 5 px wide (a tall,
# thin box the detector took for a line), where onnxruntime reads them.
MIN_BATCH_WIDTH = 2 * REC_STEP


@dataclass(frozen=True)
class LineReading:
    text: str
    score: float  # mean confidence of its characters, 0..1
    columns: tuple[int, ...]  # the output step each character was read at


def _rec_input(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A line scaled to 48 px high as the model takes it (BGR, channels first, -1..1), and which of its
    columns hold ink (for the word spaces)."""
    import cv2

    h, w = crop.shape[:2]
    width = max(1, min(math.ceil(REC_HEIGHT * w / max(h, 1)), MAX_WIDTH))
    scaled = cv2.resize(_bgr(crop), (width, REC_HEIGHT))
    grey = scaled.min(axis=2)
    threshold, _ = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = (grey < threshold).any(axis=0)
    return (scaled.astype(np.float32).transpose(2, 0, 1) / 127.5) - 1.0, ink


def _batches(widths: list[int]) -> list[list[int]]:
    """Indices grouped narrowest first, so that little of each batch is padding."""
    order = sorted(range(len(widths)), key=lambda i: widths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches:
            batch = batches[-1]
            first, widest = max(widths[batch[0]], 1), widths[i]
            if widest <= MAX_PADDING * first and widest * REC_HEIGHT * (len(batch) + 1) <= BATCH_PIXELS:
                batch.append(i)
                continue
        batches.append([i])
    return batches


def _decode(probs: np.ndarray, chars: tuple[str, ...]) -> LineReading:
    """Greedy CTC: the likeliest class at each step, repeats merged, blanks (class 0) dropped."""
    best = probs.argmax(axis=1)
    keep = best != 0
    keep[1:] &= best[1:] != best[:-1]
    steps = np.nonzero(keep)[0]
    if not len(steps):
        return LineReading("", 0.0, ())
    text = "".join(chars[k - 1] if k <= len(chars) else " " for k in best[steps])
    return LineReading(text, float(probs[steps, best[steps]].mean()), tuple(int(c) for c in steps))


# A Latin word space the recogniser left out: a run of ink-free columns between two letters at least
# SPACE_RUN times the line's median run between letters, and at least SPACE_MIN of the line's height.
SPACE_RUN = 2.5
SPACE_MIN = 0.25


def _widest_gap(ink: np.ndarray) -> int:
    """The longest run of ink-free columns."""
    best = run = 0
    for has_ink in ink:
        run = 0 if has_ink else run + 1
        best = max(best, run)
    return best


def word_spaces(reading: LineReading, ink: np.ndarray) -> LineReading:
    """``reading`` with a space put back between two Latin characters that a word space separates
    (PP-OCR's recogniser drops some). Nothing goes next to a Chinese character (Chinese has no word
    spaces), nor between two digits."""
    text, cols = reading.text, reading.columns
    pairs = [
        (i, _widest_gap(ink[cols[i] * REC_STEP + REC_STEP // 2 : cols[i + 1] * REC_STEP + REC_STEP // 2]))
        for i in range(len(text) - 1)
        if not (text[i].isspace() or text[i + 1].isspace() or is_cjk(text[i]) or is_cjk(text[i + 1]))
    ]
    if len(pairs) < 2:
        return reading
    usual = float(np.median([gap for _, gap in pairs]))
    least = max(SPACE_RUN * usual, SPACE_MIN * REC_HEIGHT)
    # A letter on one side at least: a gap inside a number (an ID number printed in groups) is kept
    # shut, so that a search for the whole number finds it.
    wide = {i for i, gap in pairs if gap >= least and (text[i].isalpha() or text[i + 1].isalpha())}
    if not wide:
        return reading
    spaced = "".join(ch + (" " if i in wide else "") for i, ch in enumerate(text))
    columns = tuple(c for i, col in enumerate(cols) for c in ((col, col) if i in wide else (col,)))
    return LineReading(spaced, reading.score, columns)


def recognise_lines(crops: Sequence[np.ndarray], name: str = runtime.DEFAULT_RUNTIME) -> list[LineReading]:
    """Read single text lines (grey or RGB arrays), in the order given."""
    if not crops:
        return []
    keep_tensor_memory()
    run = runtime.session(model_path("rec"), name)
    chars = runtime.characters(model_path("rec"), name)
    prepared = [_rec_input(c) for c in crops]
    inputs = [x for x, _ in prepared]
    out: list[LineReading | None] = [None] * len(inputs)
    for batch in _batches([x.shape[2] for x in inputs]):
        # No padding up to 320 px, as RapidOCR did.
        width = max(MIN_BATCH_WIDTH, *(inputs[i].shape[2] for i in batch))
        tensor = np.zeros((len(batch), 3, REC_HEIGHT, width), dtype=np.float32)
        for row, i in enumerate(batch):
            tensor[row, :, :, : inputs[i].shape[2]] = inputs[i]
        probs = run(tensor)
        for row, i in enumerate(batch):
            out[i] = word_spaces(_decode(probs[row], chars), prepared[i][1])
    return [r for r in out if r is not None]


def _bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, ::-1])


def read_lines(crops: Sequence[np.ndarray], name: str = runtime.DEFAULT_RUNTIME) -> list[tuple[str, float]]:
    """Read single text lines (grey or RGB arrays): text and confidence 0..1 for each."""
    return [(r.text, r.score) for r in recognise_lines(crops, name)]


def _crop_line(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    import cv2

    quad = quad.astype(np.float32)
    width = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    height = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad, target)
    return cv2.warpPerspective(
        image, matrix, (max(width, 1), max(height, 1)), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )


def _rows(quads: Sequence[np.ndarray]) -> list[list[int]]:
    """Indices of ``quads`` in rows, top to bottom, each left to right; a box whose vertical centre lies
    within the previous box's height is on the same row (a signature line split at its wide spaces)."""
    rows: list[list[int]] = []
    for i in sorted(range(len(quads)), key=lambda i: float(quads[i][:, 1].mean())):
        top, bottom = float(quads[i][:, 1].min()), float(quads[i][:, 1].max())
        if rows:
            last = quads[rows[-1][0]]
            if float(last[:, 1].min()) <= (top + bottom) / 2 <= float(last[:, 1].max()):
                rows[-1].append(i)
                continue
        rows.append([i])
    return [sorted(row, key=lambda i: float(quads[i][:, 0].min())) for row in rows]


# The recogniser's dictionary has the radical 丶, which running Chinese text never uses; it is 、 misread.
MISREADINGS = str.maketrans({"丶": "、"})


def _clean(text: str) -> str:
    """NFC, known misreadings fixed, no space next to a CJK character (the recogniser inserts some)."""
    text = unicodedata.normalize("NFC", text).translate(MISREADINGS).strip()
    out = []
    for i, ch in enumerate(text):
        if ch == " " and 0 < i < len(text) - 1:
            before, after = text[i - 1], text[i + 1]
            if is_cjk(before) or is_cjk(after):
                continue
        out.append(ch)
    return "".join(out)


class RapidOcrEngine:
    """PP-OCRv4 detection and recognition (Chinese and English) on an upright page."""

    name = "rapidocr"

    def __init__(self, languages: str = "ch", timeout: float = 300, runtime: str = runtime.DEFAULT_RUNTIME) -> None:
        self.languages = languages
        self.timeout = timeout
        self.runtime = runtime_check(runtime)

    def read_lines(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """Single text lines read by this engine's runtime (the orientation stage's reader)."""
        return read_lines(crops, self.runtime)

    def recognise(self, image: Image.Image) -> PageText:
        return self.read_found(image, self.find_lines(image))

    def find_lines(self, image: Image.Image) -> list[np.ndarray]:
        """The text lines the detector finds on the page: quadrilaterals (4×2, clockwise from the top
        left) in pixels of ``image``. Found on a reduced copy (at most DET_MAX_SIDE px), read from the
        full page: the recogniser gets every stroke the scan has, the detector's memory stays small."""
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        scale = min(1.0, DET_MAX_SIDE / max(rgb.size))
        small = rgb
        if scale < 1.0:
            small = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.LANCZOS)
        try:
            quads, _ = detector(self.runtime)(_bgr(np.asarray(small)))
        except Exception as err:  # the runtimes raise their own exception types
            raise TransientError(f"RapidOCR failed on this page: {err}") from err
        return [] if quads is None else [np.asarray(q, dtype=np.float64) / scale for q in quads]

    def line_crops(self, image: Image.Image, quads: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each line cut out of the page and made level, as the recogniser reads it (a grey page stays
        grey: the recogniser repeats its one channel, as a conversion to RGB would)."""
        full = np.asarray(image if image.mode in ("L", "RGB") else image.convert("RGB"))
        return [_crop_line(full, quad) for quad in quads]

    def read_found(
        self, image: Image.Image, quads: Sequence[np.ndarray], known: dict[int, tuple[str, float]] | None = None
    ) -> PageText:
        """The page's text from the lines ``find_lines`` found. ``known`` holds readings already made
        of some of them, by index in ``quads`` (the orientation stage's, of the same crops): those lines
        are not read again."""
        known = known or {}
        rows = _rows(quads)
        todo = [i for row in rows for i in row if i not in known]
        try:
            fresh = read_lines(self.line_crops(image, [quads[i] for i in todo]), self.runtime)
        except Exception as err:  # the runtimes raise their own exception types
            raise TransientError(f"RapidOCR failed on this page: {err}") from err
        read = {**known, **dict(zip(todo, fresh, strict=True))}
        kept: dict[int, tuple[np.ndarray, str, float]] = {}
        for i, (text, score) in read.items():
            text = _clean(text)
            if text and score >= MIN_LINE_SCORE:
                kept[i] = (quads[i], text, score)
        boxes = [box_of(q) for q in quads]
        cell_of = {i: cell for cell in ruled_cells(boxes, horizontal_rules(image)) for i in cell}
        result = PageText(width=image.width, height=image.height, engine=self.name)
        done: set[int] = set()
        for row in rows:
            # A row's pieces make one line, but a ruled cell of several lines met in it: that cell's
            # lines come whole at that point, each a line of its own (ocr_models/cells.py).
            pieces: list[tuple[np.ndarray, str, float]] = []
            for i in row:
                if i in done:
                    continue
                if i in cell_of:
                    if pieces:
                        result.lines.append(_row_line(pieces, image.size))
                        pieces = []
                    done.update(cell_of[i])
                    result.lines.extend(_row_line([kept[c]], image.size) for c in cell_of[i] if c in kept)
                elif i in kept:
                    pieces.append(kept[i])
            if pieces:
                result.lines.append(_row_line(pieces, image.size))
        return result


def _row_line(pieces: list[tuple[np.ndarray, str, float]], size: tuple[int, int]) -> TextLine:
    """One line per row of the page, however many boxes the detector split it into (a signature row
    with wide spaces): a PDF reader then keeps the row's pieces in order instead of taking the gaps
    for a column gutter."""
    quads = np.concatenate([quad for quad, _, _ in pieces])
    x0, y0 = quads.min(axis=0)
    x1, y1 = quads.max(axis=0)
    chars = [len(text) for _, text, _ in pieces]
    confidence = sum(score * n for (_, _, score), n in zip(pieces, chars, strict=True)) / sum(chars)
    box = (max(0, round(x0)), max(0, round(y0)), min(size[0], round(x1)), min(size[1], round(y1)))
    return TextLine(text=join_pieces([text for _, text, _ in pieces]), box=box, confidence=round(confidence * 100, 2))
