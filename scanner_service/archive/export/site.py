"""One volume of an export: the folder a browser opens from file:// (see the package's docstring).

Every file is written through :mod:`workers.durable` and its digest kept, so the manifest is made from
what was written, without reading the PDFs a second time. An item's PDF is copied and its SHA-256
compared with the one recorded when it was filed: a PDF that changed since (a disk fault, a hand) is
not exported, and the exporter is told.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from scanner_service.archive import archival_code as ac
from scanner_service.archive.export.offline_index import TEXT_SHARD_PAGES, IndexBuilder, script
from workers import durable
from workers.durable import Digest

ASSETS = ("index.html", "verify.html", "app.js", "verify.js", "style.css")
PAGE_FILES = ("index.html", "verify.html")  # at the top of the volume; the rest under assets/
MANIFEST = "manifest-sha256.txt"
MANIFEST_SCRIPT = "data/manifest.js"
README = "说明.txt"
NAME_CHARS = 40  # of a title in a file name, after the 档号: names must stay readable
NAME_LIMIT = 80  # of any name in the export
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]+')


@dataclass
class ExportItem:
    """What an export needs of one item, read from the catalogue before any file is written."""

    archival_code: str
    code_key: str
    fonds: str
    fonds_name: str | None
    category: str
    year: int
    description: dict[str, Any]  # as item.json has it (filing.describe)
    pdf: Path  # the filed PDF
    pdf_sha256: str
    pdf_size: int
    texts: list[str]  # each page's text, in the PDF's page order
    volume: int = 0  # the volume it is on, from 1

    @property
    def pages(self) -> int:
        return len(self.texts)

    @property
    def title(self) -> str:
        return str(self.description.get("title") or "")

    def folder(self) -> str:
        """Its folder in the export: items/<全宗>/<门类>/<年度>, with names a villager reads."""
        fonds = safe_name(f"{self.fonds} {self.fonds_name}" if self.fonds_name else self.fonds)
        category_name = ac.KNOWN_CATEGORIES.get(self.category)
        category = safe_name(f"{self.category} {category_name}" if category_name else self.category)
        return f"items/{fonds}/{category}/{self.year}"

    def stem(self) -> str:
        """Its files' name without extension: 档号 and the start of its 题名."""
        title = safe_name(self.title)[:NAME_CHARS].strip()
        return safe_name(f"{self.archival_code} {title}" if title else self.archival_code)

    def pdf_path(self) -> str:
        return f"{self.folder()}/{self.stem()}.pdf"


def safe_name(text: str, limit: int = NAME_LIMIT) -> str:
    """``text`` as a file name on every disc and system: no separators, no characters Windows refuses,
    no trailing dots or spaces, NFC, at most ``limit`` characters (Joliet keeps 103, and 255 bytes of
    UTF-8 is the limit of most file systems)."""
    name = " ".join(_UNSAFE.sub("_", unicodedata.normalize("NFC", text)).split())
    return name[:limit].rstrip(". ") or "_"


@dataclass
class Volume:
    """One volume being written: its folder and the digest of every file written into it."""

    folder: Path
    number: int
    files: dict[str, Digest] = field(default_factory=dict)

    def write_text(self, rel: str, text: str) -> None:
        self.files[rel] = durable.write_text(self._target(rel), text)

    def copy(self, rel: str, source: Path) -> Digest:
        digest = durable.copy_file(source, self._target(rel))
        self.files[rel] = digest
        return digest

    def drop(self, rel: str) -> None:
        self.files.pop(rel, None)
        (self.folder / rel).unlink(missing_ok=True)

    def _target(self, rel: str) -> Path:
        target = self.folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        return target


def copy_pdfs(volume: Volume, items: list[ExportItem], progress: Callable[[int], None]) -> list[ExportItem]:
    """Copy the items' PDFs into the volume; the items whose PDF no longer has its recorded SHA-256 (or is
    gone) are returned, their copies removed."""
    bad: list[ExportItem] = []
    for item in items:
        rel = item.pdf_path()
        try:
            digest = volume.copy(rel, item.pdf)
        except FileNotFoundError:
            bad.append(item)
            continue
        if digest.sha256 != item.pdf_sha256:
            volume.drop(rel)
            bad.append(item)
        progress(digest.size)
    return bad


def write_volume(
    volume: Volume,
    items: list[ExportItem],
    everything: list[ExportItem],
    meta: dict[str, Any],
    volumes: int,
) -> None:
    """Write the volume's page, catalogue, search index and texts for ``items`` (their PDFs copied):
    ``everything`` is the whole export, listed in every volume's catalogue with the volume it is on."""
    on_volume = {id(item) for item in items}
    index = IndexBuilder()
    texts: list[str] = []
    entries = []
    for item in everything:
        entry: dict[str, Any] = {
            "code": item.archival_code,
            "fonds": item.fonds,
            "category": item.category,
            "year": item.year,
            "volume": item.volume,
            "pages": item.pages,
            "d": {k: item.description.get(k) for k in DESCRIPTION_KEYS if item.description.get(k) not in (None, "")},
        }
        if id(item) in on_volume:
            entry["pdf"] = item.pdf_path()
            entry["size"] = item.pdf_size
            entry["first"] = index.pages
            for text in item.texts:
                index.add_page(text)
                texts.append(text)
            volume.write_text(f"{item.folder()}/{item.stem()}.json", json.dumps(item.description, **JSON_OPTIONS))
        entries.append(entry)
    shards = index.shards()
    for number, shard in enumerate(shards):
        volume.write_text(f"data/index/i{number:04d}.js", script("i", number, shard))
    for number, start in enumerate(range(0, len(texts), TEXT_SHARD_PAGES)):
        volume.write_text(f"data/text/t{number:04d}.js", script("t", number, texts[start : start + TEXT_SHARD_PAGES]))
    fonds_names = {item.fonds: item.fonds_name for item in everything}
    catalogue = {
        **meta,
        "volume": volume.number,
        "volumes": volumes,
        "fonds": [{"code": code, "name": name} for code, name in sorted(fonds_names.items())],
        "categories": {code: name for code, name in ac.KNOWN_CATEGORIES.items() if code != "KU"},
        "retentions": ac.RETENTIONS,
        "items": entries,
        "page_count": index.pages,
        "index_shards": len(shards),
        "text_shard_pages": TEXT_SHARD_PAGES,
    }
    volume.write_text("data/catalogue.js", f"SS.catalogue({json.dumps(catalogue, **JSON_OPTIONS)});\n")
    site = resources.files("scanner_service.archive.export") / "site"
    for name in ASSETS:
        rel = name if name in PAGE_FILES else f"assets/{name}"
        volume.write_text(rel, (site / name).read_text(encoding="utf-8"))
    volume.write_text(README, readme(meta, volume.number, volumes, items, everything))


DESCRIPTION_KEYS = ("title", "author", "date", "doc_number", "pages", "retention", "note", "serial")
JSON_OPTIONS: dict[str, Any] = {"ensure_ascii": False, "separators": (",", ":"), "default": str}


def readme(
    meta: dict[str, Any], number: int, volumes: int, items: list[ExportItem], everything: list[ExportItem]
) -> str:
    """The volume's 说明.txt: what it is, how to open and check it, and what is on the other volumes."""
    lines = [
        f"{meta['title']}",
        "",
        "打开方法：双击本文件夹中的 index.html，用浏览器（Chrome、Edge、Firefox 等）打开即可浏览和检索，",
        "不需要网络，也不需要安装任何软件。每件档案的 PDF 在 items 文件夹中，按 全宗/门类/年度 存放。",
        "",
        "校验方法：用浏览器打开 verify.html，选择本文件夹，逐个核对文件的 SHA-256；",
        f"或在 Linux 中进入本文件夹执行：sha256sum -c {MANIFEST}",
        "",
        f"制作时间：{meta['made_at']}    制作人：{meta['made_by']}"
        + (f"    接收单位：{meta['recipient']}" if meta.get("recipient") else ""),
        f"本盘：第 {number} 盘，共 {volumes} 盘；本盘 {len(items)} 件，{sum(i.pages for i in items)} 页。",
    ]
    if volumes > 1:
        lines.append("")
        lines.append("各盘内容：")
        for other in range(1, volumes + 1):
            on = [i for i in everything if i.volume == other]
            if on:
                lines.append(f"  第 {other} 盘：{len(on)} 件，{on[0].archival_code} 至 {on[-1].archival_code}")
    # A BOM and CRLF: the Notepad of an older Windows on the village PC reads it as UTF-8 then.
    return "\ufeff" + "\r\n".join(lines) + "\r\n"
