"""Corrections of a filed item's pages: a page turned, straightened, cropped, its blank cleared, left out
of the PDF, noted, run again, undone; the pages put in a new order, one withdrawn, pages moved to
another item. Every change is attributed to the caller and kept in the history (:class:`Correction`).

Where each runs:

- A correction that changes the page's image or text (turn, skew_deg, crop, blank; a rerun; an undo of
  one of these) is recorded at once (the page's correction, its version + 1, state ``queued``, its
  history row) and derived by an RQ job (:func:`derive_pending`). OCR never runs in the API process:
  the API route queues the job (at the front of the queue) after the correction commits, after ANY
  call on the item that finds a page queued (so a retry queues a job that was lost), and the
  watcher's sweep queues it for an item with queued pages and no active job. The job derives every
  queued page of the item from its MASTER and makes one journaled change
  (:mod:`scanner_service.archive.filing.rework`): new files, the PDF rebuilt once, item.json, fixity
  records, search, the item's version + 1 and an ``item_pages_changed`` event. A page corrected again
  while the job ran has a newer version: the job's change is refused as stale and the job derives the
  page again with the newer correction, so a stale result never wins. A page that cannot be derived
  (a crop with nothing of its master in it, …) is marked failed with its reason; the others go on.
- What needs no OCR is made at once, in the request, as one journaled change: excluded (the PDF is
  rebuilt without the page), order (action ``order``, as a batch's), withdraw, move. A note alone changes only the
  catalogue.

Pages are named by their serial, which an order, a withdrawal or a move changes: a page's ETag,
``"<row id>.<version>"`` (:class:`PageTag`), names the page row itself, so a correction sent with it
never lands on another page; an order, withdrawal or move may be sent with the item's version, and is
refused (409 ``stale_version``) if the item changed since.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rq.timeouts import JobTimeoutException
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ocr_models.registry import ENGINES, build_engine
from scanner_service.archive import filing
from scanner_service.archive.access import Caller
from scanner_service.archive.corrections import choices_of, merged, needs_derivation, record_correction
from scanner_service.archive.db import session_scope
from scanner_service.archive.filing.rework import QUEUED, Derivation, PageEdit, Rework, rework_item
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import Correction, Item, ItemPage
from scanner_service.archive.sidecar import PageSidecar
from scanner_service.exceptions import ConfigError, Conflict, NotFound, ScanstationError, TransientError
from scanner_service.settings import Settings
from workers.pipeline import Choices, process_page_image, save_usage_image

DONE, FAILED = "done", "failed"
ORDER = "order"  # the action of a new page order (Correction.action, the item_pages_changed event)
log = logging.getLogger(__name__)
NOT_THE_PAGE = (JobTimeoutException, TransientError)  # errors not of a page: they fail (and retry) the job
MAX_ROUNDS = 5  # a job derives again at most this many times when its pages keep being corrected meanwhile


@dataclass
class Outcome:
    """What a correction did: the item and page rows, and whether the page is queued for derivation
    after it (then its job must be queued, even if this call changed nothing: a retry after the job
    was lost queues it again)."""

    item_id: int
    row_id: int | None
    queued: bool


@dataclass(frozen=True)
class PageTag:
    """The page a person saw, as its ETag names it (``"<row_id>.<version>"``): the page row, which
    stays the same page whatever its serial becomes, and its version then. Where a bare version is
    taken instead (``If-Match: 3``, an int), it is checked against the page now at that number."""

    row_id: int
    version: int

    def etag(self) -> str:
        return f'"{self.row_id}.{self.version}"'

    @classmethod
    def of(cls, row: ItemPage) -> PageTag:
        return cls(row.id, row.version)


def _find(session: Session, code: str, serial: int) -> tuple[Item, ItemPage]:
    item = filing.find_item(session, code)
    if item is None:
        raise NotFound(f"No item {code}.")
    row = next((r for r in item.pages if r.serial == serial), None)
    if row is None:
        raise NotFound(f"{item.archival_code} has no page {serial} (it has {item.pages_filed}).")
    return item, row


def _check_match(row: ItemPage, if_match: PageTag | int | None) -> None:
    """Refuse (409 ``stale_version``) a change made on another page, or on an older version of it."""
    if if_match is None:
        return
    if isinstance(if_match, int):
        if_match = PageTag(row.id, if_match)
    if if_match.row_id != row.id:
        raise Conflict(
            f"Page {row.serial} is not the page you saw: the item's pages were reordered, moved or withdrawn "
            "meanwhile. Reload the item and correct the page again.",
            reason_code="stale_version",
        )
    if if_match.version != row.version:
        raise Conflict(
            f"Page {row.serial} is at version {row.version}, not {if_match.version}: someone changed it "
            "meanwhile. Reload the page and correct it again.",
            reason_code="stale_version",
        )


def _history_kwargs(item: Item, row: ItemPage) -> dict[str, Any]:
    return {
        "item_id": item.id,
        "item_page_id": row.id,
        "serial": row.serial,
        "archival_code": item.archival_code,
        "fonds": item.fonds,
        "batch_id": row.batch_id,
    }


def correct_page(
    settings: Settings,
    caller: Caller,
    code: str,
    serial: int,
    patch: Mapping[str, Any],
    *,
    if_match: PageTag | int | None = None,
    action: str = "page",
    rerun_engine: str | None = None,
) -> Outcome:
    """Apply a person's correction ``patch`` (keys of :data:`FIELDS`) to page ``serial`` of ``code``.

    ``action="undo"`` drops the whole correction (back to the station's decision); ``"rerun"`` derives
    the page again as it is (with ``rerun_engine`` if given). Sending the same patch again changes
    nothing (safe to retry); an ``if_match`` naming another page row (the serial now names another
    page) or an older version is refused (409 ``stale_version``)."""
    if rerun_engine is not None and rerun_engine not in ENGINES:
        # The API refuses it in its request model (422); this guards every other caller.
        known = ", ".join(ENGINES)
        raise ConfigError(f"Unknown OCR engine {rerun_engine!r}; known: {known}.", reason_code="bad_engine")
    with session_scope(settings.effective_database_url) as session:
        item, row = _find(session, code, serial)
        _check_match(row, if_match)
        before = dict(row.correction or {})
        after = {} if action == "undo" else merged(before, patch)
        rerun = action == "rerun" or row.state == FAILED  # a page that failed is tried again by any correction
        was_queued = row.state == QUEUED
        if after == before and not rerun:
            # Nothing to change (a retry, or nothing sent); a queued page's job is queued again all the
            # same, in case the first call stopped before queuing it.
            return Outcome(item.id, row.id, queued=was_queued)
        if needs_derivation(before, after) or rerun:
            details = dict(row.details or {})
            details.pop("rerun_engine", None)
            if rerun_engine:
                details["rerun_engine"] = rerun_engine
            _compare_and_set(session, row, correction=after, state=QUEUED, details=details)
            record_correction(session, caller, action, before=before, after=after, **_history_kwargs(item, row))
            return Outcome(item.id, row.id, queued=True)
        if bool(before.get("excluded")) == bool(after.get("excluded")):
            _compare_and_set(session, row, correction=after)  # a note (or accepted flags): the files stay
            record_correction(session, caller, action, before=before, after=after, **_history_kwargs(item, row))
            return Outcome(item.id, row.id, queued=was_queued)
        item_id, row_id, version, written = item.id, row.id, row.version, item.archival_code

    def record(session: Session, item: Item, rows: dict[int, ItemPage]) -> None:
        record_correction(session, caller, action, before=before, after=after, **_history_kwargs(item, rows[row_id]))

    edit = PageEdit(row_id, version, correction=after, bump=True)
    rework_item(settings, Rework(written, action, caller.name, edits=[edit], record=record))
    return Outcome(item_id, row_id, queued=was_queued)


def _compare_and_set(session: Session, row: ItemPage, **values: Any) -> None:
    """Write the page only if it is still at the version read (SQLite and PostgreSQL alike)."""
    done = session.execute(
        update(ItemPage)
        .where(ItemPage.id == row.id, ItemPage.version == row.version)
        .values(version=row.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(
            f"Page {row.serial} was changed by someone else meanwhile; reload it and correct it again.",
            reason_code="stale_version",
        )
    session.expire(row)


def reorder(
    settings: Settings,
    caller: Caller,
    code: str,
    serials: Sequence[int],
    *,
    note: str | None = None,
    item_version: int | None = None,
) -> int:
    """Put the item's pages in the order ``serials`` (each page once, by its serial now); the masters
    are renamed to their new serials. Refused (409 ``stale_version``) if the item is no longer at
    ``item_version`` (the serials the person saw may name other pages now). Returns the item id."""
    with session_scope(settings.effective_database_url) as session:
        item = filing.find_item(session, code)
        if item is None:
            raise NotFound(f"No item {code}.")
        by_serial = {r.serial: r.id for r in item.pages}
        if sorted(serials) != sorted(by_serial) or len(set(serials)) != len(serials):
            raise Conflict(
                f"{item.archival_code} has pages 1…{len(by_serial)}: the new order must name each of them once.",
                reason_code="bad_order",
            )
        order = [by_serial[s] for s in serials]
        item_id, written = item.id, item.archival_code

    def record(session: Session, item: Item, rows: dict[int, ItemPage]) -> None:
        record_correction(
            session,
            caller,
            ORDER,
            before={"pages": sorted(serials)},
            after={"pages": list(serials)},
            item_id=item.id,
            archival_code=item.archival_code,
            fonds=item.fonds,
            note=note,
        )

    if list(serials) != sorted(serials):
        rework = Rework(written, ORDER, caller.name, order=order, record=record, item_version=item_version)
        rework_item(settings, rework)
    return item_id


def withdraw(
    settings: Settings,
    caller: Caller,
    code: str,
    serial: int,
    *,
    note: str | None = None,
    if_match: PageTag | int | None = None,
    item_version: int | None = None,
) -> int:
    """Take page ``serial`` out of the item; its master is kept under ``withdrawn/``. Refused (409
    ``stale_version``) if the page is not the one ``if_match`` names at that version, or the item is no
    longer at ``item_version``. Returns the item id."""
    with session_scope(settings.effective_database_url) as session:
        item, row = _find(session, code, serial)
        _check_match(row, if_match)
        row_id, written = row.id, item.archival_code
        # An edit that changes nothing: the page's version is checked again in the change's transaction.
        edits = [PageEdit(row.id, row.version)] if if_match is not None else []
        before = _page_record(item, row)
        item_id = item.id

    def record(session: Session, item: Item, rows: dict[int, ItemPage]) -> None:
        record_correction(
            session, caller, "withdraw", before=before, after={}, note=note, **_history_kwargs(item, rows[row_id])
        )

    rework = Rework(
        written, "withdraw", caller.name, edits=edits, withdraw=[row_id], record=record, item_version=item_version
    )
    rework_item(settings, rework)
    return item_id


def _page_record(item: Item, row: ItemPage) -> dict[str, Any]:
    return {
        "archival_code": item.archival_code,
        "page": row.serial,
        "master": row.master_name,
        "batch": row.batch_id,
        "batch_page": row.batch_seq,
    }


def move_pages(
    settings: Settings,
    caller: Caller,
    code: str,
    serials: Sequence[int],
    to: str,
    *,
    at: int | None = None,
    note: str | None = None,
    item_version: int | None = None,
) -> tuple[int, int]:
    """Move pages ``serials`` (in that order) to the item ``to``, before its page ``at`` (None: at its
    end): both items change in one journaled change (see :mod:`scanner_service.archive.filing.rework`).
    Refused (409 ``stale_version``) if this item is no longer at ``item_version``, and (409
    ``page_queued``) while a page to move is queued for derivation. Returns (this item's id, the other's)."""
    with session_scope(settings.effective_database_url) as session:
        item = filing.find_item(session, code)
        dest = filing.find_item(session, to)
        if item is None or dest is None:
            raise NotFound(f"No item {code if item is None else to}.")
        rows = {r.serial: r for r in item.pages}
        missing = [s for s in serials if s not in rows]
        if missing or not serials or len(set(serials)) != len(serials):
            raise Conflict(
                f"{item.archival_code} has pages 1…{len(rows)}: name each page to move once ({missing or 'none'}).",
                reason_code="bad_pages",
            )
        row_ids = [rows[s].id for s in serials]
        befores = {rows[s].id: _page_record(item, rows[s]) for s in serials}
        ids, written, target = (item.id, dest.id), item.archival_code, dest.archival_code

    def record(session: Session, item: Item, page_rows: dict[int, ItemPage]) -> None:
        for row_id in row_ids:
            row = page_rows[row_id]
            after = {"archival_code": target, "at": at}
            record_correction(
                session, caller, "move", before=befores[row_id], after=after, note=note, **_history_kwargs(item, row)
            )

    rework = Rework(
        written,
        "move",
        caller.name,
        move=row_ids,
        move_to=target,
        move_at=at,
        record=record,
        item_version=item_version,
    )
    rework_item(settings, rework)  # refuses pages queued for derivation, in its transaction
    return ids


# ---- the job: derive the item's queued pages from their masters -------------------------------------


def derive_pending(settings: Settings, item_id: int, *, reading: Callable[[list[PageTag]], None] | None = None) -> str:
    """Derive every queued page of the item again from its master, with its correction, in one
    journaled change, and again while pages are queued (at most :data:`MAX_ROUNDS` rounds). Runs in a
    worker (OCR). Safe to run twice: a page not queued is left alone.

    A page that cannot be derived (a crop off its master, an image that cannot be read, any error of
    its own) is marked failed with the reason, at the version read; the others go on. The job's time
    running out, or a fault that passes (:class:`TransientError`), fails the job instead (retried). ``reading`` is
    told the pages (and versions) each round takes, so that a job failed for good marks only those
    (:func:`fail_pending`)."""
    cache: dict[tuple[int, int], Derivation] = {}
    work_root = Layout.of(settings).spool
    work_root.mkdir(parents=True, exist_ok=True)
    result = "nothing queued"
    with tempfile.TemporaryDirectory(prefix=".derive-", dir=work_root) as work:
        for _ in range(MAX_ROUNDS):
            with session_scope(settings.effective_database_url) as session:
                item = session.get(Item, item_id)
                if item is None:
                    return "gone"
                folder = Layout.of(settings).archive / item.folder
                pending = [
                    (PageTag.of(r), dict(r.correction or {}), r.decision, folder / r.master_name, r.details)
                    for r in item.pages
                    if r.state == QUEUED
                ]
                written = item.archival_code
            if not pending:
                return result
            if reading is not None:
                reading([tag for tag, *_ in pending])
            edits = []
            for tag, correction, decision, master, details in pending:
                key = (tag.row_id, tag.version)
                if key not in cache:
                    engine = (details or {}).get("rerun_engine") or settings.ocr_engine
                    try:
                        cache[key] = _derive(settings, master, decision, correction, engine, Path(work))
                    except NOT_THE_PAGE:
                        raise  # the job's time ran out, or a fault that passes: the job is retried, no page failed
                    except Exception as err:  # noqa: BLE001 - one page's failure never fails the others
                        _page_failed(settings, tag, err)
                        continue
                edits.append(PageEdit(tag.row_id, tag.version, derived=cache[key], state=DONE))
            if not edits:
                result = "failed" if result == "nothing queued" else result
                continue
            try:
                rework_item(settings, Rework(written, "derive", "station", edits=edits))
            except Conflict as err:
                if err.reason_code in ("stale_version", "item_changed"):
                    continue  # corrected again meanwhile: derive those pages again, with the newer correction
                raise
            except NotFound:
                continue  # a page was withdrawn or moved meanwhile (or the item is gone): read again
            result = "derived"  # then read again: pages corrected meanwhile are derived by this job too
    return "still being corrected"


def _derive(
    settings: Settings,
    master: Path,
    decision: Mapping[str, Any] | None,
    correction: Mapping[str, Any],
    engine_name: str,
    work: Path,
) -> Derivation:
    engine = build_engine(
        engine_name, languages=settings.ocr_languages, timeout=settings.page_timeout, runtime=settings.ocr_runtime
    )
    outcome = process_page_image(
        master,
        0,
        engine=engine,
        max_pixels=settings.max_pixels,
        render_dpi=settings.render_dpi,
        min_confidence=settings.min_confidence,
        # Choices() rather than None: the station's own decisions, but never read as a separator sheet.
        choices=choices_of(decision, correction) or Choices(),
    )
    stem = work / f"{master.stem}-{len(list(work.iterdir()))}"
    usage = save_usage_image(outcome.image, stem, jpeg_quality=settings.jpeg_quality)
    details = dict(outcome.details)
    if engine_name != settings.ocr_engine:
        details["engine"] = engine_name
    return Derivation(
        usage=usage,
        sidecar=PageSidecar(image=usage.name, dpi=outcome.dpi, text=outcome.text),
        text=outcome.text.text or None,
        confidence=round(outcome.text.mean_confidence, 2) if outcome.text.lines else None,
        flags=[f.value for f in outcome.flags],
        details=details,
    )


def _page_failed(settings: Settings, tag: PageTag, err: Exception) -> None:
    if isinstance(err, ScanstationError):
        message, code = err.message, err.reason_code
    else:
        log.exception("page row %s could not be derived again", tag.row_id)
        message, code = f"{type(err).__name__}: {err}", "derivation_failed"
    mark_failed(settings, [tag], message, code)


def mark_failed(settings: Settings, pages: Sequence[PageTag], reason: str, reason_code: str) -> int:
    """Mark these pages failed with the reason (they keep their files; a rerun or undo tries again),
    each only if it is still queued at the version given: a page corrected since is left to its newer
    derivation. One compare-and-set ``UPDATE`` per page. Returns how many were marked."""
    marked = 0
    with session_scope(settings.effective_database_url) as session:
        for tag in pages:
            row = session.get(ItemPage, tag.row_id)
            if row is None:
                continue
            details = {**(row.details or {}), "error": reason, "error_code": reason_code}
            done = session.execute(
                update(ItemPage)
                .where(ItemPage.id == tag.row_id, ItemPage.version == tag.version, ItemPage.state == QUEUED)
                .values(state=FAILED, details=details)
                .execution_options(synchronize_session=False)
            )
            marked += done.rowcount  # type: ignore[attr-defined]
    return marked


def fail_pending(settings: Settings, pages: Sequence[PageTag], reason: str) -> int:
    """An item's derivation job failed for good while deriving ``pages`` (the pages and versions it
    read last): those still queued at that version are marked failed with the reason; a page
    corrected since stays queued for its own derivation. Returns how many were marked."""
    return mark_failed(settings, pages, reason, "derivation_failed")


def queued_pages(settings: Settings, item_id: int) -> list[PageTag]:
    """The item's pages waiting for their derivation, at their version now."""
    with session_scope(settings.effective_database_url) as session:
        rows = session.execute(
            select(ItemPage.id, ItemPage.version).where(ItemPage.item_id == item_id, ItemPage.state == QUEUED)
        ).all()
    return [PageTag(row_id, version) for row_id, version in rows]


def has_queued_pages(session: Session, item_id: int) -> bool:
    """Whether a page of the item waits for its derivation (its job must then be queued)."""
    found = session.scalar(select(ItemPage.id).where(ItemPage.item_id == item_id, ItemPage.state == QUEUED).limit(1))
    return found is not None


def items_with_queued_pages(session: Session) -> list[int]:
    """The items with a page waiting for its derivation."""
    return list(session.scalars(select(ItemPage.item_id).where(ItemPage.state == QUEUED).distinct()))


# ---- what the API shows --------------------------------------------------------------------------


def histories(session: Session, rows: Sequence[ItemPage]) -> dict[int, list[Correction]]:
    """Each page row's history, oldest first."""
    out: dict[int, list[Correction]] = {r.id: [] for r in rows}
    if not rows:
        return out
    found = session.scalars(select(Correction).where(Correction.item_page_id.in_(list(out))).order_by(Correction.id))
    for entry in found:
        if entry.item_page_id is not None:
            out[entry.item_page_id].append(entry)
    return out
