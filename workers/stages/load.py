"""Load stage: check an original cheaply, then decode one of its pages at its own resolution.

Pure functions: a path in, page descriptions or a Pillow image out. Every file the station cannot
use raises :class:`UnusableInput` with one of these ``reason_code`` values: ``empty``,
``not_an_image``, ``broken``, ``encrypted``, ``too_large``, ``no_pages``.

A resolution is believed only if the page it implies is paper-sized (half an A6 up to one and a half
A0): a header claiming 2400 dpi for an A4-sized pixel count would make a 3 cm page that every later
stage measures wrongly. Such a page is read at a resolution inferred from its pixel count instead,
and :attr:`LoadedPage.stated_dpi` keeps what the file said, so the page can be flagged.

Pillow's decompression-bomb guard is a process-wide setting (``Image.MAX_IMAGE_PIXELS``). It is
never changed for good here: each inspect/load sets it to the caller's ``max_pixels`` and restores it
afterwards, so Pillow's own check fires at exactly our limit and becomes ``too_large``; other code
keeps whatever limit it had. The window is guarded by a module lock and ``warnings.catch_warnings``,
which serialises loads within one process: fine for the station's single-threaded workers.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pikepdf
from pdf2image import convert_from_path
from pdf2image.exceptions import PDFInfoNotInstalledError, PDFPageCountError, PDFSyntaxError
from PIL import Image, ImageChops

from workers.errors import MissingProgram, UnusableInput

ASSUMED_DPI = 300.0
_PLAUSIBLE_DPI = (10.0, 20000.0)  # outside this, a resolution tag is a placeholder, not a measurement
_MM_PER_INCH = 25.4
# Paper sizes (short x long side, mm) a page's pixel count is matched against to infer its resolution.
_PAPER_MM = {
    "A0": (841.0, 1189.0),
    "A1": (594.0, 841.0),
    "A2": (420.0, 594.0),
    "A3": (297.0, 420.0),
    "A4": (210.0, 297.0),
    "A5": (148.0, 210.0),
    "A6": (105.0, 148.0),
    "B4": (250.0, 353.0),
    "B5": (176.0, 250.0),
    "Letter": (215.9, 279.4),
    "Legal": (215.9, 355.6),
}
# A scan is the sheet plus some scanner backing around it, or the sheet cropped a little.
_PAPER_FIT = (0.97, 1.2)
# Believable pages: from half an A6 (a receipt, an ID card) to one and a half A0 (a large plan).
_SMALLEST_MM = (_PAPER_MM["A6"][0] / 2, _PAPER_MM["A6"][1] / 2)
_LARGEST_MM = (_PAPER_MM["A0"][0] * 1.5, _PAPER_MM["A0"][1] * 1.5)
# Resolutions scanners are set to, most usual for documents first: the first that makes the pixel
# count a paper size is taken (A4 at 300 dpi and A6 at 600 dpi have the same pixels: 300 wins).
_STANDARD_DPI = (300.0, 200.0, 400.0, 600.0, 150.0, 1200.0)
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
_PDF_ROTATE = {
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}

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
    # The file's own resolution when it was not believed (it makes no paper size); None otherwise.
    stated_dpi: tuple[float, float] | None = None


def page_size_mm(width: int, height: int, dpi: float) -> tuple[float, float]:
    """The physical size (mm) a pixel count makes at a resolution."""
    return width / dpi * _MM_PER_INCH, height / dpi * _MM_PER_INCH


def fits_paper(width: int, height: int, dpi: float) -> bool:
    """Whether ``width`` x ``height`` pixels at ``dpi`` make a page between half an A6 and 1.5 x A0."""
    short, long = sorted(page_size_mm(width, height, dpi))
    return _SMALLEST_MM[0] <= short <= _LARGEST_MM[0] and _SMALLEST_MM[1] <= long <= _LARGEST_MM[1]


def infer_dpi(width: int, height: int) -> float:
    """A resolution for a pixel count whose stated one cannot be right: the first usual scanner
    resolution at which it is a known paper size (the sheet plus up to 20 % backing), else 300."""
    for dpi in _STANDARD_DPI:
        short, long = sorted(page_size_mm(width, height, dpi))
        for paper_short, paper_long in _PAPER_MM.values():
            lo, hi = _PAPER_FIT
            if lo * paper_short <= short <= hi * paper_short and lo * paper_long <= long <= hi * paper_long:
                return dpi
    return ASSUMED_DPI


def _believed(width: int, height: int, dpi: tuple[float, float] | None) -> tuple[float, float] | None:
    """``dpi`` (square) if it makes a paper-sized page; otherwise the resolution inferred from the pixels."""
    if dpi is None or fits_paper(width, height, max(dpi)):
        return dpi
    inferred = infer_dpi(width, height)
    return inferred, inferred


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
        if index < 0 or kind != "tiff" and index != 0 or index >= getattr(im, "n_frames", 1):
            raise IndexError(f"{path.name} has no page {index}")
        _raster_source(im, path, index, max_pixels)  # seeks to the frame and re-checks its size
        im.load()  # with our own file object: closing it afterwards keeps the pixels
        return _finish_raster(im)


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


def _too_large(path: Path, what: str, width: int, height: int, max_pixels: int) -> UnusableInput:
    return _unusable(
        path,
        "too_large",
        f"{what} is {width} x {height} pixels ({width * height / 1e6:.0f} megapixels), more than "
        f"the station's limit of {max_pixels / 1e6:.0f} megapixels",
        "A scanned page is never this large, so the file is damaged or was made to overload the station. "
        "Scan at a normal resolution (300 dpi is enough for text); if the page really is this big, an "
        "administrator can raise SCANSTATION_MAX_PIXELS.",
    )


def _sniff(path: Path) -> str:
    """Decide the format by its first bytes; the file name (and its extension) may say anything."""
    with path.open("rb") as fp:
        head = fp.read(1024)
    if not head:
        raise _unusable(
            path,
            "empty",
            "the file is empty (0 bytes)",
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
        seems = "a text file" if b"\x00" not in head else "a file of unknown type"
    raise _unusable(
        path,
        "not_an_image",
        f"this is not a scan but {seems}",
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
    """Run decoding with Pillow's bomb limit at ``max_pixels``; turn decoder failures into reasons."""
    with _pil_lock, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # Pillow only warns when a TIFF directory is cut off, then carries on with what it got.
        warnings.filterwarnings("error", "Truncated File Read", UserWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
        try:
            yield
        except (UnusableInput, MissingProgram, IndexError, MemoryError, FileNotFoundError, PermissionError):
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _unusable(
                path,
                "too_large",
                f"an image in it is larger than the limit of {max_pixels / 1e6:.0f} megapixels",
                "Scan at a normal resolution (300 dpi is enough for text), or ask an administrator to raise "
                "SCANSTATION_MAX_PIXELS.",
            ) from e
        except pikepdf.PasswordError as e:
            raise _encrypted(path) from e
        except Exception as e:  # any other decoder failure on an untrusted file means the file is damaged
            raise _broken(path, kind, _first_line(e)) from e
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
    # PNG stores dots per metre (300 dpi comes back as 299.9994) and PDF page sizes are often rounded
    # to whole points (kcs.pdf: 300.24 dpi): give people the whole number they set.
    return tuple(float(round(v)) if abs(v - round(v)) < 0.002 * v else round(v, 2) for v in (x, y))  # type: ignore[return-value]


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
    frames: list[int] = []
    thumbs: list[int] = []
    for i in range(getattr(im, "n_frames", 1)):
        im.seek(i)  # reads one IFD only
        (thumbs if int(_tags(im).get(_TIFF_SUBFILE_TYPE, 0)) & 1 else frames).append(i)
    return frames or thumbs


def _tags(im: Image.Image) -> Any:
    """The current TIFF frame's directory (Pillow's typing does not know TiffImageFile's attribute)."""
    return getattr(im, "tag_v2", {})


def _raster_dpi(im: Image.Image) -> tuple[float, float] | None:
    if im.format == "TIFF":
        # Read this frame's own tags: Pillow's info["dpi"] can linger from the previous frame.
        tags = _tags(im)
        unit = {2: 1.0, 3: 2.54}.get(int(tags.get(296, 2)))
        if unit is None or 282 not in tags:
            return None
        return _plausible((float(tags[282]) * unit, float(tags.get(283, tags[282])) * unit))
    return _plausible(im.info.get("dpi"))


def _orientation(im: Image.Image) -> int:
    if im.format == "TIFF":
        value = _tags(im).get(_TIFF_ORIENTATION, 1)
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
    im.seek(index)  # also back to frame 0 after _raster_frames walked them all
    if im.width * im.height > max_pixels:
        raise _too_large(path, f"page {index + 1}", im.width, im.height, max_pixels)
    width, height, dpi = _square(*_raster_geometry(im)[:3])
    if width * height > max_pixels:
        raise _too_large(path, f"page {index + 1}", width, height, max_pixels)
    _check_strips(im, path)
    return PageSource(index, width, height, _believed(width, height, dpi))


def _check_strips(im: Image.Image, path: Path) -> None:
    """A TIFF frame whose data would lie past the end of the file was cut off while being copied."""
    if im.format != "TIFF":
        return
    tags = _tags(im)
    for offsets, counts in ((273, 279), (324, 325)):
        if offsets in tags and counts in tags:
            end = max(
                (int(o) + int(c) for o, c in zip(_seq(tags[offsets]), _seq(tags[counts]), strict=False)),
                default=0,
            )
            if end > path.stat().st_size:
                raise _broken(path, "TIFF", f"page {im.tell() + 1} ends past the end of the file")


def _seq(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (value,)


def _finish_raster(im: Image.Image) -> LoadedPage:
    notes: list[str] = []
    _, _, dpi, orientation = _raster_geometry(im)
    if orientation in _EXIF_TRANSPOSE:
        im = im.transpose(_EXIF_TRANSPOSE[orientation])
        notes.append(f"turned upright as its orientation tag ({orientation}) asks")
    return _finish(_to_page_mode(im, notes), dpi, notes)


def _finish(image: Image.Image, dpi: tuple[float, float] | None, notes: list[str]) -> LoadedPage:
    """Resample non-square pixels to the larger resolution, and fill in an unknown resolution."""
    if dpi is None:
        notes.append(f"the file does not give its resolution; {ASSUMED_DPI:.0f} dpi assumed")
        return LoadedPage(image, (ASSUMED_DPI, ASSUMED_DPI), notes)
    width, height, square = _square(image.width, image.height, dpi)
    if square != dpi:
        # Bilevel scans stay bilevel: nearest neighbour only repeats rows/columns.
        resample = Image.Resampling.NEAREST if image.mode == "1" else Image.Resampling.LANCZOS
        image = image.resize((width, height), resample)
        notes.append(f"pixels were not square ({dpi[0]:g} x {dpi[1]:g} dpi); resampled to {max(dpi):g} dpi")
    return _believe(LoadedPage(image, square or dpi, notes))


def _believe(page: LoadedPage) -> LoadedPage:
    """Replace a resolution that makes no paper size by one inferred from the pixel count, with a note."""
    believed = _believed(page.image.width, page.image.height, page.dpi)
    if believed is None or believed == page.dpi:
        return page
    w_mm, h_mm = page_size_mm(page.image.width, page.image.height, max(page.dpi))
    page.notes.append(
        f"the file says {max(page.dpi):g} dpi, which would make the page {w_mm:.0f} x {h_mm:.0f} mm, "
        f"not a paper size; read at {believed[0]:g} dpi (from its pixel count)"
    )
    return LoadedPage(page.image, believed, page.notes, stated_dpi=page.dpi)


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
        # 16-bit (or float) samples: scale to 8 bits; Pillow's convert would clip everything above 255.
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


# --- PDF ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PdfPlan:
    source: PageSource
    image: pikepdf.Stream | None  # the one image that is the whole page; None: render the page
    image_dpi: tuple[float, float] | None  # that image's own resolution, upright, before squaring
    rotate: int


def _encrypted(path: Path) -> UnusableInput:
    return _unusable(
        path,
        "encrypted",
        "the PDF is encrypted (it has a password or use restrictions)",
        "An archive copy must open without a password and may not be encrypted. Save it again without "
        "security (in the scanner software or a PDF editor: remove the document security), then put it back "
        "in the inbox.",
    )


@contextmanager
def _open_pdf(path: Path) -> Iterator[pikepdf.Pdf]:
    try:
        pdf = pikepdf.open(path)
    except pikepdf.PasswordError as e:
        raise _encrypted(path) from e
    except pikepdf.PdfError as e:
        raise _broken(path, "PDF", str(e).removeprefix(f"{path}: ")) from e
    with pdf:
        # A file with only an owner password opens without one, but is still encrypted, which an archive
        # copy (PDF/A) may not be; and the restrictions say its author did not want it copied freely.
        if pdf.is_encrypted:
            raise _encrypted(path)
        try:
            count = len(pdf.pages)
        except pikepdf.PdfError as e:
            raise _broken(path, "PDF", str(e).removeprefix(f"{path}: ")) from e
        if count == 0:
            raise _unusable(path, "no_pages", "the PDF has no pages", "Export or scan the document again.")
        yield pdf


def _analyse_pdf_page(pdf: pikepdf.Pdf, path: Path, index: int, max_pixels: int, render_dpi: int) -> _PdfPlan:
    """Decide from the page's objects alone (no pixels) how it will be loaded, and at what size."""
    page = pdf.pages[index]
    box = _page_box(page.obj)
    if box is None:
        raise _broken(path, "PDF", f"page {index + 1} has no valid size")
    rotate = int(_inherited(page.obj, "/Rotate") or 0) % 360
    rotate = rotate if rotate in (0, 90, 180, 270) else 0  # as PDF readers do with odd angles
    resources = _inherited(page.obj, "/Resources") or pikepdf.Dictionary()
    for width, height in _image_sizes(resources, set()):
        if width * height > max_pixels:  # rendering would decode it too, so this is the bomb check
            raise _too_large(path, f"an image on page {index + 1}", width, height, max_pixels)
    plain = _whole_page_image(page, resources, box)
    dpi = None
    if plain is not None:
        image, (drawn_w, drawn_h) = plain
        width, height = int(image.Width), int(image.Height)
        dpi = _plausible((width / (drawn_w / 72), height / (drawn_h / 72)))
    if plain is not None and dpi is not None:
        if rotate in (90, 270):
            width, height, dpi = height, width, (dpi[1], dpi[0])
        width, height, square = _square(width, height, dpi)
        source = PageSource(index, width, height, _believed(width, height, square))
    else:
        plain = None
        # pdftoppm's own arithmetic: ceil of points * dpi / 72, axes swapped for a turned page.
        width, height = (
            math.ceil((hi - lo) * render_dpi / 72 - 1e-6) for lo, hi in ((box[0], box[2]), (box[1], box[3]))
        )
        if rotate in (90, 270):
            width, height = height, width
        source = PageSource(index, width, height, (float(render_dpi), float(render_dpi)))
    if source.width * source.height > max_pixels:
        raise _too_large(path, f"page {index + 1}", source.width, source.height, max_pixels)
    return _PdfPlan(source, plain[0] if plain else None, dpi, rotate)


def _load_pdf_page(pdf: pikepdf.Pdf, path: Path, index: int, max_pixels: int, render_dpi: int) -> LoadedPage:
    plan = _analyse_pdf_page(pdf, path, index, max_pixels, render_dpi)
    notes: list[str] = []
    if plan.image is not None:
        try:
            image = _extract(plan.image, notes)
        except (MemoryError, Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise
        except Exception as e:  # e.g. JBIG2 without jbig2dec: poppler decodes it itself
            # At the image's own resolution, so that poppler draws the image's pixels one for one.
            dpi = round(max(plan.image_dpi or plan.source.dpi or (render_dpi,)))
            bilevel = int(plan.image.get("/BitsPerComponent", 8)) == 1
            notes.append(f"its image could not be decoded directly ({_first_line(e)}); rendered at {dpi:g} dpi")
            image = _render(path, index, dpi, grey=bilevel)
            if bilevel:
                image = image.point(lambda v: 255 if v >= 128 else 0).convert("1", dither=Image.Dither.NONE)
            return _believe(LoadedPage(_grey_if_grey(image), (float(dpi), float(dpi)), notes))
        if plan.rotate:
            image = image.transpose(_PDF_ROTATE[plan.rotate])
        return _finish(image, plan.image_dpi, notes)
    notes.append(f"rendered at {render_dpi} dpi (the page is not one scanned image)")
    image = _grey_if_grey(_render(path, index, render_dpi))
    return LoadedPage(image, (float(render_dpi), float(render_dpi)), notes)


def _extract(xobj: pikepdf.Stream, notes: list[str]) -> Image.Image:
    """The embedded image as it looks on the page: inversions applied, soft mask flattened onto white."""
    pim = pikepdf.PdfImage(xobj)
    im = pim.as_pil_image(apply_mask=False)
    if im.mode == "CMYK" and "/DCTDecode" in pim.filters:
        # Pillow reads every CMYK JPEG as Adobe-inverted; inside a PDF the samples count as stored,
        # and an inversion is spelt out by /Decode. Without this, cmyk.pdf-style pages come out black.
        im = ImageChops.invert(im)
        if [float(v) for v in xobj.get("/Decode", [])][:2] == [1.0, 0.0]:
            im = ImageChops.invert(im)
    im.load()
    smask = xobj.get("/SMask")
    if isinstance(smask, pikepdf.Stream):
        alpha = pikepdf.PdfImage(smask).as_pil_image().convert("L")
        im = _to_page_mode(im, notes)
        im = im.convert("L") if im.mode == "1" else im.copy()
        im.putalpha(alpha if alpha.size == im.size else alpha.resize(im.size))
    return _to_page_mode(im, notes)


def _render(path: Path, index: int, dpi: int, *, grey: bool = False) -> Image.Image:
    try:
        images = convert_from_path(
            path, dpi=dpi, first_page=index + 1, last_page=index + 1, use_cropbox=True, grayscale=grey
        )
    except PDFInfoNotInstalledError as e:
        raise MissingProgram("poppler-utils (pdftoppm, pdfinfo) is needed to render PDF pages") from e
    except (PDFPageCountError, PDFSyntaxError) as e:
        raise _broken(path, "PDF", _first_line(e)) from e
    if len(images) != 1:
        raise _broken(path, "PDF", f"page {index + 1} could not be drawn")
    return images[0]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _inherited(obj: Any, key: str) -> Any:
    """A page attribute, looked up the page tree as PDF inheritance says (bounded: trees can loop)."""
    for _ in range(64):
        if obj is None:
            return None
        if key in obj:
            return obj[key]
        obj = obj.get("/Parent")
    return None


def _rect(value: Any) -> tuple[float, float, float, float] | None:
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _page_box(obj: Any) -> tuple[float, float, float, float] | None:
    """The visible page: the crop box clipped to the media box (what pdftoppm -cropbox draws)."""
    media = _rect(_inherited(obj, "/MediaBox"))
    if media is None or media[2] <= media[0] or media[3] <= media[1]:
        return None
    crop = _rect(_inherited(obj, "/CropBox")) or media
    box = (max(media[0], crop[0]), max(media[1], crop[1]), min(media[2], crop[2]), min(media[3], crop[3]))
    return box if box[2] > box[0] and box[3] > box[1] else media


def _image_sizes(resources: Any, seen: set[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Declared pixel sizes of every image the page can draw, forms and soft masks included."""
    xobjects = resources.get("/XObject") if isinstance(resources, pikepdf.Dictionary) else None
    if not isinstance(xobjects, pikepdf.Dictionary):
        return
    for _, xobj in xobjects.items():
        if not isinstance(xobj, pikepdf.Stream) or (xobj.is_indirect and xobj.objgen in seen):
            continue
        seen.add(xobj.objgen)
        if xobj.get("/Subtype") == "/Image":
            for im in (xobj, xobj.get("/SMask")):
                if isinstance(im, pikepdf.Stream):
                    yield int(im.get("/Width", 0)), int(im.get("/Height", 0))
        elif xobj.get("/Subtype") == "/Form":
            yield from _image_sizes(xobj.get("/Resources"), seen)


def _multiply(m: list[float], ctm: tuple[float, ...]) -> tuple[float, ...]:
    """``m`` applied within ``ctm`` (PDF: CTM' = m x CTM, matrices as [a b c d e f])."""
    a, b, c, d, e, f = m
    ta, tb, tc, td, te, tf = ctm
    return (
        a * ta + b * tc,
        a * tb + b * td,
        c * ta + d * tc,
        c * tb + d * td,
        e * ta + f * tc + te,
        e * tb + f * td + tf,
    )


def _whole_page_image(
    page: pikepdf.Page, resources: Any, box: tuple[float, float, float, float]
) -> tuple[pikepdf.Stream, tuple[float, float]] | None:
    """The page's only mark, if it is one upright image covering the page; with its drawn size in points.

    Invisible text (an earlier OCR layer) is allowed: it does not change how the page looks.
    """
    contents = page.obj.get("/Contents")
    streams = list(contents) if isinstance(contents, pikepdf.Array) else [contents]
    if sum(int(s.get("/Length", 0)) for s in streams if isinstance(s, pikepdf.Stream)) > _MAX_PLAIN_CONTENT:
        return None
    xobjects = resources.get("/XObject") or pikepdf.Dictionary()
    ctm: tuple[float, ...] = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    text_mode, stack = 0, []
    found = None
    for instruction in pikepdf.parse_content_stream(page):
        op, operands = str(instruction.operator), getattr(instruction, "operands", [])
        if op in _PAINTING:
            return None
        if op == "q":
            stack.append((ctm, text_mode))
        elif op == "Q" and stack:
            ctm, text_mode = stack.pop()
        elif op == "cm":
            ctm = _multiply([float(v) for v in operands], ctm)
        elif op == "Tr":
            text_mode = int(operands[0])
        elif op in _TEXT_SHOWING:
            if text_mode != _INVISIBLE_TEXT:
                return None
        elif op == "gs":
            if not _harmless_gs(resources, operands[0]):
                return None
        elif op == "Do":
            xobj = xobjects.get(operands[0])
            if xobj is None:
                raise ValueError(f"the page draws {operands[0]}, which is missing from the file")
            if (
                found is not None
                or xobj.get("/Subtype") != "/Image"
                or xobj.get("/ImageMask", False)
                or "/Mask" in xobj
            ):
                return None
            found = (xobj, ctm)
    if found is None:
        return None
    xobj, (a, b, c, d, e, f) = found
    if a <= 0 or d <= 0 or abs(b) + abs(c) > 1e-3 * (a + d):  # turned, mirrored or skewed: poppler draws it
        return None
    x0, y0, x1, y1 = box
    tx, ty = max(1.0, 0.01 * (x1 - x0)), max(1.0, 0.01 * (y1 - y0))
    if abs(e - x0) > tx or abs(e + a - x1) > tx or abs(f - y0) > ty or abs(f + d - y1) > ty:
        return None
    return cast(pikepdf.Stream, xobj), (a, d)


def _harmless_gs(resources: Any, name: Any) -> bool:
    """A graphics state that cannot change how an image looks (no transparency, no blending)."""
    states = resources.get("/ExtGState")
    state = states.get(name) if isinstance(states, pikepdf.Dictionary) else None
    if not isinstance(state, pikepdf.Dictionary):
        return True
    soft = state.get("/SMask")
    return (
        (soft is None or soft == pikepdf.Name("/None"))
        and all(float(state.get(k, 1)) >= 1 for k in ("/CA", "/ca"))
        and str(state.get("/BM", "/Normal")) in ("/Normal", "/Compatible")
    )
