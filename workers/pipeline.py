"""One page through the stages, as a pure function: an original's page in, a usage image and text out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ocr_models.base import OcrEngine, PageText
from workers.stages.blank import detect_blank
from workers.stages.load import load_page

# Geometry stages (orientation, deskew, border) plug in here: image in, image and notes out.
GeometryStage = Callable[[Image.Image], tuple[Image.Image, dict[str, Any]]]

MIN_DPI = 200  # DA/T 31-2017: text records are digitised at no less than 200 dpi


@dataclass
class PageOutcome:
    image: Image.Image
    dpi: tuple[float, float]
    text: PageText
    blank: bool
    flags: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def process_page_image(
    source: Path,
    index: int,
    *,
    engine: OcrEngine,
    max_pixels: int,
    render_dpi: int,
    min_confidence: float,
    geometry: list[tuple[str, GeometryStage]] | None = None,
) -> PageOutcome:
    """Load → geometry stages → blank? → OCR, and the flags that send a batch to review."""
    loaded = load_page(source, index, max_pixels=max_pixels, render_dpi=render_dpi)
    image = loaded.image
    details: dict[str, Any] = {"notes": list(loaded.notes)}
    for name, stage in geometry or []:
        image, notes = stage(image)
        details[name] = notes
    flags: list[str] = []
    verdict = detect_blank(image)
    details["ink_ratio"] = round(verdict.ink_ratio, 5)
    if verdict.blank:
        flags.append("blank")
        text = PageText(width=image.width, height=image.height, engine=engine.name)
    else:
        text = engine.recognise(image)
        if text.mean_confidence < min_confidence:
            flags.append("low_confidence")
    if min(loaded.dpi) < MIN_DPI:
        flags.append("low_resolution")
    return PageOutcome(image=image, dpi=loaded.dpi, text=text, blank=verdict.blank, flags=flags, details=details)


def save_usage_image(image: Image.Image, stem: Path, *, jpeg_quality: int) -> Path:
    """Write the page's usage image: 1-bit as TIFF G4, grey and colour as JPEG. Atomic."""
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
