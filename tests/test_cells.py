"""A ruled form's cell of several lines is read whole; elsewhere the rows stay as they are."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ocr_models.cells import horizontal_rules, ruled_cells

# A label on two lines in its cell (x 100-400), and a value beside each line in the next cell.
LABEL_1, LABEL_2 = (110.0, 150.0, 300.0, 190.0), (112.0, 200.0, 380.0, 236.0)
VALUE_1, VALUE_2 = (520.0, 152.0, 900.0, 190.0), (520.0, 200.0, 800.0, 238.0)
BOXES = [LABEL_1, VALUE_1, LABEL_2, VALUE_2]


def page(rules_at: list[int]) -> Image.Image:
    """A 300-dpi sheet with full-width rules at ``rules_at`` and print-like blocks in the boxes."""
    sheet = Image.new("L", (1200, 500), 245)
    draw = ImageDraw.Draw(sheet)
    for y in rules_at:
        draw.line([(40, y), (1160, y)], fill=20, width=3)
    draw.line([(440, 100), (440, 300)], fill=20, width=3)  # the column rule between label and value
    for x0, y0, x1, y1 in BOXES:
        for x in range(int(x0), int(x1) - 20, 34):  # characters: dark blocks with gaps between them
            draw.rectangle([x, y0 + 4, x + 24, y1 - 4], fill=30)
    return sheet


def test_a_label_on_two_lines_between_rules_is_one_cell_and_its_values_another() -> None:
    assert ruled_cells(BOXES, horizontal_rules(page([100, 300]))) == [[0, 2], [1, 3]]


def test_lines_with_a_rule_between_them_are_two_cells() -> None:
    assert ruled_cells(BOXES, horizontal_rules(page([100, 195, 300]))) == []


def test_without_rules_the_rows_stay_as_they_are() -> None:
    """A letter's paragraphs, a table without rules: nothing says the lines belong together."""
    assert ruled_cells(BOXES, horizontal_rules(page([]))) == []


def test_a_line_of_print_is_not_taken_for_a_rule() -> None:
    rules = horizontal_rules(page([]))
    assert not np.any(rules[75:120, 50:450]), "the print's blocks are broken by their gaps"
    assert np.any(horizontal_rules(page([100]))[48:52, 100:500])
