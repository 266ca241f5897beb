"""Reading an 归档文件目录 from real CSV and XLSX files, as archivists save them."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook

from scanner_service.archive.archival_code import parse
from scanner_service.archive.catalogue_import import CatalogueImportError, read_catalogue
from scanner_service.exceptions import UnusableInput

HEADER = ["序号", "档号", "文号", "责任者", "题名", "日期", "密级", "页数", "备注"]
ROWS = [
    [
        "1",
        "C015-WS·2013-Y-BGS-0001",
        "X村发〔2013〕1号",
        "X村村民委员会",
        "关于村务公开的通知",
        "20130512",
        "",
        "3",
        "",
    ],
    ["2", "C015-WS·2013-Y-BGS-0002", "", "X镇人民政府", "关于土地承包的批复", "2013年5月20日", "秘密", "12", "复印件"],
]


def write_csv(path: Path, rows: list[list[Any]], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def write_xlsx(path: Path, rows: list[list[Any]], title: str | None = None) -> Path:
    book = Workbook()
    sheet = book.active
    if title:
        sheet.title = title
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def errors_of(path: Path) -> CatalogueImportError:
    with pytest.raises(CatalogueImportError) as info:
        read_catalogue(path)
    assert isinstance(info.value, UnusableInput) and info.value.http_status == 422
    return info.value


def test_xlsx_with_a_title_row_excel_date_and_float_page_count(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "目录.xlsx",
        [
            ["X村2013年归档文件目录"],
            HEADER,
            [
                1,
                "C015-WS·2013-Y-BGS-0001",
                "X村发〔2013〕1号",
                "X村村委会",
                "关于村务公开的通知",
                dt.datetime(2013, 5, 12),
                None,
                12.0,
                None,
            ],
            [2, "c015-ws.2013-y-bgs-0002", None, "X镇人民政府", "关于土地承包的批复", "2013.5.20", "机密", 3, "复印件"],
        ],
    )
    result = read_catalogue(path)
    assert result.header_row == 2 and result.ignored_columns == []
    first, second = result.rows
    assert first.row == 3 and second.row == 4  # the row numbers Excel shows
    assert first.serial == 1 and first.code == parse("C015-WS·2013-Y-BGS-0001")
    assert first.doc_number == "X村发〔2013〕1号" and first.author == "X村村委会"
    assert first.title == "关于村务公开的通知"
    assert first.date == dt.date(2013, 5, 12) and first.date_text == "2013-05-12"
    assert first.pages == 12 and isinstance(first.pages, int)
    assert first.classification is None and first.note is None
    assert str(second.code) == "C015-WS·2013-Y-BGS-0002"
    assert second.date == dt.date(2013, 5, 20) and second.date_text == "2013.5.20"
    assert second.classification == "机密" and second.pages == 3 and second.note == "复印件"


def test_gb18030_csv_and_utf8_bom_csv_give_the_same_rows(tmp_path: Path) -> None:
    gbk = read_catalogue(write_csv(tmp_path / "gbk.csv", [HEADER, *ROWS], encoding="gb18030"))
    bom = read_catalogue(write_csv(tmp_path / "bom.csv", [HEADER, *ROWS], encoding="utf-8-sig"))
    plain = read_catalogue(write_csv(tmp_path / "plain.csv", [HEADER, *ROWS]))
    assert gbk.rows == bom.rows == plain.rows
    assert [r.title for r in gbk.rows] == ["关于村务公开的通知", "关于土地承包的批复"]
    assert gbk.rows[1].author == "X镇人民政府" and gbk.rows[1].classification == "秘密"
    assert gbk.rows[1].date == dt.date(2013, 5, 20) and gbk.rows[1].date_text == "2013年5月20日"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20130512", dt.date(2013, 5, 12)),
        ("2013-05-12", dt.date(2013, 5, 12)),
        ("2013/5/12", dt.date(2013, 5, 12)),
        ("201305", None),
        ("2013年5月", None),
        ("", None),
    ],
)
def test_dates_as_written_are_kept_and_full_dates_parsed(tmp_path: Path, text: str, expected: dt.date | None) -> None:
    path = write_csv(tmp_path / "d.csv", [["档号", "题名", "日期"], ["C015-WS·2013-Y-0001", "通知", text]])
    (row,) = read_catalogue(path).rows
    assert row.date == expected and row.date_text == text


def test_header_variants_with_spaces_full_width_and_da_t_18_columns(tmp_path: Path) -> None:
    header = [" 序 号 ", "档\u3000号", "文件编号", "题　名", "ＤＡ号", "保管期限", "开放标识", "件号"]
    row = ["1", "C015-WS·2013-D30-0001", "X发〔2013〕2号", "关于防汛的通知", "x", "30年", "开放", "1"]
    result = read_catalogue(write_csv(tmp_path / "v.csv", [header, row]))
    (item,) = result.rows
    assert item.serial == 1 and item.doc_number == "X发〔2013〕2号" and item.title == "关于防汛的通知"
    assert item.retention == "30年" and item.open_status == "开放"
    assert result.ignored_columns == ["ＤＡ号", "件号"]  # 件号 is not taken for the 档号


def test_page_number_column_is_not_read_as_page_count(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [["档号", "题名", "页号"], ["C015-WS·2013-Y-0001", "通知", "1-5"]])
    error = errors_of(path)
    assert [(e.row, e.column) for e in error.errors] == [(1, "页号")]
    assert "页数" in str(error)


def test_three_bad_rows_are_all_reported_and_nothing_is_imported(tmp_path: Path) -> None:
    rows = [
        HEADER,
        ROWS[0],
        ["2", "C015-WS·1850-Y-BGS-0002", "", "", "年度错的", "", "", "3", ""],
        ["3", "C015-WS·2013-Y-BGS-0003", "", "", "页数错的", "", "", "十二", ""],
        ["4", "C015-WS·2013-Y-BGS-0004", "", "", "密级错的", "", "内部", "2", ""],
    ]
    error = errors_of(write_xlsx(tmp_path / "bad.xlsx", rows))
    assert [(row, column) for row, column, *_ in error.errors] == [(3, "档号"), (4, "页数"), (5, "密级")]
    message = str(error)
    assert "3 errors, nothing imported" in message
    assert "第 3 行 档号: " in message and "年度 (year)" in message and "1850" in message
    assert '第 4 行 页数: "十二"' in message
    assert '第 5 行 密级: "内部"' in message


def test_duplicate_code_names_both_rows(tmp_path: Path) -> None:
    rows = [HEADER, ROWS[0], ROWS[1], ["3", "C015-WS·2013·Y·BGS-0001", "", "", "重复的", "", "", "", ""]]
    error = errors_of(write_csv(tmp_path / "dup.csv", rows))
    ((row, column, message, _zh),) = error.errors
    assert (row, column) == (4, "档号")
    assert "第 2 行" in message and "第 4 行" in message  # the same code in DA/T 13 spelling


def test_row_with_only_one_of_code_and_title_is_an_error(tmp_path: Path) -> None:
    rows = [["档号", "题名"], ["C015-WS·2013-Y-0001", ""], ["", "没有档号的"]]
    error = errors_of(write_csv(tmp_path / "half.csv", rows))
    assert [(e.row, e.column) for e in error.errors] == [(2, "题名"), (3, "档号")]


def test_missing_title_column_names_the_columns_found(tmp_path: Path) -> None:
    rows = [["X村归档文件目录"], ["序号", "档号", "责任者", "日期"], ["1", "C015-WS·2013-Y-0001", "村委会", "20130512"]]
    error = errors_of(write_xlsx(tmp_path / "no_title.xlsx", rows))
    assert "题名" in str(error) and "序号, 档号, 责任者, 日期" in str(error)


def test_old_xls_is_refused_with_the_hint(tmp_path: Path) -> None:
    path = tmp_path / "目录.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    assert "save it as .xlsx" in str(errors_of(path))
    other = tmp_path / "目录.docx"
    other.write_bytes(b"PK")
    assert "neither .csv nor .xlsx" in str(errors_of(other))


def test_empty_files_are_refused(tmp_path: Path) -> None:
    empty_csv = tmp_path / "empty.csv"
    empty_csv.write_bytes(b"")
    assert "is empty" in str(errors_of(empty_csv))
    assert "is empty" in str(errors_of(write_csv(tmp_path / "blank.csv", [[""], ["", ""]], encoding="utf-8-sig")))
    assert "is empty" in str(errors_of(write_xlsx(tmp_path / "empty.xlsx", [])))
    assert "no rows under it" in str(errors_of(write_csv(tmp_path / "header.csv", [HEADER])))


def test_blank_and_trailing_rows_are_skipped(tmp_path: Path) -> None:
    rows = [HEADER, ROWS[0], [None] * 9, ROWS[1], [None] * 9, ["", "", "", "", "", "", "", "", "合计 15 页"], [None]]
    result = read_catalogue(write_xlsx(tmp_path / "trail.xlsx", rows))
    assert [r.row for r in result.rows] == [2, 4]  # row numbers still match Excel past the blank row


def test_unknown_columns_are_reported_not_imported(tmp_path: Path) -> None:
    rows = [["档号", "题名", "盒号", "页数"], ["C015-WS·2013-Y-0001", "通知", "盒1", "4"]]
    result = read_catalogue(write_csv(tmp_path / "u.csv", rows))
    assert result.ignored_columns == ["盒号"] and result.rows[0].pages == 4


def test_a_named_sheet_is_read(tmp_path: Path) -> None:
    book = Workbook()
    book.active.append(["说明"])
    other = book.create_sheet("2013年")
    other.append(["档号", "题名"])
    other.append(["C015-WS·2013-Y-0001", "通知"])
    book.save(tmp_path / "s.xlsx")
    assert read_catalogue(tmp_path / "s.xlsx", sheet="2013年").rows[0].title == "通知"
    with pytest.raises(CatalogueImportError, match="2013年"):
        read_catalogue(tmp_path / "s.xlsx", sheet="2014年")
