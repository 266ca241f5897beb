"""Filing: a batch's pages become the pages of an item (件) under its 档号 in the archive tree.

The item folder is ``archive/<fonds>/<category>/<year>/<档号>/`` and holds:

- the masters, named 档号 + page serial (DA/T 31-2017): ``C015-WS·2013-Y-BGS-0012-0001.tif``
  (:mod:`.masters`);
- the item's searchable PDF/A, ``<档号>.pdf``, built from every page in serial order;
- ``pages/``: each page's usage image, OCR boxes (JSON) and thumbnail, named by a stable page key so
  that a rescan that inserts or replaces pages renames only the masters;
- ``item.json``: the description and the page list, so the folder makes sense without the catalogue
  (a copy on a USB disk for a village without broadband);
- ``replaced/v<N>-<token>/``: masters a rescan replaced, kept, never deleted.

Every file written is recorded with its SHA-256 (``ArchiveFile``) for ``scanstation audit``. One
item is filed by one process at a time (a lock file, and ``FOR UPDATE`` on PostgreSQL).

A filing is one journaled change of the catalogue and the item folder (:mod:`.files`,
:mod:`.journal`): whatever stops it — an exception, a full or read-only disk, a locked catalogue,
a crash — the item ends as it was or fully filed, and the catalogue and the folder agree.
:func:`recover_journals` must run when the station starts, to resolve filings a crash cut off.

Modules: :mod:`.items` (the item, its lock, description and page files), :mod:`.masters`,
:mod:`.order` (pages and modes), :mod:`.journal`, :mod:`.change` (what a filing and a rework do alike),
:mod:`.files` (one filing), :mod:`.plan` (a
finished batch filed on its own), :mod:`.steps` (the steps, and the hook tests inject faults by),
:mod:`.rework` (a change of a filed item's pages that files none: corrections, order, withdraw,
move; journaled like a filing).
"""

from scanner_service.archive.filing.change import THUMB_SIZE
from scanner_service.archive.filing.files import FilingResult, file_batch
from scanner_service.archive.filing.items import (
    batch_fonds,
    describe,
    ensure_item,
    find_item,
    fonds_style,
    index_batch,
    item_lock,
    page_check,
    page_files,
    page_key,
    page_text,
    pdf_page_numbers,
    reindex_item,
    write_description,
)
from scanner_service.archive.filing.journal import recover_item, recover_journals
from scanner_service.archive.filing.masters import write_master
from scanner_service.archive.filing.order import FilingRefused, arrange, pages_to_file
from scanner_service.archive.filing.plan import auto_file, plan_batch

__all__ = [
    "THUMB_SIZE",
    "FilingRefused",
    "FilingResult",
    "arrange",
    "auto_file",
    "batch_fonds",
    "describe",
    "ensure_item",
    "file_batch",
    "find_item",
    "fonds_style",
    "index_batch",
    "item_lock",
    "page_check",
    "page_files",
    "page_key",
    "page_text",
    "pages_to_file",
    "pdf_page_numbers",
    "plan_batch",
    "recover_item",
    "recover_journals",
    "reindex_item",
    "write_description",
    "write_master",
]
