"""Live events: ``GET /api/stream``, Server-Sent Events of what the caller may see.

Every event is a row of the events table (see ``archive/events.py``): batch states, page progress and
flags, corrections, filings. The stream polls the table with a short session per poll, so nothing holds
a transaction open while a client watches; it is resumable with ``Last-Event-ID`` (each event's ``id:`` is
its row id), and it ends when the client goes away, the API stops, or the caller's token or login no
longer opens the API (asked again every ``RECHECK_SECONDS``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from scanner_service.api.deps import Authenticated, Credential, CurrentLogin, SessionDep, SettingsDep, authenticate
from scanner_service.api.schemas import EVENT_ID, INT32_MAX, error_responses
from scanner_service.archive import access
from scanner_service.archive.db import session_scope
from scanner_service.archive.models import Event, Item, as_utc, utcnow
from scanner_service.exceptions import Unauthorized, UnusableInput

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["events"])

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0  # a comment line this often keeps proxies and idle timeouts from closing the stream
RECHECK_SECONDS = 15.0  # this often the stream asks again whether its token or login still opens the API
RETRY_MS = 3000  # how long a browser waits before it reconnects
# PostgreSQL hands out ids when rows are written, not when they commit: a row committed late may carry a
# lower id than rows already read. A row read above a missing id waits for it until the row was written
# this long ago (its ``at``); then the id is given up (a rolled-back transaction leaves it unused for good).
GRACE_SECONDS = 10.0
ROWS_PER_POLL = 500


@dataclass
class Cursor:
    """Where one stream is in the events table, delivering each row once and in id order.

    Every id up to ``floor`` was delivered (or shown to the caller's filter, or given up on). Rows read above
    a missing id wait in ``held`` until it turns up, or until they were written :data:`GRACE_SECONDS` ago:
    by their own time, so a replay of old events never waits for a gap.
    """

    floor: int
    held: dict[int, tuple[float, Any]] = field(default_factory=dict)

    def take(self, rows: Iterable[tuple[int, float, Any]], now: float) -> list[Any]:
        """What to send now from ``rows`` (id, when written as a POSIX time, frame or None for a row the caller
        may not see), in id order; ``now`` is the time on the same clock."""
        for row_id, at, frame in rows:
            if row_id > self.floor:
                self.held.setdefault(row_id, (at, frame))
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
    login: CurrentLogin,
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
    frames = _frames(request, settings.effective_database_url, login, Cursor(start), request.app.state.stopping)
    return StreamingResponse(
        frames,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _resume_point(last_event_id: str | None, after: int | None) -> int | None:
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        if not EVENT_ID.fullmatch(text) or int(text) > INT32_MAX:
            raise UnusableInput(
                f"Last-Event-ID must be an event id this stream sent, not {text!r}.", reason_code="bad_last_event_id"
            )
        return int(text)
    return after


async def _frames(
    request: Request, url: str, login: Authenticated, cursor: Cursor, stopping: Callable[[], bool]
) -> AsyncIterator[str]:
    """The stream's text: a retry hint, then events as they are written, and a heartbeat when it is quiet.

    It ends when the client goes away, the API stops, the login expires, or the token or login no longer
    opens the API (asked again every :data:`RECHECK_SECONDS`; a changed role or fonds applies from then)."""
    yield f"retry: {RETRY_MS}\n\n"
    quiet_since = checked = time.monotonic()
    caller, expires_at = login.caller, login.expires_at
    while not stopping() and not await request.is_disconnected():
        if time.monotonic() - checked >= RECHECK_SECONDS:
            again = await run_in_threadpool(_recheck, url, login.credential)
            checked = time.monotonic()
            if again is False:
                return
            if again is not True:
                caller, expires_at = again
        if expires_at is not None and expires_at <= utcnow():
            log.info("event stream of %r: the login expired", caller.name)
            return
        try:
            rows = await run_in_threadpool(_read, url, caller, cursor.floor)
        except SQLAlchemyError as err:  # the catalogue is away for a moment: keep the stream, try again
            log.warning("event stream: cannot read the catalogue: %s", err)
            rows = []
        frames = cursor.take(rows, time.time())
        if frames:
            yield "".join(frames)
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        await anyio.sleep(POLL_SECONDS)


def _recheck(url: str, credential: Credential) -> tuple[access.Caller, datetime | None] | bool:
    """Who the credential is now and until when; False if it no longer opens the API, True if that cannot
    be asked now (the catalogue is away for a moment: the stream goes on, as its polls do)."""
    try:
        with session_scope(url) as session:
            found = authenticate(session, credential)
            return found.caller, found.expires_at
    except Unauthorized as err:
        log.info("event stream ended: %s", err.message)
        return False
    except SQLAlchemyError as err:
        log.warning("event stream: cannot check its caller again: %s", err)
        return True


def _read(url: str, caller: access.Caller, floor: int) -> list[tuple[int, float, str | None]]:
    """The rows after ``floor``, each with when it was written and its SSE frame (None where the caller may
    not see it: the rule of ``GET /api/events``, :func:`access.event_filter`)."""
    visible = access.event_filter(caller).label("visible")
    stmt = (
        select(Event, Item.archival_code, visible)
        .outerjoin(Item, Item.id == Event.item_id)
        .where(Event.id > floor)
        .order_by(Event.id)
        .limit(ROWS_PER_POLL)
    )
    with session_scope(url) as session:
        return [
            (e.id, as_utc(e.at).timestamp(), _frame(e, code) if seen else None)
            for e, code, seen in session.execute(stmt)
        ]


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
