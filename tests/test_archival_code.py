"""The 档号: both standard forms, what an operator types, and errors that say which part is wrong."""

from __future__ import annotations

import random

import pytest

from scanner_service.archive.archival_code import (
    DAT13,
    DAT22,
    ArchivalCode,
    CodeStyle,
    InvalidArchivalCode,
    is_archival_code,
    parse,
    style_for,
)
from scanner_service.exceptions import ConfigError, UnusableInput

BGS_12 = ArchivalCode(fonds="C015", category="WS", year=2013, retention="Y", org="BGS", item=12)


def test_both_design_forms_are_the_same_code() -> None:
    assert parse("C015-WS·2013-Y-BGS-0012") == BGS_12
    assert parse("C015-WS·2013·Y·BGS-0012") == BGS_12


def test_each_style_writes_its_own_form() -> None:
    assert BGS_12.format(DAT22) == "C015-WS·2013-Y-BGS-0012"
    assert BGS_12.format(DAT13) == "C015-WS·2013·Y·BGS-0012"
    assert str(BGS_12) == "C015-WS·2013-Y-BGS-0012"
    assert BGS_12.format() == str(BGS_12)


def test_without_org() -> None:
    code = parse("C015-WS·2013-Y-0012")
    assert code.org is None and code.volume is None and code.item == 12
    assert parse("C015-WS·2013·Y-0012") == code
    assert code.format(DAT22) == "C015-WS·2013-Y-0012"
    assert code.format(DAT13) == "C015-WS·2013·Y-0012"


@pytest.mark.parametrize(
    ("text", "org", "volume", "item"),
    [
        ("C015-WS·2013-Y-001-0012", None, 1, 12),
        ("C015-WS·2013-Y-BGS-001-0012", "BGS", 1, 12),
        ("C015-WS·2013·Y·BGS-117-0003", "BGS", 117, 3),
    ],
)
def test_volume_form(text: str, org: str | None, volume: int, item: int) -> None:
    code = parse(text)
    assert (code.org, code.volume, code.item) == (org, volume, item)
    assert parse(code.format(DAT22)) == code == parse(code.format(DAT13))


def test_volume_is_written_after_a_dash_in_both_styles() -> None:
    code = parse("C015-WS·2013-Y-BGS-001-0012")
    assert code.format(DAT22) == "C015-WS·2013-Y-BGS-001-0012"
    assert code.format(DAT13) == "C015-WS·2013·Y·BGS-001-0012"


@pytest.mark.parametrize(
    "typed",
    [
        "c015-ws·2013-y-bgs-0012",  # lower case
        "C015－WS．2013－Y－BGS－0012",  # full-width dash and full stop
        "C015-WS・2013-Y-BGS-0012",  # katakana middle dot from a Japanese IME
        "C015-WS•2013-Y-BGS-0012",  # bullet
        "C015-WS‧2013-Y-BGS-0012",  # hyphenation point
        "C015-WS.2013-Y-BGS-0012",  # plain full stop
        "C015—WS·2013–Y—BGS–0012",  # em and en dashes
        " C015 - WS · 2013 - Y - BGS - 0012 ",  # spaces
        "Ｃ０１５-ＷＳ·２０１３-Ｙ-ＢＧＳ-００１２",  # full-width letters and digits
        "C015-WS·2013　·Y·bgs-0012",  # ideographic space, DA/T 13 form
        "C015-WS-2013-Y-BGS-0012",  # dash where the dot belongs
    ],
)
def test_what_an_operator_types_is_read(typed: str) -> None:
    assert parse(typed) == BGS_12


def test_local_and_accounting_categories() -> None:
    assert parse("C015-TD·2003-D30-0001").category == "TD"
    assert parse("C015-KJ·2013-D10-0001").category == "KJ"
    assert parse("C015-KU·2013-D10-0001").category == "KU"  # as written in DESIGN.md, not rewritten to KJ


def _random_code(rng: random.Random) -> ArchivalCode:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    alnum = letters + "0123456789"
    org = None
    if rng.random() < 0.6:
        org = rng.choice(letters) + "".join(rng.choice(alnum) for _ in range(rng.randint(0, 7)))
    return ArchivalCode(
        fonds="".join(rng.choice(alnum) for _ in range(rng.randint(1, 8))),
        category="".join(rng.choice(letters) for _ in range(rng.randint(2, 4))),
        year=rng.randint(1900, 2100),
        retention=rng.choice(["Y", "D30", "D10"]),
        org=org,
        volume=rng.randint(1, 999) if rng.random() < 0.3 else None,
        item=rng.randint(1, 9999),
    )


def test_round_trip_both_styles() -> None:
    rng = random.Random(2013)
    for _ in range(2000):
        code = _random_code(rng)
        assert parse(code.format(DAT22)) == code == parse(code.format(DAT13)), code
        assert is_archival_code(str(code))


@pytest.mark.parametrize(
    ("text", "part", "fragment"),
    [
        ("C015-WS·13-Y-0001", "year", '年度 (year) "13" must be 4 digits'),
        ("C015-WS·1850-Y-0001", "year", "between 1900 and 2100"),
        ("C015-WS·2013-Y30-0012", "retention", '保管期限 (retention) "Y30" must be Y, D30 or D10'),
        ("C015-WS·2013-C-0012", "retention", "长期 C"),
        ("C015-WS·2013-Y-BGS-12", "item", '件号 (item) "12" must be 4 digits (0001-9999)'),
        ("C015-WS·2013-Y-BGS-0000", "item", "0001-9999"),
        ("WS·2013-Y-0012", "fonds", "全宗号 (fonds) missing"),
        ("-WS·2013-Y-0012", "fonds", "全宗号 (fonds) missing"),
        ("C015-文书·2013-Y-0012", "category", '门类 (category) "文书" must be 2-4 letters such as WS'),
        ("C015-W·2013-Y-0012", "category", '"W" must be 2-4 letters'),
        ("C0_15-WS·2013-Y-0012", "fonds", '全宗号 (fonds) "C0_15"'),
        ("C015-WS·2013-Y-B_S-0012", "org", '机构/问题 (org) "B_S"'),
        ("C015-WS·2013-Y-0012-0001", "org", "at least one letter"),  # a master name's stem is not a 档号
        ("C015-WS·2013-Y-BGS-01-0012", "volume", '案卷号 (volume) "01" must be 3 digits'),
        ("C015-WS-001-0012", "year", "年度 (year) missing"),  # the old volume form without year
        ("scan batch 3", "code", "形式 (shape)"),
        ("", "code", "empty"),
        ("C015-WS·2013-Y-BGS-001-0012-0001", "code", "has 8 parts"),
    ],
)
def test_wrong_part_is_named(text: str, part: str, fragment: str) -> None:
    with pytest.raises(InvalidArchivalCode) as caught:
        parse(text)
    assert caught.value.part == part
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f'档号 "{text.strip()}": ')


def test_error_is_an_unusable_input_with_422() -> None:
    with pytest.raises(UnusableInput) as caught:
        parse("C015-WS·13-Y-0001")
    assert caught.value.http_status == 422
    assert caught.value.code == "invalid_archival_code"


def test_a_code_cannot_be_built_with_a_wrong_field() -> None:
    with pytest.raises(InvalidArchivalCode) as caught:
        ArchivalCode(fonds="C015", category="WS", year=2013, retention="C", item=1)
    assert caught.value.part == "retention"
    with pytest.raises(InvalidArchivalCode) as caught:
        ArchivalCode(fonds="C015", category="WS", year=2013, retention="Y", item=10000)
    assert caught.value.part == "item"


def test_master_name_follows_dat31() -> None:
    assert BGS_12.master_name(1, "tif") == "C015-WS·2013-Y-BGS-0012-0001.tif"
    assert BGS_12.master_name(27, ".tif") == "C015-WS·2013-Y-BGS-0012-0027.tif"
    assert BGS_12.master_name(1, "tif", DAT13) == "C015-WS·2013·Y·BGS-0012-0001.tif"
    with pytest.raises(ValueError):
        BGS_12.master_name(0, "tif")


def test_path_parts_are_the_archive_folders() -> None:
    assert BGS_12.path_parts() == ("C015", "WS", "2013")


def test_sort_key_keeps_archival_order() -> None:
    texts = [
        "C015-WS·2014-Y-0001",
        "C015-WS·2013-D10-0001",
        "C015-WS·2013-Y-0002",
        "C015-WS·2013-D30-0001",
        "C015-WS·2013-Y-0010",
    ]
    ordered = sorted((parse(t) for t in texts), key=ArchivalCode.sort_key)
    assert [str(c) for c in ordered] == [
        "C015-WS·2013-Y-0002",
        "C015-WS·2013-Y-0010",
        "C015-WS·2013-D30-0001",
        "C015-WS·2013-D10-0001",
        "C015-WS·2014-Y-0001",
    ]


@pytest.mark.parametrize(
    ("name", "style"),
    [("DA/T 22", DAT22), ("dat22", DAT22), ("DA/T 22-2015", DAT22), ("DA/T 13", DAT13), ("dat13", DAT13)],
)
def test_style_for(name: str, style: CodeStyle) -> None:
    assert style_for(name) is style


def test_style_for_unknown_name() -> None:
    with pytest.raises(ConfigError):
        style_for("DA/T 18")


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("C015-WS·2013-Y-BGS-0001", True),
        ("C015-WS·2013·Y·BGS-0001", True),
        ("c015-ws.2013-y-0001", True),
        ("scan batch 3", False),
        ("C015-WS·2013-Y-BGS-1", False),
        ("C015-WS·2013-Y-BGS-0001-0001.tif", False),
        ("", False),
    ],
)
def test_is_archival_code_for_batch_folders(folder: str, expected: bool) -> None:
    assert is_archival_code(folder) is expected
