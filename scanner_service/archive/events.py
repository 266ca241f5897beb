"""Events: what downstream systems read (``GET /api/events``: items filed, changed, described) and
what a watching person sees live (``GET /api/stream``: batch and page progress, flags, corrections).

One table, one writer: every event is written by :func:`record_event` inside the transaction of the
change it tells of, so an event is never seen for a change that did not happen.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from scanner_service.archive.models import Event, EventKind


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
