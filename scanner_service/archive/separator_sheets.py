"""Separator sheets (分隔页): one printed A4 sheet per catalogue item, laid in front of the item's pages.

An operator stacks sheet + item pages + sheet + item pages … and scans the stack as one run; the station
finds the sheets (:mod:`workers.stages.separator`), splits the run into items, files each item under the 档号
on its sheet, and leaves the sheets out of the PDFs.

The sheet, A4 portrait, drawn at 300 dpi and wrapped as PDF by img2pdf::

    +--------------------------------------------+
    | [QR]        分 隔 页            [TAG 0]    |   top row
    |============================================|   thick black rule
    | 档号  C015-WS·2013-Y-BGS-0001               |
    | 题名  (wrapped, shrunk to fit)               |
    | 页数  12 页          备注  …                |
    |============================================|
    | [TAG 1]   instruction (zh-CN)       [QR]   |   bottom row
    +--------------------------------------------+

- Two QR codes carrying the same payload, in opposite corners, so one torn or stained corner leaves the
  other readable. Error correction level Q (a quarter of the code may be lost).
- Two AprilTag 36h11 markers (ids :data:`SHEET_TAGS`) in the other two corners: the separator's own mark.
  When every QR code is blotted, the tags still say "this is a separator sheet", so the run goes to review
  instead of the sheet being taken for a page of the item before it. 36h11 tags differ from each other in at
  least 11 of 36 bits, so print or handwriting does not turn into one of our ids by accident; the reader also
  checks a found tag's printed size.
- The large word 分隔页 and the black rules are for people leafing through the stack.

Payload (ASCII only, so every encoder and decoder agrees on it; all of it fits QR alphanumeric mode)::

    SCANSTATION-SEP/1 D22 C015-WS.2013-Y-BGS-0001
    SCANSTATION-SEP/1 D13 C015-WS.2013.Y.BGS-0001

``SCANSTATION-SEP/`` + format version, the style the 档号 was written in (``D22`` DA/T 22-2015, ``D13``
DA/T 13-2022), and the 档号 with ``·`` (U+00B7) written as ``.``, which :func:`archival_code.parse` reads as
``·``. The reader restores the ``·``, so it returns exactly the string printed on the sheet; the archive
checks it (:mod:`scanner_service.archive.separators`).
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import img2pdf
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from scanner_service.archive.archival_code import DAT13, DAT22, ArchivalCode, CodeStyle, parse
from scanner_service.exceptions import MissingProgram
from workers.stages.separator import PAYLOAD_PREFIX, PAYLOAD_VERSION, SHEET_TAGS, TAG_DICTIONARY, TAG_MM
from workers.stages.separator import STYLE_MARKERS as SHEET_STYLES

__all__ = [
    "PAYLOAD_PREFIX",
    "PAYLOAD_VERSION",
    "SHEET_TAGS",
    "STYLE_MARKERS",
    "TAG_DICTIONARY",
    "TAG_MM",
    "SeparatorEntry",
    "encode_payload",
    "render_separator_sheets",
    "sheet_code",
    "written_style",
]

STYLE_MARKERS: dict[str, CodeStyle] = {"D22": DAT22, "D13": DAT13}
assert tuple(STYLE_MARKERS) == SHEET_STYLES  # the reader knows the same styles
QR_MM = 46.0  # printed side of a QR code, without its quiet zone

DPI = 300
A4_MM = (210.0, 297.0)
MARGIN_MM = 12.0

INSTRUCTION = "分隔页：请放在该件第一页之前，扫描后自动分件，不进入档案PDF。"
CARE = "请勿折叠，请勿在二维码和角上的方块图形上书写或盖章。"

# Where the Debian package fonts-noto-cjk puts its collections (Bold first for the big print).
_FONT_DIRS = (Path("/usr/share/fonts/opentype/noto"), Path("/usr/share/fonts"))
_FONT_FILES = {"bold": "NotoSansCJK-Bold.ttc", "regular": "NotoSansCJK-Regular.ttc"}
_FONT_FAMILY = "Noto Sans CJK SC"  # the Simplified Chinese face of the collection (glyph forms differ per region)

_DASHES = set("-－—–‐‑‒―−﹣")
# A line of Chinese text must not start with these; they stay on the line before (禁则).
_NO_LINE_START = set("，。、；：？！）」』》〉】”’,.;:?!)%")


@dataclass(frozen=True)
class SeparatorEntry:
    """One catalogue item to print a sheet for: its 档号 and 题名, and if known its page count (页数)."""

    archival_code: str
    title: str
    pages: int | None = None
    note: str | None = None


def _mm(mm: float) -> int:
    return round(mm * DPI / 25.4)


def written_style(text: str) -> CodeStyle:
    """The style ``text`` (a valid 档号) is written in: DA/T 13 when 年度 and 保管期限 are joined by a dot.

    After a successful :func:`parse`, the only characters besides letters, digits and spaces are the
    separators (or their look-alikes), so the third of them is the one between 年度 and 保管期限.
    """
    seps = [c for c in unicodedata.normalize("NFKC", text) if not (c.isalnum() or c.isspace() or c in "\u200b\ufeff")]
    return DAT22 if len(seps) < 3 or seps[2] in _DASHES else DAT13


def sheet_code(text: str) -> tuple[ArchivalCode, CodeStyle]:
    """The 档号 of an entry and the style to print it in; raises InvalidArchivalCode naming the wrong part."""
    return parse(text), written_style(text)


def encode_payload(code: ArchivalCode, style: CodeStyle) -> str:
    """The QR payload for ``code``, e.g. ``SCANSTATION-SEP/1 D22 C015-WS.2013-Y-BGS-0001`` (ASCII only)."""
    marker = next(k for k, v in STYLE_MARKERS.items() if v == style)
    return f"{PAYLOAD_PREFIX}{PAYLOAD_VERSION} {marker} {code.format(style).replace('·', '.')}"


# --- fonts -------------------------------------------------------------------------------------------


def _font_path(kind: str) -> Path | None:
    name = _FONT_FILES[kind]
    for folder in _FONT_DIRS:
        direct = folder / name
        if direct.is_file():
            return direct
    found = sorted(Path("/usr/share/fonts").rglob(name)) if Path("/usr/share/fonts").is_dir() else []
    return found[0] if found else None


def _face_index(path: Path) -> int:
    """The index of the Simplified Chinese face in a Noto CJK collection (2 in Debian's, but look it up)."""
    for index in range(16):
        try:
            family, _ = ImageFont.truetype(str(path), 10, index=index).getname()
        except OSError:
            break
        if family == _FONT_FAMILY:
            return index
    return 0


@dataclass(frozen=True)
class _Fonts:
    bold: tuple[Path, int]
    regular: tuple[Path, int]

    def get(self, kind: str, px: int) -> ImageFont.FreeTypeFont:
        path, index = self.bold if kind == "bold" else self.regular
        return ImageFont.truetype(str(path), px, index=index)


def _find_fonts() -> _Fonts:
    """The CJK fonts, looked up at call time: a station without them can still run, but not print sheets."""
    regular = _font_path("regular")
    bold = _font_path("bold") or regular
    if regular is None or bold is None:
        raise MissingProgram(
            "Separator sheets need the Noto Sans CJK font (NotoSansCJK-Regular.ttc) to print Chinese; "
            "it was not found under /usr/share/fonts. Install the Debian package fonts-noto-cjk "
            "(apt-get install fonts-noto-cjk)."
        )
    return _Fonts((bold, _face_index(bold)), (regular, _face_index(regular)))


# --- drawing -----------------------------------------------------------------------------------------


def _qr_image(payload: str, side_px: int) -> Image.Image:
    """The QR code, ``side_px`` wide without its quiet zone, modules on whole pixels."""
    params = cv2.QRCodeEncoder.Params()
    params.correction_level = cv2.QRCodeEncoder_CORRECT_LEVEL_Q
    params.mode = cv2.QRCodeEncoder_MODE_ALPHANUMERIC
    raw = cv2.QRCodeEncoder.create(params).encode(payload)
    # The encoder adds a border of its own; cut to the symbol (the finder patterns reach its corners).
    ys, xs = np.nonzero(raw == 0)
    symbol = raw[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    module_px = max(1, side_px // symbol.shape[0])
    big = cv2.resize(symbol, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)
    return Image.fromarray(big)


def _tag_image(tag_id: int, side_px: int) -> Image.Image:
    dictionary = cv2.aruco.getPredefinedDictionary(TAG_DICTIONARY)
    cells = dictionary.markerSize + 2  # data cells and the black border
    cell_px = max(1, side_px // cells)
    return Image.fromarray(cv2.aruco.generateImageMarker(dictionary, tag_id, cells * cell_px, borderBits=1))


def _paste_centred(page: Image.Image, tile: Image.Image, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    page.paste(tile, (x0 + (x1 - x0 - tile.width) // 2, y0 + (y1 - y0 - tile.height) // 2))


def _tokens(text: str) -> list[str]:
    """Units a line may break between: a Latin word or number stays whole, each CJK character stands alone."""
    return re.findall(r"[A-Za-z0-9·.\-/]+|\s+|.", " ".join(text.split()))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for token in _tokens(text):
        trial = line + token
        if not line or draw.textlength(trial, font=font) <= width or token in _NO_LINE_START:
            line = trial
            continue
        lines.append(line.rstrip())
        line = token.lstrip()
        # A single Latin run longer than the line: cut it by characters.
        while line and draw.textlength(line, font=font) > width:
            cut = len(line)
            while cut > 1 and draw.textlength(line[:cut], font=font) > width:
                cut -= 1
            lines.append(line[:cut])
            line = line[cut:]
    if line.strip():
        lines.append(line.rstrip())
    return lines


def _fit_block(
    draw: ImageDraw.ImageDraw, text: str, fonts: _Fonts, kind: str, box: tuple[int, int], sizes_mm: tuple[float, float]
) -> tuple[ImageFont.FreeTypeFont, list[str], int]:
    """The largest font between ``sizes_mm`` at which ``text`` wraps into ``box`` (w, h), its lines and line
    height. At the smallest size whatever does not fit is cut off with an ellipsis."""
    width, height = box
    px = _mm(sizes_mm[0])
    floor = _mm(sizes_mm[1])
    while True:
        font = fonts.get(kind, px)
        line_px = round(px * 1.3)
        lines = _wrap(draw, text, font, width)
        if len(lines) * line_px <= height or px <= floor:
            break
        px = max(floor, round(px * 0.92))
    most = max(1, height // line_px)
    if len(lines) > most:
        lines = lines[:most]
        last = lines[-1]
        while last and draw.textlength(last + "…", font=font) > width:
            last = last[:-1]
        lines[-1] = last + "…"
    return font, lines, line_px


def _draw_sheet(entry: SeparatorEntry, fonts: _Fonts) -> Image.Image:
    code, style = sheet_code(entry.archival_code)
    shown = code.format(style)
    width, height = _mm(A4_MM[0]), _mm(A4_MM[1])
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    m = _mm(MARGIN_MM)
    row = _mm(QR_MM + 8)  # corner rows: code or tag plus room for a quiet zone of at least 4 modules
    qr = _qr_image(encode_payload(code, style), _mm(QR_MM))

    # Top row: QR, the big word, tag.
    _paste_centred(page, qr, (m, m, m + row, m + row))
    _paste_centred(page, _tag_image(SHEET_TAGS[0], _mm(TAG_MM)), (width - m - row, m, width - m, m + row))
    head = fonts.get("bold", _mm(20))
    draw.text((width // 2, m + row // 2), "分 隔 页", font=head, fill=0, anchor="mm")
    sub = fonts.get("regular", _mm(4.2))
    draw.text((width // 2, m + row - _mm(2)), "SEPARATOR SHEET", font=sub, fill=0, anchor="md")

    # Bottom row: tag, the instruction, QR.
    bottom = height - m - row
    _paste_centred(page, _tag_image(SHEET_TAGS[1], _mm(TAG_MM)), (m, bottom, m + row, height - m))
    _paste_centred(page, qr, (width - m - row, bottom, width - m, height - m))
    inner = width - 2 * (m + row) - _mm(8)
    font, lines, line_px = _fit_block(draw, INSTRUCTION + CARE, fonts, "regular", (inner, row), (5.0, 3.0))
    y = bottom + (row - line_px * len(lines)) // 2
    for line in lines:
        draw.text((m + row + _mm(4), y), line, font=font, fill=0)
        y += line_px

    # Thick rules: what makes the sheet stand out in a stack to the eye.
    rule = _mm(4)
    top_rule = m + row + _mm(4)
    bottom_rule = bottom - _mm(4) - rule
    draw.rectangle((m, top_rule, width - m, top_rule + rule), fill=0)
    draw.rectangle((m, bottom_rule, width - m, bottom_rule + rule), fill=0)

    # Body: 档号, 题名, 页数, 备注.
    label = fonts.get("regular", _mm(6))
    label_w = _mm(24)
    x = m + label_w
    text_w = width - m - x
    y = top_rule + rule + _mm(10)
    code_font = fonts.get("bold", _mm(15))
    while draw.textlength(shown, font=code_font) > text_w:  # a code is never wrapped: shrink it to one line
        code_font = fonts.get("bold", round(code_font.size * 0.95))
    draw.text((m, y + code_font.size // 2), "档号", font=label, fill=0, anchor="lm")
    draw.text((x, y + code_font.size // 2), shown, font=code_font, fill=0, anchor="lm")
    y += round(code_font.size * 1.3) + _mm(12)

    footer_h = _mm(12) * (1 + (entry.note is not None))
    title_h = bottom_rule - _mm(10) - footer_h - y
    title_font, lines, line_px = _fit_block(draw, entry.title, fonts, "bold", (text_w, title_h), (12.0, 4.5))
    draw.text((m, y + line_px // 2), "题名", font=label, fill=0, anchor="lm")
    for line in lines:
        draw.text((x, y + line_px // 2), line, font=title_font, fill=0, anchor="lm")
        y += line_px

    y = bottom_rule - _mm(6) - footer_h
    value = fonts.get("regular", _mm(7))
    if entry.pages is not None:
        draw.text((m, y + _mm(6)), "页数", font=label, fill=0, anchor="lm")
        draw.text((x, y + _mm(6)), f"{entry.pages} 页", font=value, fill=0, anchor="lm")
    if entry.note is not None:
        y += _mm(12)
        # One line (the box is less than two lines high at any size tried); a longer note ends with "…".
        one_line = (text_w, _mm(6.0 * 1.3))
        note_font, note_lines, _ = _fit_block(draw, entry.note, fonts, "regular", one_line, (6.0, 3.5))
        draw.text((m, y + _mm(6)), "备注", font=label, fill=0, anchor="lm")
        draw.text((x, y + _mm(6)), note_lines[0] if note_lines else "", font=note_font, fill=0, anchor="lm")
    return page


def render_separator_sheets(entries: Sequence[SeparatorEntry], out: Path) -> Path:
    """Write one A4 separator sheet per entry, in order, to the PDF ``out``; returns ``out``.

    Every 档号 is checked before anything is written: an invalid one raises InvalidArchivalCode, which names
    the wrong part. Raises MissingProgram when the CJK font (Debian package fonts-noto-cjk) is missing.
    """
    if not entries:
        raise ValueError("no entries: a sheet is printed per catalogue item")
    for entry in entries:
        sheet_code(entry.archival_code)
        if entry.pages is not None and entry.pages < 1:
            raise ValueError(f"{entry.archival_code}: 页数 {entry.pages} must be at least 1")
    fonts = _find_fonts()
    images = []
    for entry in entries:
        buffer = io.BytesIO()
        _draw_sheet(entry, fonts).save(buffer, format="PNG", dpi=(DPI, DPI), optimize=True)
        images.append(buffer.getvalue())
    a4 = (img2pdf.mm_to_pt(A4_MM[0]), img2pdf.mm_to_pt(A4_MM[1]))
    pdf = img2pdf.convert(images, layout_fun=img2pdf.get_layout_fun(a4), title="分隔页 separator sheets")
    out = Path(out)
    out.write_bytes(pdf)
    return out
