"""Separator sheets: printed by scanner_service.archive.separator_sheets, found on scans by workers.stages.separator,
and a scanned run split at them. Real PDFs, real rasterisation (poppler), real OpenCV detectors."""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

import cv2
import numpy as np
import pikepdf
import pytest
from pdf2image import convert_from_path
from PIL import Image, ImageDraw, ImageFilter

from scanner_service.archive.archival_code import InvalidArchivalCode
from scanner_service.archive.separator_sheets import SeparatorEntry, render_separator_sheets
from scanner_service.archive.separators import RunPage, split_run
from tests.conftest import REAL, SAMPLE
from workers.stages.load import load_page
from workers.stages.separator import SeparatorMark, read_separator

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils (pdftoppm) missing")

LONG_TITLE = (
    "关于二〇一三年度村民委员会换届选举工作实施方案、选民登记名册、候选人提名情况及选举结果报告的请示"
    "与县民政局、乡人民政府的批复意见（含附件材料）"
)
ENTRIES = [
    SeparatorEntry("C015-WS·2013-Y-BGS-0001", LONG_TITLE, pages=12, note="原件有破损，已修补"),
    SeparatorEntry("C015-WS·2013·D30·BGS-0002", "村务公开栏照片说明"),  # DA/T 13: levels joined with ·
    SeparatorEntry("C015-WS·2013-Y-001-0001", "土地承包合同", pages=3),  # 案卷 form: volume 001
]
CODES = [e.archival_code for e in ENTRIES]
A4_PT = (595.28, 841.89)


@pytest.fixture(scope="module")
def sheets_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_separator_sheets(ENTRIES, tmp_path_factory.mktemp("sheets") / "sheets.pdf")


@pytest.fixture(scope="module")
def sheet300(sheets_pdf: Path) -> Image.Image:
    """The first sheet as a 300 dpi grey page, as a flatbed scanner would deliver a clean scan."""
    return convert_from_path(sheets_pdf, dpi=300, grayscale=True, first_page=1, last_page=1)[0]


# --- simulated scanning ------------------------------------------------------------------------------


def _noisy(image: Image.Image, sigma: float, seed: int = 1) -> Image.Image:
    rng = np.random.default_rng(seed)
    a = np.asarray(image.convert("L"), dtype=np.float64)
    noisy = a * 0.88 + 18 + rng.normal(0, sigma, a.shape)  # paper is never white, toner never black
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def _skewed(image: Image.Image, degrees: float) -> Image.Image:
    fill = 255 if image.mode == "L" else (255, 255, 255)
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)


def _on_backing(image: Image.Image, degrees: float = 1.5, margin: float = 0.06) -> Image.Image:
    """The sheet lying a little askew on a dark scanner lid, which shows all around it."""
    sheet = image.convert("L").rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=0)
    mask = Image.new("L", image.size, 255).rotate(degrees, expand=True, fillcolor=0)
    w, h = round(sheet.width * (1 + 2 * margin)), round(sheet.height * (1 + 2 * margin))
    canvas = Image.fromarray(np.random.default_rng(3).normal(28, 6, (h, w)).clip(0, 255).astype(np.uint8))
    canvas.paste(sheet, ((w - sheet.width) // 2, (h - sheet.height) // 2), mask)
    return canvas


def _qr_boxes(image: Image.Image) -> list[tuple[int, int, int, int]]:
    """Where the QR codes are on a clean sheet (found independently with OpenCV's classic detector)."""
    ok, points = cv2.QRCodeDetector().detectMulti(np.asarray(image.convert("L")))
    assert ok, "the clean sheet should show its QR codes"
    return [(int(p[:, 0].min()), int(p[:, 1].min()), int(p[:, 0].max()), int(p[:, 1].max())) for p in points]


def _blot(image: Image.Image, box: tuple[int, int, int, int], seed: int) -> Image.Image:
    """An ink blot over most of a QR code: overlapping dark blobs, then a wash of the same ink."""
    rng = random.Random(seed)
    image = image.convert("L").copy()
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    for _ in range(12):
        cx, cy = x0 + rng.uniform(0.2, 0.8) * w, y0 + rng.uniform(0.2, 0.8) * h
        r = rng.uniform(0.2, 0.35) * w
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=rng.randint(30, 70))
    draw.ellipse((x0 + 0.05 * w, y0 + 0.05 * h, x1 - 0.05 * w, y1 - 0.05 * h), fill=45)
    return image


def _page_with_foreign_qr(page: Image.Image, dpi: float) -> Image.Image:
    """A certificate or invoice: an ordinary text page with someone else's QR code printed on it."""
    params = cv2.QRCodeEncoder.Params()
    code = cv2.QRCodeEncoder.create(params).encode("https://fapiao.example.gov.cn/verify?code=044031900111&no=28312345")
    side = round(30 / 25.4 * dpi)  # 30 mm
    tile = Image.fromarray(cv2.resize(code, (side, side), interpolation=cv2.INTER_NEAREST))
    page = page.convert("L").copy()
    page.paste(tile, (page.width - side - round(0.6 * dpi), page.height - side - round(0.8 * dpi)))
    return page


# --- printing and reading back -----------------------------------------------------------------------


def test_sheets_pdf_has_one_a4_page_per_entry(sheets_pdf: Path) -> None:
    with pikepdf.open(sheets_pdf) as pdf:
        assert len(pdf.pages) == len(ENTRIES)
        for page in pdf.pages:
            x0, y0, x1, y1 = (float(v) for v in page.mediabox)
            assert (x1 - x0, y1 - y0) == pytest.approx(A4_PT, abs=1.0)


@pytest.mark.parametrize("dpi", [200, 300])
def test_each_sheet_reads_back_its_code_exactly(sheets_pdf: Path, dpi: int) -> None:
    pages = convert_from_path(sheets_pdf, dpi=dpi)
    marks = [read_separator(page, dpi) for page in pages]
    # The same string as printed, in the style it was written: DA/T 22, DA/T 13 and the 案卷 form.
    assert [m.archival_code if m else None for m in marks] == CODES
    assert all(m is not None and m.readable for m in marks)


def test_payload_keeps_dat13_style_and_middle_dot(sheets_pdf: Path) -> None:
    page = convert_from_path(sheets_pdf, dpi=300, grayscale=True, first_page=2, last_page=2)[0]
    mark = read_separator(page, 300)
    assert mark is not None
    assert mark.archival_code == "C015-WS·2013·D30·BGS-0002"
    assert "\u00b7" in mark.archival_code


def test_invalid_code_is_refused_naming_the_part(tmp_path: Path) -> None:
    out = tmp_path / "bad.pdf"
    with pytest.raises(InvalidArchivalCode) as err:
        render_separator_sheets([ENTRIES[0], SeparatorEntry("C015-WS·2013-C-BGS-0003", "旧保管期限")], out)
    assert err.value.part == "retention"
    assert "保管期限" in str(err.value)
    with pytest.raises(InvalidArchivalCode) as err:
        render_separator_sheets([SeparatorEntry("C015-WS·2013-Y-BGS-12", "件号太短")], out)
    assert err.value.part == "item"
    assert not out.exists()  # nothing half-printed


# --- scans as they come off a scanner ----------------------------------------------------------------


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_turned_sheet_is_read(sheet300: Image.Image, turn: int) -> None:
    mark = read_separator(sheet300.rotate(turn, expand=True), 300)
    assert mark is not None and mark.archival_code == CODES[0]


def test_skewed_noisy_jpeg_sheet_is_read(sheet300: Image.Image) -> None:
    scan = _jpeg(_noisy(_skewed(sheet300, 3.0), sigma=14), quality=60)
    mark = read_separator(scan, 300)
    assert mark is not None and mark.archival_code == CODES[0]


def test_colour_sheet_skewed_the_other_way_is_read(sheet300: Image.Image) -> None:
    grey = np.asarray(_skewed(sheet300, -2.5), dtype=np.float32) / 255
    cream = np.stack([grey * 245, grey * 238, grey * 215], axis=-1).astype(np.uint8)  # yellowed paper
    mark = read_separator(_jpeg(Image.fromarray(cream), quality=75), 300)
    assert mark is not None and mark.archival_code == CODES[0]


def test_one_bit_200dpi_sheet_is_read(sheets_pdf: Path) -> None:
    page = convert_from_path(sheets_pdf, dpi=200, grayscale=True, first_page=3, last_page=3)[0]
    bilevel = _noisy(_skewed(page, 1.2), sigma=10).point(lambda v: 255 if v > 140 else 0, mode="1")
    assert bilevel.mode == "1"
    mark = read_separator(bilevel, 200)
    assert mark is not None and mark.archival_code == CODES[2]


def test_sheet_on_dark_backing_is_read(sheet300: Image.Image) -> None:
    mark = read_separator(_jpeg(_on_backing(_noisy(sheet300, sigma=8)), quality=70), 300)
    assert mark is not None and mark.archival_code == CODES[0]


def test_600dpi_sheet_is_read(sheets_pdf: Path) -> None:
    page = convert_from_path(sheets_pdf, dpi=600, grayscale=True, first_page=2, last_page=2)[0]
    mark = read_separator(page, 600)
    assert mark is not None and mark.archival_code == CODES[1]


# --- damage: to review, never mis-filed --------------------------------------------------------------


def test_sheet_with_every_qr_blotted_is_a_separator_that_cannot_be_read(sheet300: Image.Image) -> None:
    boxes = _qr_boxes(sheet300)
    assert len(boxes) == 2  # the sheet carries its code twice
    damaged = sheet300
    for i, box in enumerate(boxes):
        damaged = _blot(damaged, box, seed=i)
    mark = read_separator(_jpeg(_noisy(damaged, sigma=6), quality=80), 300)
    assert mark is not None, "a blotted sheet must still be recognised as a separator"
    assert not mark.readable and mark.archival_code is None
    assert "QR" in mark.detail


def test_sheet_with_every_qr_torn_off_is_unreadable(sheet300: Image.Image) -> None:
    damaged = sheet300.copy()
    draw = ImageDraw.Draw(damaged)
    for x0, y0, x1, y1 in _qr_boxes(sheet300):
        draw.rectangle((x0 - 20, y0 - 20, x1 + 20, y1 + 20), fill=255)  # gone, as if cut out
    mark = read_separator(damaged.rotate(90, expand=True), 300)
    assert mark is not None and not mark.readable


def test_sheet_with_one_qr_blotted_is_still_read(sheet300: Image.Image) -> None:
    damaged = _blot(sheet300, _qr_boxes(sheet300)[0], seed=7)
    mark = read_separator(_jpeg(damaged, quality=70), 300)
    assert mark is not None and mark.readable and mark.archival_code == CODES[0]


def _qr_tile(payload: str, side: int) -> Image.Image:
    code = cv2.QRCodeEncoder.create(cv2.QRCodeEncoder.Params()).encode(payload)
    return Image.fromarray(cv2.resize(code, (side, side), interpolation=cv2.INTER_NEAREST))


def test_sheet_whose_codes_are_someone_elses_is_unreadable(sheet300: Image.Image) -> None:
    """Labels stuck over the codes: the page still shows our corner marks, so it is our sheet, not a page."""
    damaged = sheet300.copy()
    for x0, y0, x1, _ in _qr_boxes(sheet300):
        damaged.paste(_qr_tile("https://www.example.com/label/7731", x1 - x0), (x0, y0))
    mark = read_separator(damaged, 300)
    assert mark is not None and not mark.readable and "other QR" in mark.detail


def test_sheet_whose_two_codes_disagree_is_unreadable(sheets_pdf: Path, sheet300: Image.Image) -> None:
    other = convert_from_path(sheets_pdf, dpi=300, grayscale=True, first_page=3, last_page=3)[0]
    box = _qr_boxes(sheet300)[0]
    mixed = sheet300.copy()
    mixed.paste(other.crop(box), box[:2])  # one corner from the next item's sheet
    mark = read_separator(mixed, 300)
    assert mark is not None and not mark.readable
    assert CODES[0] in mark.detail and CODES[2] in mark.detail


def test_our_code_with_a_broken_archival_code_is_unreadable() -> None:
    page = Image.new("L", (1654, 2339), 255)  # A4 at 200 dpi
    page.paste(_qr_tile("SCANSTATION-SEP/1 D22 C015-WS.2013-C-BGS-0001", 400), (150, 150))
    mark = read_separator(page, 200)
    assert mark is not None  # a sheet of ours, whose code the archive then refuses
    split = split_run([RunPage(1, mark, False), RunPage(2, None, False)])
    assert not split.segments
    assert [p.code for p in split.problems] == ["unreadable_separator"]
    assert "retention" in split.problems[0].message


def test_code_typed_loosely_is_printed_and_read_in_its_style(tmp_path: Path) -> None:
    # Lower case, full-width dash and dots: read as a DA/T 13 code, printed and read back the DA/T 13 way.
    pdf = render_separator_sheets([SeparatorEntry("c015－ws．2013．y．bgs－0007", "会议记录")], tmp_path / "one.pdf")
    page = convert_from_path(pdf, dpi=200, grayscale=True)[0]
    mark = read_separator(page, 200)
    assert mark is not None and mark.archival_code == "C015-WS·2013·Y·BGS-0007"


# --- ordinary pages ----------------------------------------------------------------------------------


def _sample_dpi() -> dict[str, float]:
    truth = json.loads((SAMPLE.parent / "truth.json").read_text(encoding="utf-8"))
    return {e["file"]: float(e["dpi"]) for e in truth}


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="the shared sample corpus is not available")
def test_sample_pages_are_not_separators() -> None:
    dpis = _sample_dpi()
    files = sorted(SAMPLE.iterdir())
    assert files
    for path in files:
        with Image.open(path) as image:
            assert read_separator(image, dpis.get(path.name, 300.0)) is None, path.name


REAL_PAGES = [
    ("typewriter.png", 0),
    ("baiona_color.jpg", 0),
    ("baiona_gray.png", 0),
    ("multipage.pdf", 0),
    ("multipage.pdf", 4),
    ("ccitt.pdf", 0),
    ("jbig2.pdf", 0),
]


@pytest.mark.skipif(not REAL.is_dir(), reason="the shared real corpus is not available")
@pytest.mark.parametrize(("name", "index"), REAL_PAGES)
def test_real_pages_are_not_separators(name: str, index: int) -> None:
    page = load_page(REAL / name, index, max_pixels=150_000_000, render_dpi=300)
    dpi = (page.dpi[0] + page.dpi[1]) / 2
    assert read_separator(page.image, dpi) is None


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="the shared sample corpus is not available")
def test_page_with_someone_elses_qr_code_is_not_a_separator() -> None:
    with Image.open(SAMPLE / "scan_0001.jpg") as image:
        page = _page_with_foreign_qr(image, 300)
    # The foreign code itself is readable: the page is ordinary because the code is not ours.
    ok, texts, _, _ = cv2.QRCodeDetectorAruco().detectAndDecodeMulti(
        cv2.resize(np.asarray(page), None, fx=1 / 3, fy=1 / 3, interpolation=cv2.INTER_AREA)
    )
    assert ok and any(t.startswith("https://") for t in texts)
    assert read_separator(page, 300) is None
    assert read_separator(_jpeg(page.rotate(90, expand=True), quality=70), 300) is None


def test_blank_page_is_not_a_separator() -> None:
    assert read_separator(_noisy(Image.new("L", (2480, 3508), 255), sigma=8), 300) is None


# --- splitting a run ---------------------------------------------------------------------------------


def _sheet(seq: int, code: str) -> RunPage:
    return RunPage(seq, SeparatorMark(code, True, "read"), blank=False)


def _page(seq: int, blank: bool = False) -> RunPage:
    return RunPage(seq, None, blank)


def _damaged(seq: int) -> RunPage:
    return RunPage(seq, SeparatorMark(None, False, "corner marks, no readable QR code"), blank=False)


A, B = CODES[0], CODES[1]


def test_good_run_splits_into_items() -> None:
    run = [_sheet(1, A), _page(2), _page(3), _page(4), _page(5, blank=True), _sheet(6, B), _page(7), _page(8)]
    split = split_run(run)
    assert split.ok and split.has_separators
    assert [(s.archival_code, s.sheet_seq, s.page_seqs) for s in split.segments] == [
        (A, 1, (2, 3, 4)),
        (B, 6, (7, 8)),
    ]


def test_duplex_blank_backs_are_left_out() -> None:
    run = [_sheet(1, A), _page(2, blank=True), _page(3), _page(4), _sheet(5, B), _page(6, blank=True), _page(7)]
    split = split_run(run)
    assert split.ok
    assert [s.page_seqs for s in split.segments] == [(3, 4), (7,)]


def test_run_without_sheets_is_left_alone() -> None:
    split = split_run([_page(1), _page(2), _page(3, blank=True)])
    assert split.ok and not split.has_separators and split.segments == ()


def test_unreadable_sheet_sends_the_run_to_review() -> None:
    split = split_run([_sheet(1, A), _page(2), _damaged(3), _page(4), _page(5)])
    assert not split.ok and split.has_separators
    assert [(p.code, p.seq) for p in split.problems] == [("unreadable_separator", 3)]
    assert "page 3" in split.problems[0].message.lower() and "4-5" in split.problems[0].message
    # What the station would have filed: only the item whose sheet was read; pages 4-5 go nowhere.
    assert [(s.archival_code, s.page_seqs) for s in split.segments] == [(A, (2,))]


def test_pages_before_the_first_sheet_are_a_problem() -> None:
    split = split_run([_page(1), _page(2, blank=True), _page(3), _sheet(4, A), _page(5)])
    assert [(p.code, p.seq) for p in split.problems] == [("pages_before_first_separator", 1)]
    assert "pages 1, 3" in split.problems[0].message.lower()
    assert [s.page_seqs for s in split.segments] == [(5,)]


def test_blank_pages_before_the_first_sheet_are_fine() -> None:
    assert split_run([_page(1, blank=True), _sheet(2, A), _page(3)]).ok


def test_same_code_twice_is_a_problem() -> None:
    split = split_run([_sheet(1, A), _page(2), _sheet(3, B), _page(4), _sheet(5, A), _page(6)])
    assert [(p.code, p.seq) for p in split.problems] == [("repeated_separator", 5)]
    assert A in split.problems[0].message and "page 1" in split.problems[0].message
    assert len(split.segments) == 3  # proposed as scanned, for the operator to see


def test_same_item_printed_in_both_styles_is_repeated() -> None:
    split = split_run([_sheet(1, "C015-WS·2013-Y-BGS-0001"), _page(2), _sheet(3, "C015-WS·2013·Y·BGS-0001"), _page(4)])
    assert [(p.code, p.seq) for p in split.problems] == [("repeated_separator", 3)]


@pytest.mark.parametrize(
    "run",
    [
        [_sheet(1, A), _page(2, blank=True), _sheet(3, B), _page(4)],  # followed directly by the next sheet
        [_sheet(1, B), _page(2), _sheet(3, A), _page(4, blank=True)],  # followed by the end of the run
    ],
)
def test_sheet_without_pages_is_an_empty_segment(run: list[RunPage]) -> None:
    split = split_run(run)
    assert [p.code for p in split.problems] == ["empty_segment"]
    empty = split.problems[0]
    assert empty.seq in (1, 3) and f"page {empty.seq}" in empty.message
    assert len(split.segments) == 1 and split.segments[0].page_seqs  # a proposed segment is never empty


def test_sheet_with_every_code_and_tag_destroyed_is_still_known_by_its_printed_heading(
    sheet300: Image.Image, tmp_path: Path
) -> None:
    from ocr_models.registry import build_engine
    from workers.pipeline import process_page_image

    page = sheet300.convert("L").copy()
    w, h = page.size
    draw = ImageDraw.Draw(page)
    for box in ((0, 0, 0.32, 0.22), (0.70, 0, 1, 0.22), (0, 0.76, 0.31, 1), (0.68, 0.76, 1, 1)):
        draw.rectangle((box[0] * w, box[1] * h, box[2] * w, box[3] * h), fill=255)  # the corners cut off
    assert read_separator(page, 300) is None, "nothing machine-readable is left on this sheet"
    path = tmp_path / "sheet.png"
    page.save(path, dpi=(300, 300))
    outcome = process_page_image(
        path,
        0,
        engine=build_engine("rapidocr", languages="chi_sim+eng", timeout=120),
        max_pixels=10**8,
        render_dpi=300,
        min_confidence=0,
    )
    assert outcome.flags == ["separator"] and outcome.details["separator"]["readable"] is False
