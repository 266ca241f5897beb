"""Separator sheets (分隔页) in a scanned run: find them, then split the run into catalogue items.

Pure functions, no queue and no database. :func:`read_separator` runs on every page of every batch before
OCR, so an ordinary page must cost little: it is looked at once, on a copy reduced to about WORK_DPI,
by two cheap detectors (OpenCV's AprilTag/ArUco detector and its ArUco-based QR detector). Only a page that
shows one of our tags, a QR code of ours or a QR code that would not decode is looked at again more closely.

A sheet (see :mod:`scanner_service.archive.separator_sheets`) carries the same QR payload twice and two AprilTag
36h11 markers with our ids. Decisions, made so that a damaged sheet goes to review and is never taken for
an ordinary page, nor an ordinary page for a sheet:

- a QR code with our payload prefix: a separator; readable when its payload decodes and all our codes agree;
- a QR code that is not ours (certificates and invoices carry them): not a separator, unless the page also
  shows our tags (then: our sheet with an unreadable code);
- our tags and no QR code of ours: a separator that cannot be read (``readable=False``).

The archive (:func:`scanner_service.archive.separators.split_run`) then checks the codes and turns the marks
of a run's pages into items and problems that send the run to review.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import cv2
import numpy as np
from PIL import Image

# The printed sheet's machine-readable parts (drawn by scanner_service.archive.separator_sheets). Payload:
# ``SCANSTATION-SEP/1 D22 C015-WS.2013-Y-BGS-0001``: prefix + format version, the style the 档号 was written
# in (D22: DA/T 22-2015, D13: DA/T 13-2022), and the 档号 in ASCII, with ``·`` written as ``.``.
PAYLOAD_PREFIX = "SCANSTATION-SEP/"
PAYLOAD_VERSION = 1
STYLE_MARKERS = ("D22", "D13")
TAG_DICTIONARY = cv2.aruco.DICT_APRILTAG_36h11
SHEET_TAGS = (211, 347)  # top-right and bottom-left corner; any fixed ids of the dictionary would do
TAG_MM = 30.0  # printed side of a tag, its black border included

WORK_DPI = 100.0  # the first look: the sheet's QR modules (1.3-1.6 mm) are 5-6 px, a tag's cells 15 px
FINE_DPI = 150.0  # the second look, on pages that show something of a separator
TAG_SIZE_RANGE = (0.5, 2.0)  # a tag's printed size, as a share of TAG_MM; wide, as a scan's dpi may be wrong
# Tags are big: their outline is at least this share of the image's longer side. Smaller quads are not even
# examined, which keeps the detector fast on text and keeps print from being read as a tag.
TAG_MIN_PERIMETER_RATE = 0.12
_PLAUSIBLE_DPI = (50.0, 2400.0)
_MM_PER_INCH = 25.4


@dataclass(frozen=True)
class SeparatorMark:
    """A separator sheet found on a page. ``archival_code`` is the 档号 as printed on the sheet (the style it
    was printed in kept) when ``readable``; ``readable`` False: one of our sheets whose code cannot be read.
    ``detail`` says what was seen, for the operator."""

    archival_code: str | None
    readable: bool
    detail: str


@dataclass
class _Look:
    """What one or more looks at a page found."""

    tags: set[int] = field(default_factory=set)
    ours: set[str] = field(default_factory=set)  # decoded payloads with our prefix
    read: int = 0  # the most codes of ours decoded in one attempt (a sheet carries two, with the same payload)
    foreign: int = 0  # QR codes decoded with some other payload
    undecoded: int = 0  # QR codes found but not decoded

    def add(self, other: _Look) -> None:
        self.tags |= other.tags
        self.ours |= other.ours
        self.read = max(self.read, other.read)
        self.foreign = max(self.foreign, other.foreign)
        self.undecoded = max(self.undecoded, other.undecoded)

    @property
    def interesting(self) -> bool:
        """Worth a closer look: something of a separator, or a QR code that did not decode."""
        return bool(self.tags or self.ours or self.undecoded)


T = TypeVar("T")
_local = threading.local()  # OpenCV detector objects are not meant to be shared between threads


def _per_thread(name: str, make: Callable[[], T]) -> T:
    """One detector object per thread, made on first use."""
    detector = getattr(_local, name, None)
    if detector is None:
        detector = make()
        setattr(_local, name, detector)
    return detector


def _make_tag_detector() -> cv2.aruco.ArucoDetector:
    params = cv2.aruco.DetectorParameters()
    params.minMarkerPerimeterRate = TAG_MIN_PERIMETER_RATE
    # Threshold windows of one to three tag cells (about 15 px at WORK_DPI), instead of the default 3-23 px:
    # fewer passes, and the small windows that turn every character into a quad are skipped.
    params.adaptiveThreshWinSizeMin = 9
    params.adaptiveThreshWinSizeMax = 39
    params.adaptiveThreshWinSizeStep = 15
    return cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(TAG_DICTIONARY), params)


def _tag_detector() -> cv2.aruco.ArucoDetector:
    return _per_thread("tags", _make_tag_detector)


def _qr_detector() -> cv2.QRCodeDetectorAruco:
    return _per_thread("qr", cv2.QRCodeDetectorAruco)


def _classic_qr_detector() -> cv2.QRCodeDetector:
    return _per_thread("classic", cv2.QRCodeDetector)


def _reduced(image: Image.Image, dpi: float, target: float) -> tuple[np.ndarray, float]:
    """An 8-bit grey copy at ``target`` dpi or a little more (reduced by a whole factor, which is fast),
    and its resolution. 1-bit, 16-bit, palette and colour pages all become grey first."""
    im = image
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float32)
        top = float(a.max()) or 1.0
        im = Image.fromarray(np.clip(a * (255.0 / top), 0, 255).astype(np.uint8))
    elif im.mode not in ("L", "RGB"):
        im = im.convert("L" if im.mode in ("1", "LA", "P") else "RGB")
    factor = max(1, int(dpi // target))
    if factor > 1:
        im = im.reduce(factor)  # box average: a 1-bit scan becomes smooth grey, as the detectors like it
    if im.mode != "L":
        im = im.convert("L")
    return np.asarray(im), dpi / factor


def _find_tags(grey: np.ndarray, dpi: float) -> set[int]:
    """Our tag ids found on the page, with a plausible printed size."""
    corners, ids, _ = _tag_detector().detectMarkers(grey)
    found: set[int] = set()
    if ids is None:
        return found
    low, high = (TAG_MM * s for s in TAG_SIZE_RANGE)
    for quad, tag in zip(corners, ids.ravel(), strict=True):
        if int(tag) not in SHEET_TAGS:
            continue
        pts = quad.reshape(4, 2)
        side_mm = float(np.mean(np.linalg.norm(pts - np.roll(pts, 1, axis=0), axis=1))) * _MM_PER_INCH / dpi
        if low <= side_mm <= high:
            found.add(int(tag))
    return found


def _find_qr(grey: np.ndarray, detector: cv2.QRCodeDetector | cv2.QRCodeDetectorAruco) -> _Look:
    look = _Look()
    try:
        ok, texts, _, _ = detector.detectAndDecodeMulti(grey)
    except cv2.error:  # a degenerate candidate can trip an assertion inside the decoder: nothing read
        return look
    if not ok:
        return look
    for text in texts:
        if not text:
            look.undecoded += 1
        elif text.startswith(PAYLOAD_PREFIX):
            look.ours.add(text)
            look.read += 1
        else:
            look.foreign += 1
    return look


def _binarised(grey: np.ndarray) -> np.ndarray:
    """Black and white by a local threshold: helps a QR code under a stain, uneven light or heavy noise."""
    window = max(15, (min(grey.shape) // 20) | 1)
    return cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, window, 10)


def _closer_look(image: Image.Image, dpi: float, small: np.ndarray, look: _Look) -> None:
    """More work for a page that shows something of a separator: the other QR detector and a binarised copy,
    then a finer copy. Stops as soon as two of our codes are read in one attempt (a sheet carries two). When
    one code of ours is already read, only the cheap attempts look for the second one, to check it agrees."""
    attempts: list[Callable[[], _Look]] = [
        lambda: _find_qr(small, _classic_qr_detector()),
        lambda: _find_qr(_binarised(small), _qr_detector()),
    ]
    if not look.ours:
        fine, fine_dpi = _reduced(image, dpi, FINE_DPI)
        if not look.tags:
            look.tags |= _find_tags(fine, fine_dpi)
        attempts += [
            lambda: _find_qr(fine, _qr_detector()),
            lambda: _find_qr(fine, _classic_qr_detector()),
            lambda: _find_qr(_binarised(fine), _qr_detector()),
        ]
    for attempt in attempts:
        look.add(attempt())
        if look.read >= 2:
            return


def _sane_dpi(dpi: float | tuple[float, float]) -> float:
    if isinstance(dpi, tuple):
        dpi = (float(dpi[0]) + float(dpi[1])) / 2
    dpi = float(dpi) if dpi else 0.0
    return dpi if _PLAUSIBLE_DPI[0] <= dpi <= _PLAUSIBLE_DPI[1] else 300.0


def _decode_payload(payload: str) -> str:
    """The 档号 in a payload of ours, as printed on the sheet (``·`` restored); ValueError saying what is wrong.

    Whether the text is a valid 档号 is for the archive to say (:mod:`scanner_service.archive.separators`):
    this stage reads the sheet, it does not know the standard's rules.
    """
    head, _, rest = payload.partition(" ")
    version = head[len(PAYLOAD_PREFIX) :]
    if version != str(PAYLOAD_VERSION):
        raise ValueError(f'format version "{version}" is not {PAYLOAD_VERSION}: printed by another station version')
    marker, _, text = rest.partition(" ")
    if marker not in STYLE_MARKERS:
        raise ValueError(f'style "{marker}" is not one of {", ".join(STYLE_MARKERS)}')
    if not text.strip():
        raise ValueError("no 档号 after the style")
    return text.strip().replace(".", "\u00b7")


def _verdict(look: _Look) -> SeparatorMark | None:
    if not look.ours:
        if not look.tags:
            return None  # an ordinary page, maybe with someone else's QR code
        seen = f"{look.foreign} other QR code(s) and " if look.foreign else ""
        return SeparatorMark(
            None,
            False,
            f"separator sheet recognised by {len(look.tags)} of its corner marks, but {seen}no readable "
            "separator QR code: the codes are damaged, covered or missing",
        )
    codes: set[str] = set()
    errors: list[str] = []
    for payload in sorted(look.ours):
        try:
            codes.add(_decode_payload(payload))
        except ValueError as exc:
            errors.append(f'"{payload}": {exc}')
    if errors:
        return SeparatorMark(None, False, "separator QR code does not carry a valid 档号: " + "; ".join(errors))
    if len(codes) > 1:
        return SeparatorMark(None, False, "the separator's QR codes carry different 档号: " + ", ".join(sorted(codes)))
    how = "both QR codes read" if look.read >= 2 else "one QR code read"
    marks = f", {len(look.tags)} corner mark(s) seen" if look.tags else ""
    return SeparatorMark(codes.pop(), True, f"separator sheet: {how}{marks}")


def read_separator(image: Image.Image, dpi: float | tuple[float, float]) -> SeparatorMark | None:
    """The separator sheet on this scanned page, or None for an ordinary page.

    ``dpi`` is the scan's resolution (a number, or the (x, y) pair the load stage gives); an implausible one
    is taken as 300. The page may be turned any quarter, skewed a few degrees, noisy, JPEG-compressed, grey,
    colour or 1-bit, with dark scanner backing around it.
    """
    dpi = _sane_dpi(dpi)
    small, small_dpi = _reduced(image, dpi, WORK_DPI)
    look = _find_qr(small, _qr_detector())
    look.tags = _find_tags(small, small_dpi)
    if look.interesting and look.read < 2:
        _closer_look(image, dpi, small, look)
    return _verdict(look)


def printed_heading_read(text: str) -> bool:
    """Whether OCR read a separator sheet's printed heading (分隔页 and SEPARATOR SHEET).

    The last guard for a sheet whose QR codes and corner tags are all destroyed: without it, its item's
    pages would join the item before it. Both words must be there; either alone can occur in a record.
    """
    flat = "".join(text.split()).upper()
    return "分隔页" in flat and "SEPARATOR" in flat
