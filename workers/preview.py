"""A page image as a browser shows it: browsers show no TIFF (the G4 usage image of a text page), and a
full-resolution scan is more than a screen needs."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image


def render_preview(path: Path, max_width: int) -> tuple[bytes, str]:
    """(the bytes, their media type) of the image at ``path`` for a screen: a JPEG at most ``max_width``
    pixels wide (a bilevel page as smooth grey); a JPEG already small enough is given as it is. OSError if
    the file is not a readable image (damaged, cut short)."""
    with Image.open(path) as im:
        if im.format == "JPEG" and im.width <= max_width:
            return path.read_bytes(), "image/jpeg"
        im.load()
        return scaled_jpeg(im, max_width, quality=85), "image/jpeg"


def scaled_jpeg(image: Image.Image, max_width: int | None, *, quality: int) -> bytes:
    """``image`` as JPEG for a screen: a bilevel or 16-bit page as grey, anything else as grey or RGB,
    scaled down to ``max_width`` pixels wide if it is wider (None: full size). The item previews and
    the review screen's pictures both come from here."""
    if image.mode not in ("L", "RGB"):
        image = image.convert("L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
    if max_width is not None and image.width > max_width:
        height = max(1, round(image.height * max_width / image.width))
        image = image.resize((max_width, height), Image.Resampling.LANCZOS, reducing_gap=2.0)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()
