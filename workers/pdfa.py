"""Build one searchable PDF/A-2b from processed page images and their OCR line boxes.

Each page is its image, embedded as is where img2pdf can (JPEG passes through, 1-bit becomes
CCITT G4), with an invisible text layer on top: one ``Tj`` per OCR line, drawn in render mode 3
with a generated "glyphless" font, so viewers can search and copy the text but nothing shows.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import img2pdf
import pikepdf
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen
from pikepdf import Array, Dictionary, Name, Pdf
from PIL import Image, ImageCms, UnidentifiedImageError

from ocr_models.base import PageText
from workers.errors import UnusableInput

_FONT_NAME = "GlyphLessFont"
_UPM = 1000  # units per em; every glyph advances one em
_ASCENT, _DESCENT = 800, -200  # the em box spans the whole line box: baseline sits 0.2 em above its bottom
_REPLACEMENT = 0xFFFD  # Identity-H codes are 2 bytes, so characters beyond the BMP become U+FFFD
# Modes img2pdf embeds in a colour space valid under an sRGB output intent; others are flattened first.
_PASS_MODES = {"1", "L", "RGB", "P", "I;16"}


@dataclass(frozen=True)
class PdfPage:
    """One page of the PDF: its usage image, that image's resolution and its OCR text."""

    image: Path  # JPEG (grey or colour), PNG, or single-page TIFF (1-bit G4 allowed)
    dpi: tuple[float, float]  # x, y resolution of the image
    text: PageText | None  # boxes in pixels of `image`; None = no text layer


@cache
def _glyphless_font() -> bytes:
    """A TrueType font: .notdef plus one empty glyph one em wide, so text takes space but draws nothing."""
    fb = FontBuilder(_UPM, isTTF=True)
    fb.setupGlyphOrder([".notdef", "space"])
    fb.setupCharacterMap({0x20: "space"})
    empty = TTGlyphPen(None).glyph()
    fb.setupGlyf({".notdef": empty, "space": empty})
    fb.setupHorizontalMetrics({".notdef": (_UPM, 0), "space": (_UPM, 0)})
    fb.setupHorizontalHeader(ascent=_ASCENT, descent=_DESCENT)
    fb.setupNameTable({"familyName": _FONT_NAME, "styleName": "Regular", "psName": _FONT_NAME})
    fb.setupOS2(
        sTypoAscender=_ASCENT,
        sTypoDescender=_DESCENT,
        sTypoLineGap=0,
        usWinAscent=_ASCENT,
        usWinDescent=-_DESCENT,
        fsType=0,
    )  # fsType 0: embedding allowed
    fb.setupPost()
    out = io.BytesIO()
    fb.save(out)
    return out.getvalue()


def _to_unicode_cmap(cids: set[int]) -> bytes:
    """ToUnicode CMap mapping each CID the document uses to the same code point.

    One bfchar per CID, at most 100 per block. Full-BMP bfranges (one per high byte) would be
    smaller and still valid, but Ghostscript 10.0 decodes any bfrange whose high byte isn't zero
    wrongly, so its text extraction and pdfwrite (a likely future migration path) would
    produce garbage.
    """
    entries = [f"<{cid:04X}> <{cid:04X}>" for cid in sorted(cids)]
    blocks = "".join(
        f"{len(chunk)} beginbfchar\n" + "\n".join(chunk) + "\nendbfchar\n"
        for chunk in (entries[i : i + 100] for i in range(0, len(entries), 100))
    )
    return (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
        f"{blocks}endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"
    ).encode("ascii")


def _add_font(pdf: Pdf, cids: set[int]) -> pikepdf.Object:
    """The Type0 font every text layer shares: Identity-H, CID = Unicode code point, every CID -> glyph 1."""
    program = _glyphless_font()
    descriptor = Dictionary(
        Type=Name.FontDescriptor,
        FontName=Name("/" + _FONT_NAME),
        Flags=4,  # symbolic: the glyphs are not the standard Latin set
        FontBBox=Array([0, _DESCENT, _UPM, _ASCENT]),
        ItalicAngle=0,
        Ascent=_ASCENT,
        Descent=_DESCENT,
        CapHeight=_ASCENT,
        StemV=80,
        FontFile2=pdf.make_stream(program, Length1=len(program)),
    )
    cid_font = Dictionary(
        Type=Name.Font,
        Subtype=Name.CIDFontType2,
        BaseFont=Name("/" + _FONT_NAME),
        # Identity-H's own system info is Adobe-Identity-0; PDF/A wants the two compatible.
        CIDSystemInfo=Dictionary(Registry="Adobe", Ordering="Identity", Supplement=0),
        FontDescriptor=pdf.make_indirect(descriptor),
        # Widths in /DW and /W must match the program's advances (PDF/A-2 6.2.11.5): all are one em.
        DW=_UPM,
        W=Array([0, 0xFFFF, _UPM]),
        CIDToGIDMap=pdf.make_stream(b"\x00\x01" * 0x10000),
    )
    return pdf.make_indirect(
        Dictionary(
            Type=Name.Font,
            Subtype=Name.Type0,
            BaseFont=Name("/" + _FONT_NAME),
            Encoding=Name("/Identity-H"),
            DescendantFonts=Array([pdf.make_indirect(cid_font)]),
            ToUnicode=pdf.make_stream(_to_unicode_cmap(cids)),
        )
    )


def _encode(text: str) -> list[int]:
    """CIDs (= BMP code points) of a line; control characters dropped (CID 0 would show .notdef)."""
    return [
        ord(c) if ord(c) <= 0xFFFF and not 0xD800 <= ord(c) <= 0xDFFF else _REPLACEMENT
        for c in text
        if ord(c) >= 0x20 and c != "\x7f"
    ]


def _text_layer(text: PageText, size_px: tuple[int, int], dpi: tuple[float, float], used: set[int]) -> bytes:
    """Content stream with one invisible string per line, stretched over the line's box.

    The CIDs it shows are added to `used`, for the ToUnicode CMap.
    """
    # OCR may have run on a resized copy: bring its boxes to the pixels of the embedded image.
    sx = size_px[0] / text.width * 72 / dpi[0]
    sy = size_px[1] / text.height * 72 / dpi[1]
    page_h = size_px[1] * 72 / dpi[1]
    ops = ["BT", "3 Tr"]  # render mode 3: neither fill nor stroke
    for line in text.lines:
        cids = _encode(line.text.strip())
        if not cids:
            continue
        used.update(cids)
        x0, y0, x1, y1 = line.box
        size = max(y1 - y0, 1) * sy  # font size = box height, since ascent - descent = 1 em
        width = max(x1 - x0, 1) * sx
        scale = 100 * width / (len(cids) * size)  # Tz so the string spans the box exactly
        baseline = page_h - y1 * sy - _DESCENT / _UPM * size
        hexstr = "".join(f"{cid:04X}" for cid in cids)
        ops += [
            f"/FText {size:.3f} Tf {scale:.3f} Tz",
            f"1 0 0 1 {x0 * sx:.3f} {baseline:.3f} Tm",
            f"<{hexstr}> Tj",
        ]
    ops.append("ET")
    return ("\n".join(ops) + "\n").encode("ascii")


def _image_pdf(page: PdfPage, number: int) -> tuple[Pdf, tuple[int, int]]:
    """A one-page PDF holding the image at its resolution, and the image size in pixels."""
    try:
        with Image.open(page.image) as im:
            size = im.size
            if getattr(im, "n_frames", 1) > 1:
                raise UnusableInput(f"page {number}: {page.image} has several frames", reason_code="multipage")
            source: str | bytes = str(page.image)
            if im.mode not in _PASS_MODES or "transparency" in im.info:
                # Alpha, CMYK and the like have no place under an sRGB output intent: flatten on white.
                flat = Image.new("RGBA", im.size, "white")
                flat.alpha_composite(im.convert("RGBA"))
                buf = io.BytesIO()
                flat.convert("L" if im.mode in ("LA", "La") else "RGB").save(buf, "PNG")
                source = buf.getvalue()
        layout = img2pdf.get_fixed_dpi_layout_fun(page.dpi)
        # Rotation.none: the OCR boxes are in the stored pixel grid, so EXIF orientation must not apply.
        data = img2pdf.convert(source, layout_fun=layout, rotation=img2pdf.Rotation.none)
    except (
        OSError,
        UnidentifiedImageError,
        img2pdf.ImageOpenError,
        img2pdf.PdfTooLargeError,
        img2pdf.AlphaChannelError,
        img2pdf.UnsupportedColorspaceError,
        img2pdf.JpegColorspaceError,
        ValueError,
    ) as exc:
        raise UnusableInput(f"page {number}: cannot embed {page.image}: {exc}", reason_code="bad_image") from exc
    return Pdf.open(io.BytesIO(data)), size


def _check(pages: Sequence[PdfPage]) -> None:
    if not pages:
        raise UnusableInput("no pages to put in the PDF", reason_code="no_pages")
    for number, page in enumerate(pages, 1):
        if not all(math.isfinite(d) and d > 0 for d in page.dpi):
            raise UnusableInput(f"page {number}: resolution {page.dpi} is not positive", reason_code="bad_dpi")
        if page.text is not None and (page.text.width <= 0 or page.text.height <= 0):
            raise UnusableInput(f"page {number}: OCR page size is empty", reason_code="bad_text")


def build_pdfa(
    pages: Sequence[PdfPage],
    output: Path,
    *,
    title: str = "",
    author: str = "scanstation",
    language: str = "zh-CN",
) -> None:
    """Write a PDF/A-2b file with one page per PdfPage, in order; atomically (tmp file + os.replace).

    Raises UnusableInput for an empty page list, a bad resolution or an image that cannot be embedded.
    """
    _check(pages)
    pdf = Pdf.new()
    sources: list[Pdf] = []  # kept open until saved: appended pages are copied lazily from them
    try:
        used: set[int] = set()
        texts: list[pikepdf.Page] = []  # pages with a text layer; they get the font once all CIDs are known
        for number, page in enumerate(pages, 1):
            src, size = _image_pdf(page, number)
            sources.append(src)
            pdf.pages.append(src.pages[0])
            if page.text is not None and page.text.lines:
                layer = _text_layer(page.text, size, page.dpi, used)
                pdf.pages[-1].contents_add(pdf.make_stream(layer), prepend=False)
                texts.append(pdf.pages[-1])
        if used:
            font = _add_font(pdf, used)
            for target in texts:
                target.Resources.Font = Dictionary(FText=font)

        pdf.Root.Lang = language
        icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        pdf.Root.OutputIntents = Array(
            [
                Dictionary(
                    Type=Name.OutputIntent,
                    S=Name.GTS_PDFA1,
                    OutputConditionIdentifier="sRGB",
                    Info="sRGB IEC61966-2.1",
                    RegistryName="http://www.color.org",
                    DestOutputProfile=pdf.make_stream(icc, N=3),
                )
            ]
        )
        now = datetime.now(UTC).astimezone().replace(microsecond=0)
        # Write XMP and let pikepdf derive the Info dictionary from it, so the two agree (PDF/A 6.6.2.3).
        with pdf.open_metadata(set_pikepdf_as_editor=False, update_docinfo=True) as meta:
            meta["pdfaid:part"] = "2"
            meta["pdfaid:conformance"] = "B"
            if title:
                meta["dc:title"] = title
            if author:
                meta["dc:creator"] = [author]
            meta["dc:language"] = [language]
            meta["pdf:Producer"] = f"scanstation (pikepdf {pikepdf.__version__}, img2pdf {img2pdf.__version__})"
            meta["xmp:CreatorTool"] = "scanstation"
            for key in ("xmp:CreateDate", "xmp:ModifyDate", "xmp:MetadataDate"):
                meta[key] = now.isoformat()

        output = Path(output)
        tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                # qpdf always writes a trailer /ID; no encryption, version pinned to 1.7 as PDF/A-2 allows.
                pdf.save(
                    fh,
                    force_version="1.7",
                    compress_streams=True,
                    stream_decode_level=pikepdf.StreamDecodeLevel.none,
                )
                fh.flush()
                os.fsync(fh.fileno())  # the archive copy must survive a crash once it has been renamed
            os.replace(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        pdf.close()
        for src in sources:
            src.close()
