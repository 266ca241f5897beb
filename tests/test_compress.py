"""The usage copy's encoding: text pages bilevel (CCITT G4), stamps in colour, pictures in grey."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from tests.blank_pages import scan, text_page
from tests.conftest import REAL
from workers.stages.border import crop_border
from workers.stages.compress import usage_image
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
    assert encoding.kind == "bilevel" and usage.mode == "1"
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
