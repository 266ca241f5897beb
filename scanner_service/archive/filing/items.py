"""The item (件) and its folder: finding or creating an item, its lock, its description, its page files.

The item folder is ``archive/<fonds>/<category>/<year>/<档号>/``; see :mod:`scanner_service.archive.filing`
for what it holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ocr_models.base import PageText
from scanner_service.archive import archival_code as ac
from scanner_service.archive import search
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import ArchiveFile, Batch, FileKind, Fonds, Item, ItemPage, Page, SearchEntry
from scanner_service.archive.sidecar import PageSidecar
from scanner_service.exceptions import NotFound
from scanner_service.settings import Settings
from workers import durable
from workers.durable import Digest

log = logging.getLogger(__name__)

LOCK_DIR = ".locks"
DESCRIPTION = "item.json"
DESCRIPTION_LOCK_WAIT = 5.0  # seconds a description change waits for a filing of the item


def fonds_style(session: Session, fonds: str) -> ac.CodeStyle:
    """How the fonds writes its 档号 (DA/T 22 unless it says DA/T 13)."""
    record = session.get(Fonds, fonds)
    return ac.style_for(record.code_style) if record else ac.DAT22


def find_item(session: Session, text: str) -> Item | None:
    """The item whose 档号 is ``text`` in either form (raises InvalidArchivalCode for a malformed one)."""
    return session.scalar(select(Item).where(Item.code_key == str(ac.parse(text))))


def item_folder(code: ac.ArchivalCode, style: ac.CodeStyle) -> tuple[str, str]:
    """(the 档号 as written in ``style``, the item folder relative to the archive)."""
    fonds_dir, category, year = code.path_parts()
    written = code.format(style)
    return written, str(Path(fonds_dir, category, year, written))


def check_may_create(session: Session, code: ac.ArchivalCode, *, may_create: bool) -> None:
    """Raise NotFound if ``code`` is not in the catalogue and may not be created from scanning."""
    fonds = session.get(Fonds, code.fonds)
    if not (may_create or fonds is None or fonds.allow_new_items):
        raise NotFound(
            f"{code} is not in the catalogue of fonds {code.fonds}, and this fonds does not take new items "
            "from scanning: import its 归档文件目录 first, or file the batch through the API."
        )


def ensure_item(session: Session, code: ac.ArchivalCode, *, may_create: bool) -> Item:
    """The item for ``code``, created (with its fonds) if it is new and the fonds allows new items."""
    item = session.scalar(select(Item).where(Item.code_key == str(code)))
    if item is not None:
        return item
    check_may_create(session, code, may_create=may_create)
    fonds = session.get(Fonds, code.fonds)
    if fonds is None:
        fonds = Fonds(code=code.fonds, code_style="dat22", allow_new_items=True)
        session.add(fonds)
        session.flush()
    written, folder = item_folder(code, ac.style_for(fonds.code_style))
    item = Item(
        code_key=str(code),
        archival_code=written,
        fonds=code.fonds,
        category=code.category,
        year=code.year,
        retention=code.retention,
        org=code.org,
        volume=code.volume,
        item_no=code.item,
        folder=folder,
        pages_filed=0,
        version=0,
    )
    session.add(item)
    session.flush()
    return item


def lock_name(code_key: str) -> str:
    """The file name (without suffix) of an item's lock and of its filing journal."""
    return hashlib.sha256(code_key.encode()).hexdigest()[:32]


_held = threading.local()  # the item locks this thread holds: (archive folder, 档号 key)


@contextlib.contextmanager
def item_lock(settings: Settings, code_key: str, *, timeout: float | None = None) -> Iterator[bool]:
    """Only one filer per item at a time, across the processes and threads of this machine (released if
    a process dies). A thread that holds the lock may take it again. Yields True once held; with a
    ``timeout`` (seconds), yields False (holding nothing) if it could not be had in that time."""
    key = (str(Layout.of(settings).archive), code_key)
    held: set[tuple[str, str]] = _held.__dict__.setdefault("keys", set())
    if key in held:
        yield True
        return
    locks = Layout.of(settings).archive / LOCK_DIR
    locks.mkdir(parents=True, exist_ok=True)
    # Opened for reading: a lock must be taken on an archive turned read-only too, to find that out.
    fd = os.open(locks / f"{lock_name(code_key)}.lock", os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        if not _flock(fd, timeout):
            yield False
            return
        held.add(key)
        yield True
    finally:
        held.discard(key)
        os.close(fd)  # releases the lock


def _flock(fd: int, timeout: float | None) -> bool:
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


# ---- a filed page's files ----------------------------------------------------------------------


def page_key(row: ItemPage) -> str:
    """The stable name of a page's derived files: does not change when the page's serial does."""
    return key_of(row.id)


def key_of(row_id: int) -> str:
    return f"p{row_id:07d}"


def is_excluded(row: ItemPage) -> bool:
    """A person left the page out of the item's PDF (its master and files are kept)."""
    return excluded_by(row.correction)


def excluded_by(correction: Mapping[str, Any] | None) -> bool:
    """The correction ``correction`` leaves its page out of the item's PDF."""
    return bool((correction or {}).get("excluded"))


def pdf_page_numbers(item: Item) -> dict[int, int | None]:
    """Each page row's page number in the item PDF (by row id); None for a page left out of it. The PDF
    holds the pages in serial order, the excluded ones left out, so the two numbers differ after one."""
    numbers: dict[int, int | None] = {}
    n = 0
    for row in sorted(item.pages, key=lambda r: r.serial):
        if is_excluded(row):
            numbers[row.id] = None
        else:
            n += 1
            numbers[row.id] = n
    return numbers


def station_decision(page: Page) -> dict[str, Any]:
    """What the station decided about a batch page (kept on the filed page as ``ItemPage.decision``)."""
    return {
        "blank": page.blank,
        "flags": list(page.flags or []),
        "details": dict(page.details or {}),
        "confidence": page.confidence,
    }


def page_sidecar(settings: Settings, item: Item, row: ItemPage) -> tuple[PageSidecar, Path]:
    """A filed page's sidecar (usage image's name, resolution, OCR lines with boxes) and its path."""
    path = Layout.of(settings).item_dir(item.folder) / "pages" / f"{page_key(row)}.json"
    return PageSidecar.read(path), path


def page_files(settings: Settings, item: Item, row: ItemPage) -> tuple[Path, Path]:
    """(usage image, thumbnail) of one filed page."""
    sidecar, path = page_sidecar(settings, item, row)
    return sidecar.image_path(path), path.with_name(f"{page_key(row)}-thumb.jpg")


def page_text(settings: Settings, item: Item, row: ItemPage) -> tuple[PageText, tuple[float, float], Path]:
    """(OCR lines with boxes, resolution, usage image) of one filed page."""
    sidecar, path = page_sidecar(settings, item, row)
    return sidecar.text, sidecar.dpi, sidecar.image_path(path)


# ---- fixity records and the description --------------------------------------------------------


def record_file(session: Session, rel: str, kind: FileKind, item_id: int | None, digest: Digest) -> None:
    """Record (or re-record) the SHA-256 of the file at ``rel`` (relative to the archive)."""
    row = session.scalar(select(ArchiveFile).where(ArchiveFile.path == rel))
    if row is None:
        session.add(ArchiveFile(item_id=item_id, path=rel, kind=kind, sha256=digest.sha256, size=digest.size))
    else:
        row.sha256, row.size, row.kind, row.item_id = digest.sha256, digest.size, kind, item_id
        row.recorded_at = datetime.now(UTC)


def description_text(item: Item) -> str:
    """The content of the item's item.json."""
    return json.dumps(describe(item), ensure_ascii=False, indent=1, default=str)


def write_description(settings: Settings, session: Session, item: Item) -> None:
    """(Re)write the item folder's item.json after a description change, and record it.

    Nothing to do for an item with no pages yet. The file is written at once (atomically), in the
    caller's transaction: if that transaction then fails, item.json is ahead of its record until the
    next description change or filing rewrites it (``scanstation audit`` reports it as changed).
    Never while a filing holds the item (it moves item.json): after a few seconds the file is left to
    that filing, which writes item.json from the catalogue itself — waiting longer here, inside a
    transaction, would keep that filing waiting for the catalogue in turn.
    """
    folder = Layout.of(settings).archive / item.folder
    if not item.pages_filed or not folder.is_dir():
        return
    with item_lock(settings, item.code_key, timeout=DESCRIPTION_LOCK_WAIT) as held:
        if not held:
            log.info("%s: item.json is left to the filing under way", item.archival_code)
            return
        digest = durable.write_text(folder / DESCRIPTION, description_text(item))
    record_file(session, str(Path(item.folder, DESCRIPTION)), FileKind.description, item.id, digest)


def page_check(item: Item) -> str | None:
    """漏扫 / 多扫: the filed page count against the catalogue's 页数."""
    if item.expected_pages is None or not item.pages_filed:
        return None
    if item.pages_filed < item.expected_pages:
        return "missing_pages"
    if item.pages_filed > item.expected_pages:
        return "extra_pages"
    return None


def describe(item: Item) -> dict[str, Any]:
    """The item's DA/T 18 description and page list, as written to item.json and returned by the API."""
    pdf_page = pdf_page_numbers(item)
    return {
        "archival_code": item.archival_code,
        "fonds": item.fonds,
        "category": item.category,
        "year": item.year,
        "retention": item.retention,
        "org": item.org,
        "volume": item.volume,
        "item": item.item_no,
        "serial": item.serial,
        "title": item.title,
        "author": item.author,
        "date": item.date_text,
        "doc_number": item.doc_number,
        "pages": item.expected_pages,
        "classification": item.classification,
        "open_status": item.open_status,
        "note": item.note,
        "pages_filed": item.pages_filed,
        "page_check": item.page_check,
        "version": item.version,
        "pdf": item.pdf_name,
        "pdf_sha256": item.pdf_sha256,
        "filed_at": item.filed_at,
        "page_list": [
            {
                "page": row.serial,
                "pdf_page": pdf_page.get(row.id),
                "master": row.master_name,
                "batch": row.batch_id,
                "batch_page": row.batch_seq,
            }
            for row in item.pages
        ],
    }


# ---- the search index --------------------------------------------------------------------------


def reindex_item(session: Session, item: Item) -> None:
    """Index the item's pages under their page numbers in the item PDF, which a hit opens (after any
    change of its pages); a page left out of the PDF is not found."""
    session.execute(delete(SearchEntry).where(SearchEntry.item_id == item.id))
    numbers = pdf_page_numbers(item)
    for row in item.pages:
        pdf_page = numbers.get(row.id)
        if row.text and pdf_page is not None:
            session.add(
                search.new_entry(
                    row.text,
                    page_no=pdf_page,
                    item_id=item.id,
                    fonds=item.fonds,
                    category=item.category,
                    year=item.year,
                )
            )


def batch_fonds(batch: Batch) -> str | None:
    """The fonds a batch belongs to: from the 档号 it was filed under or is named by; None if unknown."""
    code = batch.archival_code or (batch.filing or {}).get("target")
    return ac.parse(code).fonds if code else None


def index_batch(session: Session, batch: Batch) -> None:
    """Make a finished batch's pages searchable until they are filed (staff only see these); a page a
    person left out (excluded) is not found."""
    session.execute(delete(SearchEntry).where(SearchEntry.batch_id == batch.id))
    filed = set(session.scalars(select(ItemPage.batch_seq).where(ItemPage.batch_id == batch.id)))
    for page in batch.pages:
        if page.text and not page.blank and page.seq not in filed and not (page.correction or {}).get("excluded"):
            session.add(search.new_entry(page.text, page_no=page.seq, batch_id=batch.id, fonds=batch_fonds(batch)))
