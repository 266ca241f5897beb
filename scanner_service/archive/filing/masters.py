"""Masters: the archived copy of one scanned page, as close to the scanner's bytes as the format allows.

A single-image original is copied byte for byte (keeping its format); a page of a multi-page TIFF
becomes a lossless TIFF, and a page of a PDF a one-page PDF cut out of it without re-encoding. Every
master is written durably (:mod:`workers.durable`) and hashed as it is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pikepdf
from PIL import Image

from workers import durable
from workers.durable import Digest

_COPY_AS_IS = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif", "BMP": "bmp", "WEBP": "webp", "JPEG2000": "jp2"}


def write_master(source: Path, index: int, frames_used: int, target_stem: Path) -> tuple[Path, Digest]:
    """Write the master of frame/page ``index`` of ``source`` as ``target_stem`` + its suffix.

    ``frames_used`` is how many pages of the batch come from ``source``: a one-frame original used
    once is copied as is. Returns the path written and its digest.
    """
    with open(source, "rb") as handle:
        is_pdf = handle.read(5) == b"%PDF-"
    if is_pdf:
        target = target_stem.with_suffix(".pdf")
        with pikepdf.open(source) as pdf:
            if len(pdf.pages) == 1:
                return target, durable.copy_file(source, target)
            single = pikepdf.Pdf.new()
            single.pages.append(pdf.pages[index])
            with durable.atomic_path(target) as tmp:
                single.save(tmp)
        return target, durable.sha256_of(target)
    with Image.open(source) as im:
        frames = getattr(im, "n_frames", 1)
        if frames == 1 and frames_used == 1 and im.format in _COPY_AS_IS:
            target = target_stem.with_suffix("." + _COPY_AS_IS[im.format])
            return target, durable.copy_file(source, target)
        im.seek(index)
        frame = im.copy()
        dpi = im.info.get("dpi")
    target = target_stem.with_suffix(".tif")
    options: dict[str, Any] = {"compression": "group4" if frame.mode == "1" else "tiff_lzw"}
    if dpi:
        options["dpi"] = dpi
    with durable.atomic_path(target) as tmp:
        frame.save(tmp, "TIFF", **options)
    return target, durable.sha256_of(target)
