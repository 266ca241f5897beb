"""The transfer's descriptions as archivists read them: the 归档文件目录 (DA/T 22-2015 columns) as CSV and
XLSX, and each item's description as XML (DA/T 18-2022 field names).

The catalogue's columns are the ones :mod:`scanner_service.archive.catalogue_import` reads, so a
receiving archive can import the list as it is, and a person can check it in Excel (the CSV has a BOM).
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font

from workers import durable
from workers.durable import Digest

CATALOGUE_CSV = "归档文件目录.csv"
CATALOGUE_XLSX = "归档文件目录.xlsx"

# (column, field of the item's record); in the order DA/T 22-2015's 归档文件目录 lists them, then the
# DA/T 18 extras. catalogue_import reads every one of these names.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("序号", "serial"),
    ("档号", "archival_code"),
    ("文号", "doc_number"),
    ("责任者", "author"),
    ("题名", "title"),
    ("日期", "date_text"),
    ("页数", "pages"),
    ("密级", "classification"),
    ("保管期限", "retention"),
    ("开放标识", "open_status"),
    ("备注", "note"),
)

# DA/T 18-2022 names of the item's fields in item.xml.
_XML_FIELDS: tuple[tuple[str, str], ...] = (
    ("档号", "archival_code"),
    ("全宗号", "fonds"),
    ("门类", "category"),
    ("年度", "year"),
    ("保管期限", "retention"),
    ("机构问题", "org"),
    ("案卷号", "volume"),
    ("件号", "item_no"),
    ("序号", "serial"),
    ("题名", "title"),
    ("责任者", "author"),
    ("日期", "date_text"),
    ("文件编号", "doc_number"),
    ("页数", "pages"),
    ("密级", "classification"),
    ("开放标识", "open_status"),
    ("附注", "note"),
)


def catalogue_row(item: dict[str, Any]) -> list[str]:
    """One item's row: its fields as text, "" for none; 页数 is the catalogue's, else the pages filed."""
    values = dict(item, pages=item.get("expected_pages") or item.get("pages_filed"))
    return ["" if values.get(key) is None else str(values[key]) for _, key in COLUMNS]


def write_csv(path: Path, items: Sequence[dict[str, Any]]) -> Digest:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([name for name, _ in COLUMNS])
    writer.writerows(catalogue_row(item) for item in items)
    return durable.write_bytes(path, b"\xef\xbb\xbf" + out.getvalue().encode("utf-8"))


def write_xlsx(path: Path, items: Sequence[dict[str, Any]], title: str) -> Digest:
    """The catalogue as an Excel workbook: a title row, the header, one row per item; 档号 and numbers as text
    (a 档号 or a 文号 must never be turned into a number or a date)."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "归档文件目录"
    sheet.append([title])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([name for name, _ in COLUMNS])
    for cell in sheet[2]:
        cell.font = Font(bold=True)
    for item in items:
        sheet.append(catalogue_row(item))
    for row in sheet.iter_rows(min_row=3):
        for cell in row:
            cell.number_format = "@"
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    widths = {"档号": 30, "题名": 40, "责任者": 16, "文号": 16, "备注": 20}
    for n, (name, _) in enumerate(COLUMNS):
        sheet.column_dimensions[chr(ord("A") + n)].width = widths.get(name, 9)
    sheet.freeze_panes = "A3"
    with durable.atomic_path(path) as tmp:
        book.save(tmp)
    return durable.sha256_of(path)


def item_xml(item: dict[str, Any], pages: Sequence[dict[str, Any]], files: Sequence[dict[str, Any]]) -> str:
    """An item's description, its pages (in order, with their masters) and its files with their SHA-256."""
    root = ET.Element("文件", {"标准": "DA/T 18-2022"})
    for name, key in _XML_FIELDS:
        value = item.get(key)
        if key == "pages":
            value = item.get("expected_pages")
        if value is not None and value != "":
            ET.SubElement(root, name).text = str(value)
    ET.SubElement(root, "已扫描页数").text = str(len(pages))
    listed = ET.SubElement(root, "页")
    for page in pages:
        ET.SubElement(listed, "页面", {"页号": str(page["serial"]), "原件": page["master_name"]})
    fixity = ET.SubElement(root, "固定性", {"算法": "SHA-256"})
    for f in files:
        ET.SubElement(fixity, "文件", {"路径": f["path"], "类型": f["kind"], "字节": str(f["size"])}).text = f["sha256"]
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
