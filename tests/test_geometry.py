"""Orientation, deskew and border crop, each on its own, on pages made like the scanner makes them.

Pages come from ../shared/tools/make_corpus.py's drawing and scanner model with known skew and turn,
so each test knows the truth. Orientation reads lines with the real PP-OCR recogniser.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ocr_models.rapidocr import RapidOcrEngine, read_lines
from tests.blank_pages import blank_sheet, scan, text_page
from tests.conftest import REAL
from workers.stages.border import crop_border, sheet_angle
from workers.stages.deskew import deskew, estimate_skew
from workers.stages.orientation import UPRIGHT_READ, detect_orientation, longest_lines, turn_upright, way_up

# (seed, font, dpi, skew in degrees): every typeface, both resolutions, the whole ±15° range.
SKEWED = [
    (1, "serif", 300, 2.37),
    (2, "sans", 300, -5.81),
    (3, "kai", 300, 0.07),
    (4, "ming", 300, -0.46),
    (5, "serif", 200, 3.9),
    (6, "ming", 200, -1.22),
    (7, "sans", 300, 14.5),
    (8, "kai", 300, -12.3),
    (9, "ming", 300, 0.0),
    (10, "sans", 200, 8.75),
]


@pytest.mark.parametrize(("seed", "font", "dpi", "angle"), SKEWED)
def test_deskew_measures_the_skew_within_a_tenth_of_a_degree(seed: int, font: str, dpi: int, angle: float) -> None:
    page, paper = text_page(seed, dpi=dpi, font=font)
    skew = estimate_skew(scan(page, paper, seed, angle=angle), dpi)
    assert skew.found and skew.lines >= 5
    assert skew.angle == pytest.approx(angle, abs=0.1)


def test_deskewed_page_measures_straight() -> None:
    page, paper = text_page(21, font="serif")
    scanned = scan(page, paper, 21, angle=-4.4)
    straight = deskew(scanned, estimate_skew(scanned).angle)
    assert abs(estimate_skew(straight).angle) < 0.1


def test_a_photo_and_punch_holes_do_not_pull_the_skew() -> None:
    page, paper = text_page(22, font="sans")
    rng = np.random.default_rng(22)
    photo = Image.fromarray(rng.integers(30, 200, (700, 900), dtype=np.uint8))  # a dark, busy picture block
    page.paste(photo, (800, 2300))
    draw = ImageDraw.Draw(page)
    for y in (900, 2500):
        draw.ellipse((100, y, 170, y + 70), fill=50)
    skew = estimate_skew(scan(page, paper, 22, angle=1.8))
    assert skew.angle == pytest.approx(1.8, abs=0.1)


def test_a_blank_sheet_has_no_skew_to_correct() -> None:
    sheet, paper = blank_sheet(3)
    assert not estimate_skew(scan(sheet, paper, 3, angle=2.0)).found


@pytest.mark.slow
@pytest.mark.parametrize("turn", [0, 90, 180, 270])
@pytest.mark.parametrize(("seed", "font", "dpi"), [(31, "kai", 300), (32, "ming", 200), (33, "sans", 300)])
def test_orientation_of_chinese_pages(turn: int, seed: int, font: str, dpi: int) -> None:
    page, paper = text_page(seed, dpi=dpi, font=font)
    found = detect_orientation(scan(page, paper, seed, angle=-2.5, turn=turn), read_lines, dpi)
    assert found.turn == turn
    assert found.sure


@pytest.mark.slow
@pytest.mark.parametrize("turn", [90, 180, 270])
def test_orientation_of_a_latin_typewritten_page(turn: int) -> None:
    with Image.open(REAL / "typewriter.png") as im:
        page = im.convert("L").rotate(turn, expand=True)
    found = detect_orientation(page, read_lines, 300)
    assert found.turn == turn
    assert found.sure


@pytest.mark.parametrize("turn", [0, 180])
def test_lines_that_read_surely_as_they_are_are_not_read_upside_down_too(turn: int) -> None:
    """The detector's lines of an upright page read once (UPRIGHT_READ); upside down, both ways."""
    page, paper = text_page(34, font="ming")
    image = scan(page, paper, 34, angle=0.0, turn=turn)
    engine = RapidOcrEngine()
    quads = engine.find_lines(image)
    crops = engine.line_crops(image, [quads[i] for i in longest_lines(quads)])
    calls: list[int] = []

    def reader(lines: list[np.ndarray]) -> list[tuple[str, float]]:
        calls.append(len(lines))
        return read_lines(lines)

    up = way_up(crops, reader, upright_at=UPRIGHT_READ)
    assert up.legible and up.confidence >= 0.5
    assert up.upside_down is (turn == 180)
    assert len(calls) == (1 if turn == 0 else 2), calls
    assert (up.flipped is None) is (turn == 0)


def test_turn_upright_undoes_each_turn() -> None:
    page, _ = text_page(40, font="serif")
    for turn in (0, 90, 180, 270):
        back = turn_upright(page.rotate(turn, expand=True), turn)
        assert np.array_equal(np.asarray(back), np.asarray(page))


def test_a_blank_sheet_is_left_as_it_is_and_not_sure() -> None:
    sheet, paper = blank_sheet(5)
    found = detect_orientation(scan(sheet, paper, 5), read_lines, 300)
    assert found.turn == 0
    assert not found.sure


@pytest.mark.parametrize(("seed", "dpi"), [(51, 300), (52, 200)])
def test_crop_keeps_the_whole_sheet_and_no_backing(seed: int, dpi: int) -> None:
    page, paper = text_page(seed, dpi=dpi)
    draw = ImageDraw.Draw(page)
    hole_y = page.height // 2
    draw.ellipse((40, hole_y, 40 + 70 * dpi // 300, hole_y + 70 * dpi // 300), fill=45)  # a punch hole near the edge
    scanned = scan(page, paper, seed, angle=3.1)
    cropped, border = crop_border(deskew(scanned, estimate_skew(scanned, dpi).angle))
    assert border.box is not None
    # The sheet as printed, give or take the blurred edge: nothing of it cut, almost nothing added.
    assert abs(cropped.width - page.width) <= 6 and abs(cropped.height - page.height) <= 6
    a = np.asarray(cropped.convert("L")).astype(float)
    for edge in (a[:3], a[-3:], a[:, :3], a[:, -3:]):
        assert np.median(edge) > 0.8 * paper  # no band of backing left
    # The punch hole is the original's: still there, dark, near the left edge half-way down.
    y = cropped.height // 2 + 35 * dpi // 300
    assert a[y - 5 : y + 5, 40 : 40 + 70 * dpi // 300].mean() < 0.5 * paper


def test_a_page_without_backing_is_not_cropped() -> None:
    with Image.open(REAL / "typewriter.png") as im:
        page = im.convert("L")
    cropped, border = crop_border(page)
    assert border.box is None
    assert cropped.size == page.size


def test_a_blank_back_is_straightened_by_its_outline_and_no_backing_is_left() -> None:
    sheet, paper = blank_sheet(7)
    scanned = scan(sheet, paper, 7, angle=3.3)
    angle = sheet_angle(scanned)
    assert angle == pytest.approx(3.3, abs=0.1)
    straight, _ = crop_border(deskew(scanned, angle))
    assert abs(straight.width - sheet.width) <= 6 and abs(straight.height - sheet.height) <= 6
    # Cut without straightening: the backing's corner wedges are painted over, the sheet is kept.
    cut, border = crop_border(scanned)
    dark = np.asarray(cut.convert("L")) < 0.5 * paper
    assert border.painted > 0
    assert dark.mean() < 0.002  # at most the sheet's own punch holes


def test_a_page_without_backing_has_no_outline_angle() -> None:
    with Image.open(REAL / "typewriter.png") as im:
        assert sheet_angle(im.convert("L")) is None
