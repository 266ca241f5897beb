"""The archive's levels for browsing, 全宗 → 门类 → 年度, each value with its counts of items.

The counts are of the items a caller may see: the caller's condition on Item (``access.item_filter``) is
passed in, so a level shows exactly what ``GET /api/items`` would list under it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from scanner_service.archive.models import Fonds, Item

Level = Literal["fonds", "category", "year"]


@dataclass(frozen=True)
class Facet:
    """One value of a level (a fonds, a category or a year) and what lies under it."""

    value: str
    name: str | None  # the fonds' name; None at the other levels
    items: int  # items in the catalogue (described, scanned or not)
    filed: int  # items with pages filed
    pages_filed: int  # pages filed in them
    missing_pages: int  # items with fewer pages filed than 页数 (漏扫)
    extra_pages: int  # items with more pages filed than 页数 (多扫)


def next_level(fonds: str | None, category: str | None) -> Level:
    """The level under what is chosen: the fonds, then a fonds' categories, then a category's years."""
    if not fonds:
        return "fonds"
    return "year" if category else "category"


def facets(
    session: Session, visible: ColumnElement[bool], *, fonds: str | None = None, category: str | None = None
) -> tuple[Level, list[Facet]]:
    """The values of the next level under ``fonds`` (and ``category``), in archival order, with their counts
    of the items ``visible`` lets through; a value with no such item is not listed."""
    level = next_level(fonds, category)
    column = {"fonds": Item.fonds, "category": Item.category, "year": Item.year}[level]
    stmt = select(
        column,
        func.count(Item.id),
        func.sum(case((Item.pages_filed > 0, 1), else_=0)),
        func.coalesce(func.sum(Item.pages_filed), 0),
        func.sum(case((Item.page_check == "missing_pages", 1), else_=0)),
        func.sum(case((Item.page_check == "extra_pages", 1), else_=0)),
    ).where(visible)
    if fonds:
        stmt = stmt.where(Item.fonds == fonds.upper())
    if category:
        stmt = stmt.where(Item.category == category.upper())
    rows = session.execute(stmt.group_by(column).order_by(column)).all()
    names: dict[str, str | None] = {}
    if level == "fonds" and rows:
        codes = [row[0] for row in rows]
        found = session.execute(select(Fonds.code, Fonds.name).where(Fonds.code.in_(codes)))
        names = {code: name for code, name in found}
    return level, [
        Facet(
            value=str(value),
            name=names.get(str(value)),
            items=int(items),
            filed=int(filed or 0),
            pages_filed=int(pages or 0),
            missing_pages=int(missing or 0),
            extra_pages=int(extra or 0),
        )
        for value, items, filed, pages, missing, extra in rows
    ]
