"""What every journaled change of an item does alike, whether it files pages (:mod:`.files`) or changes
the filed ones (:mod:`.rework`): the catalogue's write lock and the item's row lock, checked against the
plan; the thumbnail and the item PDF built in staging; the item's own fields once its pages are placed;
the journaled moves; and the end: finished after the commit, undone after a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from sqlalchemy.orm import Session

from scanner_service.archive.filing import journal, steps
from scanner_service.archive.filing.items import key_of, page_check, reindex_item
from scanner_service.archive.models import Item
from scanner_service.archive.sidecar import PageSidecar
from scanner_service.exceptions import Conflict, FilingInterrupted, ScanstationError
from scanner_service.settings import Settings
from workers import durable
from workers.durable import Digest
from workers.pdfa import PdfPage, build_pdfa

log = logging.getLogger(__name__)

THUMB_SIZE = 320  # px, longest side

__all__ = [
    "THUMB_SIZE",
    "abort",
    "check_planned",
    "error_reason",
    "filed_pdf_page",
    "finish",
    "make_moves",
    "settle_item",
    "take_write_lock",
    "thumbnail",
    "write_item_pdf",
]


# ---- staging -------------------------------------------------------------------------------------


def thumbnail(usage: Path, target: Path) -> Digest:
    """A small JPEG of the usage image (``THUMB_SIZE`` px on its longest side), written atomically."""
    with Image.open(usage) as im:
        small = im.convert("L" if im.mode in ("1", "L") else "RGB")
    small.thumbnail((THUMB_SIZE, THUMB_SIZE))
    with durable.atomic_path(target) as tmp:
        small.save(tmp, "JPEG", quality=80)
    return durable.sha256_of(target)


def filed_pdf_page(pages_folder: Path, row_id: int) -> PdfPage:
    """A filed page as the item PDF takes it: its usage image, resolution and OCR lines (its sidecar)."""
    path = pages_folder / f"{key_of(row_id)}.json"
    filed = PageSidecar.read(path)
    return PdfPage(image=filed.image_path(path), dpi=filed.dpi, text=filed.text)


def write_item_pdf(pages: Sequence[PdfPage], pdf: Path, *, written: str, title: str, author: str) -> Digest:
    """The item's PDF/A from ``pages`` in that order, written atomically at ``pdf``; its digest."""
    with durable.atomic_path(pdf) as tmp:
        build_pdfa(list(pages), tmp, title=f"{written} {title}".strip(), author=author)
    return durable.sha256_of(pdf)


# ---- the transaction -----------------------------------------------------------------------------


def take_write_lock(session: Session) -> None:
    """On SQLite, take the write lock now (waiting up to the busy timeout), not at the first write: a
    transaction that reads first cannot wait for the lock and fails at once if another writer
    committed meanwhile."""
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")


def check_planned(session: Session, item: Item | None, version: int, rows: Sequence[int], refusal: str) -> None:
    """Lock the item's row (PostgreSQL: ``FOR UPDATE``; SQLite's lock is :func:`take_write_lock`) and
    refuse the change (:class:`Conflict` ``item_changed``, message ``refusal``) unless the item is still
    at ``version`` with the page rows ``rows``, as when the change was planned. No item: version 0."""
    if item is not None and session.get_bind().dialect.name == "postgresql":
        session.refresh(item, with_for_update=True)
    now = (item.version, [row.id for row in item.pages]) if item is not None else (0, [])
    if now != (version, list(rows)):
        raise Conflict(refusal, reason_code="item_changed")


def settle_item(session: Session, item: Item, *, version: int, pdf_name: str | None, pdf: Digest | None) -> None:
    """The item's own fields once its page rows are placed: its new ``version`` (the journal's commit
    marker), its PDF (None: it has none), its page count and check, and its search entries."""
    item.version = version
    item.pdf_name = pdf_name if pdf is not None else None
    item.pdf_sha256, item.pdf_size = pdf if pdf is not None else (None, None)
    session.flush()
    session.refresh(item)
    item.pages_filed = len(item.pages)
    item.page_check = page_check(item)
    reindex_item(session, item)


def make_moves(settings: Settings, entry: journal.Journal, moves: list[tuple[Path, Path, bool]]) -> None:
    """Journal every move (from, to, whether it moves an existing file aside) before any is made, make
    them in that order, and flush them to disk; the commit comes after."""
    journal.plan_moves(settings, entry, moves)
    steps.reached(steps.JOURNAL, entry.code_key)
    for step in entry.moves:
        journal.move(settings, entry, step)
        steps.reached(steps.MOVE_ASIDE if step.aside else steps.MOVE_IN, entry.code_key)
    journal.sync(settings, entry)
    steps.reached(steps.MOVED, entry.code_key)


# ---- the end: cleaning up, or undoing ------------------------------------------------------------


def finish(settings: Settings, entry: journal.Journal) -> None:
    """After the commit: the change stands whatever happens here; leftovers go at the next recovery."""
    try:
        steps.reached(steps.COMMITTED, entry.code_key)
        journal.mark_committed(settings, entry)
        steps.reached(steps.CLEANUP, entry.code_key)
        journal.finish(settings, entry)
    except Exception:  # noqa: BLE001 - the item is changed; what is left is removed by recover_journals
        log.exception("%s: filed, but its staging folder and journal are left for recovery", entry.archival_code)


def abort(settings: Settings, entry: journal.Journal, cause: BaseException) -> None:
    """Undo (or, if the catalogue did commit after all, finish) a change that raised."""
    try:
        outcome = journal.resolve(settings, entry)
    except Exception as err:
        log.exception("%s: a failed filing could not be undone yet", entry.archival_code)
        raise FilingInterrupted(
            f"Filing {entry.archival_code} stopped midway ({error_reason(cause)}) and could not be undone yet "
            f"({error_reason(err)}). The catalogue shows the item as it was; its files are put back from the "
            "filing's journal at the next start of the station, or when this item is next filed — the "
            "archive folder must be writable for that."
        ) from cause
    if outcome == "finished":
        log.warning("%s: the catalogue committed before the error; the filing is complete", entry.archival_code)


def error_reason(err: BaseException) -> str:
    """An error in a few words, for a message to a person."""
    if isinstance(err, ScanstationError):
        return err.message
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    return f"{type(err).__name__}: {err}"
