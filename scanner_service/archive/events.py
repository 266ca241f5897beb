"""Events: what downstream systems read (``GET /api/events``: items filed, changed, described) and
what a watching person sees live (``GET /api/stream``: batch and page progress, flags, corrections).

One table, one writer: every event is written by :func:`record_event` inside the transaction of the
change it tells of, so an event is never seen for a change that did not happen.

Progress is written without any call site asking: :func:`watch_progress` (on every catalogue session,
see ``db.py``) adds a ``batch_state`` event for each batch whose state changed in a flush, and a
``page_progress`` event (plus ``page_flagged`` when it finished with flags to review) for each page
whose state changed. The jobs add one ``page_progress`` per stage they start (:func:`record_stage`).
A page makes three or four rows (processing, its stage, done, flagged); nothing is written per poll.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import get_history

from scanner_service.archive.models import Batch, BatchState, Event, EventKind, Page, PageState

PAGE_FINAL = (PageState.done, PageState.failed)
NOT_FOR_REVIEW = {"separator"}  # a separator sheet is flagged, but it is no reason to review the batch


def record_event(
    session: Session,
    kind: EventKind,
    *,
    batch_id: int | None = None,
    item_id: int | None = None,
    archival_code: str | None = None,
    fonds: str | None = None,
    page: int | None = None,
    detail: dict[str, Any] | None = None,
) -> Event:
    """Add one event to the session (committed with the caller's transaction)."""
    event = Event(
        kind=kind.value,
        batch_id=batch_id,
        item_id=item_id,
        archival_code=archival_code,
        fonds=fonds,
        page=page,
        detail=detail or {},
    )
    session.add(event)
    return event


def record_stage(session: Session, page_id: int, stage: str) -> None:
    """A ``page_progress`` event: the page started ``stage`` (``ocr``, …)."""
    page = session.get(Page, page_id)
    if page is not None:
        record_event(
            session,
            EventKind.page_progress,
            batch_id=page.batch_id,
            fonds=_fonds(page.batch),
            page=page.seq,
            detail={"state": page.state.value, "stage": stage},
        )


def record_page_finished(session: Session, page_id: int) -> None:
    """The ``page_progress`` (and ``page_flagged``) events of a page whose final state was written by a
    compare-and-set statement (``UPDATE … WHERE version = …``), which the flush listener cannot see."""
    page = session.get(Page, page_id, populate_existing=True)
    if page is not None:
        _page_progress(session, page, page.state.value, pages=_pages_count(session, page.batch_id))


def watch_progress(factory: sessionmaker[Session]) -> None:
    """Write the progress events of every session the factory makes (idempotent)."""
    if not sa_event.contains(factory, "after_flush", _progress_events):
        sa_event.listen(factory, "after_flush", _progress_events)


def _progress_events(session: Session, _flush_context: Any) -> None:
    # after_flush, not before_flush: a new batch has its id only now, and the pages-done count read here
    # includes this flush. The events added are written by the next flush of the same transaction (commit
    # flushes until the session is clean), so they commit with the change or not at all.
    counts: dict[int, tuple[int, int]] = {}  # per batch, once per flush (a flush may requeue a thousand pages)

    def pages_count(batch_id: int) -> tuple[int, int]:
        if batch_id not in counts:
            counts[batch_id] = _pages_count(session, batch_id)
        return counts[batch_id]

    for obj in [*session.new, *session.dirty]:
        if isinstance(obj, Batch):
            change = _state_change(obj)
            if change is not None:
                _batch_state(session, obj, *change, pages=pages_count(obj.id))
        elif isinstance(obj, Page):
            change = _state_change(obj)
            if change is not None and change[0] is not None:  # a page recorded as queued: its batch's event says so
                _page_progress(session, obj, change[1], pages=pages_count(obj.batch_id))


def _state_change(obj: Batch | Page) -> tuple[str | None, str] | None:
    """(before, after) of ``obj.state`` in this flush; None if it did not change."""
    history = get_history(obj, "state")
    if not history.added:
        return None
    after = getattr(history.added[-1], "value", history.added[-1])
    before = getattr(history.deleted[0], "value", history.deleted[0]) if history.deleted else None
    return None if before == after else (before, after)


def _batch_state(session: Session, batch: Batch, before: str | None, after: str, *, pages: tuple[int, int]) -> None:
    total, done = pages
    detail: dict[str, Any] = {"from": before, "state": after, "pages": {"total": total, "done": done}}
    if after == BatchState.failed.value:
        detail |= {"error_code": batch.error_code, "error": batch.error}
    record_event(
        session,
        EventKind.batch_state,
        batch_id=batch.id,
        archival_code=batch.archival_code,
        fonds=_fonds(batch),
        detail=detail,
    )


def _page_progress(session: Session, page: Page, state: str, *, pages: tuple[int, int]) -> None:
    total, done = pages
    detail: dict[str, Any] = {"state": state, "batch_pages": {"total": total, "done": done}}
    finished = state in (PageState.done.value, PageState.failed.value)
    if finished:
        detail |= {"flags": list(page.flags or []), "blank": page.blank}
        if state == PageState.failed.value:
            detail |= {"error_code": page.error_code, "error": page.error}
    fonds = _fonds(page.batch)
    record_event(session, EventKind.page_progress, batch_id=page.batch_id, fonds=fonds, page=page.seq, detail=detail)
    review = [flag for flag in page.flags or [] if flag not in NOT_FOR_REVIEW]
    if finished and review:
        kind = EventKind.page_flagged
        record_event(session, kind, batch_id=page.batch_id, fonds=fonds, page=page.seq, detail={"flags": review})


def _pages_count(session: Session, batch_id: int) -> tuple[int, int]:
    """(pages, pages final) of the batch as this transaction sees it, this flush included."""
    final = func.sum(case((Page.state.in_(PAGE_FINAL), 1), else_=0))
    total, done = session.execute(select(func.count(), final).where(Page.batch_id == batch_id)).one()
    return int(total), int(done or 0)


def _fonds(batch: Batch) -> str | None:
    # Imported here: filing's package imports much of the archive, which may import this module.
    from scanner_service.archive.filing.items import batch_fonds

    return batch_fonds(batch)
