"""One page through the stages, as a pure function: an original's page in, a usage image and text out."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from ocr_models.base import OcrEngine, PageText
from workers.errors import ConfigError
from workers.stages.blank import detect_blank
from workers.stages.border import crop_border, sheet_angle
from workers.stages.compress import usage_image
from workers.stages.deskew import deskew, estimate_skew
from workers.stages.load import load_page
from workers.stages.orientation import (
    UPRIGHT_READ,
    LineReader,
    Orientation,
    detect_orientation,
    line_axis,
    longest_lines,
    turn_upright,
    way_up,
)
from workers.stages.separator import SeparatorMark, printed_heading_read, read_separator
from workers.stopwatch import stage, timed_stages

MIN_DPI = 200  # DA/T 31-2017: text records are digitised at no less than 200 dpi


class PageFlag(str, enum.Enum):
    """What the station noticed about a page; every flag but ``separator`` sends its batch to review."""

    blank = "blank"  # an empty sheet: left out of the PDF, master kept
    separator = "separator"  # a separator sheet (分隔页): splits the run, never filed
    orientation_unsure = "orientation_unsure"  # the way up was decided with low confidence
    low_confidence = "low_confidence"  # mean OCR confidence under the threshold
    low_resolution = "low_resolution"  # under 200 dpi, the DA/T 31-2017 minimum
    resolution_mismatch = "resolution_mismatch"  # the stated dpi makes no paper size; read at an inferred one
    failed = "failed"  # the page could not be processed (its reason is on the page)


AUTO = "auto"  # Choices.crop: the station finds the sheet's edges itself


@dataclass(frozen=True)
class Choices:
    """A person's corrections, used when a page is derived again from its master; ``None`` (and crop
    ``AUTO``) leaves that decision to the station, as on a first run.

    ``turn``: the whole clockwise quarter-turn that makes the page upright (the station's turn with the
    person's added); ``skew_deg``: the fine angle to straighten by; ``crop``: a box ``(x0, y0, x1, y1)``
    on the master (before any turn; cut to the master's edges, and refused with :class:`ConfigError`
    ``bad_crop`` if nothing of the master is in it), ``None`` for no crop at all; ``blank``: whether
    the page is blank.
    """

    turn: int | None = None
    skew_deg: float | None = None
    crop: tuple[int, int, int, int] | None | str = AUTO
    blank: bool | None = None

    @property
    def none(self) -> bool:
        return self == Choices()


@dataclass
class PageOutcome:
    image: Image.Image
    dpi: tuple[float, float]
    text: PageText
    blank: bool
    flags: list[PageFlag] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def straighten(
    image: Image.Image,
    dpi: float,
    reader: LineReader,
    choices: Choices | None = None,
    *,
    axis_only: bool = False,
    decided: Orientation | None = None,
) -> tuple[Image.Image, Orientation, dict[str, Any]]:
    """Orientation → deskew → border crop, each decided on the page as it is after the previous one,
    unless a person chose it (``choices``): a chosen crop box is cut from the master first, a chosen turn
    or angle is used as it is.

    ``axis_only``: only which way the lines run is decided here (turn 0 or 90), upright or upside down
    being left to the caller (:func:`workers.stages.orientation.way_up` on the lines the OCR finds).
    ``decided``: the station's orientation, already decided on this master."""
    choices = choices or Choices()
    if image.mode not in ("L", "RGB"):
        image = image.convert("L" if image.mode in ("1", "I;16", "I", "F") else "RGB")
    if isinstance(choices.crop, tuple):
        image = image.crop(_crop_box(choices.crop, image.width, image.height))
    if choices.turn is None and decided is not None:
        orientation = decided
    elif choices.turn is None:
        with stage("orientation"):
            orientation = line_axis(image, dpi) if axis_only else detect_orientation(image, reader, dpi)
    else:
        orientation = Orientation(turn=choices.turn % 360, confidence=1.0, axis_ratio=0.0, reading=(0.0, 0.0))
    with stage("deskew"):
        image = turn_upright(image, orientation.turn)
        skew = None
        if choices.skew_deg is None:
            skew = orientation.skew if orientation.skew is not None else estimate_skew(image, dpi)
            angle = skew.angle if skew.found else sheet_angle(image)  # a blank back: straighten the sheet itself
        else:
            angle = choices.skew_deg
        image = deskew(image, angle) if angle else image
    box = None
    if choices.crop == AUTO:
        with stage("border"):
            image, border = crop_border(image)
        box = list(border.box) if border.box else None
    notes = {
        **orientation_notes(orientation),
        "skew_deg": round(angle or 0.0, 3),
        "skew_from": _skew_source(skew, angle),
        "skew_lines": skew.lines if skew is not None else 0,
        "crop": box if choices.crop == AUTO else list(choices.crop) if isinstance(choices.crop, tuple) else None,
        "crop_from": "station" if choices.crop == AUTO else "person",
        "turn_from": "station" if choices.turn is None else "person",
    }
    return image, orientation, notes


_AS_IT_CAME = Orientation(turn=0, confidence=0.0, axis_ratio=0.0, reading=(0.0, 0.0))


@runtime_checkable
class LineFinder(Protocol):
    """An OCR engine that finds a page's lines before it reads them (``ocr_models.rapidocr``)."""

    name: str

    def recognise(self, image: Image.Image) -> PageText: ...
    def find_lines(self, image: Image.Image) -> list[np.ndarray]: ...
    def line_crops(self, image: Image.Image, quads: Sequence[np.ndarray]) -> list[np.ndarray]: ...
    def read_found(
        self, image: Image.Image, quads: Sequence[np.ndarray], known: dict[int, tuple[str, float]] | None = None
    ) -> PageText: ...


def _read_way_up(
    master: Image.Image,
    image: Image.Image,
    axis: Orientation,
    dpi: float,
    engine: LineFinder,
    reader: LineReader,
    choices: Choices | None,
) -> tuple[Image.Image, Orientation, PageText, dict[str, Any]]:
    """The text of a page straightened with only its lines' axis known: the lines are found, the
    longest are read both ways up, and the page is read as it is (those readings reused) when it is
    upright. Upside down, it is straightened again turned half round and read afresh; when neither way
    reads as text, the orientation is decided from the master as without an engine (the other axis
    tried too) and the page is read as it then is. Returns the page, its orientation, its text and
    what changed in the straightening notes."""
    with stage("ocr"):
        quads = engine.find_lines(image)
    with stage("orientation"):
        chosen = longest_lines(quads)
        # The detector's lines, read by its own recogniser: UPRIGHT_READ was measured with it.
        up = way_up(engine.line_crops(image, [quads[i] for i in chosen]), reader, upright_at=UPRIGHT_READ)
    confidence = round(min(axis.confidence, up.confidence), 3)
    if up.legible and not up.upside_down:
        orientation = replace(axis, confidence=confidence, reading=up.reading)
        with stage("ocr"):
            text = engine.read_found(image, quads, known=dict(zip(chosen, up.readings, strict=True)))
        return image, orientation, text, orientation_notes(orientation)
    if up.legible:
        decided = replace(axis, turn=(axis.turn + 180) % 360, confidence=confidence, reading=up.reading)
        image, orientation, notes = straighten(master, dpi, reader, choices, decided=decided)
    else:
        image, orientation, notes = straighten(master, dpi, reader, choices)
    with stage("ocr"):
        text = engine.recognise(image)
    return image, orientation, text, notes


def _crop_box(crop: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """A person's crop box cut to the master (a box reaching past an edge stops at it); ConfigError
    (``bad_crop``) for a box with nothing of the master in it."""
    x0, y0, x1, y1 = crop
    box = (max(0, x0), max(0, y0), min(width, x1), min(height, y1))
    if not (box[0] < box[2] and box[1] < box[3]):
        raise ConfigError(
            f"The crop {list(crop)} holds nothing of the page (the master is {width}×{height} px; a crop is "
            "[x0, y0, x1, y1] on it, with x0 < x1 and y0 < y1). Crop the page again, or undo the crop.",
            reason_code="bad_crop",
        )
    return box


def orientation_notes(orientation: Orientation) -> dict[str, Any]:
    return {"turn": orientation.turn, "orientation_confidence": orientation.confidence}


def _skew_source(skew: Any, angle: float | None) -> str | None:
    if skew is None:
        return "person"
    return "text" if skew.found else "sheet edges" if angle is not None else None


@timed_stages
def process_page_image(
    source: Path,
    index: int,
    *,
    engine: OcrEngine,
    max_pixels: int,
    render_dpi: int,
    min_confidence: float,
    reader: LineReader | None = None,
    choices: Choices | None = None,
) -> PageOutcome:
    """Load → orientation, deskew, border → blank? → OCR, and the flags that send a batch to review.

    With ``choices`` (a person's corrections) the page is derived again: what the person chose is used
    instead of the station's decision, and a page a person corrected is never taken for a separator sheet.
    ``details["seconds"]`` gives the CPU seconds of each stage (see :mod:`workers.stopwatch`).
    """
    with stage("load"):
        loaded = load_page(source, index, max_pixels=max_pixels, render_dpi=render_dpi)
    dpi = min(loaded.dpi)
    details: dict[str, Any] = {"notes": list(loaded.notes)}
    with stage("separator"):
        mark = read_separator(loaded.image, dpi) if choices is None else None
    if mark is not None:
        # A separator sheet: it splits the run and names the item; nothing on it is read or filed.
        details["separator"] = asdict(mark)
        sheet = loaded.image if loaded.image.mode in ("L", "RGB") else loaded.image.convert("L")
        text = PageText(width=sheet.width, height=sheet.height, engine=engine.name)
        return PageOutcome(
            image=sheet, dpi=loaded.dpi, text=text, blank=False, flags=[PageFlag.separator], details=details
        )
    reader = reader or getattr(engine, "read_lines", None) or default_reader()  # PP-OCR's, as the engine runs it
    # With an engine that finds lines first (PP-OCR), upright or upside down is read on the lines it
    # found, and those readings are its text: no line is read twice. Otherwise it is decided first.
    finds_lines = isinstance(engine, LineFinder) and (choices is None or choices.turn is None)
    image, orientation, notes = straighten(loaded.image, dpi, reader, choices, axis_only=finds_lines)
    details.update(notes)
    flags: list[PageFlag] = []
    with stage("blank"):
        verdict = detect_blank(image, dpi=dpi)
    details["ink_ratio"] = round(verdict.ink_ratio, 5)
    blank = verdict.blank if choices is None or choices.blank is None else choices.blank
    if choices is not None and choices.blank is not None:
        details["blank_from"] = "person"
    if blank and finds_lines and orientation.turn:
        # A blank sheet is left as it came, as when its orientation is read first (nothing on it reads).
        image, orientation, notes = straighten(loaded.image, dpi, reader, choices, decided=_AS_IT_CAME)
        details.update(notes)
    if blank:
        flags.append(PageFlag.blank)
        text = PageText(width=image.width, height=image.height, engine=engine.name)
    else:
        if finds_lines:
            assert isinstance(engine, LineFinder)
            image, orientation, text, again = _read_way_up(
                loaded.image, image, orientation, dpi, engine, reader, choices
            )
            details.update(again)
        else:
            with stage("ocr"):
                text = engine.recognise(image)
        if not orientation.sure:
            flags.append(PageFlag.orientation_unsure)
        if choices is None and printed_heading_read(text.text):
            details["separator"] = asdict(
                SeparatorMark(None, readable=False, detail="the sheet's heading was read, but none of its codes")
            )
            return PageOutcome(
                image=image, dpi=loaded.dpi, text=text, blank=False, flags=[PageFlag.separator], details=details
            )
        if text.mean_confidence < min_confidence:
            flags.append(PageFlag.low_confidence)
        with stage("compress"):
            image, encoding = usage_image(image)
        details["encoding"] = encoding.kind
        details["encoding_reason"] = encoding.reason  # e.g. "faint_ink": grey, so a pencil note stays visible
    if dpi < MIN_DPI:
        flags.append(PageFlag.low_resolution)
    if loaded.stated_dpi is not None:
        # The file's resolution makes no paper size: read at an inferred one, which a person should check.
        flags.append(PageFlag.resolution_mismatch)
        details["stated_dpi"] = list(loaded.stated_dpi)
    return PageOutcome(image=image, dpi=loaded.dpi, text=text, blank=blank, flags=flags, details=details)


def warm_up(engine: OcrEngine, folder: Path) -> None:
    """Run one made-up page through every stage. A worker does this before RQ forks its first work
    horse, so the first-call costs (the models' set-up, Pillow's plug-ins, OpenCV's kernels; about a
    second in all) are paid once, not in every page job.

    The page is small (A4 at 60 dpi): the models keep the buffers of the largest input they have run,
    and every work horse starts with what its worker holds. Measured with OpenVINO: the detector warmed
    on a full page held 200 MB more in the worker and 120 MB more in each work horse than warmed on a
    small one, and a horse's first detection of a real page took the same time either way (a new input
    size is set up on its first run whatever ran before)."""
    page = Image.new("L", (496, 702), 235)
    a = np.array(page)
    for row in range(100, 600, 24):
        a[row : row + 12, 66:430:14] = 30  # rows of dark blocks, like lines of characters
    path = folder / "warm-up.png"
    Image.fromarray(a).rotate(1.5, expand=True, fillcolor=40).save(path, dpi=(60, 60))
    try:
        process_page_image(path, 0, engine=engine, max_pixels=10**8, render_dpi=60, min_confidence=0)
    finally:
        path.unlink(missing_ok=True)


def default_reader() -> LineReader:
    from ocr_models.rapidocr import read_lines

    return read_lines


def save_usage_image(image: Image.Image, stem: Path, *, jpeg_quality: int) -> Path:
    """Write the page's usage image: 1-bit as TIFF G4, grey and colour as JPEG. Atomic."""
    opts: dict[str, object]
    if image.mode == "1":
        path, fmt, opts = stem.with_suffix(".tif"), "TIFF", {"compression": "group4"}
    else:
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        path, fmt, opts = stem.with_suffix(".jpg"), "JPEG", {"quality": jpeg_quality, "optimize": True}
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, fmt, **opts)
    tmp.replace(path)
    return path
