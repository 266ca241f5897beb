"""A batch's bookkeeping in the catalogue that both the watcher and the workers rely on."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, String, and_, cast, exists, or_, select, update

from scanner_service.archive.db import session_scope
from scanner_service.archive.models import Batch, Page, PageState

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
