"""PP-OCR (PaddleOCR's v4 Chinese models) through RapidOCR and onnxruntime.

The ``rapidocr-onnxruntime`` wheel carries the three ONNX models (text detection, 0/180 direction
classifier, text recognition), so nothing is downloaded. Sessions are created once per process and use
one thread each: a station runs one worker per core.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ocr_models.base import PageText, TextLine, is_cjk, join_pieces
from workers.errors import ConfigError, TransientError

# Longest side of the page image given to the detector: an A4 page at 300 dpi is reduced to 36 %,
# its 16-pt lines are then about 24 px high and 10-pt print 15 px, enough to find them (the lines are
# read from the full page). Time and memory grow with the area: measured here, 310 MB at 1280 px,
# 400 MB at 1600, 620 MB at 2000; CER on 40 corpus pages was no worse at 1280 than at 1600.
DET_MAX_SIDE = 1280
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


def _config() -> dict[str, Any]:
    from rapidocr_onnxruntime.utils import read_yaml

    root = package_dir()
    config: dict[str, Any] = read_yaml(str(root / "config.yaml"))
    for part in ("Det", "Cls", "Rec"):
        config[part]["model_path"] = str(root / config[part]["model_path"])
        config[part]["intra_op_num_threads"] = 1
        config[part]["inter_op_num_threads"] = 1
    return config


@functools.cache
def detector() -> Any:
    from rapidocr_onnxruntime.ch_ppocr_det import TextDetector

    keep_tensor_memory()
    config = _config()["Det"]
    config["limit_type"], config["limit_side_len"] = "max", DET_MAX_SIDE
    return TextDetector(config)


@functools.cache
def recogniser() -> Any:
    from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer

    keep_tensor_memory()
    return TextRecognizer(_config()["Rec"])


def _bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, ::-1])


def read_lines(crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
    """Read single text lines (grey or RGB arrays): text and confidence 0..1 for each."""
    if not crops:
        return []
    results, _ = recogniser()([_bgr(c) for c in crops])
    return [(str(text), float(score)) for text, score, *_ in results]


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


def _rows(quads: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Rows top to bottom, boxes left to right; a box whose vertical centre lies within the previous
    box's height is on the same row (a signature line split at its wide spaces)."""
    boxes = sorted(quads, key=lambda q: float(q[:, 1].mean()))
    rows: list[list[np.ndarray]] = []
    for quad in boxes:
        top, bottom = float(quad[:, 1].min()), float(quad[:, 1].max())
        centre = (top + bottom) / 2
        if rows:
            last = rows[-1][0]
            l_top, l_bottom = float(last[:, 1].min()), float(last[:, 1].max())
            if l_top <= centre <= l_bottom:
                rows[-1].append(quad)
                continue
        rows.append([quad])
    return [sorted(row, key=lambda q: float(q[:, 0].min())) for row in rows]


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

    def __init__(self, languages: str = "ch", timeout: float = 300) -> None:
        self.languages = languages
        self.timeout = timeout

    def recognise(self, image: Image.Image) -> PageText:
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        full = np.asarray(rgb)
        scale = min(1.0, DET_MAX_SIDE / max(rgb.size))
        small = full
        if scale < 1.0:
            size = (round(rgb.width * scale), round(rgb.height * scale))
            small = np.asarray(rgb.resize(size, Image.Resampling.LANCZOS))
        try:
            quads, _ = detector()(_bgr(small))
            # Lines are found on the reduced page and read from the full one: the recogniser gets
            # every stroke the scan has, the detector's memory stays small.
            rows = _rows([] if quads is None else [q / scale for q in quads])
            ordered = [(quad, i) for i, row in enumerate(rows) for quad in row]
            read = read_lines([_crop_line(full, quad) for quad, _ in ordered])
        except Exception as err:  # onnxruntime raises its own exception types
            raise TransientError(f"RapidOCR failed on this page: {err}") from err
        pieces: dict[int, list[tuple[np.ndarray, str, float]]] = {}
        for (quad, row), (text, score) in zip(ordered, read, strict=True):
            text = _clean(text)
            if text and score >= MIN_LINE_SCORE:
                pieces.setdefault(row, []).append((quad, text, score))
        result = PageText(width=image.width, height=image.height, engine=self.name)
        for row in sorted(pieces):
            result.lines.append(_row_line(pieces[row], image.size))
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
