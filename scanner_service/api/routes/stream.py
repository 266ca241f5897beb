"""Live events: ``GET /api/stream``, Server-Sent Events of what the caller may see.

Every event is a row of the events table (see ``archive/events.py``): batch states, page progress and
flags, corrections, filings. The stream polls the table with a short session per poll, so nothing holds
a transaction open while a client watches; it is resumable with ``Last-Event-ID`` (each event's ``id:`` is
its row id), and it ends when the client goes away or the API stops.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from scanner_service.api.deps import CurrentToken, SessionDep, SettingsDep
from scanner_service.api.schemas import INT32_MAX, error_responses
from scanner_service.archive import access
from scanner_service.archive.db import session_scope
from scanner_service.archive.filing import batch_fonds
from scanner_service.archive.models import ITEM_EVENT_KINDS, Batch, Event, Item, Role, as_utc
from scanner_service.exceptions import UnusableInput

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["events"])

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0  # a comment line this often keeps proxies and idle timeouts from closing the stream
RETRY_MS = 3000  # how long a browser waits before it reconnects
# PostgreSQL hands out ids when rows are written, not when they commit: a row committed late may carry a
# lower id than rows already read. An id read waits this long for the ids below it before they are given up
# (a rolled-back transaction leaves its ids unused for good).
GRACE_SECONDS = 10.0
ROWS_PER_POLL = 500
_EVENT_ID = re.compile(r"[0-9]{1,10}")
ITEM_KINDS = frozenset(kind.value for kind in ITEM_EVENT_KINDS)


@dataclass
class Cursor:
    """Where one stream is in the events table, delivering each row once and in id order.

    Every id up to ``floor`` was delivered (or shown to the caller's filter, or given up on). Rows read above
    a missing id wait in ``held`` until it turns up, or until they have waited :data:`GRACE_SECONDS`.
    """

    floor: int
    held: dict[int, tuple[float, Any]] = field(default_factory=dict)

    def take(self, rows: Iterable[tuple[int, Any]], now: float) -> list[Any]:
        """What to send now from ``rows`` (id, frame or None for a row the caller may not see), in id order."""
        for row_id, frame in rows:
            if row_id > self.floor:
                self.held.setdefault(row_id, (now, frame))
        out: list[Any] = []
        for row_id in sorted(self.held):
            if row_id != self.floor + 1 and now - self.held[row_id][0] < GRACE_SECONDS:
                break  # an id below it may still commit
            self.floor = row_id
            frame = self.held.pop(row_id)[1]
            if frame is not None:
                out.append(frame)
        return out


@router.get(
    "/stream",
    response_class=StreamingResponse,
    summary="Live events (Server-Sent Events): batch and page progress, flags, corrections, filings",
    description="Each event: `id:` (the event's id), `event:` (its kind), `data:` (JSON: id, kind, at, batch_id, "
    "archival_code, page, detail). Resume with the `Last-Event-ID` header (a browser's EventSource sends it by "
    "itself) or `?after=<id>`; without either the stream starts from now (`?after=0`: from the first event). "
    "Filtered like the rest of the API: staff see the batches and items of their fonds, readers the item "
    "events of the items they may see.",
    responses={
        200: {"description": "An endless text/event-stream", "content": {"text/event-stream": {}}},
        **error_responses(401, 422),
    },
)
def stream(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    caller: CurrentToken,
    after: Annotated[
        int | None, Query(ge=0, le=INT32_MAX, description="Send the events after this id (0: every event)")
    ] = None,
    last_event_id: Annotated[
        str | None, Header(max_length=64, description="The id of the last event received (it wins over ?after=)")
    ] = None,
) -> StreamingResponse:
    start = _resume_point(last_event_id, after)
    if start is None:
        start = session.scalar(select(func.max(Event.id))) or 0
    session.close()  # the stream's polls use sessions of their own; this one must not stay open with it
    frames = _frames(request, settings.effective_database_url, caller, Cursor(start), request.app.state.stopping)
    return StreamingResponse(
        frames,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _resume_point(last_event_id: str | None, after: int | None) -> int | None:
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        if not _EVENT_ID.fullmatch(text) or int(text) > INT32_MAX:
            raise UnusableInput(
                f"Last-Event-ID must be an event id this stream sent, not {text!r}.", reason_code="bad_last_event_id"
            )
        return int(text)
    return after


async def _frames(
    request: Request, url: str, caller: access.Caller, cursor: Cursor, stopping: Callable[[], bool]
) -> AsyncIterator[str]:
    """The stream's text: a retry hint, then events as they are written, and a heartbeat when it is quiet."""
    yield f"retry: {RETRY_MS}\n\n"
    quiet_since = time.monotonic()
    while not stopping() and not await request.is_disconnected():
        try:
            rows = await run_in_threadpool(_read, url, caller, cursor.floor)
        except SQLAlchemyError as err:  # the catalogue is away for a moment: keep the stream, try again
            log.warning("event stream: cannot read the catalogue: %s", err)
            rows = []
        frames = cursor.take(rows, time.monotonic())
        if frames:
            yield "".join(frames)
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        await anyio.sleep(POLL_SECONDS)


def _read(url: str, caller: access.Caller, floor: int) -> list[tuple[int, str | None]]:
    """The rows after ``floor``, each with its SSE frame, or None where the caller may not see it."""
    with session_scope(url) as session:
        rows = session.scalars(select(Event).where(Event.id > floor).order_by(Event.id).limit(ROWS_PER_POLL)).all()
        codes = _visible_items(session, caller, rows)
        fonds = _batch_fonds(session, rows) if caller.role != Role.reader else {}
        return [(e.id, _frame(e, codes.get(e.item_id)) if _may_see(caller, e, codes, fonds) else None) for e in rows]


def _visible_items(session: Session, caller: access.Caller, rows: Sequence[Event]) -> dict[int | None, str]:
    """The 档号 of each item named in ``rows`` that the caller may see."""
    ids = {e.item_id for e in rows if e.item_id is not None}
    if not ids:
        return {}
    found = session.execute(select(Item.id, Item.archival_code).where(Item.id.in_(ids), access.item_filter(caller)))
    return {item_id: code for item_id, code in found}


def _batch_fonds(session: Session, rows: Sequence[Event]) -> dict[int, str | None]:
    """The fonds of each batch named in ``rows`` as it is now (a batch's 档号 may be given after its first events)."""
    ids = {e.batch_id for e in rows if e.batch_id is not None and e.item_id is None}
    if not ids:
        return {}
    return {batch.id: batch_fonds(batch) for batch in session.scalars(select(Batch).where(Batch.id.in_(ids)))}


def _may_see(caller: access.Caller, event: Event, codes: dict[int | None, str], fonds: dict[int, str | None]) -> bool:
    """The API's own rules: an item's events as the item is seen, a batch's as the batch (staff only)."""
    if event.item_id is not None:
        return event.item_id in codes and (caller.role != Role.reader or event.kind in ITEM_KINDS)
    if caller.role == Role.reader:
        return False
    if event.batch_id is not None and event.batch_id in fonds:
        return access.may_see_batch(caller, fonds[event.batch_id])
    return access.may_see_batch(caller, event.fonds)  # its batch or item is gone: the fonds it was written with


def _frame(event: Event, item_code: str | None) -> str:
    data = {
        "id": event.id,
        "kind": event.kind,
        "at": as_utc(event.at).isoformat().replace("+00:00", "Z"),
        "batch_id": event.batch_id,
        "archival_code": item_code or event.archival_code,
        "page": event.page,
        "detail": event.detail or {},
    }
    return f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
