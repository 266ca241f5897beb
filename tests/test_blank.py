"""The blank-sheet detector on scanner pages made like the corpus's.

A blank sheet (bleed-through from its back, punch holes, a staple, backing the crop left at an edge)
is left out of the PDF; a page with anything written on it, down to a two-character note, is kept.
"""

from __future__ import annotations

import json
import random
import time

import pytest
from PIL import Image

from tests import blank_pages as bp
from tests.conftest import SAMPLE
from workers.stages.blank import BlankVerdict, detect_blank

SIDES = ("left", "right", "top", "bottom")


def cropped_scan(
    page: Image.Image, paper: int, seed: int, *, band: int | None = None, angle: float = 0.0
) -> Image.Image:
    """The sheet as the geometry stages hand it on: deskewed (to within ``angle``), cropped, some backing
    left at one edge (``band`` px, random up to 60 if not given) and a thin dark edge all round."""
    rng = random.Random(seed)
    scanned = bp.scan(page, paper, seed, angle=angle)
    band = rng.randint(0, 60) if band is None else band
    return bp.crop(scanned, band=band, side=rng.choice(SIDES), edge=rng.randint(0, 4))


def assert_blank(verdict: BlankVerdict, what: str) -> None:
    assert verdict.blank, f"{what} must be flagged blank: {verdict}"


def assert_kept(verdict: BlankVerdict, what: str) -> None:
    assert not verdict.blank, f"{what} must not be flagged blank: {verdict}"


# --- blank sheets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(30))
def test_blank_sheet_with_bleed_through_and_holes_is_blank(seed: int) -> None:
    page, paper = bp.blank_sheet(seed, bleed=seed % 6 != 0)
    residual = {5: 0.4, 10: -0.6, 25: 0.8}.get(seed, 0.0)  # a few pages the deskew left slightly skewed
    assert_blank(detect_blank(cropped_scan(page, paper, seed, angle=residual)), f"blank sheet {seed}")


@pytest.mark.parametrize("seed", range(6))
def test_uncropped_skewed_blank_sheet_is_blank(seed: int) -> None:
    """Even straight off the scanner, skewed and framed by backing, a blank sheet is blank."""
    page, paper = bp.blank_sheet(100 + seed)
    angle = (-6.0, -3.5, -1.0, 1.5, 4.0, 6.0)[seed]
    assert_blank(detect_blank(bp.scan(page, paper, seed, angle=angle)), f"skewed blank sheet {seed}")


def test_worst_bleed_through_with_uneven_light_noise_and_blur_is_blank() -> None:
    """The darkest print showing through the lightest paper at 9 %, 12 % light fall-off, noise sigma 10."""
    sheet = bp.strong_bleed_sheet(1)
    for blur in (0.4, 1.1):
        assert_blank(detect_blank(bp.harsh(sheet, blur=blur, seed=3)), f"strong bleed-through, blur {blur}")


def test_sheet_with_only_holes_staple_and_backing_band_is_blank() -> None:
    sheet = Image.new("L", bp.mc.A4, 236)
    sheet = bp.hole(sheet, (110, 1250))
    sheet = bp.hole(sheet, (110, 2200), diameter=80, ink=60)
    sheet = bp.hole(sheet, (1000, 100), diameter=60)  # punched twice, the holes touching
    sheet = bp.hole(sheet, (1045, 145), diameter=60)
    sheet = bp.staple(sheet, (190, 190), angle=45)
    sheet = bp.staple(sheet, (1240, 140), angle=0, length=160, width=10, ink=40)
    sheet = bp.staple(sheet, (2300, 3300), angle=125, length=120, width=6, ink=70)  # a thin one, across a corner
    scanned = bp.scan(sheet, 236, 7)
    for side in SIDES:
        img = bp.crop(scanned, band=60, side=side, edge=3)
        assert_blank(detect_blank(img), f"holes, staples and a backing band on the {side}")
    # The same sheet with two characters on it is kept: the holes do not hide writing.
    noted = bp.handwrite(sheet, "同意", (1700, 3000), pt=16, ink=70)
    assert_kept(detect_blank(bp.crop(bp.scan(noted, 236, 7), band=60, side="left")), "the same sheet with 同意")


def test_thin_dark_edge_left_by_the_crop_is_not_writing() -> None:
    page, paper = bp.blank_sheet(11)
    scanned = bp.scan(page, paper, 11)
    for edge in (1, 3, 6):
        assert_blank(detect_blank(bp.crop(scanned, edge=edge)), f"blank sheet with a {edge} px dark edge")


def test_scanner_streak_on_a_blank_sheet_is_not_writing() -> None:
    page, paper = bp.blank_sheet(12)
    scanned = bp.scan(page, paper, 12)
    for edge, band in ((-4, 0), (2, 40)):  # a tight crop, and one that left backing the streak runs into
        img = bp.crop(scanned, edge=edge, band=band)
        for slant in (0.0, -2.5, 4.0):
            assert_blank(detect_blank(bp.streak(img, 900, slant=slant)), f"a blank sheet with a streak, {slant} deg")
    noted = bp.crop(bp.scan(bp.handwrite(page, "同意", (1700, 3000), pt=16, ink=70), paper, 12), edge=-4)
    assert_kept(detect_blank(bp.streak(noted, 900)), "a sheet with a streak and 同意")


# --- pages with something on them ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "dpi", "font", "turn"),
    [
        (1, 300, "serif", 0),
        (2, 300, "sans", 90),
        (3, 300, "kai", 0),
        (4, 300, "ming", 180),
        (5, 200, "serif", 0),
        (6, 200, "kai", 270),
        (7, 200, "ming", 0),
        (8, 200, "sans", 0),
    ],
)
def test_text_page_is_not_blank(seed: int, dpi: int, font: str, turn: int) -> None:
    page, paper = bp.text_page(seed, dpi=dpi, font=font)
    img = bp.crop(bp.scan(page, paper, seed, turn=turn), band=40, side="left")
    assert_kept(detect_blank(img, dpi=dpi), f"{font} text page at {dpi} dpi")


def test_page_with_only_a_title_is_not_blank() -> None:
    page = bp.mc.draw_lines(["高龄津贴发放登记表"], "sans", 300, paper=240, ink=60)
    assert_kept(detect_blank(cropped_scan(page, 240, 3)), "a page with one printed line")


@pytest.mark.parametrize(
    ("text", "pt", "ink", "where", "seed"),
    [
        ("以下空白", 16, 40, (1300, 1800), 1),
        ("此页无正文", 18, 70, (400, 600), 2),
        ("经核实无误", 20, 100, (1500, 3100), 3),
        ("已阅王建国", 16, 120, (1700, 2900), 4),
        ("本页作废", 20, 60, (300, 3150), 5),
        ("附件另存档案室", 16, 90, (900, 450), 6),
    ],
)
def test_blank_sheet_with_a_short_handwritten_note_is_not_blank(
    text: str, pt: int, ink: int, where: tuple[int, int], seed: int
) -> None:
    page, paper = bp.blank_sheet(200 + seed)
    noted = bp.handwrite(page, text, where, pt=pt, ink=ink, seed=seed)
    assert_kept(detect_blank(cropped_scan(noted, paper, seed)), f"a sheet with the note {text}")


@pytest.mark.parametrize("dpi", [300, 200])
def test_two_character_approval_is_not_blank(dpi: int) -> None:
    page, paper = bp.blank_sheet(31)
    page = bp.at_dpi(page, dpi)
    x, y = round(1800 * dpi / 300), round(3000 * dpi / 300)
    noted = bp.handwrite(page, "同意", (x, y), pt=16, ink=80, dpi=dpi, seed=1)
    assert_kept(detect_blank(cropped_scan(noted, paper, 31), dpi=dpi), f"同意 at {dpi} dpi")


@pytest.mark.parametrize(("width", "ink", "seed"), [(3, 40, 1), (2, 70, 2), (4, 100, 3)])
def test_signature_alone_is_not_blank(width: int, ink: int, seed: int) -> None:
    page, paper = bp.blank_sheet(300 + seed)
    signed = bp.signature(page, (1500, 3000), width=width, ink=ink, seed=seed)
    assert_kept(detect_blank(cropped_scan(signed, paper, seed)), f"a sheet with a {width} px signature")


def test_faint_note_under_worst_bleed_light_noise_and_blur_is_not_blank() -> None:
    noted = bp.handwrite(bp.strong_bleed_sheet(2), "同意", (1500, 2900), pt=16, ink=110)
    assert_kept(detect_blank(bp.harsh(noted, seed=4)), "a faint 同意 on a bleed-through sheet")


# --- input kinds --------------------------------------------------------------------------------------------


def test_bilevel_scans() -> None:
    page, paper = bp.blank_sheet(41)
    assert_blank(detect_blank(bp.bilevel(cropped_scan(page, paper, 41))), "a 1-bit blank sheet")
    noted = bp.handwrite(page, "同意", (1700, 3000), pt=16, ink=70)
    assert_kept(detect_blank(bp.bilevel(cropped_scan(noted, paper, 41))), "a 1-bit sheet with 同意")
    text, paper = bp.text_page(42)
    assert_kept(detect_blank(bp.bilevel(cropped_scan(text, paper, 42))), "a 1-bit text page")


def test_200_dpi_scans() -> None:
    page, paper = bp.blank_sheet(51)
    img = cropped_scan(bp.at_dpi(page, 200), paper, 51, band=40)
    assert_blank(detect_blank(img, dpi=200), "a 200 dpi blank sheet")
    assert_blank(detect_blank(img), "a 200 dpi blank sheet judged as if 300 dpi")
    noted = bp.handwrite(bp.at_dpi(page, 200), "同意", (1200, 2000), pt=16, ink=80, dpi=200)
    noted_img = cropped_scan(noted, paper, 51, band=40)
    assert_kept(detect_blank(noted_img, dpi=200), "a 200 dpi sheet with 同意")
    assert_kept(detect_blank(noted_img), "a 200 dpi sheet with 同意 judged as if 300 dpi")


def test_colour_scan_of_a_blank_sheet_is_blank() -> None:
    """Tinted like make_corpus's JPEGs."""
    page, paper = bp.blank_sheet(61)
    grey = cropped_scan(page, paper, 61)
    rgb = Image.merge("RGB", (grey, grey.point(lambda v: v * 0.99), grey.point(lambda v: v * 0.93)))
    assert_blank(detect_blank(rgb), "a colour blank sheet")


def test_colour_scan_with_a_blue_pen_note_is_not_blank() -> None:
    """The note is drawn in each channel in its own shade of blue, and each channel scanned alike."""
    page, paper = bp.blank_sheet(61)
    pen = (40, 60, 150)  # blue ballpoint
    channels = [bp.handwrite(page, "同意", (1700, 3000), ink=c) for c in pen]
    rgb = Image.merge("RGB", [cropped_scan(ch, paper, 61) for ch in channels])
    assert_kept(detect_blank(rgb), "a colour sheet with 同意 in blue pen")


# --- the sample corpus and speed ----------------------------------------------------------------------------

_TRUTH = json.loads((SAMPLE.parent / "truth.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("entry", _TRUTH, ids=[e["file"] for e in _TRUTH])
def test_sample_scans_straight_off_the_scanner(entry: dict) -> None:
    """Raw scans: backing all round, skew up to 6 degrees, some turned; the verdict matches the truth."""
    with Image.open(SAMPLE / entry["file"]) as img:
        verdict = detect_blank(img, dpi=entry["dpi"])
    assert verdict.blank == entry["blank"], (entry["file"], verdict)


def test_a4_page_at_300_dpi_is_judged_fast() -> None:
    for name in ("scan_0001.jpg", "scan_0007.png"):  # colour text page, grey blank sheet
        with Image.open(SAMPLE / name) as img:
            img.load()
            timings = []
            for _ in range(3):
                start = time.perf_counter()
                detect_blank(img)
                timings.append(time.perf_counter() - start)
        assert min(timings) < 0.2, (name, timings)
