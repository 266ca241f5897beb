"""Real scans (Latin and English pages from other projects' test suites, real Chinese forms) come out
upright and readable."""

from __future__ import annotations

import pytest

from ocr_models.registry import build_engine
from tests.conftest import CORPUS, REAL
from workers.pipeline import process_page_image

CASES = [
    # The word spaces the recogniser left out are put back: "Linzensoepa la", "WE wentthetip-toeing".
    ("typewriter.png", 0, ["Linzensoep a la Waterman", "kruidnagel"]),
    ("baiona_color.jpg", 0, ["BAIONA", "Komunikabideak"]),
    ("baiona_gray.png", 0, ["BAIONA", "Trenbideak"]),
    ("multipage.pdf", 0, ["WE went tip-toeing along a path", "garden"]),
    ("multipage.pdf", 2, ["Support", "Oppose"]),
    ("francais.pdf", 0, ["whisky", "juge"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "index", "words"), CASES)
def test_latin_page_stays_upright_and_readable(name: str, index: int, words: list[str]) -> None:
    engine = build_engine("rapidocr", languages="", timeout=120)
    outcome = process_page_image(
        REAL / name, index, engine=engine, max_pixels=150_000_000, render_dpi=300, min_confidence=60
    )
    assert outcome.details["turn"] == 0
    assert abs(outcome.details["skew_deg"]) < 1.0
    assert not outcome.blank
    for word in words:
        assert word in outcome.text.text


@pytest.mark.slow
def test_a_form_line_between_a_checkbox_and_a_rule_to_fill_in_is_read() -> None:
    """Such lines get a low detection score (0.3-0.5) and were lost whole, checkbox, words and all."""
    engine = build_engine("rapidocr", languages="chi_sim+eng", timeout=120)
    page = CORPUS / "forms" / "pages" / "form_033.jpg"
    outcome = process_page_image(page, 0, engine=engine, max_pixels=150_000_000, render_dpi=300, min_confidence=60)
    text = outcome.text.text
    assert "本人需要协助进行投票。我所需要的协助如下" in text
    assert "本人没有街道居住地址或者长久居住地址" in text
    assert "宾夕法尼亚州选民登记申请表" in text  # and the page's other lines still read as they did


@pytest.mark.slow
def test_a_form_label_on_two_lines_of_its_cell_is_read_whole() -> None:
    """出生 over 年月 in one ruled cell, its value beside: the label is not split by the value's row."""
    engine = build_engine("rapidocr", languages="chi_sim+eng", timeout=120)
    page = CORPUS / "forms" / "pages" / "form_003.jpg"
    outcome = process_page_image(page, 0, engine=engine, max_pixels=150_000_000, render_dpi=300, min_confidence=60)
    lines = [line.text for line in outcome.text.lines]
    for top, bottom in (("出生", "年月"), ("政治", "面貌"), ("婚姻", "状况"), ("联系", "电话")):
        assert lines[lines.index(top) + 1] == bottom, lines[:30]
