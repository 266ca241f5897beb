"""Load stage: check an original cheaply, then decode one of its pages at its own resolution.

Pure functions: a path in, page descriptions or a Pillow image out. Every file the station cannot
use raises :class:`UnusableInput` with one of these ``reason_code`` values: ``empty``,
``not_an_image``, ``broken``, ``encrypted``, ``too_large``, ``no_pages``.

Pillow's decompression-bomb guard is a process-wide setting (``Image.MAX_IMAGE_PIXELS``). It is
never changed for good here: each open/decode sets it to the caller's ``max_pixels`` and restores
it afterwards (under a lock), so Pillow's own check fires at exactly our limit and becomes
``too_large``; other code in the process keeps whatever limit it had.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pikepdf
from pdf2image import convert_from_path
from pdf2image.exceptions import PDFInfoNotInstalledError, PDFPageCountError, PDFSyntaxError
from PIL import Image, ImageChops

from scanner_service.exceptions import MissingProgram, UnusableInput

ASSUMED_DPI = 300.0
_PLAUSIBLE_DPI = (10.0, 20000.0)  # outside this, a resolution tag is a placeholder, not a measurement
_ASPECT_TOLERANCE = 1.01  # x/y resolutions closer than 1 % count as square pixels
_MAX_PLAIN_CONTENT = 256 * 1024  # scanner pages have tiny content streams; bigger ones are vector pages
_TIFF_ORIENTATION, _TIFF_SUBFILE_TYPE = 274, 254

# Content-stream operators that put marks on the page (text showing is handled separately).
_PAINTING = {"S", "s", "f", "F", "f*", "B", "B*", "b", "b*", "sh", "BI", "INLINE IMAGE", "d0", "d1"}
_TEXT_SHOWING = {"Tj", "TJ", "'", '"'}
_INVISIBLE_TEXT = 3  # Tr 3: the OCR layer of a "sandwich" PDF, which does not change how the page looks

_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# PDF /Rotate turns the page clockwise; Pillow's ROTATE_n turns counter-clockwise.
_PDF_ROTATE = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}

_OTHER_FORMATS = [
    (b"PK\x03\x04", "a ZIP archive or Office document"),
    (b"\xd0\xcf\x11\xe0", "an old Microsoft Office document"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"{\\rtf", "an RTF document"),
]

_pil_lock = threading.Lock()


@dataclass(frozen=True)
class PageSource:
    index: int  # 0-based frame (TIFF) or page (PDF) number inside the file
    width: int  # pixels of the image the page will be loaded at
    height: int
    dpi: tuple[float, float] | None  # resolution if known


@dataclass
class LoadedPage:
    image: Image.Image  # mode "1", "L" or "RGB"
    dpi: tuple[float, float]  # best known resolution; ASSUMED_DPI (with a note) if unknown
    notes: list[str] = field(default_factory=list)


def inspect_file(path: Path, *, max_pixels: int, render_dpi: int = 300) -> list[PageSource]:
    """Cheap check of one original (headers only, no full decode): which pages it has.

    Raises :class:`UnusableInput` with a reason code if the file cannot be used.
    """
    path = Path(path)
    kind = _sniff(path)
    if kind == "pdf":
        with _open_pdf(path) as pdf, _decoding(path, "PDF", max_pixels):
            return [_analyse_pdf_page(pdf, path, i, max_pixels, render_dpi).source for i in range(len(pdf.pages))]
    _check_complete(path, kind)
    with path.open("rb") as fp, _decoding(path, kind.upper(), max_pixels):
        im = Image.open(fp)
        return [_raster_source(im, path, i, max_pixels) for i in _raster_frames(im, kind)]


def load_page(path: Path, index: int, *, max_pixels: int, render_dpi: int = 300) -> LoadedPage:
    """Decode page ``index`` (as listed by :func:`inspect_file`) at its own resolution.

    Re-checks what :func:`inspect_file` checks, so it is safe on its own. Raises
    :class:`UnusableInput` for an unusable file and ``IndexError`` for a page the file lacks.
    """
    path = Path(path)
    kind = _sniff(path)
    if kind == "pdf":
        with _open_pdf(path) as pdf, _decoding(path, "PDF", max_pixels):
            if not 0 <= index < len(pdf.pages):
                raise IndexError(f"{path.name} has no page {index}")
            page = _load_pdf_page(pdf, path, index, max_pixels, render_dpi)
            if pdf.get_warnings():
                page.notes.append("the PDF is damaged; it was repaired while reading")
            return page
    with path.open("rb") as fp, _decoding(path, kind.upper(), max_pixels):
        im = Image.open(fp)
        if kind != "tiff" and index != 0 or index >= getattr(im, "n_frames", 1):
            raise IndexError(f"{path.name} has no page {index}")
        source = _raster_source(im, path, index, max_pixels)
        im.load()  # with our own file object: closing it afterwards keeps the pixels
        return _finish_raster(im, source)


# --- recognising and guarding ----------------------------------------------------------------


def _unusable(path: Path, reason: str, problem: str, advice: str) -> UnusableInput:
    return UnusableInput(f"{path.name}: {problem}. {advice}", reason_code=reason)


def _broken(path: Path, kind: str, detail: str) -> UnusableInput:
    return _unusable(
        path,
        "broken",
        f"the {kind} file is damaged or incomplete ({detail})",
        "It may have been taken before the scanner finished writing it; scan or export it again.",
    )


def _too_large(path: Path, index: int, width: int, height: int, max_pixels: int, what: str = "page") -> UnusableInput:
    return _unusable(
        path,
        "too_large",
        f"{what} {index + 1} is {width} x {height} pixels ({width * height / 1e6:.0f} megapixels), more than "
        f"the station's limit of {max_pixels / 1e6:.0f} megapixels",
        "A scanned page is never this large, so the file is damaged or was made to overload the station. "
        "Scan at a normal resolution (300 dpi is enough for text); if the page is genuinely this big, an "
        "administrator can raise SCANSTATION_MAX_PIXELS.",
    )


def _sniff(path: Path) -> str:
    """Decide the format by its first bytes; the file name (and its extension) may say anything."""
    with path.open("rb") as fp:
        head = fp.read(1024)
    if not head:
        raise _unusable(
            path, "empty", "the file is empty (0 bytes)",
            "The scanner probably failed while saving it; scan these pages again.",
        )
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # classic and BigTIFF
        return "tiff"
    if b"%PDF-" in head:  # readers accept junk before the header, so scanner software sometimes writes it
        return "pdf"
    seems = next((name for magic, name in _OTHER_FORMATS if head.startswith(magic)), None)
    if seems is None:
        try:
            head.decode("utf-8")
            seems = "a text file"
        except UnicodeDecodeError:
            seems = "a file of unknown type"
    raise _unusable(
        path, "not_an_image", f"this is not a scan but {seems}",
        "The station takes TIFF, JPEG, PNG and PDF files only; take it out of the inbox, or save the scan "
        "in one of these formats.",
    )


def _check_complete(path: Path, kind: str) -> None:
    """Catch a cut-off JPEG/PNG from its last bytes (a file copied while still being written)."""
    size = path.stat().st_size
    with path.open("rb") as fp:
        fp.seek(max(0, size - 65536))
        tail = fp.read()
    # End markers: JPEG's EOI cannot occur inside entropy-coded data; PNG ends with an IEND chunk.
    end = {"jpeg": b"\xff\xd9", "png": b"IEND\xaeB`\x82"}.get(kind)
    if end is not None and end not in tail:
        raise _broken(path, kind.upper(), "it ends before the image is complete")


@contextmanager
def _decoding(path: Path, kind: str, max_pixels: int) -> Iterator[None]:
    """Run Pillow/pikepdf work with Pillow's bomb limit at ``max_pixels``; turn decoder failures into reasons."""
    with _pil_lock, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
        try:
            yield
        except (UnusableInput, MissingProgram, IndexError, MemoryError, FileNotFoundError, PermissionError):
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _unusable(
                path, "too_large", f"an image in it is larger than the limit of {max_pixels / 1e6:.0f} megapixels",
                "Scan at a normal resolution (300 dpi is enough for text), or ask an administrator to raise "
                "SCANSTATION_MAX_PIXELS.",
            ) from e
        except pikepdf.PasswordError as e:
            raise _encrypted(path) from e
        except Exception as e:  # any other decoder failure on an untrusted file means the file is damaged
            raise _broken(path, kind, str(e).splitlines()[0][:200] if str(e) else type(e).__name__) from e
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _plausible(dpi: Any) -> tuple[float, float] | None:
    try:
        x, y = (float(v) for v in dpi)
    except (TypeError, ValueError):
        return None
    lo, hi = _PLAUSIBLE_DPI
    if not (lo <= x <= hi and lo <= y <= hi):
        return None
    # PNG stores dots per metre, so 300 dpi comes back as 299.9994; give people the number they set.
    return tuple(float(round(v)) if abs(v - round(v)) < 0.01 else round(v, 2) for v in (x, y))  # type: ignore[return-value]


def _square(width: int, height: int, dpi: tuple[float, float] | None) -> tuple[int, int, tuple[float, float] | None]:
    """Size and resolution after resampling non-square pixels (e.g. fax 204x98 dpi) to the larger one."""
    if dpi is None or max(dpi) / min(dpi) <= _ASPECT_TOLERANCE:
        return width, height, dpi
    top = max(dpi)
    return round(width * top / dpi[0]), round(height * top / dpi[1]), (top, top)


# --- TIFF, JPEG, PNG ------------------------------------------------------------------------


def _raster_frames(im: Image.Image, kind: str) -> list[int]:
    """Pages of a raster file: every TIFF frame except thumbnails; only the main image of a JPEG/PNG."""
    if kind != "tiff":
        return [0]  # MPO previews and APNG frames are not pages
    frames, thumbs = [], []
    for i in range(getattr(im, "n_frames", 1)):
        im.seek(i)  # reads one IFD only
        (thumbs if int(im.tag_v2.get(_TIFF_SUBFILE_TYPE, 0)) & 1 else frames).append(i)
    return frames or thumbs


def _raster_dpi(im: Image.Image) -> tuple[float, float] | None:
    if im.format == "TIFF":
        # Read this frame's own tags: Pillow's info["dpi"] can linger from the previous frame.
        tags = im.tag_v2
        unit = {2: 1.0, 3: 2.54}.get(int(tags.get(296, 2)))
        if unit is None or 282 not in tags:
            return None
        return _plausible((float(tags[282]) * unit, float(tags.get(283, tags[282])) * unit))
    return _plausible(im.info.get("dpi"))


def _orientation(im: Image.Image) -> int:
    if im.format == "TIFF":
        value = im.tag_v2.get(_TIFF_ORIENTATION, 1)
    elif im.format in ("JPEG", "MPO"):
        value = im.getexif().get(_TIFF_ORIENTATION, 1)
    else:  # a PNG's eXIf chunk may follow the pixels, so it cannot be read cheaply; scanners do not set it
        value = 1
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


def _raster_geometry(im: Image.Image) -> tuple[int, int, tuple[float, float] | None, int]:
    """Size and resolution of the current frame once turned upright, and its orientation tag."""
    width, height = im.size
    dpi, orientation = _raster_dpi(im), _orientation(im)
    if orientation in (5, 6, 7, 8):  # these orientations swap the axes
        width, height = height, width
        dpi = dpi and (dpi[1], dpi[0])
    return width, height, dpi, orientation


def _raster_source(im: Image.Image, path: Path, index: int, max_pixels: int) -> PageSource:
    if index:
        im.seek(index)
    if im.width * im.height > max_pixels:
        raise _too_large(path, index, im.width, im.height, max_pixels)
    width, height, dpi = _square(*_raster_geometry(im)[:3])
    if width * height > max_pixels:
        raise _too_large(path, index, width, height, max_pixels)
    _check_strips(im, path)
    return PageSource(index, width, height, dpi)


def _check_strips(im: Image.Image, path: Path) -> None:
    """A TIFF frame whose data would lie past the end of the file was cut off while being copied."""
    if im.format != "TIFF":
        return
    tags = im.tag_v2
    for offsets, counts in ((273, 279), (324, 325)):
        if offsets in tags and counts in tags:
            end = max((int(o) + int(c) for o, c in zip(_seq(tags[offsets]), _seq(tags[counts]), strict=False)), default=0)
            if end > path.stat().st_size:
                raise _broken(path, "TIFF", f"page {im.tell() + 1} ends past the end of the file")


def _seq(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (value,)


def _finish_raster(im: Image.Image, source: PageSource) -> LoadedPage:
    notes: list[str] = []
    _, _, dpi, orientation = _raster_geometry(im)
    if orientation in _EXIF_TRANSPOSE:
        im = im.transpose(_EXIF_TRANSPOSE[orientation])
        notes.append(f"turned upright as its orientation tag ({orientation}) asks")
    return _finish(_to_page_mode(im, notes), source.width, source.height, dpi, notes)


def _finish(
    image: Image.Image, width: int, height: int, dpi: tuple[float, float] | None, notes: list[str]
) -> LoadedPage:
    """Resample non-square pixels to the larger resolution, and fill in an unknown resolution."""
    if dpi is None:
        notes.append(f"the file does not give its resolution; {ASSUMED_DPI:.0f} dpi assumed")
        return LoadedPage(image, (ASSUMED_DPI, ASSUMED_DPI), notes)
    if image.size != (width, height):
        # Bilevel scans stay bilevel: nearest neighbour only repeats rows/columns.
        resample = Image.Resampling.NEAREST if image.mode == "1" else Image.Resampling.LANCZOS
        image = image.resize((width, height), resample)
        notes.append(f"pixels were not square ({dpi[0]:g} x {dpi[1]:g} dpi); resampled to {max(dpi):g} dpi")
        dpi = (max(dpi), max(dpi))
    return LoadedPage(image, dpi, notes)


def _to_page_mode(im: Image.Image, notes: list[str]) -> Image.Image:
    """Convert any Pillow mode to "1", "L" or "RGB" the way the page looks on paper."""
    mode = im.mode
    if mode in ("1", "L", "RGB"):
        return im
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("LA", "La", "RGBA", "RGBa"):
        # Transparent parts are paper: put the image on white.
        base = "L" if mode.startswith("L") else "RGB"
        im = im.convert(base + "A")
        page = Image.new(base, im.size, 255 if base == "L" else (255, 255, 255))
        page.paste(im.convert(base), mask=im.getchannel("A"))
        notes.append("transparency flattened onto white")
        return _grey_if_grey(page)
    if mode.startswith(("I", "F")):
        # 16-bit (or float) samples: scale to 8 bits rather than let Pillow clip everything above 255 to white.
        arr = np.asarray(im, dtype=np.float64)
        top = arr.max(initial=0.0)
        if mode.startswith("I;16") or top > 255:
            scale = 255.0 / 65535.0 if mode.startswith("I;16") or top <= 65535 else 255.0 / top
        else:
            scale = 255.0 if mode == "F" and top <= 1.0 else 1.0
        notes.append("reduced to 8 bits per sample")
        return Image.fromarray(np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8), "L")
    if mode == "CMYK":
        notes.append("converted from CMYK to RGB")
    return _grey_if_grey(im.convert("RGB"))


def _grey_if_grey(im: Image.Image) -> Image.Image:
    """An RGB image whose three channels are identical (a grey palette, a rendered text page) is L."""
    if im.mode != "RGB":
        return im
    r, g, b = im.split()
    if ImageChops.difference(r, g).getbbox() is None and ImageChops.difference(g, b).getbbox() is None:
        return r
    return im
