"""A batch's bookkeeping in the catalogue that both the watcher and the workers rely on."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, String, Text, and_, case, cast, exists, func, or_, select, update
from sqlalchemy.orm import Session

from scanner_service.archive.db import session_scope
from scanner_service.archive.models import Batch, BatchState, Page, PageState, as_utc

FINAL = (PageState.done, PageState.failed)


def in_order(pages: Iterable[Page]) -> list[Page]:
    """A batch's pages in the order a person chose (``Page.position``), else in scan order."""
    return sorted(pages, key=lambda p: (p.position if p.position is not None else p.seq, p.seq))


def is_excluded(page: Page) -> bool:
    """A person left the page out: not in the batch PDF, not filed, its original kept."""
    return bool((page.correction or {}).get("excluded"))


def usable(page: Page) -> bool:
    """A page that goes into the batch PDF and is filed: processed, not blank, not a sheet, not excluded."""
    return (
        page.state == PageState.done
        and not page.blank
        and "separator" not in (page.flags or [])
        and not is_excluded(page)
    )


def no_decision() -> ColumnElement[bool]:
    """SQL: the page has no station's decision yet (NULL, or a JSON ``null`` an older version wrote)."""
    return or_(Page.decision.is_(None), cast(Page.decision, String) == "null")


def claim_assembly(url: str, batch_id: int, *, reclaim: bool = False) -> bool:
    """True for exactly one caller once every page of the batch is final (``reclaim``: also if claimed)."""
    open_page = exists().where(and_(Page.batch_id == batch_id, Page.state.notin_(FINAL)))
    with session_scope(url) as session:
        if reclaim:
            batch = session.get(Batch, batch_id)
            if batch is not None and batch.assembly_queued:
                return not session.scalar(select(open_page))
        result = session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.assembly_queued.is_(False), ~open_page)
            .values(assembly_queued=True)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]


# ---- what a batch's row on the board shows: counts of its pages, computed in SQL --------------------

FLAG_KINDS = ("blank", "orientation_unsure", "low_confidence", "low_resolution", "resolution_mismatch", "failed")
"""The flags counted per batch (``flags`` of ``GET /api/batches``): every flag that sends a batch to review."""
RUNNING = (BatchState.receiving, BatchState.queued, BatchState.processing)


@dataclass(frozen=True)
class PageSummary:
    """A batch's pages in numbers: what its row on the board shows, without loading a page.

    ``flags`` counts the pages carrying each flag of :data:`FLAG_KINDS` (as the station decided; a person's
    acceptance does not remove a flag). ``first_final_at`` / ``last_final_at`` are when the first and the
    latest page finished (done or failed): the rate the batch is being processed at."""

    total: int = 0
    done: int = 0
    blank: int = 0
    failed: int = 0
    flags: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FLAG_KINDS, 0))
    first_final_at: datetime | None = None
    last_final_at: datetime | None = None

    @property
    def final(self) -> int:
        return self.done + self.failed

    def pages_per_minute(self) -> float | None:
        """Pages finished per minute, measured between the first and the latest page finished; None
        before two pages are finished."""
        if self.final < 2 or self.first_final_at is None or self.last_final_at is None:
            return None
        seconds = (as_utc(self.last_final_at) - as_utc(self.first_final_at)).total_seconds()
        # n pages finishing over a span make n - 1 intervals; with several workers the first ones may
        # finish within the same second, so the span is at least one second.
        return round((self.final - 1) * 60 / max(seconds, 1.0), 1)

    def seconds_left(self, state: BatchState) -> float | None:
        """About how long until every page is finished, at :meth:`pages_per_minute`; None unless running."""
        rate = self.pages_per_minute()
        if state not in RUNNING or not rate:
            return None
        return round((self.total - self.final) * 60 / rate, 1)


def summarise(pages: Iterable[Page]) -> PageSummary:
    """:func:`page_summaries` for pages already loaded (one batch's detail): the same numbers."""
    pages = list(pages)
    final = [as_utc(p.updated_at) for p in pages if p.state in FINAL and p.updated_at is not None]
    return PageSummary(
        total=len(pages),
        done=sum(p.state == PageState.done for p in pages),
        blank=sum(bool(p.blank) for p in pages),
        failed=sum(p.state == PageState.failed for p in pages),
        flags={kind: sum(kind in (p.flags or []) for p in pages) for kind in FLAG_KINDS},
        first_final_at=min(final, default=None),
        last_final_at=max(final, default=None),
    )


def page_summaries(session: Session, batch_ids: Collection[int]) -> dict[int, PageSummary]:
    """:class:`PageSummary` of each batch, in one aggregate query (no page row is loaded); a batch without
    pages is absent (its summary is ``PageSummary()``)."""
    if not batch_ids:
        return {}

    def count(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    # The flags are a JSON list of plain names (["blank", "low_confidence"]); its text holds each name in
    # quotes, on SQLite and PostgreSQL alike, and no flag's name is part of another's.
    flags_text = cast(Page.flags, Text)
    final_at = case((Page.state.in_(FINAL), Page.updated_at))
    columns = [
        Page.batch_id,
        func.count(),
        count(Page.state == PageState.done),
        count(Page.blank.is_(True)),
        count(Page.state == PageState.failed),
        *(count(flags_text.like(f'%"{kind}"%')) for kind in FLAG_KINDS),
        func.min(final_at),
        func.max(final_at),
    ]
    stmt = select(*columns).where(Page.batch_id.in_(list(batch_ids))).group_by(Page.batch_id)
    summaries = {}
    for row in session.execute(stmt):
        batch_id, total, done, blank, failed, *rest = row
        flag_counts, (first, last) = rest[: len(FLAG_KINDS)], rest[len(FLAG_KINDS) :]
        summaries[batch_id] = PageSummary(
            total=int(total),
            done=int(done),
            blank=int(blank),
            failed=int(failed),
            flags={kind: int(n) for kind, n in zip(FLAG_KINDS, flag_counts, strict=True)},
            first_final_at=_as_time(first),
            last_final_at=_as_time(last),
        )
    return summaries


def _as_time(value: datetime | str | None) -> datetime | None:
    # A bare MIN() over a CASE on SQLite may come back as the stored text.
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def state_counts(session: Session, visible: ColumnElement[bool]) -> dict[str, int]:
    """How many batches are in each state, of those ``visible`` (an SQL condition on Batch) selects."""
    rows = session.execute(select(Batch.state, func.count()).where(visible).group_by(Batch.state))
    counts = dict.fromkeys((s.value for s in BatchState), 0)
    counts.update({state.value: int(n) for state, n in rows})
    return counts
