"""Read an 归档文件目录 (item catalogue) from a CSV or XLSX file. Pure function, no database.

Columns as archivists write them (DA/T 22-2015, DA/T 18 extras), in any order:

    序号 档号 文号 责任者 题名 日期 密级 页数 备注 保管期限 开放标识

- 档号 and 题名 are required; the others are optional. ``文件编号`` is read as 文号, ``文件题名`` as 题名.
- Header cells are matched after Unicode NFKC with every space removed (also full-width ones), so
  ``档 号`` and ``题　名`` are read too. ``页号`` / ``页次`` are never read as 页数: without a 页数 column the
  file is refused, since a page number is not a page count.
- Columns not in the list are ignored and reported in :attr:`CatalogueImport.ignored_columns`.
- The header row need not be the first: the first row among the first 10 with both 档号 and 题名 is the
  header (archivists often put a title row "XX村归档文件目录" above it).
- CSV is read as UTF-8 (with or without BOM), else as GB18030 (Excel on Chinese Windows saves GBK).
  XLSX is read with openpyxl, the first sheet unless ``sheet`` is given. The old ``.xls`` format is refused.
- Blank rows, and rows whose 档号 and 题名 are both blank, are skipped.
- All or nothing: every row is checked, and if any has an error a single :class:`CatalogueImportError`
  lists them all by row (the row number Excel shows) and column; no row is returned.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from scanner_service.archive.archival_code import ArchivalCode, InvalidArchivalCode, parse
from scanner_service.exceptions import UnusableInput

__all__ = [
    "CLASSIFICATIONS",
    "COLUMNS",
    "CatalogueError",
    "CatalogueImport",
    "CatalogueImportError",
    "CatalogueRow",
    "read_catalogue",
]

HEADER_SEARCH_ROWS = 10
"""The header row is looked for among this many first rows."""

MAX_LISTED_ERRORS = 20
"""At most this many errors are written in the exception's message (all are in ``.errors``)."""

COLUMNS: dict[str, str] = {
    "serial": "序号",
    "code": "档号",
    "doc_number": "文号",
    "author": "责任者",
    "title": "题名",
    "date": "日期",
    "classification": "密级",
    "pages": "页数",
    "note": "备注",
    "retention": "保管期限",
    "open_status": "开放标识",
}
"""Field name → the column name used in error messages."""

_HEADERS: dict[str, str] = {name: key for key, name in COLUMNS.items()} | {
    "文件编号": "doc_number",
    "文件题名": "title",
}
_NOT_PAGES = ("页号", "页次")
_REQUIRED = ("code", "title")

CLASSIFICATIONS = ("秘密", "机密", "绝密")
"""The 密级 kept; a blank cell, 公开 or 无 is read as no classification (None)."""
_UNCLASSIFIED = ("", "公开", "无")


class CatalogueError(NamedTuple):
    """One problem: ``row`` as Excel shows it and ``column`` (e.g. 档号); both None for a whole-file problem.

    ``message`` is the station's sentence (English, naming the cell's value); ``zh`` says it in Chinese for
    the archivist at the web page."""

    row: int | None
    column: str | None
    message: str
    zh: str = ""

    def __str__(self) -> str:
        if self.row is None:
            return self.message
        where = f"第 {self.row} 行" + (f" {self.column}" if self.column else "")
        return f"{where}: {self.message}"


class CatalogueImportError(UnusableInput):
    """The catalogue cannot be imported; ``errors`` lists every problem as (row, column, message)."""

    code = "catalogue_import"

    def __init__(self, source: str, errors: list[CatalogueError]) -> None:
        lines = [str(e) for e in errors[:MAX_LISTED_ERRORS]]
        if len(errors) > MAX_LISTED_ERRORS:
            lines.append(f"… and {len(errors) - MAX_LISTED_ERRORS} more")
        count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
        super().__init__(
            f"归档文件目录 {source}: {count}, nothing imported:\n" + "\n".join(lines),
            reason_code="catalogue_import",
        )
        self.errors = errors


@dataclass(frozen=True, kw_only=True)
class CatalogueRow:
    """One item of the catalogue, checked."""

    row: int
    """The row number Excel shows (1-based, counting the title and header rows)."""
    code: ArchivalCode
    title: str
    serial: int | None = None
    doc_number: str | None = None
    author: str | None = None
    date_text: str = ""
    """日期 as written ("" when blank); an Excel date cell is written YYYY-MM-DD."""
    date: dt.date | None = None
    """日期 when it is a full date (20130512, 2013-05-12, 2013.5.12, 2013/5/12, 2013年5月12日); else None."""
    classification: str | None = None
    """秘密, 机密 or 绝密; None when blank, 公开 or 无."""
    pages: int | None = None
    note: str | None = None
    retention: str | None = None
    open_status: str | None = None


@dataclass(frozen=True)
class CatalogueImport:
    rows: list[CatalogueRow]
    ignored_columns: list[str] = field(default_factory=list)
    """Header cells that are not catalogue columns, as written, in file order."""
    header_row: int = 1


def read_catalogue(path: Path, *, sheet: str | None = None) -> CatalogueImport:
    """Read the catalogue in ``path`` (.csv or .xlsx); ``sheet`` picks an XLSX sheet (ignored for CSV).

    Raises CatalogueImportError (an UnusableInput) listing every problem; nothing is half-imported.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xls":
        _refuse(
            path,
            "is an old Excel .xls file: open it in Excel or WPS and save it as .xlsx (or .csv)",
            "这是旧版 Excel（.xls）文件，请用 Excel 或 WPS 打开后另存为 .xlsx（或 .csv）",
        )
    if suffix not in (".csv", ".xlsx"):
        _refuse(
            path,
            f'is not a catalogue file: "{path.suffix or path.name}" is neither .csv nor .xlsx',
            "不是目录文件：请上传 .csv 或 .xlsx 文件",
        )
    if not path.is_file():
        _refuse(path, "does not exist", "文件不存在")
    if path.stat().st_size == 0:
        _refuse(path, "is empty", "文件是空的")
    table = _read_csv(path) if suffix == ".csv" else _read_xlsx(path, sheet)
    return _read_table(path, table)


# --- reading the file into rows of cells -----------------------------------------------------------------


def _refuse(path: Path, message: str, zh: str) -> Any:
    raise CatalogueImportError(path.name, [CatalogueError(None, None, f"{path.name} {message}", f"{path.name}：{zh}")])


def _read_csv(path: Path) -> list[list[Any]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError:
            _refuse(
                path,
                "is neither UTF-8 nor GB18030 text: save it again as CSV (UTF-8) or as .xlsx",
                "文字编码无法识别，请另存为 CSV（UTF-8）或 .xlsx",
            )
    try:
        return [list(record) for record in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error as exc:
        return _refuse(path, f"is not a readable CSV file ({exc})", "CSV 文件无法读取，请用 Excel 另存一次")


def _read_xlsx(path: Path, sheet: str | None) -> list[list[Any]]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        return _refuse(
            path,
            f"is not a readable .xlsx file ({exc.__class__.__name__}): save it again from Excel",
            ".xlsx 文件无法读取，请用 Excel 另存一次",
        )
    try:
        if sheet is None:
            ws = book.worksheets[0]
        elif sheet in book.sheetnames:
            ws = book[sheet]
        else:
            return _refuse(
                path,
                f'has no sheet "{sheet}"; its sheets are: {", ".join(book.sheetnames)}',
                f"没有工作表“{sheet}”，现有的工作表：{'、'.join(book.sheetnames)}",
            )
        return [list(values) for values in ws.iter_rows(values_only=True)]
    finally:
        book.close()


# --- cells ------------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A cell as text: blank is "", 12.0 is "12", an Excel date is YYYY-MM-DD."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _header_key(value: Any) -> str:
    text = unicodedata.normalize("NFKC", _text(value))
    return "".join(text.split()).replace("\u200b", "").replace("\ufeff", "")


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


class CellError(ValueError):
    """A cell that cannot be read, said in English (``str``) and in Chinese (``zh``)."""

    def __init__(self, message: str, zh: str) -> None:
        super().__init__(message)
        self.zh = zh


_CODE_PARTS_ZH = {
    "fonds": "全宗号",
    "category": "门类",
    "year": "年度",
    "retention": "保管期限",
    "org": "机构/问题",
    "volume": "案卷号",
    "item": "件号",
    "code": "格式",
}
_CODE_HINTS_ZH = {
    "fonds": "：全宗号是 1-8 位字母或数字，如 C015",
    "category": "：门类是 2-4 个字母，如 WS",
    "year": "：年度是 4 位数字，如 2013",
    "retention": "：保管期限只能是 Y（永久）、D30（30 年）或 D10（10 年）",
    "org": "：机构/问题是 1-8 位字母或数字，至少一个字母，如 BGS",
    "volume": "：案卷号是 3 位数字（001-999）",
    "item": "：件号是 4 位数字（0001-9999）",
    "code": "：档号应写成 全宗号-门类·年度-保管期限[-机构/问题]-件号，如 C015-WS·2013-Y-BGS-0012",
}


def _integer(value: Any, what: str, maximum: int, what_zh: str) -> int:
    if isinstance(value, bool):
        raise CellError(f'"{value}" is not {what}', f"“{value}”不是{what_zh}")
    if isinstance(value, int | float):
        number = value
    else:
        text = unicodedata.normalize("NFKC", str(value)).strip()
        if not re.fullmatch(r"[+-]?[0-9]+(\.0*)?", text):
            raise CellError(
                f'"{str(value).strip()}" is not {what} (write it in digits, such as 12)',
                f"“{str(value).strip()}”不是{what_zh}：请用阿拉伯数字填写，如 12",
            )
        number = float(text) if "." in text else int(text)
    if isinstance(number, float) and not number.is_integer():
        raise CellError(
            f'"{_text(value)}" is not {what}: it must be a whole number', f"“{_text(value)}”不是{what_zh}：必须是整数"
        )
    number = int(number)
    if not 1 <= number <= maximum:
        raise CellError(
            f'"{number}" is not {what}: it must be between 1 and {maximum}',
            f"“{number}”不是{what_zh}：必须在 1 到 {maximum} 之间",
        )
    return number


_FULL_DATES = (
    re.compile(r"(\d{4})(\d{2})(\d{2})"),
    re.compile(r"(\d{4})[-./](\d{1,2})[-./](\d{1,2})"),
    re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日?"),
)


def _date(value: Any) -> tuple[str, dt.date | None]:
    """(date_text, date): the date only when the cell holds a full date; a wrong full date is an error."""
    if isinstance(value, dt.datetime):
        return _text(value), value.date()
    if isinstance(value, dt.date):
        return _text(value), value
    text = _text(value)
    normal = "".join(unicodedata.normalize("NFKC", text).split())
    for pattern in _FULL_DATES:
        match = pattern.fullmatch(normal)
        if match:
            year, month, day = (int(g) for g in match.groups())
            try:
                return text, dt.date(year, month, day)
            except ValueError:
                raise CellError(
                    f'"{text}" is not a real date (year {year}, month {month}, day {day})',
                    f"“{text}”不是一个真实的日期（{year} 年 {month} 月 {day} 日）",
                ) from None
    return text, None


def _classification(value: Any) -> str | None:
    text = _text(value)
    normal = "".join(unicodedata.normalize("NFKC", text).split())
    if normal in _UNCLASSIFIED:
        return None
    if normal in CLASSIFICATIONS:
        return normal
    raise CellError(
        f'"{text}" is not a 密级: leave it blank or write 公开, 无, 秘密, 机密 or 绝密',
        f"“{text}”不是密级：请留空，或填 公开、无、秘密、机密、绝密",
    )


# --- the table --------------------------------------------------------------------------------------------


def _find_header(rows: list[list[Any]]) -> int | None:
    for index, cells in enumerate(rows[:HEADER_SEARCH_ROWS]):
        keys = {_HEADERS.get(_header_key(c)) for c in cells}
        if all(k in keys for k in _REQUIRED):
            return index
    return None


def _no_header(path: Path, rows: list[list[Any]]) -> Any:
    """Refuse a file without a header, saying which columns the likeliest header row has."""
    candidates = [(i, [t for c in cells if (t := _text(c))]) for i, cells in enumerate(rows[:HEADER_SEARCH_ROWS])]

    def score(item: tuple[int, list[str]]) -> tuple[int, int]:
        names = item[1]
        return (sum(_header_key(n) in _HEADERS for n in names), len(names))

    index, names = max(candidates, key=score)
    return _refuse(
        path,
        f"has no header row with both 档号 and 题名 in its first {HEADER_SEARCH_ROWS} rows; "
        f"the columns found (row {index + 1}) are: {', '.join(names)}",
        f"前 {HEADER_SEARCH_ROWS} 行里找不到同时有“档号”和“题名”的表头行；第 {index + 1} 行的列是：{'、'.join(names)}",
    )


def _map_header(cells: list[Any], header_row: int) -> tuple[dict[str, int], list[str], list[CatalogueError]]:
    """(field → column index, ignored header cells, errors)."""
    columns: dict[str, int] = {}
    ignored: list[str] = []
    errors: list[CatalogueError] = []
    not_pages: list[str] = []
    for index, cell in enumerate(cells):
        key = _header_key(cell)
        if not key:
            continue
        name = _HEADERS.get(key)
        if name is None:
            if key in _NOT_PAGES:
                not_pages.append(_text(cell))
            ignored.append(_text(cell))
        elif name in columns:
            errors.append(
                CatalogueError(
                    header_row,
                    COLUMNS[name],
                    f"two columns are {COLUMNS[name]} (columns {_column_letter(columns[name])} and "
                    f"{_column_letter(index)}): keep one",
                    f"有两列都是“{COLUMNS[name]}”（{_column_letter(columns[name])} 列和 {_column_letter(index)} 列），"
                    "请只保留一列",
                )
            )
        else:
            columns[name] = index
    if not_pages and "pages" not in columns:
        for name in not_pages:
            errors.append(
                CatalogueError(
                    header_row,
                    name,
                    f"{name} is not 页数 (the page count): name the column 页数 if it holds the number of pages, "
                    "or remove it",
                    f"“{name}”不是页数：如果这一列是页数，请把列名改为“页数”，否则请删去这一列",
                )
            )
    return columns, ignored, errors


def _read_table(path: Path, rows: list[list[Any]]) -> CatalogueImport:
    if not any(_text(c) for cells in rows for c in cells):
        _refuse(path, "is empty", "文件是空的")
    header_index = _find_header(rows)
    if header_index is None:
        return _no_header(path, rows)
    header_row = header_index + 1
    columns, ignored, errors = _map_header(rows[header_index], header_row)
    if errors:
        raise CatalogueImportError(path.name, errors)

    result: list[CatalogueRow] = []
    seen: dict[ArchivalCode, int] = {}
    for index in range(header_index + 1, len(rows)):
        row_number = index + 1
        code, row, row_errors = _read_row(columns, rows[index], row_number)
        if code is not None and code in seen:
            message = f"{code} is on 第 {seen[code]} 行 and on 第 {row_number} 行"
            zh = f"档号 {code} 重复：第 {seen[code]} 行已有"
            row_errors.append(CatalogueError(row_number, "档号", message, zh))
        elif code is not None:
            seen[code] = row_number
        if row_errors:
            errors.extend(row_errors)
        elif row is not None:
            result.append(row)
    if errors:
        raise CatalogueImportError(path.name, errors)
    if not result:
        _refuse(
            path,
            f"has a header (row {header_row}) but no rows under it",
            f"第 {header_row} 行是表头，但下面没有任何条目",
        )
    return CatalogueImport(rows=result, ignored_columns=ignored, header_row=header_row)


def _read_row(
    columns: dict[str, int], cells: list[Any], row_number: int
) -> tuple[ArchivalCode | None, CatalogueRow | None, list[CatalogueError]]:
    """(its 档号 when readable, the row or None when skipped or wrong, its errors)."""

    def cell(name: str) -> Any:
        position = columns.get(name)
        if position is None or position >= len(cells):
            return None
        value = cells[position]
        return None if isinstance(value, str) and not value.strip() else value

    errors: list[CatalogueError] = []

    def check(name: str, reader: Callable[[Any], Any]) -> Any:
        try:
            return reader(cell(name))
        except InvalidArchivalCode as exc:
            zh = f"档号“{_text(cell(name))}”的{_CODE_PARTS_ZH.get(exc.part, '格式')}不对"
            errors.append(CatalogueError(row_number, COLUMNS[name], str(exc), zh + _CODE_HINTS_ZH.get(exc.part, "")))
            return None
        except CellError as exc:
            errors.append(CatalogueError(row_number, COLUMNS[name], str(exc), exc.zh))
            return None
        except ValueError as exc:  # a reader's own check that has no Chinese sentence yet
            errors.append(CatalogueError(row_number, COLUMNS[name], str(exc), f"{COLUMNS[name]}填写有误：{exc}"))
            return None

    def optional(name: str) -> str | None:
        return _text(cell(name)) or None

    code_cell, title_cell = cell("code"), cell("title")
    if code_cell is None and title_cell is None:
        return None, None, []  # a blank row, or one with neither 档号 nor 题名 (a trailing or footer row)
    code: ArchivalCode | None = None
    if code_cell is None:
        errors.append(
            CatalogueError(
                row_number, "档号", "is blank: every row with a 题名 needs its 档号", "档号为空：有题名的行必须填档号"
            )
        )
    else:
        code = check("code", lambda v: parse(_text(v)))
    if title_cell is None:
        errors.append(
            CatalogueError(
                row_number, "题名", "is blank: every row with a 档号 needs its 题名", "题名为空：有档号的行必须填题名"
            )
        )
    serial = check("serial", lambda v: None if v is None else _integer(v, "a 序号", 999_999, "序号"))
    date_text, date = check("date", _date) or (_text(cell("date")), None)
    classification = check("classification", _classification)
    pages = check("pages", lambda v: None if v is None else _integer(v, "a page count", 9999, "页数"))
    if errors or code is None:
        return code, None, errors
    row = CatalogueRow(
        row=row_number,
        code=code,
        title=_text(title_cell),
        serial=serial,
        doc_number=optional("doc_number"),
        author=optional("author"),
        date_text=date_text,
        date=date,
        classification=classification,
        pages=pages,
        note=optional("note"),
        retention=optional("retention"),
        open_status=optional("open_status"),
    )
    return code, row, []
