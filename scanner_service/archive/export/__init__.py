"""送档下乡: the archive as a folder (and a disc) a village office opens with a browser alone.

An export is a folder that works from ``file://`` with no server and no network:

::

    index.html                 browse 全宗 → 门类 → 年度 → 件, and search every page (zh-CN)
    verify.html                checks the files it is given against the manifest (SHA-256, in the browser)
    manifest-sha256.txt        every file with its SHA-256 (``sha256sum -c`` reads it too)
    说明.txt                    what the folder is and how to open it, in Chinese
    assets/                    the page's script and style
    data/catalogue.js          the items' descriptions, where their PDFs are, the volumes
    data/index/i0000.js …      the search index, in shards loaded on demand
    data/text/t0000.js …       the pages' text, in shards, for snippets
    data/manifest.js           the manifest again, for verify.html
    items/<全宗>/<门类>/<年度>/  each item's PDF/A and its description (JSON), named by 档号 and 题名

Modules: :mod:`.choose` (which items go in and which are left out, and why), :mod:`.offline_index`
(the search index the page reads), :mod:`.site` (one volume's folder), :mod:`.manifest` (fixity of
an export, and ``scanstation verify-export``), :mod:`.disc` (volumes of a disc's size and their
ISO images), :mod:`.run` (an export from start to end, recorded in the 利用登记).
"""

from scanner_service.archive.export.choose import ExportSpec, LeftOut, Selection, choose_items
from scanner_service.archive.export.manifest import VerifyReport, verify_export
from scanner_service.archive.export.run import ExportReport, export_archive

__all__ = [
    "ExportReport",
    "ExportSpec",
    "LeftOut",
    "Selection",
    "VerifyReport",
    "choose_items",
    "export_archive",
    "verify_export",
]
