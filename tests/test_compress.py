"""The usage copy's encoding: text pages bilevel (CCITT G4), stamps in colour, pictures and faint pencil in grey."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import tests.blank_pages as bp
from ocr_models.registry import build_engine
from tests.blank_pages import scan, text_page
from tests.conftest import REAL, SAMPLE
from workers.pipeline import Choices, PageOutcome, process_page_image
from workers.stages.border import crop_border
from workers.stages.compress import FAINT_SHARE, binarise, choose_encoding, usage_image
from workers.stages.deskew import deskew, estimate_skew


def _straight(seed: int, font: str = "serif", dpi: int = 300) -> tuple[Image.Image, Image.Image]:
    page, paper = text_page(seed, dpi=dpi, font=font)
    scanned = scan(page, paper, seed, angle=1.5)
    return page, crop_border(deskew(scanned, estimate_skew(scanned, dpi).angle))[0]


def _bytes(image: Image.Image) -> int:
    buffer = io.BytesIO()
    if image.mode == "1":
        image.save(buffer, "TIFF", compression="group4")
    else:
        image.save(buffer, "JPEG", quality=80)
    return len(buffer.getvalue())


def test_a_text_page_becomes_bilevel_and_small_with_its_print_whole() -> None:
    printed, page = _straight(61)
    usage, encoding = usage_image(page)
    assert encoding.kind == "bilevel" and encoding.reason == "text" and usage.mode == "1"
    assert _bytes(usage) < 0.1 * _bytes(page.convert("L"))  # a tenth of the grey JPEG or less
    # Black where the sheet was printed, white where it was not (noise, tone and light removed).
    printed_ink = np.asarray(printed) < 128
    black = ~np.asarray(usage.resize(printed.size))
    assert black[printed_ink].mean() > 0.85
    assert black[~printed_ink].mean() < 0.01


def test_faint_bleed_through_stays_white() -> None:
    printed, paper = text_page(62, font="sans")
    ghost = np.asarray(printed.transpose(Image.Transpose.FLIP_LEFT_RIGHT), dtype=np.float32)
    faint = Image.fromarray(np.clip(paper - (paper - ghost) * 0.09, 0, 255).astype(np.uint8))
    page = Image.new("L", printed.size, paper)
    page.paste(faint)
    ImageDraw.Draw(page).text((400, 600), "同意", fill=30, font_size=60)
    usage, _ = usage_image(page)
    black = ~np.asarray(usage)
    assert black.mean() < 0.002  # the two characters, not the ghost of a page


def test_a_red_stamp_keeps_the_page_in_colour() -> None:
    _, page = _straight(63)
    rgb = page.convert("RGB")
    draw = ImageDraw.Draw(rgb)
    draw.ellipse((1500, 2600, 1900, 3000), outline=(200, 30, 30), width=14)
    draw.text((1580, 2760), "档案室", fill=(200, 30, 30), font_size=80)
    usage, encoding = usage_image(rgb)
    assert encoding.kind == "colour" and usage.mode == "RGB"


def test_a_tinted_scan_of_black_print_is_not_colour() -> None:
    _, page = _straight(64)
    g = np.asarray(page, dtype=np.float32)
    tinted = Image.fromarray(np.dstack([g, g * 0.99, g * 0.93]).astype(np.uint8))  # make_corpus's JPEG tint
    assert usage_image(tinted)[1].kind == "bilevel"


def test_photographs_stay_grey_or_colour() -> None:
    with Image.open(REAL / "baiona_gray.png") as im:
        assert usage_image(im.convert("L"))[1].kind == "grey"
    with Image.open(REAL / "baiona_color.jpg") as im:
        assert usage_image(im.convert("RGB"))[1].kind == "colour"


PENCIL = "经办人王秀兰核对无误"
NOTO = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"


def _pencilled(page: Image.Image, xy: tuple[int, int] = (400, 700)) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """``page`` with one faint pencil line (grey 186, 56 px Noto CJK at 300 dpi) and the line's box."""
    page = page.convert("L")
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(NOTO, 56)
    draw.text(xy, PENCIL, fill=186, font=font)
    box = draw.textbbox(xy, PENCIL, font=font)
    return page, (int(box[0]), int(box[1]), int(box[2]), int(box[3]))


def test_a_faint_pencil_line_keeps_the_page_grey_and_visible() -> None:
    with Image.open(SAMPLE / "scan_0006.jpg") as im:  # a blank back: bleed-through and a punch hole
        page, box = _pencilled(im)
    assert np.asarray(binarise(page).crop(box)).all(), "the bilevel copy loses the pencil entirely"
    usage, encoding = usage_image(page)
    assert encoding.kind == "grey" and encoding.reason == "faint_ink" and usage.mode == "L"
    assert encoding.faint_share > FAINT_SHARE
    line = np.asarray(usage.crop(box), dtype=np.float32)
    paper = float(np.median(np.asarray(usage, dtype=np.float32)))
    assert (line < paper - 25).mean() > 0.05, "the strokes are darker than the paper in the usage image"


def test_a_light_pencil_signature_on_a_scanned_blank_back_is_kept_in_grey() -> None:
    page, paper = bp.blank_sheet(5)
    signed = bp.signature(page, (900, 2000), ink=186, width=4)
    assert usage_image(crop_border(bp.scan(signed, paper, 5))[0])[1].reason == "faint_ink"


def test_text_pages_and_bleed_through_stay_bilevel() -> None:
    """Bytes per page: ordinary text pages, and blank backs whose bleed-through is kept white, stay 1-bit."""
    for name in ("scan_0001.jpg", "scan_0003.jpg", "scan_0006.jpg", "scan_0008.png"):
        with Image.open(SAMPLE / name) as im:
            encoding = choose_encoding(im)
        assert (encoding.kind, encoding.reason) == ("bilevel", "text"), (name, encoding)
        assert encoding.faint_share < FAINT_SHARE / 2, (name, encoding)
    bleed = bp.harsh(bp.strong_bleed_sheet(7))  # the worst bleed-through, uneven light, noise and blur
    usage, encoding = usage_image(bleed)
    assert encoding.kind == "bilevel" and not (~np.asarray(usage)).any()
    page, paper = bp.blank_sheet(3)
    assert choose_encoding(crop_border(bp.scan(page, paper, 3))[0]).kind == "bilevel"


def test_a_pencilled_back_cleared_of_blank_gets_a_grey_usage_image_with_its_reason(tmp_path: Path) -> None:
    """The defect as the station met it: the back is taken for blank; once a person clears that, the page
    is derived again and its usage image (the PDF/A's picture) must show the pencil, saying why it is grey."""
    with Image.open(SAMPLE / "scan_0006.jpg") as im:
        page, (x0, y0, x1, y1) = _pencilled(im)
    path = tmp_path / "003.png"
    page.save(path, dpi=(300, 300))
    engine = build_engine("rapidocr", languages="chi_sim+eng", timeout=120)

    def derive(choices: Choices | None = None) -> PageOutcome:
        return process_page_image(
            path, 0, engine=engine, max_pixels=10**8, render_dpi=300, min_confidence=0, choices=choices
        )

    assert derive().blank, "the station takes the faint note for a blank back"
    outcome = derive(Choices(blank=False))
    assert not outcome.blank and "王秀兰" in outcome.text.text.replace(" ", "")
    assert (outcome.details["encoding"], outcome.details["encoding_reason"]) == ("grey", "faint_ink")
    assert outcome.image.mode == "L"
    usage = np.asarray(outcome.image, dtype=np.float32)
    paper = float(np.median(usage))
    around = usage[y0 - 150 : y1 + 150, x0 - 100 : x1 + 100]  # deskew and crop move the line a little
    assert (around < paper - 30).sum() > 1500, "the pencil strokes are in the usage image (bleed-through: none)"
